"""Upscaled results kept for repeated Extras runs on the same image (upscaling_max_images_in_cache).

The key holds the input pixels, the upscaler and its weight file's identity, the tile settings and
the scale, so a changed tile setting or replaced file is a miss (extras.md §2.4, §8 target 10).
"""
import collections
import hashlib
import os
import threading

from PIL import Image

_cache: "collections.OrderedDict[tuple, Image.Image]" = collections.OrderedDict()
_lock = threading.Lock()


def image_key(image: Image.Image) -> tuple:
    return image.mode, image.size, hashlib.sha256(image.tobytes()).hexdigest()


def file_key(path: str | None) -> tuple:
    if not path:
        return ()
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns


def get(key: tuple) -> Image.Image | None:
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    return None


def put(key: tuple, image: Image.Image, limit: int) -> None:
    if limit <= 0:
        return
    with _lock:
        _cache[key] = image
        _cache.move_to_end(key)
        while len(_cache) > limit:
            _cache.popitem(last=False)


def clear() -> None:
    with _lock:
        _cache.clear()


def size() -> int:
    return len(_cache)
