"""The control image: decoding a unit's image and mask (controlnet.md §2.2) and fitting a detected
map to the sampling size with the unit's resize mode (§3.4)."""
import base64
import binascii
import io

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")


class HintError(ValueError):
    pass


def decode_image(data: str, what: str) -> Image.Image:
    if not isinstance(data, str):
        raise HintError(f"{what} must be a base64 string")
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        return Image.open(io.BytesIO(base64.b64decode(data, validate=False))).copy()
    except (binascii.Error, ValueError):
        raise HintError(f"{what} is not valid base64") from None
    except (UnidentifiedImageError, OSError):
        raise HintError(f"{what} is not an image") from None


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """RGB uint8; an image with alpha is composited over white (§2.2)."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def with_mask(rgb: np.ndarray, mask: Image.Image | None, what: str) -> np.ndarray:
    """Channel 0 of the mask becomes a 4th channel (255 = masked); absent = zeros."""
    h, w = rgb.shape[:2]
    if mask is None:
        alpha = np.zeros((h, w), dtype=np.uint8)
    else:
        if mask.size != (w, h):
            raise HintError(f"{what}: the mask is {mask.size[0]}x{mask.size[1]}, the image {w}x{h}; they must match")
        alpha = np.asarray(mask.convert("RGB"), dtype=np.uint8)[:, :, 0]
    return np.dstack([rgb, alpha])


def _count_colours(x: np.ndarray, limit: int = 256) -> int:
    flat = x.reshape(-1, x.shape[2]) if x.ndim == 3 else x.reshape(-1, 1)
    return len(np.unique(flat[:: max(1, len(flat) // 65536)], axis=0)[:limit])


def _is_binary(x: np.ndarray) -> bool:
    values = np.unique(x)
    return len(values) == 2 and values[0] < 16 and values[1] > 240


def high_quality_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (w, h) choosing the interpolation from the map's content (§3.4)."""
    h, w = x.shape[:2]
    if (w, h) == size:
        return x
    mask = None
    if x.ndim == 3 and x.shape[2] == 4:
        x, mask = x[:, :, :3], x[:, :, 3]
    binary = _is_binary(x)
    colours = _count_colours(x)
    shrinking = size[0] * size[1] < w * h
    if 3 <= colours < 200:
        interpolation = cv2.INTER_NEAREST
    elif shrinking:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_CUBIC
    if binary:  # edges stay binary: resize the grey values, then Otsu
        gray = x.astype(np.float32).mean(axis=2)
        resized = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        resized = resized.clip(0, 255).astype(np.uint8)
        _, out = cv2.threshold(resized, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        y = np.repeat(out[:, :, None], 3, axis=2)
    else:
        y = cv2.resize(x, size, interpolation=interpolation)
    if mask is not None:
        m = cv2.resize(mask, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        y = np.dstack([y, np.where(m > 127, 255, 0).astype(np.uint8)])
    return y


def fit(x: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """The detected map at exactly width x height, placed by the resize mode (§3.4)."""
    old_h, old_w = x.shape[:2]
    if mode == "Just Resize":
        return high_quality_resize(x, (width, height))
    k_h, k_w = height / old_h, width / old_w
    if mode == "Crop and Resize":
        k = max(k_h, k_w)
        new_w, new_h = int(round(old_w * k)), int(round(old_h * k))
        y = high_quality_resize(x, (new_w, new_h))
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return y[top:top + height, left:left + width]
    if mode == "Resize and Fill":
        k = min(k_h, k_w)
        new_w, new_h = int(round(old_w * k)), int(round(old_h * k))
        y = high_quality_resize(x, (new_w, new_h))
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]], axis=0)
        fill = np.median(border, axis=0).astype(np.uint8)
        if x.shape[2] == 4:
            fill[3] = 255  # the filled border is "to inpaint"
        canvas = np.empty((height, width, x.shape[2]), dtype=np.uint8)
        canvas[:] = fill
        top, left = (height - new_h) // 2, (width - new_w) // 2
        canvas[top:top + new_h, left:left + new_w] = y
        return canvas
    raise HintError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")


def only_masked_crop(x: np.ndarray, mask_size: tuple[int, int], box: tuple[int, int, int, int], width: int,
                     height: int, mode: str) -> np.ndarray:
    """img2img "Only masked" (§3.8): the control image resized to the mask's size (w, h) with the
    unit's mode, cut to A1111's crop region box = (x1, y1, x2, y2), then fitted to width x height
    with Resize and Fill, so that it lines up with the crop the sampler sees."""
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= mask_size[0] and 0 <= y1 < y2 <= mask_size[1]):
        raise HintError(f"crop region {box} lies outside the mask's {mask_size[0]}x{mask_size[1]}")
    whole = fit(x, mask_size[0], mask_size[1], mode)
    return fit(whole[y1:y2, x1:x2], width, height, "Resize and Fill")


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """float32 [1, C, h, w] in 0..1; a 4-channel inpaint hint has masked pixels at -1 (§3.8)."""
    t = torch.from_numpy(x.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if t.shape[1] == 4:
        masked = (t[:, 3:4] > 0.5).float()
        t = t[:, :3] * (1 - masked) - masked
    return t.contiguous()


def pixel_perfect_resolution(image_h: int, image_w: int, target_h: int, target_w: int, mode: str) -> int:
    """§3.2: the preprocessor resolution that maps the image onto the target one to one."""
    k_h, k_w = target_h / image_h, target_w / image_w
    k = min(k_h, k_w) if mode == "Resize and Fill" else max(k_h, k_w)
    return int(round(k * min(image_h, image_w)))
