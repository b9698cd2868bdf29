"""The four img2img resize modes (generation.md §7.2) for PIL images."""
from PIL import Image

from modules import hires

JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_UPSCALE = 0, 1, 2, 3
RESIZE_MODE_NAMES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")


def _resize(image: Image.Image, width: int, height: int, upscaler: str | None) -> Image.Image:
    """Enlarging colour images uses the chosen upscaler; shrinking, masks and grayscale use Lanczos."""
    if image.size == (width, height):
        return image
    enlarging = width > image.width or height > image.height
    if upscaler and upscaler != "None" and enlarging and image.mode not in ("L", "1"):
        return hires.upscale_image(image, upscaler, width, height)
    return image.resize((width, height), Image.Resampling.LANCZOS)


def resize_image(resize_mode: int, image: Image.Image, width: int, height: int,
                 upscaler_name: str | None = None) -> Image.Image:
    """`image` at `width`×`height` by resize mode 0, 1 or 2 (mode 3 resizes like 0 here: the latent
    is resized later)."""
    if resize_mode in (JUST_RESIZE, LATENT_UPSCALE):
        return _resize(image, width, height, upscaler_name)
    w, h = image.size
    if resize_mode == CROP_AND_RESIZE:
        cover = width / height > w / h  # scale so that the image covers the whole target
    elif resize_mode == RESIZE_AND_FILL:
        cover = width / height < w / h  # scale so that the whole image fits inside the target
    else:
        raise ValueError(f"resize_mode must be 0, 1, 2 or 3, got {resize_mode}")
    new_w, new_h = (width, h * width // w) if cover else (w * height // h, height)
    resized = _resize(image, new_w, new_h, upscaler_name)
    canvas = Image.new(image.mode, (width, height))
    left, top = width // 2 - new_w // 2, height // 2 - new_h // 2
    canvas.paste(resized, (left, top))
    if resize_mode == RESIZE_AND_FILL:
        _stretch_edges(canvas, resized, left, top)
    return canvas


def _stretch_edges(canvas: Image.Image, resized: Image.Image, left: int, top: int) -> None:
    """Fill the empty bands beside the pasted image with its outermost row/column, stretched."""
    width, height = canvas.size
    if top > 0:  # bands above and below
        canvas.paste(resized.crop((0, 0, resized.width, 1)).resize((resized.width, top)), (left, 0))
        bottom = top + resized.height
        if bottom < height:
            edge = resized.crop((0, resized.height - 1, resized.width, resized.height))
            canvas.paste(edge.resize((resized.width, height - bottom)), (left, bottom))
    if left > 0:  # bands left and right
        canvas.paste(resized.crop((0, 0, 1, resized.height)).resize((left, resized.height)), (0, top))
        right = left + resized.width
        if right < width:
            edge = resized.crop((resized.width - 1, 0, resized.width, resized.height))
            canvas.paste(edge.resize((width - right, resized.height)), (right, top))
