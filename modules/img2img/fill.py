"""Masked content "fill" (generation.md §7.5): the masked area is painted with a heavy blur of the
unmasked surroundings before the image is encoded."""
from PIL import Image, ImageFilter, ImageOps

# (blur radius, times composited), coarse to fine: the last, unblurred pass restores the
# unmasked pixels exactly
_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    keep = ImageOps.invert(mask.convert("L"))
    # premultiplied alpha: blurring spreads the kept colours and their coverage together
    visible = Image.new("RGBa", image.size)
    visible.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    result = Image.new("RGBA", image.size)
    for radius, times in _PASSES:
        layer = visible.filter(ImageFilter.GaussianBlur(radius)) if radius else visible
        layer = layer.convert("RGBA")
        for _ in range(times):
            result.alpha_composite(layer)
    return result.convert("RGB")
