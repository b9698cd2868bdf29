"""Tiny ControlNets for tests, made from the tiny UNets (controlnet.md §8), written in the layouts
users have: original (bare and `control_model.`-prefixed) and a diffusers folder."""
import torch

from modules.controlnet import model_loading


def tiny_controlnet(family="sd1", seed=0):
    """ControlNetModel.from_unet of the tiny UNet, every all-zero tensor (zero convs) made random, so
    that weight tests do not pass vacuously. Returns (net, layers per block)."""
    from diffusers import ControlNetModel
    from modules.tiny_models import build_tiny_models
    unet = build_tiny_models(family, seed=0)["unet"]
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    return net.eval(), unet.config.layers_per_block


def write_tiny_controlnets(folder) -> dict:
    """tiny_sd15_canny (bare LDM), tiny_sd15_prefixed, tiny_sd15_diffusers/, tiny_xl_canny (SDXL).
    Returns the SD1 net's diffusers state dict."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    net, layers = tiny_controlnet()
    state = net.state_dict()
    ldm = {k: v.contiguous() for k, v in model_loading.to_ldm_state_dict(state, layers).items()}
    save_file(ldm, str(folder / "tiny_sd15_canny.safetensors"))
    save_file({"control_model." + k: v for k, v in ldm.items()}, str(folder / "tiny_sd15_prefixed.safetensors"))
    net.save_pretrained(str(folder / "tiny_sd15_diffusers"))
    xl, xl_layers = tiny_controlnet("sdxl")
    save_file({k: v.contiguous() for k, v in model_loading.to_ldm_state_dict(xl.state_dict(), xl_layers).items()},
              str(folder / "tiny_xl_canny.safetensors"))
    return state



def write_random_lama(path, seed=0) -> None:
    """A random-weight ControlNetLama.pth that spandrel detects as LaMa. Its architecture has fixed
    sizes (51M values), so it is built on the meta device and filled here: convolutions get std
    1/√fan_in (activations stay in range), batch norms the identity. The convolutions of one fan-in
    are views of one random buffer, which torch.save writes once: a 10 MB file, quick to write and read."""
    from spandrel.architectures.LaMa import LaMa
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in LaMa(in_nc=4, out_nc=3).state_dict().items()}
    sizes = {}
    for shape, _ in shapes.values():
        if len(shape) > 1:
            fan_in = shape.numel() // shape[0]
            sizes[fan_in] = max(sizes.get(fan_in, 0), shape.numel())
    generator = torch.Generator().manual_seed(seed)
    buffers = {fan_in: torch.randn(n, generator=generator) / fan_in ** 0.5 for fan_in, n in sorted(sizes.items())}
    state = {}
    for key, (shape, dtype) in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=dtype)
        elif key.endswith("running_var") or (key.endswith("weight") and len(shape) == 1):
            state[key] = torch.ones(shape)
        elif len(shape) == 1:  # biases, running means
            state[key] = torch.zeros(shape)
        else:
            state[key] = buffers[shape.numel() // shape[0]][:shape.numel()].view(shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(path))
