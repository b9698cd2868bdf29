"""kohya's aspect-ratio buckets (merge-train.md §6.2).

The bucket set keeps the pixel area of the training resolution: the square, plus for each width
from min to max (by step) the tallest height that fits the area, in both orientations. An image goes
to the bucket nearest its aspect ratio, is scaled to cover it and centre-cropped.
"""
from __future__ import annotations

import math

from PIL import Image


def make_buckets(resolution: tuple[int, int], min_size: int = 256, max_size: int = 1024,
                 step: int = 64) -> list[tuple[int, int]]:
    area = resolution[0] * resolution[1]
    side = int(math.sqrt(area)) // step * step
    buckets = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, area // width // step * step)
        if height >= min_size:
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    return sorted(buckets)


def nearest_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    aspect = size[0] / size[1]
    return min(buckets, key=lambda b: (abs(b[0] / b[1] - aspect), b))


def no_upscale_bucket(size: tuple[int, int], resolution: tuple[int, int], step: int = 64) -> tuple[int, int]:
    """`bucket_no_upscale`: the image's own size, shrunk to the resolution's area when larger, rounded
    down to the step."""
    width, height = size
    area = resolution[0] * resolution[1]
    if width * height > area:
        scale = math.sqrt(area / (width * height))
        width, height = width * scale, height * scale
    return max(step, int(width) // step * step), max(step, int(height) // step * step)


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """Scale to cover the bucket, centre-crop; returns (image, (crop_top, crop_left)) in the scaled
    image, which SDXL's time ids need."""
    bw, bh = bucket
    scale = max(bw / image.width, bh / image.height)
    width, height = max(bw, round(image.width * scale)), max(bh, round(image.height * scale))
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    left, top = (width - bw) // 2, (height - bh) // 2
    return image.crop((left, top, left + bw, top + bh)), (top, left)
