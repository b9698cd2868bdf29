"""What a result gallery hands to its buttons (Save, Send to, Replace preview): its value items
in any of Gradio's forms, and the infotext list kept beside it."""
from __future__ import annotations

from PIL import Image


def open_image(item) -> Image.Image:
    """A gallery value item: a PIL image, a path, a (media, caption) pair or a FileData-like dict."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, dict):
        item = item.get("image", item)
        item = item.get("path") if isinstance(item, dict) else item
    if isinstance(item, Image.Image):
        return item
    if hasattr(item, "path"):
        item = item.path
    return Image.open(item)


def infotext_list(infotexts) -> list[str]:
    """The per-image infotexts (a single string counts as the first image's; None entries as "")."""
    if infotexts is None:
        return []
    if isinstance(infotexts, str):
        return [infotexts]
    return [t or "" for t in infotexts]
