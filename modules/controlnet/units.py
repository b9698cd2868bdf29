"""A ControlNet unit: its fields, read leniently from the API's dicts (controlnet.md §2), and its
infotext line (§5)."""
import logging
from dataclasses import dataclass, fields

from PIL import Image

from modules.controlnet import hint as hints

CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
HR_OPTIONS = ("Both", "Low res only", "High res only")
RESIZE_ALIASES = {
    "inner fit (scale to fit)": "Crop and Resize", "scale to fit (inner fit)": "Crop and Resize",
    "outer fit (shrink to fit)": "Resize and Fill", "envelope (outer fit)": "Resize and Fill",
}
# keys old clients send that mean nothing any more
IGNORED_KEYS = {"guessmode", "guess_mode", "rgbbgr_mode", "invert_image", "scribble_mode", "is_ui",
                "input_mode", "batch_images", "output_dir", "loopback", "pulid_mode", "union_control_type",
                "ipadapter_input", "advanced_weighting", "effective_region_mask"}


log = logging.getLogger(__name__)


class UnitError(ValueError):
    """A unit field that cannot be taken; the message names the unit and the field."""


@dataclass
class ControlNetUnit:
    enabled: bool = False
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Image.Image | None = None
    mask: Image.Image | None = None
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: float = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    hr_option: str = "Both"
    save_detected_map: bool = True
    inpaint_crop_input_image: bool = True

    def infotext(self, model_title: str) -> str:
        """`Module: canny, Model: ..., Weight: 1.0, ...` in the extension's order and spelling."""
        values = [("Module", self.module), ("Model", model_title), ("Weight", self.weight),
                  ("Resize Mode", self.resize_mode), ("Processor Res", self.processor_res),
                  ("Threshold A", self.threshold_a), ("Threshold B", self.threshold_b),
                  ("Guidance Start", self.guidance_start), ("Guidance End", self.guidance_end),
                  ("Pixel Perfect", self.pixel_perfect), ("Control Mode", self.control_mode)]
        parts = []
        for name, value in values:
            text = str(value)
            parts.append(f"{name}: {'' if (',' in text or ':' in text) else text}")
        return ", ".join(parts)


def _enum(value, choices, unit: int, name: str, aliases: dict | None = None) -> str:
    if isinstance(value, bool):
        raise UnitError(f"ControlNet unit {unit}: {name} must be one of {', '.join(choices)}")
    if isinstance(value, int):
        if name == "resize_mode" and value == 3:
            value = 0  # the extension maps its old fourth mode to Just Resize
        if 0 <= value < len(choices):
            return choices[value]
    if isinstance(value, str):
        text = value.split(".", 1)[1] if value.startswith("HiResFixOption.") else value
        for choice in choices:
            if text.strip().lower() == choice.lower():
                return choice
        if aliases and text.strip().lower() in aliases:
            return aliases[text.strip().lower()]
        if text.strip().isdigit():
            return _enum(int(text), choices, unit, name, aliases)
    raise UnitError(f"ControlNet unit {unit}: {name} must be one of {', '.join(choices)} (or 0-{len(choices) - 1}), "
                    f"got {value!r}")


def _number(value, unit: int, name: str, low=None, high=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise UnitError(f"ControlNet unit {unit}: {name} must be a number, got {value!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UnitError(f"ControlNet unit {unit}: {name} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise UnitError(f"ControlNet unit {unit}: {name} must be between {low} and {high}, got {value}")
    return value


def _bool(value, unit: int, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UnitError(f"ControlNet unit {unit}: {name} must be true or false, got {value!r}")


def _images(value, unit: int) -> tuple[Image.Image | None, Image.Image | None]:
    """image: base64, {"image", "mask"}, or [image, mask] (§2.2)."""
    what = f"ControlNet unit {unit}: image"
    if value is None:
        return None, None
    if isinstance(value, str):
        return hints.decode_image(value, what), None
    if isinstance(value, dict):
        image = value.get("image")
        mask = value.get("mask")
        return (hints.decode_image(image, what) if image else None,
                hints.decode_image(mask, f"ControlNet unit {unit}: mask") if mask else None)
    if isinstance(value, (list, tuple)) and len(value) in (1, 2) and all(isinstance(v, str) for v in value):
        image = hints.decode_image(value[0], what)
        mask = hints.decode_image(value[1], f"ControlNet unit {unit}: mask") if len(value) == 2 else None
        return image, mask
    raise UnitError(f"{what} must be base64, {{'image', 'mask'}} or [image, mask]")


def unit_from_dict(data: dict, unit: int) -> ControlNetUnit:
    """One API unit dict -> ControlNetUnit (every field optional; aliases and int enums accepted)."""
    data = dict(data)
    if "input_image" in data:
        data.setdefault("image", data.pop("input_image"))
    if "mask_image" in data:
        if data.get("mask") is not None:
            raise UnitError(f"ControlNet unit {unit}: give either mask or mask_image, not both")
        data["mask"] = data.pop("mask_image")
    if "lowvram" in data:
        data.setdefault("low_vram", data.pop("lowvram"))
    if "guidance" in data:
        data.setdefault("guidance_end", data.pop("guidance"))
    known = {f.name for f in fields(ControlNetUnit)}
    result = ControlNetUnit()
    try:
        result.image, mask = _images(data.get("image"), unit)
        if data.get("mask"):
            result.mask = hints.decode_image(data["mask"], f"ControlNet unit {unit}: mask")
        elif mask is not None:
            result.mask = mask
    except hints.HintError as e:
        raise UnitError(str(e)) from None
    for key, value in data.items():
        if key in ("image", "mask") or key not in known or value is None:
            continue
        if key in ("module", "model"):
            if not isinstance(value, str):
                raise UnitError(f"ControlNet unit {unit}: {key} must be a name")
            setattr(result, key, value)
        elif key == "resize_mode":
            result.resize_mode = _enum(value, hints.RESIZE_MODES, unit, key, RESIZE_ALIASES)
        elif key == "control_mode":
            result.control_mode = _enum(value, CONTROL_MODES, unit, key)
        elif key == "hr_option":
            result.hr_option = _enum(value, HR_OPTIONS, unit, key)
        elif key in ("enabled", "low_vram", "pixel_perfect", "save_detected_map", "inpaint_crop_input_image"):
            setattr(result, key, _bool(value, unit, key))
        elif key == "weight":
            result.weight = _number(value, unit, key, 0, 2)
        elif key in ("guidance_start", "guidance_end"):
            setattr(result, key, _number(value, unit, key, 0, 1))
        else:
            setattr(result, key, _number(value, unit, key))
    if result.guidance_start > result.guidance_end:
        raise UnitError(f"ControlNet unit {unit}: guidance_start ({result.guidance_start}) is after "
                        f"guidance_end ({result.guidance_end})")
    if "enabled" not in data or data["enabled"] is None:
        # §2.3: absent means enabled when the unit brings an image or names a model
        result.enabled = result.image is not None or result.model not in ("None", "", None)
    return result


def units_from_args(args, slots: int) -> list[ControlNetUnit]:
    """`alwayson_scripts.controlnet.args`: a list of unit dicts; extra units are dropped, non-dict
    entries ignored (§2.3)."""
    if not isinstance(args, (list, tuple)):
        raise UnitError("ControlNet args must be a list of units")
    if len(args) > slots:
        log.warning("ControlNet: %d units given for %d slots (control_net_unit_count); the last %d dropped",
                    len(args), slots, len(args) - slots)
    units = []
    for index, entry in enumerate(list(args)[:slots]):
        if isinstance(entry, dict):
            units.append(unit_from_dict(entry, index))
        elif isinstance(entry, ControlNetUnit):
            units.append(entry)
    return units


def parse_infotext_value(text: str) -> dict:
    """`Module: canny, Model: x, Weight: 1.0, ...` -> {"module": "canny", ...} with bools and numbers."""
    result = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(": ")
        if not sep:
            name, value = name.rstrip(":"), ""
        key = name.strip().lower().replace(" ", "_")
        value = value.strip()
        if value in ("True", "False"):
            result[key] = value == "True"
            continue
        for kind in (int, float):
            try:
                result[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            result[key] = value
    return result
