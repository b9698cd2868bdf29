"""Tiny random-weight upscaler files for tests and benchmarks, built with spandrel's own
architecture classes so that spandrel detects the architecture and scale from the keys."""
import os

import torch


def _randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    norms = (torch.nn.LayerNorm, torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    with torch.no_grad():  # parameters only: buffers (masks, position indices) carry the layout
        for module in net.modules():
            for name, tensor in module.named_parameters(recurse=False):
                if not tensor.numel():
                    continue
                noise = torch.randn(tensor.shape, generator=generator)
                if isinstance(module, norms) and name == "weight":
                    tensor.copy_(1 + 0.1 * noise)
                elif name == "bias" or tensor.dim() < 2:
                    tensor.copy_(0.02 * noise)
                else:
                    tensor.copy_(noise * (1.0 / max(tensor[0].numel(), 1)) ** 0.5)
    return net.eval()


def esrgan(scale: int = 4, features: int = 8, blocks: int = 1, seed: int = 0) -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN
    net = _randomised(ESRGAN(num_filters=features, num_blocks=blocks, scale=scale), seed)
    with torch.no_grad():  # centre the output so it is an image, not mostly clamped black
        list(net.parameters())[-1].add_(0.45)
    return net


def compact(scale: int = 4, features: int = 8, convs: int = 2, seed: int = 0) -> torch.nn.Module:
    from spandrel.architectures.Compact import Compact
    return _randomised(Compact(num_feat=features, num_conv=convs, upscale=scale), seed)


def swinir(scale: int = 2, seed: int = 0) -> torch.nn.Module:
    from spandrel.architectures.SwinIR import SwinIR
    return _randomised(SwinIR(embed_dim=12, depths=[2], num_heads=[2], window_size=8, img_size=32, upscale=scale,
                              upsampler="pixelshuffle", resi_connection="1conv"), seed)


def dat(scale: int = 2, seed: int = 0) -> torch.nn.Module:
    from spandrel.architectures.DAT import DAT
    return _randomised(DAT(embed_dim=32, depth=[2], num_heads=[2], split_size=[2, 4], upscale=scale, img_size=32,
                           expansion_factor=2), seed)


def hat(scale: int = 2, seed: int = 0) -> torch.nn.Module:
    from spandrel.architectures.HAT import HAT
    return _randomised(HAT(img_size=32, embed_dim=16, depths=[2], num_heads=[2], window_size=8, upscale=scale,
                           upsampler="pixelshuffle", compress_ratio=2, squeeze_factor=4), seed)


def scunet(seed: int = 0) -> torch.nn.Module:
    """1× (a denoiser); 64 is the smallest width its 32-channel attention heads allow."""
    from spandrel.architectures.SCUNet import SCUNet
    return _randomised(SCUNet(dim=64, config=[1, 1, 1, 1, 1, 1, 1]), seed)


BUILDERS = {"esrgan": esrgan, "compact": compact, "swinir": swinir, "dat": dat, "hat": hat, "scunet": scunet}


def new_layout_keys(state: dict) -> dict:
    """Old-layout ESRGAN keys renamed to the Real-ESRGAN layout (conv_first, body.N.rdbM.convK ...)."""
    tail = sorted({int(k.split(".")[1]) for k in state if k.split(".")[1] not in ("0", "1")})
    names = {index: f"conv_up{n + 1}" for n, index in enumerate(tail[:-2])}
    names.update({tail[-2]: "conv_hr", tail[-1]: "conv_last"})
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[:2] == ["model", "0"]:
            new = "conv_first." + parts[-1]
        elif parts[:3] == ["model", "1", "sub"] and parts[3].isdigit() and "RDB" in parts[4]:
            # model.1.sub.N.RDBm.convK.0.weight -> body.N.rdbm.convK.weight
            new = f"body.{parts[3]}.{parts[4].lower()}.{parts[5]}.{parts[-1]}"
        elif parts[:3] == ["model", "1", "sub"]:
            new = "conv_body." + parts[-1]
        else:
            new = f"{names[int(parts[1])]}.{parts[-1]}"
        renamed[new] = value
    return renamed


def write(kind: str, path: str, *, scale: int | None = None, seed: int = 0, new_layout: bool = False, **sizes) -> str:
    """Writes a tiny model file (.pth or .safetensors) and returns its path."""
    net = BUILDERS[kind](**({"scale": scale} if scale else {}), seed=seed, **sizes)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if new_layout:
        state = new_layout_keys(state)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(state, path)
    else:
        torch.save(state, path)
    return path
