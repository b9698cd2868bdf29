"""Running an image model over tiles with feathered blending (extras.md §8 target 3).

One scheme for every architecture: the image is split into equal tiles no larger than the tile
setting (spread evenly, so a 256 px side with 192 px tiles takes two 132 px tiles rather than two
192 px ones), tiles of one size run in batches, and overlapping outputs are blended with linear
ramps, so there are no seams and a pixel-local model gives exactly the untiled result.
"""
import math

import torch


def tile_layout(length: int, tile: int, overlap: int, minimum: int = 1) -> tuple[list[int], int]:
    """Tile origins along one side and the tile size (≤ tile, ≥ the model's minimum)."""
    if tile <= 0 or length <= tile:
        return [0], length
    overlap = max(0, min(overlap, tile // 2))
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(length, max(minimum, math.ceil((length + (count - 1) * overlap) / count)))
    return [round(i * (length - size) / (count - 1)) for i in range(count)], size


def _ramp(size: int, ramp: int, at_start: bool, at_end: bool, device) -> torch.Tensor:
    """1 in the middle, rising over `ramp` pixels at each side that borders another tile."""
    weight = torch.ones(size, device=device)
    ramp = min(ramp, size // 2)
    if ramp > 0:
        rise = torch.arange(1, ramp + 1, device=device, dtype=torch.float32) / (ramp + 1)
        if not at_start:
            weight[:ramp] = rise
        if not at_end:
            weight[-ramp:] = rise.flip(0)
    return weight


def run_tiled(model, image: torch.Tensor, tile: int, overlap: int, batch: int = 1, minimum: int = 1,
              should_stop=lambda: False) -> torch.Tensor | None:
    """model: (N,C,h,w) in [0,1] -> (N,C,h·k,w·k). image (1,C,H,W). None when stopped."""
    _, _, height, width = image.shape
    xs, tile_w = tile_layout(width, tile, overlap, minimum)
    ys, tile_h = tile_layout(height, tile, overlap, minimum)
    if len(xs) == 1 and len(ys) == 1:
        return model(image)
    origins = [(y, x) for y in ys for x in xs]
    out = weights = None
    scale = None
    for start in range(0, len(origins), batch):
        if should_stop():
            return None
        group = origins[start:start + batch]
        result = model(torch.cat([image[..., y:y + tile_h, x:x + tile_w] for y, x in group]))
        if out is None:
            scale = result.shape[-1] // tile_w
            out = torch.zeros((1, result.shape[1], height * scale, width * scale), dtype=torch.float32,
                              device=result.device)
            weights = torch.zeros((1, 1, height * scale, width * scale), dtype=torch.float32, device=result.device)
        ramp = overlap * scale
        for (y, x), piece in zip(group, result):
            wy = _ramp(tile_h * scale, ramp, y == 0, y + tile_h >= height, result.device)
            wx = _ramp(tile_w * scale, ramp, x == 0, x + tile_w >= width, result.device)
            w = wy[:, None] * wx[None, :]
            ys_, xs_ = slice(y * scale, (y + tile_h) * scale), slice(x * scale, (x + tile_w) * scale)
            out[0, :, ys_, xs_] += piece.float() * w
            weights[0, :, ys_, xs_] += w
    return (out / weights).to(image.dtype)
