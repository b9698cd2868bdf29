"""Live previews of a running job (generation.md §13, settings `live_previews_*`).

"Approx cheap" maps the 4 latent channels linearly to RGB. "Full" runs the VAE. "Approx NN" and
"TAESD" need weight files this offline build does not ship, so they use the cheap map, which the
log says once.
"""
import math

import numpy as np
import torch
from PIL import Image

# latent channel -> RGB coefficients, on the unscaled latent, result in [-1, 1]
_CHEAP_SD = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
_CHEAP_SDXL = [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163],
               [-0.3730, -0.2499, -0.2088]]
_warned: set[str] = set()


def approx_cheap(latents: torch.Tensor, is_sdxl: bool) -> torch.Tensor:
    """[B, 4, h, w] latents -> [B, 3, h, w] images in [0, 1]."""
    coefficients = torch.tensor(_CHEAP_SDXL if is_sdxl else _CHEAP_SD, dtype=torch.float32,
                                device=latents.device)
    rgb = torch.einsum("bchw,cr->brhw", latents.float(), coefficients)
    return ((rgb + 1) / 2).clamp(0, 1)


def _grid(images: list[Image.Image]) -> Image.Image:
    if len(images) == 1:
        return images[0]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image, ((i % cols) * w, (i // cols) * h))
    return grid


def preview(model, latents: torch.Tensor, kind: str, whole_batch: bool) -> Image.Image:
    """One picture of the current denoised estimate (the batch as a grid when asked)."""
    if not whole_batch:
        latents = latents[:1]
    if kind == "Full":
        from modules.vae_decode import decode_latents
        samples = decode_latents(model, latents)
    else:
        if kind != "Approx cheap" and kind not in _warned:
            _warned.add(kind)
            print(f"Live preview '{kind}' needs weight files that are not installed; using 'Approx cheap'")
        samples = approx_cheap(latents, model.is_sdxl)
    arrays = (samples.cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return _grid([Image.fromarray(a) for a in arrays])
