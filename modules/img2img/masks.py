"""Inpainting masks (generation.md §7.4): binarise, invert, blur, the "Only masked" crop box, and
the masks the sampler and the final overlay use. Masks are mode "L" images, white = repaint."""
import cv2
import numpy as np
import torch
from PIL import Image, ImageOps


def to_mask(image: Image.Image, mask_round: bool = True) -> Image.Image:
    """An uploaded or drawn mask as an "L" image: an RGBA mask with any transparency is read from
    its alpha channel (thresholded when mask_round), anything else as grayscale."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha.point(lambda v: 255 if v > 128 else 0) if mask_round else alpha
    return image.convert("L")


def invert(mask: Image.Image) -> Image.Image:
    return ImageOps.invert(mask)


def _kernel_width(sigma: float) -> int:
    return 2 * int(2.5 * sigma + 0.5) + 1


def blur(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Gaussian blur with σ = blur_x along rows, then σ = blur_y along columns."""
    pixels = np.array(mask)
    if blur_x > 0:
        pixels = cv2.GaussianBlur(pixels, (_kernel_width(blur_x), 1), blur_x)
    if blur_y > 0:
        pixels = cv2.GaussianBlur(pixels, (1, _kernel_width(blur_y)), blur_y)
    return Image.fromarray(pixels)


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2), ends exclusive: the box around the mask's non-zero pixels grown by
    `padding` on every side and clamped to the image; None for an empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def _grow(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    """Grow [low, high) symmetrically to `wanted` length, moved back inside [0, limit)."""
    extra = int(wanted - (high - low))
    low, high = low - extra // 2, high + extra - extra // 2
    if high > limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, min(high - low, limit)
    return low, high


def expand_to_aspect(box, width: int, height: int, image_width: int, image_height: int):
    """Grow the short side of `box` so that it has the aspect ratio width:height of the job."""
    x1, y1, x2, y2 = box
    box_ratio, wanted_ratio = (x2 - x1) / (y2 - y1), width / height
    if box_ratio > wanted_ratio:
        y1, y2 = _grow(y1, y2, (x2 - x1) / wanted_ratio, image_height)
    elif box_ratio < wanted_ratio:
        x1, x2 = _grow(x1, x2, (y2 - y1) * wanted_ratio, image_width)
    return x1, y1, x2, y2


def doubled(mask: Image.Image) -> Image.Image:
    """The whole-picture overlay mask: values doubled and clipped, so the blend edge lies inside
    the mask and the result's own pixels show fully over the blurred core."""
    return Image.fromarray(np.clip(np.array(mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8))


def latent_masks(mask: Image.Image, latent_width: int, latent_height: int, mask_round: bool, device):
    """(mask, nmask) at latent size, [1, 1, h, w]: nmask = 1 where the sampler regenerates,
    mask = 1 − nmask where the init latent is kept."""
    small = mask.convert("RGB").resize((latent_width, latent_height), Image.Resampling.BICUBIC)
    nmask = np.array(small, dtype=np.float32)[..., 0] / 255
    if mask_round:
        nmask = np.around(nmask)
    nmask = torch.from_numpy(nmask)[None, None].to(device)
    return 1.0 - nmask, nmask


def pixel_mask(mask: Image.Image, mask_round: bool) -> torch.Tensor:
    """[1, 1, H, W] in [0, 1] (rounded when mask_round), for the inpainting models' conditioning."""
    values = torch.from_numpy(np.array(mask.convert("L"), dtype=np.float32) / 255)[None, None]
    return torch.round(values) if mask_round else values


def is_empty(mask: Image.Image) -> bool:
    return mask.getbbox() is None
