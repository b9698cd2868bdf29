"""`inpaint_only+lama` (controlnet.md §3.8): the hole of an inpaint hint filled by LaMa before the
unit runs as `inpaint_only`.

The map has already been fitted to the pass's size with the unit's resize mode, so Resize and Fill's
padding is part of the hole (hint.fit marks it masked). LaMa sees it at 256 px in the §4.2
pad-resize way (short side to 256, edge-padded right/bottom to multiples of 64), and its output,
cropped and resized back, replaces the colour inside the mask only: outside the mask the map is
the input's, byte for byte. The weights (ControlNetLama.pth) are read through spandrel, whose LaMa
architecture they match; they are never downloaded."""
import cv2
import numpy as np
import torch

from modules.controlnet import preprocessors
from modules.upscaling import model_cache
from modules.upscaling.registry import UpscalerUnavailable

RESOLUTION = 256


def load(path: str, device: torch.device):
    """The LaMa network of the weight file (cached with the upscalers' spandrel models)."""
    try:
        descriptor = model_cache.load_descriptor(path, device, half=False)
    except UpscalerUnavailable as e:
        raise preprocessors.PreprocessorError(f"inpaint_only+lama: {e}") from None
    if descriptor.architecture.id != "LaMa":
        raise preprocessors.PreprocessorError(
            f"inpaint_only+lama: {path} is a {descriptor.architecture.id} model, not LaMa")
    return descriptor.model


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(w, h); bicubic enlarging, area shrinking, as the pad-resize of §4.2."""
    if (x.shape[1], x.shape[0]) == size:
        return x
    enlarging = size[0] * size[1] > x.shape[0] * x.shape[1]
    return cv2.resize(x, size, interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)


@torch.no_grad()
def run_net(net: torch.nn.Module, colour: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """LaMa's image for an RGB uint8 colour and a bool hole of the same size, at the given size."""
    device = next(net.parameters()).device
    image = torch.from_numpy(colour.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    mask = torch.from_numpy(hole.astype(np.float32))[None, None].to(device)
    out = net(image, mask)[0].permute(1, 2, 0).float().cpu().numpy()
    return (out * 255.0).round().clip(0, 255).astype(np.uint8)


def fill(net: torch.nn.Module, fitted: np.ndarray) -> np.ndarray:
    """The 4-channel map (RGB + mask, uint8, 255 = hole) with its hole filled by LaMa."""
    colour, mask = fitted[:, :, :3], fitted[:, :, 3]
    hole = mask > 127
    if not hole.any():
        return fitted
    h, w = mask.shape
    k = RESOLUTION / min(h, w)
    small = (int(round(w * k)), int(round(h * k)))
    small_colour = _resize(colour, small)
    small_hole = _resize(mask, small) > 127
    ph, pw = -small[1] % 64, -small[0] % 64
    padded_colour = np.pad(small_colour, ((0, ph), (0, pw), (0, 0)), mode="edge")
    padded_hole = np.pad(small_hole, ((0, ph), (0, pw)), mode="edge")
    painted = run_net(net, padded_colour, padded_hole)[:small[1], :small[0]]
    painted = _resize(painted, (w, h))
    out = fitted.copy()
    out[:, :, :3] = np.where(hole[:, :, None], painted, colour)
    return out
