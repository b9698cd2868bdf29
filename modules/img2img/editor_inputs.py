"""What each img2img mode hands the job, from Gradio editor values (ui.md §3.2, §4.4, §4.5).

An editor value is {"background", "layers", "composite"} with PIL images (or None)."""
import numpy as np
from PIL import Image, ImageFilter


class EditorInputError(ValueError):
    pass


def _background(value, mode_name: str) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if not value or value.get("background") is None:
        raise EditorInputError(f"{mode_name}: upload or paste an image first")
    return value["background"]


def background_image(value, mode_name: str) -> Image.Image:
    """The uploaded picture of an editor (or a plain image), or a message naming the mode."""
    return _background(value, mode_name)


def strokes_mask(value) -> Image.Image:
    """mask (L) = 255 where any layer has a visible stroke (alpha > 0), else 0."""
    background = _background(value, "Inpaint")
    alpha = np.zeros((background.height, background.width), dtype=bool)
    for layer in (value.get("layers") or []) if isinstance(value, dict) else []:
        if layer is None:
            continue
        layer_alpha = np.asarray(layer.convert("RGBA").resize(background.size))[..., 3]
        alpha |= layer_alpha > 0
    return Image.fromarray(alpha.astype(np.uint8) * 255)


def img2img_image(value) -> Image.Image:
    return _background(value, "img2img")


def sketch_image(value) -> Image.Image:
    """Sketch: the drawing flattened over the image."""
    _background(value, "Sketch")
    composite = value.get("composite") if isinstance(value, dict) else value
    return (composite or value["background"]).convert("RGB")


def inpaint_inputs(value) -> tuple[Image.Image, Image.Image]:
    """Inpaint: the uploaded image, and the painted strokes as the mask."""
    return _background(value, "Inpaint").convert("RGBA"), strokes_mask(value)


def inpaint_sketch_inputs(value, transparency: float, mask_blur: int) -> tuple[Image.Image, Image.Image]:
    """Inpaint sketch: mask = the strokes weakened by `Mask transparency` (percent); init = the
    blurred sketch blended over the original where the blurred mask is white."""
    original = _background(value, "Inpaint sketch").convert("RGB")
    mask = strokes_mask(value)
    sketch = (value.get("composite") or original).convert("RGB")
    weakened = Image.fromarray((np.asarray(mask, dtype=np.float32) * (1 - transparency / 100)).round()
                               .astype(np.uint8))
    blur = ImageFilter.GaussianBlur(mask_blur)
    init = Image.composite(sketch.filter(blur), original, weakened.filter(blur))
    return init, weakened


def upload_inputs(image, mask) -> tuple[Image.Image, Image.Image]:
    if image is None:
        raise EditorInputError("Inpaint upload: upload the image to inpaint")
    if mask is None:
        raise EditorInputError("Inpaint upload: upload a mask (white = repaint)")
    return image, mask
