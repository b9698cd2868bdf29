"""Settings with a fixed list of choices (radio buttons, dropdowns) only take one of them.

Without this, POST /options or override_settings could store any string, and the job that read it
later failed deep inside (an unknown `randn_source` was a 500 from the noise generator). Settings
whose choices come from what is installed (checkpoints, upscalers) only have to be text."""
from modules.options import OptionError, OptionInfo, Options

CHOICE_COMPONENTS = ("radio", "dropdown")


def _static_choices(info: OptionInfo):
    args = info.component_args if isinstance(info.component_args, dict) else {}
    choices = args.get("choices")
    return choices if isinstance(choices, (list, tuple)) else None


def _one_of(key: str, choices, previous):
    def check(value):
        if value not in choices:
            raise OptionError(f"Setting '{key}' cannot take the value {value!r}: "
                              f"choose one of {', '.join(map(str, choices))}")
        if previous is not None:
            previous(value)
    return check


def _text_or_none(key: str, previous):
    def check(value):
        if value is not None and not isinstance(value, str):
            raise OptionError(f"Setting '{key}' cannot take the value {value!r}: expected a name (text)")
        if previous is not None:
            previous(value)
    return check


def install_choice_checks(opts: Options) -> None:
    for key, info in opts.data_labels.items():
        if info.component not in CHOICE_COMPONENTS:
            continue
        choices = _static_choices(info)
        if choices is not None and info.default in choices:
            info.validate = _one_of(key, list(choices), info.validate)
        elif choices is None and info.default is None:
            info.validate = _text_or_none(key, info.validate)
