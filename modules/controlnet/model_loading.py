"""Loading ControlNet weights into diffusers' ControlNetModel (controlnet.md §1.2-1.5).

Files come in the original (LDM) layout, with or without the `control_model.` prefix, or in the
diffusers layout (a single file or a `save_pretrained` folder). The architecture is read from the
weights; what the weights cannot tell (attention heads, group count, time-embedding width) comes from
the loaded checkpoint's UNet, which the ControlNet was made for.
"""
import os
import re

import torch

from modules.controlnet.model_files import ControlNetFile
from modules.models import attention_call

DIFFUSERS_MARKER = "controlnet_cond_embedding.conv_in.weight"
LDM_MARKER = "input_hint_block.0.weight"

_UNSUPPORTED_MARKERS = (
    ("lora_controlnet", "Control-LoRA"),
    ("down_blocks.0.motion_modules.0.temporal_transformer.norm.weight", "SparseCtrl"),
    ("adapter.body.0.resnets.0.block1.weight", "T2I-Adapter"),
)

# resnet sub-module names, diffusers -> LDM
_RESNET_PARTS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                 "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


class ControlNetLoadError(RuntimeError):
    pass


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.lower().endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ControlNetLoadError(f"{os.path.basename(path)}: not a state dict")
    return state


def _resnet_ldm(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET_PARTS.get(part, part)}.{tail}" if tail else _RESNET_PARTS.get(part, part)


def diffusers_to_ldm_key(key: str, layers: int) -> str:
    """The original layout's name of a diffusers ControlNetModel parameter (§1.5)."""
    simple = (("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
              ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
              ("conv_in.", "input_blocks.0.0."), ("controlnet_mid_block.", "middle_block_out.0."),
              ("controlnet_cond_embedding.conv_in.", "input_hint_block.0."))
    for old, new in simple:
        if key.startswith(old):
            return new + key[len(old):]
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        b, i, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (layers + 1) + i}.0.{_resnet_ldm(rest)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        b, i, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (layers + 1) + i}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    if m := re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_ldm(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", key):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
    if m := re.match(r"controlnet_cond_embedding\.conv_out\.(.*)", key):
        return f"input_hint_block.@out.{m[1]}"  # index depends on the block count, fixed by the caller
    raise ControlNetLoadError(f"unexpected ControlNet parameter {key}")


def to_ldm_state_dict(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """diffusers -> original layout (used to write test files in the layout users have)."""
    blocks = len({k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")})
    out = {}
    for key, value in state.items():
        out[diffusers_to_ldm_key(key, layers).replace("@out", str(2 * (blocks + 1)))] = value
    return out


def strip_prefixes(state: dict) -> dict:
    return {k.removeprefix("control_model.").removeprefix("adapter."): v for k, v in state.items()}


def layout_of(state: dict) -> str:
    for marker, kind in _UNSUPPORTED_MARKERS:
        if any(marker in k for k in state):
            raise ControlNetLoadError(f"{kind} models are not supported yet")
    if DIFFUSERS_MARKER in state:
        return "diffusers"
    if LDM_MARKER in strip_prefixes(state):
        return "ldm"
    raise ControlNetLoadError("not a ControlNet: no input hint block or conditioning embedding in its weights")


def family_of(state: dict) -> str:
    """'sd1', 'sd2' or 'sdxl' from the weights of either layout (§1.3)."""
    if any(k.startswith(("label_emb.", "add_embedding.")) for k in state):
        return "sdxl"
    proj = next((v for k, v in state.items() if k.endswith("proj_in.weight")), None)
    if proj is None:
        raise ControlNetLoadError("cannot tell the model family: the ControlNet has no attention layers")
    return "sd2" if proj.ndim == 2 else "sd1"


def _levels(state: dict) -> tuple[int, int]:
    """(down levels, layers per level) of a diffusers-layout state dict."""
    levels = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("down_blocks."))
    layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("down_blocks.0.resnets."))
    return levels, layers


def to_diffusers_state_dict(state: dict) -> dict:
    """Either layout -> diffusers names."""
    if DIFFUSERS_MARKER in state:
        return dict(state)
    ldm = strip_prefixes(state)
    ldm = {k: v for k, v in ldm.items() if not k.startswith("difference")}
    ops = sorted(int(k.split(".")[1]) for k in ldm if re.match(r"input_blocks\.\d+\.0\.op\.weight", k))
    if ops:
        layers = ops[0] - 1
    else:  # one level, no downsampler
        layers = max(int(k.split(".")[1]) for k in ldm if k.startswith("input_blocks."))
    hint_convs = {int(k.split(".")[1]) for k in ldm if k.startswith("input_hint_block.")}
    blocks = len(hint_convs) - 2  # conv_in and conv_out around the blocks
    return {_ldm_to_diffusers_key(key, layers, blocks): value for key, value in ldm.items()}


def _ldm_to_diffusers_key(key: str, layers: int, blocks: int) -> str:
    simple = (("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
              ("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2."),
              ("input_blocks.0.0.", "conv_in."), ("middle_block_out.0.", "controlnet_mid_block."))
    for old, new in simple:
        if key.startswith(old):
            return new + key[len(old):]
    resnet_parts = {v: k for k, v in _RESNET_PARTS.items()}

    def resnet(rest):
        for ldm_part, diff_part in resnet_parts.items():
            if rest.startswith(ldm_part + "."):
                return diff_part + rest[len(ldm_part):]
        raise ControlNetLoadError(f"unexpected ControlNet parameter {key}")

    if m := re.match(r"input_blocks\.(\d+)\.(\d)\.(.*)", key):
        i, sub, rest = int(m[1]), int(m[2]), m[3]
        b, pos = divmod(i - 1, layers + 1)
        if pos == layers:  # the level's downsampler
            return f"down_blocks.{b}.downsamplers.0.conv.{rest.removeprefix('op.')}"
        if sub == 0:
            return f"down_blocks.{b}.resnets.{pos}.{resnet(rest)}"
        return f"down_blocks.{b}.attentions.{pos}.{rest}"
    if m := re.match(r"zero_convs\.(\d+)\.0\.(.*)", key):
        return f"controlnet_down_blocks.{m[1]}.{m[2]}"
    if m := re.match(r"middle_block\.(\d)\.(.*)", key):
        index, rest = int(m[1]), m[2]
        if index == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{index // 2}.{resnet(rest)}"
    if m := re.match(r"input_hint_block\.(\d+)\.(.*)", key):
        index, rest = int(m[1]), m[2]
        if index == 0:
            return f"controlnet_cond_embedding.conv_in.{rest}"
        if index == 2 * (blocks + 1):
            return f"controlnet_cond_embedding.conv_out.{rest}"
        return f"controlnet_cond_embedding.blocks.{index // 2 - 1}.{rest}"
    raise ControlNetLoadError(f"unexpected ControlNet parameter {key}")


def config_for(state: dict, unet_config: dict, pooled: bool) -> dict:
    """ControlNetModel config: shapes from the weights, the rest from the checkpoint's UNet."""
    levels, layers = _levels(state)
    channels = [state[f"down_blocks.{b}.resnets.0.conv1.weight"].shape[0] for b in range(levels)]
    attention = [any(k.startswith(f"down_blocks.{b}.attentions.") for k in state) for b in range(levels)]
    transformer_layers = []
    for b in range(levels):
        depth = {int(k.split(".")[5]) for k in state if k.startswith(f"down_blocks.{b}.attentions.0.transformer_blocks.")}
        transformer_layers.append(1 + max(depth) if depth else 1)
    embedding = [state["controlnet_cond_embedding.conv_in.weight"].shape[0]]
    n_blocks = len({k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")})
    embedding += [state[f"controlnet_cond_embedding.blocks.{2 * i + 1}.weight"].shape[0] for i in range(n_blocks // 2)]
    to_k = next(v for k, v in state.items() if k.endswith("attn2.to_k.weight"))
    proj = next(v for k, v in state.items() if k.endswith("proj_in.weight"))
    heads = unet_config.get("attention_head_dim", 8)
    unet_channels = list(unet_config.get("block_out_channels", []))
    if unet_channels[:levels] != channels:  # made for another size: real models use 64-wide heads
        heads = [max(1, c // 64) for c in channels] if isinstance(heads, (list, tuple)) else heads
    elif isinstance(heads, (list, tuple)):
        heads = list(heads)[:levels]
    config = {
        "in_channels": state["conv_in.weight"].shape[1],
        "conditioning_channels": state["controlnet_cond_embedding.conv_in.weight"].shape[1],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "block_out_channels": channels,
        "layers_per_block": layers,
        "cross_attention_dim": to_k.shape[1],
        "transformer_layers_per_block": transformer_layers,
        "attention_head_dim": heads,
        "use_linear_projection": proj.ndim == 2,
        "norm_num_groups": unet_config.get("norm_num_groups", 32),
        "conditioning_embedding_out_channels": embedding,
        "global_pool_conditions": pooled,
    }
    if "add_embedding.linear_1.weight" in state:
        config.update(addition_embed_type="text_time",
                      addition_time_embed_dim=unet_config.get("addition_time_embed_dim", 256),
                      projection_class_embeddings_input_dim=state["add_embedding.linear_1.weight"].shape[1])
    if unet_config.get("num_attention_heads") is not None and unet_channels[:levels] == channels:
        config["num_attention_heads"] = unet_config["num_attention_heads"]
    return config


def load_controlnet(entry: ControlNetFile, unet_config: dict, model_family: str):
    """A ready ControlNetModel (eval, float32 on the CPU) for a checkpoint of `model_family`."""
    from diffusers import ControlNetModel

    name = os.path.basename(entry.path)
    try:
        if os.path.isdir(entry.path):
            net = ControlNetModel.from_pretrained(entry.path, local_files_only=True)
            family = family_of(net.state_dict())
        else:
            raw = read_state_dict(entry.path)
            layout_of(raw)
            state = to_diffusers_state_dict(raw)
            family = family_of(state)
            config = config_for(state, unet_config, pooled="shuffle" in entry.stem.lower())
            net = ControlNetModel(**config)
            net.load_state_dict(state, strict=True)
    except ControlNetLoadError as e:
        raise ControlNetLoadError(f"ControlNet {name}: {e}") from None
    except (RuntimeError, KeyError, ValueError, OSError, StopIteration) as e:
        raise ControlNetLoadError(f"ControlNet {name} could not be loaded: {e}") from None
    base_family = "sdxl" if model_family.startswith("sdxl") else model_family[:3]
    if family != base_family:
        raise ControlNetLoadError(f"ControlNet {entry.title} is a {family.upper()} model; the loaded checkpoint "
                                  f"is {base_family.upper()}. Choose a ControlNet made for {base_family.upper()}.")
    attention_call.install(net)  # as the checkpoint's UNet (modules.models.attention_call)
    return net.eval().requires_grad_(False)
