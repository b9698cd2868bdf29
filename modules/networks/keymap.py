"""File keys -> model layers (networks.md §2).

A file's keys are grouped by module (`lora_unet_x.lora_down.weight` -> module `lora_unet_x`, part
`lora_down.weight`); diffusers/peft names (`unet.a.b.lora_A.weight`) are first rewritten to kohya
names. The model side is a table built from the loaded model's own modules: every UNet layer under
its diffusers and its LDM kohya name, every text-encoder layer under `lora_te_` (SD1/SD2) or
`lora_te1_`/`lora_te2_` (SDXL), so keys map by the model's real structure.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from modules.models.ldm_convert import UNET_PREFIX, unet_key_to_ldm

PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)

# diffusers / peft part suffixes -> kohya part names (networks.md §2.6)
_DIFFUSERS_PARTS = (
    (".lora_A.weight", "lora_down.weight"),
    (".lora_B.weight", "lora_up.weight"),
    (".lora_down.weight", "lora_down.weight"),
    (".lora_up.weight", "lora_up.weight"),
    (".lora_linear_layer.down.weight", "lora_down.weight"),
    (".lora_linear_layer.up.weight", "lora_up.weight"),
    (".lora.down.weight", "lora_down.weight"),
    (".lora.up.weight", "lora_up.weight"),
    ("_lora.down.weight", "lora_down.weight"),
    ("_lora.up.weight", "lora_up.weight"),
    (".lora_magnitude_vector.weight", "dora_scale"),
    (".lora_magnitude_vector", "dora_scale"),
    (".alpha", "alpha"),
)
_DIFFUSERS_PREFIXES = (("unet.", "lora_unet_"), ("text_encoder_2.", "lora_te2_"), ("text_encoder.", None))


@dataclass
class Target:
    """One patchable layer of the loaded model."""
    name: str               # the kohya name it is found under first (diffusers-style for the UNet)
    module: torch.nn.Module
    is_te: bool             # text-encoder layer: gets the te multiplier


def _diffusers_key(key: str, sdxl: bool) -> tuple[str, str] | None:
    for prefix, kohya in _DIFFUSERS_PREFIXES:
        if key.startswith(prefix):
            break
    else:
        return None
    for suffix, part in _DIFFUSERS_PARTS:
        if key.endswith(suffix):
            path = key[len(prefix):-len(suffix)]
            break
    else:
        return None
    path = path.replace(".processor.", ".")  # old attention-processor LoRA: `attn1.processor.to_q_lora`
    if prefix.startswith("text_encoder"):
        path = _text_model_path(path)
    if kohya is None:
        kohya = "lora_te1_" if sdxl else "lora_te_"
    return kohya + path.replace(".", "_"), part


def split_key(key: str, sdxl: bool) -> tuple[str, str]:
    """(module name, part) of one file key."""
    converted = _diffusers_key(key, sdxl)
    if converted is not None:
        return converted
    module, _, part = key.partition(".")
    return module, part


def group_state_dict(state_dict: dict, sdxl: bool) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        module, part = split_key(key, sdxl)
        groups.setdefault(module, {})[part] = tensor
    return groups


def _text_model_path(path: str) -> str:
    # transformers flattened CLIPTextModel (no `text_model.`); kohya names keep it
    return path if path.startswith("text_model.") or path.startswith("text_projection") else "text_model." + path


def _unet_ldm_name(path: str, config) -> str | None:
    try:
        ldm = unet_key_to_ldm(path + ".weight", config)
    except (KeyError, ValueError):
        return None
    return "lora_unet_" + ldm[len(UNET_PREFIX):-len(".weight")].replace(".", "_")


_tables: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def module_table(model) -> dict[str, Target]:
    """kohya module name -> Target for every patchable layer of the model (cached per model)."""
    unet = model.unet
    table = _tables.get(unet)
    if table is not None:
        return table
    table = {}
    for path, module in unet.named_modules():
        if not isinstance(module, PATCHABLE):
            continue
        target = Target("lora_unet_" + path.replace(".", "_"), module, False)
        table[target.name] = target
        ldm = _unet_ldm_name(path, unet.config)
        if ldm is not None:
            table.setdefault(ldm, target)
    sdxl = len(model.text_encoders) == 2
    for index, encoder in enumerate(model.text_encoders):
        prefixes = (["lora_te1_"] if index == 0 else ["lora_te2_"]) if sdxl else ["lora_te_", "lora_te1_"]
        if getattr(model, "family", "") == "sdxl-refiner":
            prefixes = ["lora_te2_"]
        openclip = _is_openclip(model, index)
        for path, module in encoder.named_modules():
            if not isinstance(module, PATCHABLE):
                continue
            if openclip and path.endswith(OPENCLIP_DROPPED):
                continue  # A1111 drops these on OpenCLIP encoders (networks.md §2.4): reported as unmatched
            flat = _text_model_path(path).replace(".", "_")
            target = Target(prefixes[0] + flat, module, True)
            for prefix in prefixes:
                table.setdefault(prefix + flat, target)
    _tables[unet] = table
    return table


OPENCLIP_DROPPED = ("layer_norm1", "layer_norm2")


def _is_openclip(model, index: int) -> bool:
    """The encoder is OpenCLIP in the original checkpoint: SD2's, SDXL's second, the refiner's."""
    family = getattr(model, "family", "")
    return family.startswith("sd2") or family == "sdxl-refiner" or (index == 1 and len(model.text_encoders) == 2)


def is_sdxl_model(model) -> bool:
    return len(model.text_encoders) == 2 or getattr(model, "family", "").startswith("sdxl")

