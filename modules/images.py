"""Saving generated images with their infotext (generation.md §10-§13).

Files are written to a temporary name and renamed, and a name that exists is never overwritten.
"""
import os
import re
import threading
import time

from PIL import Image

from modules import infotext_utils, shared

_save_lock = threading.Lock()
_INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'


def sanitize_filename_part(text: str, replace_spaces: bool = True) -> str:
    if text is None:
        return ""
    if replace_spaces:
        text = text.replace(" ", "_")
    if shared.cmd_opts.unix_filenames_sanitization:
        text = text.replace("/", "_")
    else:
        text = text.translate({ord(c): "_" for c in _INVALID_FILENAME_CHARS})
    text = text.lstrip()[:shared.cmd_opts.filenames_max_length]
    return text.rstrip(" .")


def _decoration(seed, prompt, save_to_dirs: bool) -> str:
    pattern = shared.opts.samples_filename_pattern
    if pattern:
        return sanitize_filename_part(pattern.replace("[seed]", str(seed))
                                      .replace("[prompt_spaces]", prompt or ""), replace_spaces=False)
    if save_to_dirs or not prompt:
        return str(seed) if seed is not None else ""
    return f"{seed}-{sanitize_filename_part(prompt, replace_spaces=False)}"


def _next_number(folder: str, basename: str) -> int:
    prefix = f"{basename}-" if basename else ""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)")
    numbers = [int(m.group(1)) for name in os.listdir(folder) if (m := pattern.match(name))]
    return max(numbers) + 1 if numbers else 0


def _encode(image: Image.Image, path: str, extension: str, info: str | None, pnginfo_section_name: str):
    opts = shared.opts
    if extension == "png":
        pnginfo = infotext_utils.pnginfo_for(info, pnginfo_section_name) if (info and opts.enable_pnginfo) else None
        image.save(path, format="PNG", pnginfo=pnginfo)
        return
    if image.mode in ("RGBA", "P"):
        image = image.convert("RGB")
    exif = infotext_utils.exif_bytes_for(info) if (info and opts.enable_pnginfo) else None
    kwargs = {"exif": exif} if exif else {}
    if extension in ("jpg", "jpeg"):
        image.save(path, format="JPEG", quality=opts.jpeg_quality, **kwargs)
    elif extension == "webp":
        image.save(path, format="WEBP", quality=opts.jpeg_quality, lossless=opts.webp_lossless, **kwargs)
    else:
        image.save(path, format=extension.upper(), **kwargs)


def save_image(image: Image.Image, path: str, basename: str, seed=None, prompt=None, extension="png",
               info=None, short_filename=False, no_prompt=False, grid=False,
               pnginfo_section_name="parameters", p=None, existing_info=None, forced_filename=None,
               suffix="", save_to_dirs=None) -> tuple[str, str | None]:
    """Save one image; returns (full path, path of the .txt sidecar or None). A1111's signature."""
    opts = shared.opts
    extension = (extension or "png").lower().lstrip(".")
    if extension not in ("png", "jpg", "jpeg", "webp", "avif"):
        print(f"Unknown image format '{extension}'; saving as PNG")
        extension = "png"
    if not os.path.isabs(path):
        path = os.path.join(shared.paths.data, path)
    if save_to_dirs is None:
        save_to_dirs = (grid and opts.grid_save_to_dirs) or (not grid and opts.save_to_dirs and not no_prompt)
    if save_to_dirs:
        path = os.path.join(path, time.strftime("%Y-%m-%d"))
    os.makedirs(path, exist_ok=True)

    decoration = "" if (short_filename or no_prompt) else _decoration(seed, prompt, save_to_dirs)
    with _save_lock:
        if forced_filename:
            stem = forced_filename
        else:
            number = _next_number(path, basename)
            width = 4 if basename else 5
            parts = [basename] if basename else []
            parts.append(f"{number:0{width}}")
            if decoration:
                parts.append(decoration)
            stem = "-".join(parts) + suffix
            while os.path.exists(os.path.join(path, f"{stem}.{extension}")):
                number += 1  # another writer took it; never overwrite
                parts[-2 if decoration else -1] = f"{number:0{width}}"
                stem = "-".join(parts) + suffix
        full = os.path.join(path, f"{stem}.{extension}")
        tmp = full + ".tmp"
        _encode(image, tmp, extension, info, pnginfo_section_name)
        os.replace(tmp, full)

    txt_path = None
    if opts.save_txt and info:
        txt_path = os.path.splitext(full)[0] + ".txt"
        with open(txt_path, "w", encoding="utf8") as file:
            file.write(info + "\n")
    return full, txt_path


def write_params_txt(infotext: str) -> None:
    """params.txt keeps the last generation's infotext (the UI's paste button reads it)."""
    target = shared.paths.params_file
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf8") as file:
        file.write(infotext)
    os.replace(tmp, target)
