"""A setting shown as a slider only takes a number inside the slider's range (issue 14).

The Settings tab's slider cannot go past its ends, but POST /sdapi/v1/options and override_settings
could store any number: `jpeg_quality: 1000` or `CLIP_stop_at_last_layers: 50` then failed (or
silently misbehaved) later in the job that read it. This module has no imports of the settings
registry so that modules.options can use it without a circle."""
import math


def bounds(info) -> tuple[float, float] | None:
    """(minimum, maximum) of a slider setting, or None when the setting is no slider or its range
    is computed at run time (a callable component_args is not called here: it may be slow)."""
    component = info.component
    name = component if isinstance(component, str) else getattr(component, "__name__", "")
    if name.lower() != "slider" or not isinstance(info.component_args, dict):
        return None
    low, high = info.component_args.get("minimum"), info.component_args.get("maximum")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    return low, high


def _number_text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def message(key: str, value, limits: tuple[float, float]) -> str:
    low, high = limits
    return (f"Setting '{key}' cannot take the value {value!r}: "
            f"expected a number from {_number_text(low)} to {_number_text(high)}")


def _fraction_for_integer(info, raw) -> bool:
    """A finite non-whole float given to a setting whose default is an integer."""
    integer_setting = isinstance(info.default, int) and not isinstance(info.default, bool)
    return integer_setting and isinstance(raw, float) and math.isfinite(raw) and not raw.is_integer()


def problem(key: str, info, raw, converted) -> str | None:
    """The message for a slider value that is no number or outside the range, else None."""
    limits = bounds(info)
    if limits is None:
        return None
    if _fraction_for_integer(info, raw) and limits[0] <= raw <= limits[1]:
        # the slider rounds to its step in the browser; over the API a fraction is refused rather than
        # rounded, and the message says why a value inside the range was not taken
        return message(key, raw, limits).replace("expected a number", "expected a whole number")
    if isinstance(raw, bool) or isinstance(converted, bool) or not isinstance(converted, (int, float)):
        return message(key, raw, limits)
    if not math.isfinite(converted) or not limits[0] <= converted <= limits[1]:
        return message(key, raw, limits)
    return None
