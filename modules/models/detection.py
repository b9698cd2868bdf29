"""Which model family a single-file checkpoint holds, and whether it predicts epsilon or v.

Family detection looks only at key names and shapes (offline.md §3.2). A1111's text-encoder
markers come first because they also work for tiny test models; the cross-attention width of the
UNet is the fallback for files without a recognised text encoder.

v-prediction cannot be read from weights; it comes from files next to the checkpoint:
override > ``<stem>.yaml`` with ``parameterization: "v"`` > ``<stem>.json`` with
``"prediction": "v"`` > SD2 file names containing ``768-v`` / ``v-pred`` > epsilon.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from modules.models.errors import ModelLoadError

FAMILIES = ("sd1", "sd1-inpaint", "sd1-pix2pix", "sd2", "sdxl", "sdxl-inpaint", "sdxl-refiner")
EPSILON = "epsilon"
V_PREDICTION = "v_prediction"

UNET_INPUT_KEY = "model.diffusion_model.input_blocks.0.0.weight"
# A1111's markers (sd_models_config.py facts, offline.md §3.2)
SD1_TEXT_KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_TEXT_KEY = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
SDXL_BASE_KEY = "conditioner.embedders.1.model.ln_final.weight"
SDXL_REFINER_KEY = "conditioner.embedders.0.model.ln_final.weight"
CROSS_ATTENTION_KEY = "model.diffusion_model.input_blocks.{}.1.transformer_blocks.0.attn2.to_k.weight"

# cross-attention context width of full-size models -> family
_CONTEXT_WIDTH_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}


def _shape(value) -> tuple[int, ...]:
    shape = getattr(value, "shape", value)
    return tuple(int(n) for n in shape)


def _describe_keys(keys) -> str:
    """Top-level key groups, e.g. 'first_stage_model (248 tensors), loss (12 tensors)'."""
    groups: dict[str, int] = {}
    for key in keys:
        head = key.split(".")[0]
        if head in ("model", "conditioner", "cond_stage_model") and "." in key:
            head = ".".join(key.split(".")[:2])
        groups[head] = groups.get(head, 0) + 1
    if not groups:
        return "no tensors"
    shown = sorted(groups.items(), key=lambda item: -item[1])[:6]
    text = ", ".join(f"{name} ({count} tensors)" for name, count in shown)
    if len(groups) > len(shown):
        text += f" and {len(groups) - len(shown)} more groups"
    return text


def _context_width(state: Mapping) -> int | None:
    for block in range(1, 12):
        key = CROSS_ATTENTION_KEY.format(block)
        if key in state:
            return _shape(state[key])[-1]
    return None


def detect_family(state_dict_keys_and_shapes: Mapping) -> str:
    """Family of an A1111 single-file state dict.

    Accepts a mapping of key -> tensor or key -> shape. Returns one of FAMILIES; raises
    ModelLoadError (with what was found) for anything else.
    """
    state = state_dict_keys_and_shapes
    if UNET_INPUT_KEY not in state:
        raise ModelLoadError(
            "not a Stable Diffusion checkpoint: it has no UNet weights (model.diffusion_model.*); "
            f"found {_describe_keys(state.keys())}"
        )
    in_channels = _shape(state[UNET_INPUT_KEY])[1]

    if SDXL_BASE_KEY in state:
        family = "sdxl"
    elif SDXL_REFINER_KEY in state:
        family = "sdxl-refiner"
    elif SD2_TEXT_KEY in state:
        family = "sd2"
    elif SD1_TEXT_KEY in state:
        family = "sd1"
    else:
        width = _context_width(state)
        family = _CONTEXT_WIDTH_FAMILY.get(width)
        if family is None:
            raise ModelLoadError(
                "unknown architecture: UNet weights without a recognised text encoder "
                f"(cross-attention width {width}); found {_describe_keys(state.keys())}"
            )

    if in_channels == 4:
        return family
    variant = {(9, "sd1"): "sd1-inpaint", (8, "sd1"): "sd1-pix2pix", (9, "sdxl"): "sdxl-inpaint"}.get((in_channels, family))
    if variant:
        return variant
    kind = {9: "inpainting", 8: "instruct-pix2pix"}.get(in_channels, f"{in_channels}-channel")
    raise ModelLoadError(f"unsupported architecture: {family} {kind} UNet ({in_channels} input channels)")


_PARAMETERIZATION = re.compile(r"^\s*parameterization\s*:\s*[\"']?([A-Za-z_]+)[\"']?\s*(#.*)?$", re.MULTILINE)
_PREDICTION_NAMES = {
    "v": V_PREDICTION,
    "v_prediction": V_PREDICTION,
    "v-prediction": V_PREDICTION,
    "eps": EPSILON,
    "epsilon": EPSILON,
}


def normalize_prediction(value: str, source: str) -> str:
    """'v' / 'v_prediction' / 'eps' / 'epsilon' -> 'v_prediction' | 'epsilon'."""
    name = _PREDICTION_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ModelLoadError(f"{source}: unknown prediction type {value!r} (use 'epsilon' or 'v')")
    return name


def _from_yaml(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path}: cannot read config file: {error}") from error
    match = _PARAMETERIZATION.search(text)
    return normalize_prediction(match[1], str(path)) if match else None


def _from_json(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: cannot read user metadata: {error}") from error
    if not isinstance(data, dict) or data.get("prediction") in (None, ""):
        return None
    return normalize_prediction(data["prediction"], str(path))


def detect_prediction_type(path, family: str, override: str | None = None) -> str:
    """'epsilon' or 'v_prediction' for the checkpoint at ``path`` (rule in the module docstring)."""
    path = Path(path)
    if override:
        return normalize_prediction(override, f"{path}: prediction override")
    # A diffusers folder's "stem" is its whole name (it may contain dots).
    stem = path.parent / (path.name if path.is_dir() else path.stem)
    yaml_file = stem.with_name(stem.name + ".yaml")
    if yaml_file.is_file():
        found = _from_yaml(yaml_file)
        if found:
            return found
    json_file = stem.with_name(stem.name + ".json")
    if json_file.is_file():
        found = _from_json(json_file)
        if found:
            return found
    if family == "sd2":
        name = path.name.lower()
        if "768-v" in name or "v-pred" in name:
            return V_PREDICTION
    return EPSILON
