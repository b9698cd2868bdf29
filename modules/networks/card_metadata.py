"""What the cards show from a network file's own metadata (networks.md §1.2, §8.2, §8.5, §8.6):
the `ssmd_cover_images` previews, the metadata text of the card's metadata view, and the
training facts of the edit dialog. Pure functions over the metadata dict."""
from __future__ import annotations

import base64
import binascii
import json
import time
from collections import Counter

COVER_KEY = "ssmd_cover_images"


def cover_images(metadata: dict) -> list[str]:
    """The base64 entries of `ssmd_cover_images` (a JSON list kept as a string, §1.2); [] if none
    or not a list of strings."""
    value = (metadata or {}).get(COVER_KEY)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return [item if isinstance(item, str) else "" for item in value]


def first_cover_index(metadata: dict) -> int | None:
    """Index of the first non-empty cover image (the card preview fallback of Lora files)."""
    for index, item in enumerate(cover_images(metadata)):
        if item:
            return index
    return None


def decode_cover(metadata: dict, index: int) -> bytes:
    """The image bytes of cover `index`; LookupError with the reason when there is none."""
    images = cover_images(metadata)
    if not 0 <= index < len(images) or not images[index]:
        raise LookupError(f"no cover image {index} (the file has {sum(1 for i in images if i)})")
    data = images[index]
    if data.startswith("data:") and "," in data:  # a data URL is accepted too
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as e:
        raise LookupError(f"cover image {index} is not valid base64: {e}") from None


def image_media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


def metadata_text(metadata: dict) -> str | None:
    """Indented JSON of the metadata without the cover images, None when there is nothing to show."""
    shown = {k: v for k, v in (metadata or {}).items() if k != COVER_KEY}
    if not shown:
        return None
    return json.dumps(shown, indent=4, ensure_ascii=False, default=str)


# ------------------------------------------------------------------------------------- training facts

def _as_dict(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def tag_counts(metadata: dict) -> Counter:
    """`ss_tag_frequency` counts summed over datasets; when the mean tag length is >= 16 the tags
    are long captions, re-split into words of >= 3 characters (§8.5)."""
    counts: Counter = Counter()
    for dataset in _as_dict(metadata.get("ss_tag_frequency")).values():
        for tag, count in _as_dict(dataset).items():
            number = _number(count)
            if number is not None:
                counts[str(tag).strip()] += int(number)
    if counts and sum(len(t) for t in counts) / len(counts) >= 16:
        words: Counter = Counter()
        for tag, count in counts.items():
            for word in tag.replace(",", " ").split():
                if len(word) >= 3:
                    words[word] += count
        counts = words
    return counts


def training_info(metadata: dict) -> dict:
    """The facts the Lora edit dialog shows from kohya `ss_*` metadata, only those present:
    output name, model, clip skip, network module, training date (UTC `YYYY-MM-DD HH:MM`), top 4
    bucket resolutions (`WxH`, by image count), dataset size (sum of `img_count`), 24 most frequent
    tags as [(tag, count)], most frequent first (ties keep first-seen order)."""
    metadata = metadata or {}
    info: dict = {}
    for label, key in (("output name", "ss_output_name"), ("model", "ss_sd_model_name"),
                       ("clip skip", "ss_clip_skip"), ("network module", "ss_network_module")):
        value = metadata.get(key)
        if value not in (None, "", "None"):
            info[label] = str(value)
    started = _number(metadata.get("ss_training_started_at"))
    if started is not None:
        info["training date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(started))
    buckets = _as_dict(_as_dict(metadata.get("ss_bucket_info")).get("buckets"))
    resolutions = []
    for bucket in buckets.values():
        bucket = _as_dict(bucket)
        resolution, count = bucket.get("resolution"), _number(bucket.get("count"))
        if isinstance(resolution, (list, tuple)) and len(resolution) == 2 and count is not None:
            resolutions.append((count, f"{int(resolution[0])}x{int(resolution[1])}"))
    if resolutions:
        resolutions.sort(key=lambda item: -item[0])  # stable: equal counts keep bucket order
        info["resolutions"] = [text for _count, text in resolutions[:4]]
    dirs = _as_dict(metadata.get("ss_dataset_dirs"))
    if dirs:
        info["dataset size"] = int(sum(_number(_as_dict(d).get("img_count")) or 0 for d in dirs.values()))
    tags = tag_counts(metadata)
    if tags:
        info["tags"] = tags.most_common(24)
    return info
