"""Registers every built-in setting (generation.md §17) with its section, default and label."""
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


def _check_image_format(value) -> None:
    from modules import images  # images imports shared, which imports this module
    images.check_format_setting(value)


# Settings whose values need more than a type check.
VALIDATORS = {"samples_format": _check_image_format, "grid_format": _check_image_format}


def register_builtin_options(opts: Options) -> None:
    for section_id, section_label, key, default, infotext, label in SETTINGS:
        opts.add_option(key, OptionInfo(
            default=default, label=label, section=(section_id, section_label),
            infotext=infotext, restrict_api=key in API_RESTRICTED, validate=VALIDATORS.get(key)))
    from modules.controlnet import options as controlnet_options  # plain data, no model code
    for key, (default, label) in controlnet_options.SETTINGS.items():
        opts.add_option(key, OptionInfo(default=default, label=label, section=controlnet_options.SECTION))


def freeze_from_flags(opts: Options, cmd_opts) -> None:
    """Apply --freeze-settings*, --hide-ui-dir-config: those keys become read-only."""
    frozen = set()
    if cmd_opts.freeze_settings:
        frozen |= set(opts.data_labels)
    if cmd_opts.hide_ui_dir_config:
        frozen |= UI_DIR_KEYS
    if cmd_opts.freeze_settings_in_sections:
        sections = {s.strip() for s in cmd_opts.freeze_settings_in_sections.split(",")}
        frozen |= {k for k, info in opts.data_labels.items()
                   if info.section and info.section[0] in sections}
    if cmd_opts.freeze_specific_settings:
        frozen |= {s.strip() for s in cmd_opts.freeze_specific_settings.split(",")}
    opts.frozen_keys.update(frozen)
