"""Reading `ControlNet N` infotext lines back into unit fields (controlnet.md §5 "Paste"): the
current format (`Module: canny, Model: ..., Weight: 1.0, ...`, Forge's `Hr Option` too) and the
May-Aug 2023 one (`preprocessor: canny, model: ..., starting/ending: (0, 1), preprocessor params:
(512, 100, 200)`, key `ControlNet` for the one-unit UI)."""
import re

from modules.controlnet.units import parse_infotext_value

_LEGACY_MARK = re.compile(r"(^|,\s*)preprocessor:\s", re.IGNORECASE)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _number(text: str):
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _legacy_fields(text: str) -> dict:
    result = {}
    for part in _split_top_level(text):
        name, _, value = part.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "preprocessor":
            result["module"] = value
        elif name == "model":
            result["model"] = value
        elif name == "weight":
            result["weight"] = _number(value)
        elif name == "starting/ending":
            values = [_number(v) for v in value.strip("() ").split(",")]
            if len(values) == 2:
                result["guidance_start"], result["guidance_end"] = values
        elif name == "resize mode":
            result["resize_mode"] = value
        elif name == "pixel perfect":
            result["pixel_perfect"] = value == "True"
        elif name == "control mode":
            result["control_mode"] = value
        elif name == "preprocessor params":
            values = [_number(v) for v in value.strip("() ").split(",")]
            for key, item in zip(("processor_res", "threshold_a", "threshold_b"), values):
                result[key] = item
    return result


def parse_unit_text(text: str) -> dict:
    """One infotext value -> unit fields (snake_case keys as in the API unit)."""
    if _LEGACY_MARK.search(text):
        return _legacy_fields(text)
    return {k: v for k, v in parse_infotext_value(text).items() if k}


def unit_fields(params: dict, index: int) -> dict | None:
    """The fields of unit `index` from parsed infotext params, or None when it names no such unit."""
    text = params.get(f"ControlNet {index}")
    if text is None and index == 0:
        text = params.get("ControlNet")  # the 2023 one-unit UI
    if not isinstance(text, str) or not text.strip():
        return None
    return parse_unit_text(text)
