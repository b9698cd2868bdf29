"""Interrogate DeepBooru: tags for an image from the DeepDanbooru network (extras.md §6.2)."""
import threading

import numpy as np
import torch
from PIL import Image

from modules import shared
from modules.interrogate import deepbooru_model, files

SIZE = 512
_lock = threading.Lock()
_cache: dict = {}


def resize_and_fill(image: Image.Image, size: int = SIZE) -> Image.Image:
    """Fit inside size×size keeping the aspect; bands filled with the stretched edge rows/columns."""
    ratio = min(size / image.width, size / image.height)
    width, height = max(1, round(image.width * ratio)), max(1, round(image.height * ratio))
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size))
    left, top = (size - width) // 2, (size - height) // 2
    canvas.paste(resized, (left, top))
    if top > 0:
        canvas.paste(resized.crop((0, 0, width, 1)).resize((width, top)), (left, 0))
        bottom = size - top - height
        if bottom > 0:
            canvas.paste(resized.crop((0, height - 1, width, height)).resize((width, bottom)), (left, top + height))
    if left > 0:
        canvas.paste(resized.crop((0, 0, 1, height)).resize((left, height)), (0, top))
        right = size - left - width
        if right > 0:
            canvas.paste(resized.crop((width - 1, 0, width, height)).resize((right, height)), (left + width, top))
    return canvas


def format_tags(tags: list[str], probabilities, opts) -> str:
    """Threshold, drop rating:*, sort, filter, spaces, escapes, ranks; joined with ", "."""
    threshold = float(opts.interrogate_deepbooru_score_threshold)
    found = [(tag, float(p)) for tag, p in zip(tags, probabilities) if p >= threshold and not tag.startswith("rating:")]
    if opts.deepbooru_sort_alpha:
        found.sort(key=lambda item: item[0])
    else:
        found.sort(key=lambda item: -item[1])
    filtered = {t.strip().replace(" ", "_") for t in (opts.deepbooru_filter_tags or "").split(",") if t.strip()}
    parts = []
    for tag, probability in found:
        if tag in filtered:
            continue
        text = tag.replace("_", " ") if opts.deepbooru_use_spaces else tag
        if opts.deepbooru_escape:
            text = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        if opts.interrogate_return_ranks:
            text = f"({text}:{probability:.3f})"
        parts.append(text)
    return ", ".join(parts)


def _model():
    path = files.deepbooru_file()
    with _lock:
        if _cache.get("path") != path:
            _cache.clear()
            _cache.update(path=path, net=deepbooru_model.load(path))
        return _cache["net"]


def probabilities(image: Image.Image) -> tuple[list[str], np.ndarray]:
    net = _model()
    device = shared.device_config.device
    pixels = np.asarray(resize_and_fill(image.convert("RGB")), np.float32) / 255.0
    net.to(device)
    try:
        with torch.inference_mode():
            probs = net(torch.from_numpy(pixels)[None].to(device))[0].float().cpu().numpy()
    finally:
        if not shared.opts.interrogate_keep_models_in_memory:
            net.to("cpu")
    return net.tags, probs


def tag(image: Image.Image) -> str:
    tags, probs = probabilities(image)
    return format_tags(tags, probs, shared.opts)
