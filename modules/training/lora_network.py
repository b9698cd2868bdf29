"""The trained LoRA network: peft adapters injected into the loaded model for a run, written out in
kohya's file layout (merge-train.md §6.3, §6.5, §6.6; networks.md §1).

The adapters wrap the model's own Linear / 1×1 Conv modules while training and are taken out
again afterwards (`remove_adapters`), so the checkpoint's weights and module tree are exactly as
before the run.
"""
from __future__ import annotations

import hashlib
import io
import json
import re

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer

from modules.models import ldm_convert

ADAPTER = "sdwebui_training"

# every Linear / 1×1 Conv inside a UNet Transformer2DModel, and the CLIP attention + MLP projections
UNET_TARGETS = (r".*attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn1|attn2)\."
                r"(to_q|to_k|to_v|to_out\.0)|transformer_blocks\.\d+\.ff\.net\.(0\.proj|2))")
TEXT_ENCODER_TARGETS = r".*encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))"

KOHYA_KEY = re.compile(r"^lora_(unet|te|te1|te2)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")


def add_adapters(module: torch.nn.Module, targets: str, rank: int, alpha: float, seed: int) -> list[torch.nn.Parameter]:
    """Inject LoRA adapters (A Kaiming-uniform, B zeros, as kohya) and return their parameters."""
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True, lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    params = [p for name, p in module.named_parameters() if ".lora_" in name]
    for p in params:
        p.requires_grad_(True)
    return params


def remove_adapters(module: torch.nn.Module) -> None:
    """Put every wrapped module's original layer back (weights untouched) and drop peft's marks."""
    for name, child in list(module.named_modules()):
        if isinstance(child, BaseTunerLayer):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            base = child.get_base_layer()
            setattr(parent, attr, base)
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in vars(module):
            delattr(module, attr)
    module.requires_grad_(False)


def adapter_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """peft's `<path>.lora_A.weight` / `.lora_B.weight` tensors of the injected adapter."""
    state = get_peft_model_state_dict(module, adapter_name=ADAPTER)
    return {key: value.detach() for key, value in state.items()}


def load_adapter_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    set_peft_model_state_dict(module, state, adapter_name=ADAPTER)


# ------------------------------------------------------------------------------ kohya conversion

def _text_model_path(path: str) -> str:
    path = path.split("encoder.layers.", 1)[1]
    return "text_model.encoder.layers." + path


def unet_module_name(path: str, is_sdxl: bool, unet_config) -> str:
    """diffusers module path -> kohya name: SD1/SD2 keep diffusers paths, SDXL uses LDM paths."""
    if is_sdxl:
        ldm = ldm_convert.unet_key_to_ldm(path + ".weight", unet_config)
        path = ldm.removeprefix(ldm_convert.UNET_PREFIX).removesuffix(".weight")
    return "lora_unet_" + path.replace(".", "_")


def to_kohya(parts: dict[str, dict[str, torch.Tensor]], *, is_sdxl: bool, unet_config, alpha: float,
             dtype=torch.float16) -> dict[str, torch.Tensor]:
    """{"unet": peft state, "te1": ..., "te2": ...} -> kohya tensors (lora_down / lora_up / alpha)."""
    out = {}
    for part, state in parts.items():
        for key, tensor in state.items():
            match = re.fullmatch(r"(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
            if not match:
                raise ValueError(f"unexpected adapter tensor {key}")
            path, which = match[1], match[2]
            if part == "unet":
                name = unet_module_name(path, is_sdxl, unet_config)
            else:
                prefix = "lora_te_" if part == "te" else f"lora_{part}_"
                name = prefix + _text_model_path(path).replace(".", "_")
            out[f"{name}.{'lora_down' if which == 'A' else 'lora_up'}.weight"] = tensor.to("cpu", dtype).contiguous()
            out[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save
    return save(tensors, metadata=metadata)


def model_hashes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, str]:
    """kohya's sshs_model_hash (sha256 of the bytes after the header) and sshs_legacy_hash
    (8 hex of sha256 over 64 KiB at offset 1 MiB), both of the file as saved with only ss_* metadata."""
    data = _safetensors_bytes(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + header:]).hexdigest()
    stream = io.BytesIO(data)
    stream.seek(0x100000)
    legacy = hashlib.sha256(stream.read(0x10000)).hexdigest()[:8]
    return model_hash, legacy


def save_kohya_file(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write atomically with the hashes added; every metadata value a string."""
    import os

    from safetensors.torch import save_file
    metadata = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in metadata.items()}
    metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = model_hashes(tensors, metadata)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)
