"""After sampling (generation.md §7.4 step 4, §7.7): paste an "Only masked" result back into the
whole picture, and put the init image's own pixels back outside the mask."""
from PIL import Image, ImageOps

from modules.img2img.resize import CROP_AND_RESIZE, resize_image


def overlay_image(image: Image.Image, overlay_mask: Image.Image) -> Image.Image:
    """The init image's pixels with alpha = 1 − overlay mask (what is composited over the result)."""
    layer = Image.new("RGBa", image.size)
    layer.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask.convert("L")))
    return layer.convert("RGBA")


def pasted_back(image: Image.Image, paste_to, overlay: Image.Image | None) -> Image.Image:
    """The result before the init pixels go over it: an "Only masked" crop pasted into a transparent
    canvas of the whole picture's size (unchanged without an overlay, as in A1111)."""
    if overlay is None or paste_to is None:
        return image
    x, y, w, h = paste_to
    canvas = Image.new("RGBA", overlay.size)
    canvas.paste(resize_image(CROP_AND_RESIZE, image, w, h).convert("RGBA"), (x, y))
    return canvas


def apply_overlay(image: Image.Image, paste_to, overlay: Image.Image | None) -> Image.Image:
    """`paste_to` = (x, y, w, h) of the "Only masked" crop, or None for the whole picture."""
    if overlay is None:
        return image
    result = pasted_back(image, paste_to, overlay).convert("RGBA")
    result.alpha_composite(overlay)
    return result.convert("RGB")
