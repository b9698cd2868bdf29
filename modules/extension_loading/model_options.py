"""The settings whose choices extensions add (extensions.md §6.1 on_list_optimizers / on_list_unets):
`cross_attention_optimization` and `sd_unet` are listed once the scripts are loaded, then take only
a value that is offered, and applying a new value switches at once (a failure refuses it)."""
from modules import sd_hijack, sd_unet
from modules.options import OptionError, Options

KEYS = {
    "cross_attention_optimization": (sd_hijack.is_known_choice, sd_hijack.choices, sd_hijack.setting_changed),
    "sd_unet": (sd_unet.is_known_choice, sd_unet.choices, sd_unet.setting_changed),
}


def _check(key, known, offered, previous):
    def check(value):
        if not known(value):
            raise OptionError(f"Setting '{key}' cannot take the value {value!r}: "
                              f"choose one of {', '.join(map(str, offered()))}")
        if previous is not None:
            previous(value)
    return check


def register(opts: Options) -> None:
    """List what extensions offer and wire the two settings; a saved value nothing offers any more
    (an extension was removed) is reported and the default used, as for other saved settings."""
    sd_hijack.list_optimizers()
    sd_unet.list_unets()
    for key, (known, offered, changed) in KEYS.items():
        info = opts.data_labels[key]
        if getattr(info.validate, "model_options_check", False):
            info.validate = info.validate.previous  # registered again (tests, reload): one check
        check = _check(key, known, offered, info.validate)
        check.model_options_check, check.previous = True, info.validate
        info.validate = check
        info.onchange = changed
        saved = opts.data.get(key, info.default)
        if not known(saved):
            print(f"Setting {key}: {saved!r} is not offered (choose one of {', '.join(offered())}); "
                  f"using the default {info.default!r} instead")
            opts.data[key] = info.default
