"""Inpainting extras (settings `return_mask`, `return_mask_composite`, `save_mask`,
`save_mask_composite`; api.md §8.4): the greyscale overlay mask and the masked composite (the
denoised image seen through the mask, transparent elsewhere) are saved next to each result with
the suffixes `-mask` / `-mask-composite` and appended after it in the job's images."""
from dataclasses import dataclass

from PIL import Image

from modules.img2img.resize import RESIZE_AND_FILL, resize_image


@dataclass
class MaskSources:
    """What finish_image leaves for one image: its overlay mask (after postprocess_maskoverlay)
    and the denoised picture before the init pixels were put back."""
    mask: Image.Image
    denoised: Image.Image


def composite(denoised: Image.Image, mask: Image.Image) -> Image.Image:
    """RGBA: the denoised pixels where the mask is white, transparent where it is black."""
    alpha = resize_image(RESIZE_AND_FILL, mask, denoised.width, denoised.height).convert("L")
    shown = denoised.convert("RGBA").convert("RGBa")  # premultiplied, so grey mask values fade the colour
    return Image.composite(shown, Image.new("RGBa", denoised.size), alpha).convert("RGBA")


def extra_images(sources: MaskSources | None, opts, save) -> list[Image.Image]:
    """The images to append after one result; `save(image, suffix)` writes a file, or is None when
    this job does not save samples."""
    if sources is None:
        return []
    extras = []
    if opts.return_mask or opts.save_mask:
        mask = sources.mask.convert("RGB")
        if save is not None and opts.save_mask:
            save(mask, "-mask")
        if opts.return_mask:
            extras.append(mask)
    if opts.return_mask_composite or opts.save_mask_composite:
        masked = composite(sources.denoised, sources.mask)
        if save is not None and opts.save_mask_composite:
            save(masked, "-mask-composite")
        if opts.return_mask_composite:
            extras.append(masked)
    return extras
