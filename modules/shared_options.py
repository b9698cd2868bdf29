"""Registers every built-in setting (generation.md §17) with its section, default and label."""
from modules.image_formats import check_format_setting
from modules.options import OptionInfo, Options
from modules.settings_table import SETTINGS

# Keys the API may read but never write (api.md §11.2).
API_RESTRICTED = {"api_enable_requests", "api_forbid_local_requests", "api_useragent"}

# Folder and pattern keys frozen by --hide-ui-dir-config (api.md §11.2).
UI_DIR_KEYS = {
    "samples_filename_pattern", "directories_filename_pattern", "outdir_samples",
    "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids",
    "outdir_txt2img_grids", "outdir_img2img_grids", "outdir_save", "outdir_init_images",
    "temp_dir", "clean_temp_dir_at_start",
}


# Settings whose values need more than a type check.
VALIDATORS = {"samples_format": check_format_setting, "grid_format": check_format_setting}


def register_builtin_options(opts: Options) -> None:
    for section_id, section_label, key, default, infotext, label in SETTINGS:
        opts.add_option(key, OptionInfo(
            default=default, label=label, section=(section_id, section_label),
            infotext=infotext, restrict_api=key in API_RESTRICTED, validate=VALIDATORS.get(key)))
    from modules.controlnet import options as controlnet_options  # plain data, no model code
    for key, (default, label) in controlnet_options.SETTINGS.items():
        opts.add_option(key, OptionInfo(default=default, label=label, section=controlnet_options.SECTION))
    from modules.settings.presentation import describe_builtin_options
    describe_builtin_options(opts)  # A1111's labels, components and pages for the Settings tab
    from modules.settings.choices import install_choice_checks
    install_choice_checks(opts)  # radio/dropdown settings take one of their choices (issue 14 fuzz)


def freeze_from_flags(opts: Options, cmd_opts) -> None:
    """Apply --freeze-settings*, --hide-ui-dir-config: those keys become read-only."""
    frozen = {}  # key -> flag, so messages can name the flag
    if cmd_opts.freeze_settings:
        frozen.update(dict.fromkeys(opts.data_labels, "--freeze-settings"))
    if cmd_opts.hide_ui_dir_config:
        frozen.update(dict.fromkeys(UI_DIR_KEYS, "--hide-ui-dir-config"))
    if cmd_opts.freeze_settings_in_sections:
        sections = {s.strip() for s in cmd_opts.freeze_settings_in_sections.split(",")}
        frozen.update(dict.fromkeys((k for k, info in opts.data_labels.items()
                                     if info.section and info.section[0] in sections),
                                    "--freeze-settings-in-sections"))
    if cmd_opts.freeze_specific_settings:
        frozen.update(dict.fromkeys((s.strip() for s in cmd_opts.freeze_specific_settings.split(",")),
                                    "--freeze-specific-settings"))
    opts.frozen_keys.update(frozen)
    opts.frozen_by.update(frozen)
