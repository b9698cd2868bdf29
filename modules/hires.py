"""Hires fix geometry and upscaling (generation.md §5, api.md §8.7)."""
from dataclasses import dataclass

import torch
from PIL import Image

from modules import upscaling

# name -> (torch interpolation mode, antialias)
LATENT_UPSCALE_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}

UnknownUpscaler = upscaling.UnknownUpscaler
UpscalerUnavailable = upscaling.UpscalerUnavailable


def upscaler_choices() -> list[str]:
    """The hires Upscaler list: the latent modes, then every name of the upscaler registry."""
    return [*LATENT_UPSCALE_MODES, *upscaling.upscaler_names()]


def check_upscaler(name: str | None) -> str:
    """The upscaler to use (None means Latent); unknown names are an error listing the valid ones,
    a model upscaler whose weights are absent says which file to put where."""
    name = name or "Latent"
    if name in LATENT_UPSCALE_MODES:
        return name
    try:
        upscaling.require_available(upscaling.find_upscaler(name))
    except upscaling.UnknownUpscaler:
        raise UnknownUpscaler(f"Upscaler '{name}' not found; valid names: {', '.join(upscaler_choices())}") from None
    return name


@dataclass(frozen=True)
class HiresTarget:
    width: int             # size the second pass samples at (before truncation)
    height: int
    truncate_x: int        # latent columns to cut (cover + crop with both resize values)
    truncate_y: int
    infotext: dict         # `Hires upscale` or `Hires resize`

    @property
    def final_width(self) -> int:
        return self.width - self.truncate_x * 8

    @property
    def final_height(self) -> int:
        return self.height - self.truncate_y * 8


def hires_target(width: int, height: int, scale: float, resize_x: int, resize_y: int) -> HiresTarget:
    """Second-pass size from the first-pass size and the hires fields (generation.md §5 step 1)."""
    if not resize_x and not resize_y:
        return HiresTarget(int(width * scale), int(height * scale), 0, 0, {"Hires upscale": scale})
    key = {"Hires resize": f"{resize_x}x{resize_y}"}
    if not resize_y:
        return HiresTarget(resize_x, resize_x * height // width, 0, 0, key)
    if not resize_x:
        return HiresTarget(resize_y * width // height, resize_y, 0, 0, key)
    if width / height < resize_x / resize_y:
        w2, h2 = resize_x, resize_x * height // width
    else:
        w2, h2 = resize_y * width // height, resize_y
    return HiresTarget(w2, h2, (w2 - resize_x) // 8, (h2 - resize_y) // 8, key)


def truncate(latents: torch.Tensor, target: HiresTarget) -> torch.Tensor:
    """Cut ⌊t/2⌋ latent rows/columns from the start and ⌈t/2⌉ from the end."""
    h, w = latents.shape[-2:]
    top, left = target.truncate_y // 2, target.truncate_x // 2
    return latents[..., top:h - (target.truncate_y - top), left:w - (target.truncate_x - left)]


def upscale_latents(latents: torch.Tensor, mode_name: str, width: int, height: int) -> torch.Tensor:
    mode, antialias = LATENT_UPSCALE_MODES[mode_name]
    return torch.nn.functional.interpolate(latents, size=(height // 8, width // 8), mode=mode,
                                           antialias=antialias)


def upscale_image(image: Image.Image, upscaler: str, width: int, height: int) -> Image.Image:
    """A pixel or model upscaler from the registry, then Lanczos to exactly width×height."""
    return upscaling.upscale_to(image, width, height, upscaler)
