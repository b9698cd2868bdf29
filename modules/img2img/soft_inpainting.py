"""Soft inpainting (A1111's built-in extension; ui.md §3.6): the mask becomes a gradient in time and
in space. The spec names the six parameters but gives no formulas; the ones below are ours.

* Per denoiser step (on_mask_blend): the regenerate weight of a latent pixel is
  `w = nmask ** (σ**schedule_bias · preservation_strength)`, so the original is held firmly while the
  noise is high and let go as σ falls. Latent vectors are blended linearly by `w`, then rescaled so
  their length is the power mean (power = transition contrast boost) of the two lengths: a plain
  lerp of two unrelated latents shrinks them and washes the transition out (low contrast).
* After sampling (post_sample): how far each latent pixel moved from the init latent decides where the
  original pixels come back. The distance is spread to neighbours (3×3 max) and de-speckled (5×5
  median), divided by the half-way distance `difference_threshold · s` and mapped through
  `1 − smootherstep(1 / (1 + d**difference_contrast))` (0 = keep the original). `s` is 1 with mask
  influence 0; with influence k it is `lerp(1, r / (1 − r), k)` where `r = 1 − nmask**(strength / 2)`,
  so a stronger mask lowers the threshold. The map is resized to the image, blurred (radius 4) and
  never exceeds the job's overlay mask, so pixels outside the user's mask stay the original.
"""
from dataclasses import dataclass

import torch
from PIL import Image, ImageChops, ImageFilter

from modules.img2img import overlay
from modules.img2img.resize import CROP_AND_RESIZE, resize_image

# (label, field, minimum, maximum, step, default, infotext key) in A1111's order
PARAMETERS = (
    ("Schedule bias", "mask_blend_power", 0, 8, 0.1, 1, "Soft inpainting schedule bias"),
    ("Preservation strength", "mask_blend_scale", 0, 8, 0.05, 0.5, "Soft inpainting preservation strength"),
    ("Transition contrast boost", "inpaint_detail_preservation", 1, 32, 0.5, 4,
     "Soft inpainting transition contrast boost"),
    ("Mask influence", "composite_mask_influence", 0, 1, 0.05, 0, "Soft inpainting mask influence"),
    ("Difference threshold", "composite_difference_threshold", 0, 8, 0.25, 0.5,
     "Soft inpainting difference threshold"),
    ("Difference contrast", "composite_difference_contrast", 0, 8, 0.25, 2, "Soft inpainting difference contrast"),
)
ENABLED_KEY = "Soft inpainting enabled"


@dataclass(frozen=True)
class Settings:
    mask_blend_power: float = 1.0
    mask_blend_scale: float = 0.5
    inpaint_detail_preservation: float = 4.0
    composite_mask_influence: float = 0.0
    composite_difference_threshold: float = 0.5
    composite_difference_contrast: float = 2.0

    @classmethod
    def from_values(cls, values) -> "Settings":
        return cls(*(float(v) for v in values))

    def add_generation_params(self, params: dict) -> None:
        params[ENABLED_KEY] = True
        for _, name, *_, key in PARAMETERS:
            params[key] = getattr(self, name)


def step_weight(nmask: torch.Tensor, sigma, settings: Settings) -> torch.Tensor:
    """The regenerate weight at noise level σ (one σ per batch row)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=nmask.device).reshape(-1, 1, 1, 1)
    exponent = sigma.clamp(min=0) ** settings.mask_blend_power * settings.mask_blend_scale
    return nmask.float().clamp(0, 1) ** exponent


def latent_blend(original: torch.Tensor, current: torch.Tensor, weight: torch.Tensor, power: float) -> torch.Tensor:
    """Lerp per latent pixel by `weight` (1 = current), length restored to the power mean of the
    two lengths. Where the weight is exactly 0 or 1 the result is the plain blend."""
    mixed = original * (1 - weight) + current * weight
    length = torch.linalg.vector_norm(mixed, dim=1, keepdim=True).double()
    a = torch.linalg.vector_norm(original, dim=1, keepdim=True).double() ** power
    b = torch.linalg.vector_norm(current, dim=1, keepdim=True).double() ** power
    w = weight.double()
    wanted = (a * (1 - w) + b * w) ** (1 / power)
    scaled = mixed * (wanted / length.clamp(min=1e-5)).to(mixed.dtype)
    partial = (weight > 0) & (weight < 1)
    return torch.where(partial, scaled, mixed)


def _median5(x: torch.Tensor) -> torch.Tensor:
    padded = torch.nn.functional.pad(x[None, None], (2, 2, 2, 2), mode="replicate")
    windows = torch.nn.functional.unfold(padded, 5)  # [1, 25, h·w]
    return windows.median(dim=1).values.reshape(x.shape)


def _smootherstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * x * (x * (x * 6 - 15) + 10)


def latent_difference_masks(init_latent: torch.Tensor, samples: torch.Tensor, nmask: torch.Tensor,
                            settings: Settings) -> torch.Tensor:
    """[B, h, w] in [0, 1]: 1 = show the generated pixels, 0 = bring the original back."""
    regen = nmask.float().clamp(0, 1)[0, 0].to(samples.device)
    ratio = 1 - regen ** (settings.mask_blend_scale / 2)
    ratio = ratio / (1 - ratio).clamp(min=1e-5)
    k = settings.composite_mask_influence
    scale = (1 - k) + ratio * k
    half_way = (settings.composite_difference_threshold * scale).clamp(min=1e-6)
    distance = torch.linalg.vector_norm(samples.float() - init_latent.float().to(samples.device), dim=1)
    result = []
    for d in distance:
        d = torch.nn.functional.max_pool2d(d[None, None], 3, stride=1, padding=1)[0, 0]
        d = _median5(d)
        keep = 1 / (1 + (d / half_way) ** settings.composite_difference_contrast)
        result.append(1 - _smootherstep(keep))
    return torch.stack(result)


def overlay_layers(p, masks: torch.Tensor) -> tuple[list, list]:
    """(masks_for_overlay, overlay layers) at the init image's size for each image of the batch."""
    mask_images, layers = [], []
    for i, m in enumerate(masks):
        source = p.overlay_sources[i] if i < len(p.overlay_sources) else p.overlay_sources[0]
        pixel = Image.fromarray((m.cpu().numpy() * 255).round().clip(0, 255).astype("uint8"), "L")
        pixel = pixel.resize((p.width, p.height), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(4))
        if p.paste_to is not None:  # "Only masked": back to the crop's place in the whole picture
            x, y, w, h = p.paste_to
            canvas = Image.new("L", source.size, 0)
            canvas.paste(resize_image(CROP_AND_RESIZE, pixel, w, h), (x, y))
            pixel = canvas
        if pixel.size != source.size:  # latent upscale: the overlay is at the init image's own size
            pixel = pixel.resize(source.size, Image.Resampling.LANCZOS)
        if p.mask_for_overlay is not None:
            limit = p.mask_for_overlay.convert("L")
            pixel = ImageChops.darker(pixel, limit if limit.size == pixel.size else limit.resize(pixel.size))
        mask_images.append(pixel)
        layers.append(overlay.overlay_image(source, pixel))
    return mask_images, layers
