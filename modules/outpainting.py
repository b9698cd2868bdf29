"""Canvas arithmetic shared by the outpainting scripts: how far to expand each side so the new
canvas is a multiple of 64, and the noise that fills a new area (Outpainting mk2)."""
import math

import numpy as np

DIRECTIONS = ("left", "right", "up", "down")


def expansion(width: int, height: int, pixels: int, directions) -> dict:
    """{"left", "right", "up", "down"}: pixels added on each side; the canvas is rounded up to a
    multiple of 64 and the extra is shared between the chosen sides of each axis."""
    wanted = {side: pixels if side in directions else 0 for side in DIRECTIONS}
    out = dict(wanted)
    target_w = math.ceil((width + wanted["left"] + wanted["right"]) / 64) * 64
    target_h = math.ceil((height + wanted["up"] + wanted["down"]) / 64) * 64
    if wanted["left"]:
        out["left"] = wanted["left"] * (target_w - width) // (wanted["left"] + wanted["right"])
    if wanted["right"]:
        out["right"] = target_w - width - out["left"]
    if wanted["up"]:
        out["up"] = wanted["up"] * (target_h - height) // (wanted["up"] + wanted["down"])
    if wanted["down"]:
        out["down"] = target_h - height - out["up"]
    return out


def matched_noise(image: np.ndarray, new_area: np.ndarray, falloff: float, color_variation: float,
                  rng: np.random.Generator) -> np.ndarray:
    """`image` (H×W×3 floats 0-1) with `new_area` (H×W, 1 = new) filled by noise shaped like the
    known part: white noise filtered by the known region's amplitude spectrum raised to
    `falloff` (lower = more fine detail kept), then given the known pixels' per-channel mean and
    spread, plus per-pixel colour jitter of `color_variation`. Known pixels are returned unchanged."""
    known = 1.0 - new_area
    if known.sum() < 1:
        raise ValueError("outpainting needs some of the original image on the canvas")
    height, width = new_area.shape
    out = image.copy()
    weights = known[..., None]
    mean = (image * weights).sum((0, 1)) / known.sum()
    spread = np.sqrt(((image - mean) ** 2 * weights).sum((0, 1)) / known.sum()) + 1e-3
    for channel in range(3):
        amplitude = np.abs(np.fft.fft2((image[..., channel] - mean[channel]) * known))
        amplitude = (amplitude / (amplitude.max() + 1e-12)) ** max(falloff, 1e-3)
        noise = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((height, width))) * amplitude))
        noise = (noise - noise.mean()) / (noise.std() + 1e-12)
        jitter = rng.standard_normal((height, width)) * color_variation
        filled = mean[channel] + noise * spread[channel] + jitter
        out[..., channel] = image[..., channel] * known + np.clip(filled, 0, 1) * new_area
    return out
