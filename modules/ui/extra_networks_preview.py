"""The edit dialog's "Replace preview" (networks.md §8.2): the image selected in the tab's gallery,
with its infotext, becomes the card's preview beside the network file."""
from __future__ import annotations

import os

from modules import images
from modules.networks import cards
from modules.ui.gallery_values import infotext_list, open_image

# pages whose previews are `<stem>.<ext>`; the others (TI, hypernets) use `<stem>.preview.<ext>`
PLAIN_PREVIEW_PAGES = ("lora", "checkpoints")


def preview_path(page: str, filename: str, samples_format: str) -> str:
    stem = os.path.splitext(filename)[0]
    extension = (samples_format or "png").lower().lstrip(".")
    return f"{stem}.{extension}" if page in PLAIN_PREVIEW_PAGES else f"{stem}.preview.{extension}"


def selected_image(gallery_value, infotexts, selected_index):
    """(image, infotext) of the selected gallery item; ValueError with a message when none is."""
    items = list(gallery_value or [])
    try:
        index = int(selected_index)
    except (TypeError, ValueError):
        index = -1
    if not items:
        raise ValueError("There is no image in the gallery: generate one, select it, then press Replace preview")
    if not 0 <= index < len(items):
        raise ValueError("No image selected: click an image in the gallery first")
    texts = infotext_list(infotexts)
    return open_image(items[index]), (texts[index] if index < len(texts) else None)


def shown_preview(filename: str, samples_format: str) -> str | None:
    """The preview file the card shows now (never the network file itself: a TI embedding may be a
    `.png`), or None."""
    own = os.path.realpath(filename)
    return next((c for c in cards.preview_candidates(filename, samples_format)
                 if os.path.isfile(c) and os.path.realpath(c) != own), None)


def save_preview(page: str, filename: str, image, infotext: str | None, samples_format: str) -> str:
    """Write the preview of the network file `filename` (infotext in the image as our saving does:
    the PNG text chunk `parameters`, EXIF for JPEG/WebP) and return its path. The preview the card
    shows now is overwritten in its own format, so the new one is what the card shows and no other
    file is touched; without one it is `preview_path` in the samples format."""
    path = shown_preview(filename, samples_format) or preview_path(page, filename, samples_format)
    images.save_image_with_geninfo(image, infotext or None, path)
    return path
