"""diffusers/transformers -> A1111 (LDM) single-file key conversion.

The diffusers wheel only converts LDM -> diffusers. This module goes the other way so that we can
write checkpoints in the layout A1111 reads (tiny test models, merges) and so that the loader can
name missing tensors as they would appear in the file. Mapping facts: offline.md §3.3.

Layout of an A1111 single file per family (text encoders in model order):

* UNet ``model.diffusion_model.*``, VAE ``first_stage_model.*``
* sd1 / sd1-inpaint: CLIP-L ``cond_stage_model.transformer.text_model.*`` (transformers layout)
* sd2: OpenCLIP ``cond_stage_model.model.*``
* sdxl: CLIP-L ``conditioner.embedders.0.transformer.text_model.*``, OpenCLIP-bigG
  ``conditioner.embedders.1.model.*``
* sdxl-refiner: OpenCLIP-bigG ``conditioner.embedders.0.model.*``
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

# family -> [(text encoder layout, key prefix in the single file)], in the order of LoadedModel.text_encoders
TEXT_ENCODER_LAYOUT: dict[str, list[tuple[str, str]]] = {
    "sd1": [("clip", "cond_stage_model.transformer.")],
    "sd1-inpaint": [("clip", "cond_stage_model.transformer.")],
    "sd1-pix2pix": [("clip", "cond_stage_model.transformer.")],
    "sd2": [("openclip", "cond_stage_model.model.")],
    "sdxl": [("clip", "conditioner.embedders.0.transformer."), ("openclip", "conditioner.embedders.1.model.")],
    "sdxl-inpaint": [("clip", "conditioner.embedders.0.transformer."), ("openclip", "conditioner.embedders.1.model.")],
    "sdxl-refiner": [("openclip", "conditioner.embedders.0.model.")],
}

_UNET_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _split_module_param(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def _resnet_part(rest: str) -> str:
    part, dot, tail = rest.partition(".")
    if part not in _UNET_RESNET_PARTS:
        raise KeyError(f"unknown resnet part {part!r}")
    return _UNET_RESNET_PARTS[part] + dot + tail


def unet_key_to_ldm(key: str, config: Mapping) -> str:
    """One diffusers UNet2DConditionModel key -> its key in an A1111 file (with prefix)."""
    per_block = config["layers_per_block"]
    if isinstance(per_block, (list, tuple)):
        raise ValueError("per-block layers_per_block has no LDM layout")
    step = per_block + 1  # LDM numbering: L resnets (+attentions) and one down/up sampler per level
    module, param = _split_module_param(key)
    if module in _UNET_TOP_LEVEL:
        return f"{UNET_PREFIX}{_UNET_TOP_LEVEL[module]}.{param}"

    match = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", key)
    if match:
        block, kind, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "downsamplers":
            return f"{UNET_PREFIX}input_blocks.{1 + block * step + per_block}.0.op.{rest.removeprefix('conv.')}"
        index = 1 + block * step + layer
        if kind == "resnets":
            return f"{UNET_PREFIX}input_blocks.{index}.0.{_resnet_part(rest)}"
        return f"{UNET_PREFIX}input_blocks.{index}.1.{rest}"

    match = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if match:
        kind, layer, rest = match[1], int(match[2]), match[3]
        if kind == "attentions":
            return f"{UNET_PREFIX}middle_block.1.{rest}"
        return f"{UNET_PREFIX}middle_block.{2 * layer}.{_resnet_part(rest)}"

    match = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", key)
    if match:
        block, kind, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "upsamplers":
            # The upsampler follows the resnet (slot 1) or the resnet and attention (slot 2).
            has_attention = "CrossAttn" in config["up_block_types"][block]
            slot = 2 if has_attention else 1
            return f"{UNET_PREFIX}output_blocks.{block * step + per_block}.{slot}.{rest}"
        index = block * step + layer
        if kind == "resnets":
            return f"{UNET_PREFIX}output_blocks.{index}.0.{_resnet_part(rest)}"
        return f"{UNET_PREFIX}output_blocks.{index}.1.{rest}"

    raise KeyError(f"no LDM name for UNet key {key!r}")


_VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP_LEVEL = {"conv_norm_out": "norm_out"}


def _vae_resnet_rest(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def vae_key_to_ldm(key: str, num_up_blocks: int) -> str:
    """One diffusers AutoencoderKL key -> its key in an A1111 file (with prefix)."""
    match = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
    if not match:  # quant_conv, post_quant_conv
        return VAE_PREFIX + key
    side, rest = match[1], match[2]
    module, param = _split_module_param(rest)
    if module in _VAE_TOP_LEVEL:
        return f"{VAE_PREFIX}{side}.{_VAE_TOP_LEVEL[module]}.{param}"
    if module in ("conv_in", "conv_out"):
        return f"{VAE_PREFIX}{side}.{rest}"

    match = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if match:
        return f"{VAE_PREFIX}{side}.mid.block_{int(match[1]) + 1}.{_vae_resnet_rest(match[2])}"
    match = re.fullmatch(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest)
    if match and match[1] in _VAE_ATTENTION_PARTS:
        return f"{VAE_PREFIX}{side}.mid.attn_1.{_VAE_ATTENTION_PARTS[match[1]]}.{match[2]}"

    match = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.+)", rest)
    if match and side == "encoder":
        block, kind, layer, tail = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "downsamplers":
            return f"{VAE_PREFIX}encoder.down.{block}.downsample.{tail}"
        return f"{VAE_PREFIX}encoder.down.{block}.block.{layer}.{_vae_resnet_rest(tail)}"

    match = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", rest)
    if match and side == "decoder":
        # LDM numbers decoder levels from the lowest resolution upwards in reverse.
        block, kind, layer, tail = num_up_blocks - 1 - int(match[1]), match[2], int(match[3]), match[4]
        if kind == "upsamplers":
            return f"{VAE_PREFIX}decoder.up.{block}.upsample.{tail}"
        return f"{VAE_PREFIX}decoder.up.{block}.block.{layer}.{_vae_resnet_rest(tail)}"

    raise KeyError(f"no LDM name for VAE key {key!r}")


def _with_text_model_prefix(key: str) -> str:
    """transformers >= 5.6 flattened CLIPTextModel (no ``text_model.``); CLIPTextModelWithProjection
    still has it. Normalise to the prefixed form, which is what A1111 files hold."""
    if key.startswith("text_model.") or key.startswith("text_projection."):
        return key
    return "text_model." + key


def clip_key_to_ldm(key: str, prefix: str) -> str:
    """CLIP-L text encoder key -> A1111 key (transformers naming under the given prefix)."""
    return prefix + _with_text_model_prefix(key)


_OPENCLIP_LAYER_PARTS = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_OPENCLIP_TOP_LEVEL = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "text_projection.weight": "text_projection",
}


def openclip_key_to_ldm(key: str, prefix: str) -> str:
    """OpenCLIP text encoder key -> A1111 key. q/k/v projections all map to the fused in_proj."""
    key = _with_text_model_prefix(key)
    if key in _OPENCLIP_TOP_LEVEL:
        return prefix + _OPENCLIP_TOP_LEVEL[key]
    match = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
    if match:
        layer, module, param = match[1], match[2], match[3]
        base = f"{prefix}transformer.resblocks.{layer}."
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            return f"{base}attn.in_proj_{param}"
        if module in _OPENCLIP_LAYER_PARTS:
            return f"{base}{_OPENCLIP_LAYER_PARTS[module]}.{param}"
    raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    return {unet_key_to_ldm(key, config): tensor for key, tensor in state_dict.items()}


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    num_up = len(config["up_block_types"])
    out = {}
    for key, tensor in state_dict.items():
        new_key = vae_key_to_ldm(key, num_up)
        # LDM's mid attention uses 1x1 convolutions where diffusers uses linear layers.
        if ".mid.attn_1." in new_key and new_key.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]
        out[new_key] = tensor
    return out


def clip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {clip_key_to_ldm(key, prefix): tensor for key, tensor in state_dict.items()}


def openclip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    normalised = {_with_text_model_prefix(key): tensor for key, tensor in state_dict.items()}
    out = {}
    for key, tensor in normalised.items():
        if ".self_attn.k_proj." in key or ".self_attn.v_proj." in key:
            continue  # written together with q_proj below
        new_key = openclip_key_to_ldm(key, prefix)
        if ".self_attn.q_proj." in key:
            parts = [normalised[key.replace(".q_proj.", f".{name}.")] for name in ("q_proj", "k_proj", "v_proj")]
            tensor = torch.cat(parts, dim=0)
        elif key == "text_projection.weight":
            tensor = tensor.T  # OpenCLIP multiplies x @ text_projection; nn.Linear stores the transpose
        out[new_key] = tensor.contiguous()
    return out


def text_encoder_to_ldm(layout: str, state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if layout == "clip":
        return clip_to_ldm(state_dict, prefix)
    if layout == "openclip":
        return openclip_to_ldm(state_dict, prefix)
    raise ValueError(f"unknown text encoder layout {layout!r}")


def text_encoder_key_to_ldm(layout: str, key: str, prefix: str) -> str:
    if layout == "clip":
        return clip_key_to_ldm(key, prefix)
    if layout == "openclip":
        return openclip_key_to_ldm(key, prefix)
    raise ValueError(f"unknown text encoder layout {layout!r}")


def to_ldm_checkpoint(family: str, unet, vae, text_encoders: list) -> dict[str, torch.Tensor]:
    """Whole A1111 single-file state dict from diffusers/transformers models of ``family``."""
    if family not in TEXT_ENCODER_LAYOUT:
        raise ValueError(f"unknown model family {family!r}")
    layout = TEXT_ENCODER_LAYOUT[family]
    if len(text_encoders) != len(layout):
        raise ValueError(f"{family} needs {len(layout)} text encoder(s), got {len(text_encoders)}")
    out = unet_to_ldm(unet.state_dict(), unet.config)
    out.update(vae_to_ldm(vae.state_dict(), vae.config))
    for (kind, prefix), encoder in zip(layout, text_encoders):
        out.update(text_encoder_to_ldm(kind, encoder.state_dict(), prefix))
    return {key: tensor.detach().contiguous() for key, tensor in out.items()}
