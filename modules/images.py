"""Saving images: folders and file names (generation.md §11), formats and metadata (§13), grids (§12).

An image is encoded into a hidden temporary file first and then published under its final name
with an operation that fails when the name exists (a hard link, or O_EXCL where links are not
available). So a reader never sees half a file, an encoder error leaves nothing behind, and two
writers (threads or processes) that pick the same number never overwrite each other: the loser
takes the next number.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib.util
import logging
import math
import os
import re
import secrets
import string
import sys
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from PIL import Image, ImageColor, ImageOps

from modules import infotext_utils, shared
from modules.image_formats import _EXIF_FORMATS, _FORMATS, _MAX_SIDE, _pillow_format  # noqa: F401
from modules.image_formats import check_format_setting  # noqa: F401 (its earlier home)
from modules.infotext_utils import read_info_from_image  # noqa: F401 - A1111 exports it from here

log = logging.getLogger(__name__)

# -----------------------------------------------------------------------------------------------
# File-name parts

# Characters Windows refuses (macOS refuses ':' in Finder, Linux only '/'); CR/LF/TAB and other
# control characters are refused by Windows and break shells elsewhere.
_FORBIDDEN = {ord(c): "_" for c in '#<>:"/\\|?*'} | {i: "_" for i in range(32)}
_UNIX_FORBIDDEN = {ord("/"): "_", 0: "_"}
_WINDOWS_DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                         *(f"LPT{i}" for i in range(1, 10))}
MAX_SEQUENCE_TRIES = 500  # §11.1 step 3


def _translate_forbidden(text: str) -> str:
    table = _UNIX_FORBIDDEN if getattr(shared.cmd_opts, "unix_filenames_sanitization", False) else _FORBIDDEN
    return text.translate(table)


def sanitize_filename_part(text, replace_spaces: bool = True):
    """One value put into a file name (§11.1 "Sanitising a part"); None stays None."""
    if text is None:
        return None
    text = str(text)
    if replace_spaces:
        text = text.replace(" ", "_")
    text = _translate_forbidden(text)
    max_length = getattr(shared.cmd_opts, "filenames_max_length", 128)
    return text.lstrip()[:max_length].rstrip(" .")


def _name_units(text: str) -> bytes:
    # file-name limits count UTF-16 units on Windows and bytes elsewhere
    return text.encode("utf-16-le") if os.name == "nt" else os.fsencode(text)


def _cut_name(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` units of the file system's name encoding."""
    if os.name == "nt":
        return text.encode("utf-16-le")[:limit * 2].decode("utf-16-le", "ignore")
    encoded = os.fsencode(text)
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf; NTFS allows 255
        return 255


def _safe_stem(stem: str) -> str:
    """A stem every OS accepts: no trailing dot or space, not a Windows device name."""
    stem = stem.rstrip(" .") or "_"
    if stem.split(".")[0].upper() in _WINDOWS_DEVICE_NAMES:
        stem = f"_{stem}"
    return stem


def _fit_stem(stem: str, folder: str, extension: str, extra: str = "") -> str:
    """Cut `stem` so that stem + extra + the longest companion extension fits one name."""
    reserve = len(_name_units(extra)) + len(_name_units("." + extension)) + len(_name_units(".txt"))
    stem = _cut_name(stem, max(_name_max(folder) - reserve, 1))
    return _safe_stem(stem) + extra


def _folder_path(base: str, relative: str) -> str:
    """Join a pattern-made folder (maybe nested with '/') under base, each level made safe."""
    parts = []
    for part in re.split(r"[\\/]" if os.name == "nt" else "/", relative):
        part = part.strip()
        if part in ("", ".", ".."):
            continue
        parts.append(_safe_stem(_cut_name(part, _name_max(base) if os.path.isdir(base) else 255)))
    return os.path.join(base, *parts)


def get_next_sequence_number(path: str, basename: str) -> int:
    """1 + the largest number that starts a file name in `path` after `basename-` (0 if none)."""
    prefix = f"{basename}-" if basename else ""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)(?:[-.]|$)")
    largest = -1
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    for name in names:
        match = pattern.match(name)
        if match:
            largest = max(largest, int(match.group(1)))
    return largest + 1


# -----------------------------------------------------------------------------------------------
# Pattern tags (§11.2)

NOTHING_AND_SKIP_PREVIOUS_TEXT = object()
_TAG_RE = re.compile(r"\[([^\[\]]+)\]")
_ARG_RE = re.compile(r"<([^>]*)>")
_TRAILING_SEPARATOR_RE = re.compile(r"[\W_]+$")
_NON_LETTERS_RE = re.compile(rf"[\s{re.escape(string.punctuation)}]+")
# ValueError etc.: a bad tag argument (e.g. [prompt_hash<x>]) keeps the tag text instead of failing
_TAG_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, LookupError)


def _p_attr(p, name, default=None):
    return getattr(p, name, default) if p is not None else default


def _current_model(p):
    model = _p_attr(p, "sd_model")
    return model if model is not None else getattr(shared, "sd_model", None)


class FilenameGenerator:
    """Expands `[tag]` patterns for file and folder names. Extensions may add entries to
    `FilenameGenerator.replacements` (tag -> function(self, *args))."""

    default_time_format = "%Y%m%d%H%M%S"
    replacements: dict = {}

    def __init__(self, p, seed, prompt, image, zip=False, basename=""):
        self.p = p
        self.seed = seed
        self.prompt = prompt
        self.image = image
        self.zip = zip
        self.basename = basename

    def apply(self, x: str) -> str:
        out = []
        position = 0
        for match in _TAG_RE.finditer(x or ""):
            literal = x[position:match.start()]
            position = match.end()
            value = self._evaluate(match.group(1))
            if value is NOTHING_AND_SKIP_PREVIOUS_TEXT:
                # the separator before a tag with no value goes too: "img-[batch_number]" -> "img"
                out.append(_TRAILING_SEPARATOR_RE.sub("", literal))
                continue
            out.append(literal + (match.group(0) if value is None else str(value)))
        out.append((x or "")[position:])
        return "".join(out)

    def _evaluate(self, body: str):
        name, _, rest = body.partition("<")
        args = _ARG_RE.findall("<" + rest) if rest else []
        function = self.replacements.get(name.strip().lower())
        if function is None:
            return None  # unknown tag: kept literally
        try:
            return function(self, *args)
        except _TAG_ERRORS as e:
            log.warning("File name tag [%s] failed: %s", body, e)
            return None

    # -- tag helpers ---------------------------------------------------------------------------
    def _p_or_nothing(self, name):
        value = _p_attr(self.p, name)
        return NOTHING_AND_SKIP_PREVIOUS_TEXT if value is None else value

    def _batch_index(self) -> int:
        index = _p_attr(self.p, "batch_index")
        if index is not None:
            return int(index)
        # processing did not record it: find this image's seed in the batch
        seeds = list(_p_attr(self.p, "all_seeds") or [])
        if self.seed in seeds:
            return seeds.index(self.seed) % max(int(_p_attr(self.p, "batch_size", 1) or 1), 1)
        return 0

    def prompt_no_style(self) -> str:
        from modules import styles
        text = self.prompt or ""
        style_names = _p_attr(self.p, "styles") or []
        for style in styles.get_database().get_style_prompts(style_names):
            for part in style.split("{prompt}"):
                if part.strip():
                    text = text.replace(part, "")
            text = text.replace(", ,", ",")
        return sanitize_filename_part(text.strip().strip(",").strip(), replace_spaces=False)

    def prompt_words(self) -> str:
        words = [w for w in _NON_LETTERS_RE.split(self.prompt or "") if w] or ["empty"]
        return sanitize_filename_part(" ".join(words[:shared.opts.directories_max_prompt_words]),
                                      replace_spaces=False)

    def datetime(self, *args) -> str:
        time_format = args[0] if args and args[0] else self.default_time_format
        zone = None
        if len(args) > 1 and args[1]:
            try:
                zone = ZoneInfo(args[1])
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("Unknown time zone %r in a file name pattern; using local time", args[1])
        now = datetime.datetime.now(zone)
        try:
            text = now.strftime(time_format)
        except (ValueError, TypeError):
            text = now.strftime(self.default_time_format)
        return sanitize_filename_part(text, replace_spaces=False)

    def string_hash(self, text: str, *args) -> str:
        length = int(args[0]) if args and args[0] else 8
        return hashlib.sha256((text or "").encode()).hexdigest()[:length]

    def image_hash(self, *args):
        if self.image is None:
            return None
        length = int(args[0]) if args and args[0] else None
        return hashlib.sha256(self.image.tobytes()).hexdigest()[:length]

    def hasprompt(self, *args) -> str:
        lowered = (self.prompt or "").lower()
        out = ""
        for arg in args:
            if not arg:
                continue
            word, _, default = arg.partition("|")
            out += word.lower() if word.lower() in lowered else default
        return sanitize_filename_part(out)

    def sampler_scheduler(self, with_sampler: bool = True):
        sampler = _p_attr(self.p, "sampler_name")
        if sampler is None:
            return NOTHING_AND_SKIP_PREVIOUS_TEXT
        label = _scheduler_label(sampler, _p_attr(self.p, "scheduler"))
        return sanitize_filename_part(f"{sampler} {label}" if with_sampler else label, replace_spaces=False)

    def vae_filename(self) -> str:
        model = _current_model(self.p)
        path = getattr(model, "loaded_vae_file", None) if model is not None else None
        if not path:
            return "NoneType"
        name = os.path.basename(path)
        pieces = name.split(".")
        return pieces[1] if len(pieces) > 1 and pieces[0] == "" else pieces[0]

    def model_name(self):
        name = _p_attr(self.p, "sd_model_name")
        if name is None:
            model = _current_model(self.p)
            info = getattr(model, "sd_checkpoint_info", None)
            name = getattr(info, "name_for_extra", None)
        return NOTHING_AND_SKIP_PREVIOUS_TEXT if name is None else sanitize_filename_part(name, replace_spaces=False)

    def model_hash(self):
        value = _p_attr(self.p, "sd_model_hash")
        if value is None:
            value = getattr(_current_model(self.p), "sd_model_hash", None)
        return NOTHING_AND_SKIP_PREVIOUS_TEXT if value is None else value


def _scheduler_label(sampler_name: str, scheduler: str | None) -> str:
    """The schedule's label; Automatic resolved to the sampler's own default (§11.2)."""
    from modules import sd_samplers
    name = scheduler
    if not name or name.lower() == "automatic":
        try:
            name = sd_samplers.find_sampler(sampler_name).options.get("scheduler")
        except sd_samplers.SamplerNotFound:
            name = None
    if not name:
        return "Automatic"
    from modules import sd_schedulers
    for entry in sd_schedulers.schedulers:
        if name.lower() in (entry.name.lower(), entry.label.lower()):
            return entry.label
    return name.capitalize()


def _seed_last(g: FilenameGenerator):
    if g.p is None or _p_attr(g.p, "batch_size", 1) == 1 or not _p_attr(g.p, "all_seeds"):
        return NOTHING_AND_SKIP_PREVIOUS_TEXT
    return g.p.all_seeds[-1]


def _batch_number(g: FilenameGenerator):
    if g.p is None or g.zip or _p_attr(g.p, "batch_size", 1) == 1:
        return NOTHING_AND_SKIP_PREVIOUS_TEXT
    return g._batch_index() + 1


def _generation_number(g: FilenameGenerator):
    p = g.p
    if p is None or g.zip or (_p_attr(p, "n_iter", 1) == 1 and _p_attr(p, "batch_size", 1) == 1):
        return NOTHING_AND_SKIP_PREVIOUS_TEXT
    return _p_attr(p, "iteration", 0) * p.batch_size + g._batch_index() + 1


def _size(g: FilenameGenerator, side: str):
    if g.image is not None:
        return getattr(g.image, side)
    return g._p_or_nothing(side)


def _styles(g: FilenameGenerator):
    if g.p is None:
        return NOTHING_AND_SKIP_PREVIOUS_TEXT
    names = ", ".join(s for s in (_p_attr(g.p, "styles") or []) if s)
    return sanitize_filename_part(names or "None", replace_spaces=False)


def _negative(g: FilenameGenerator) -> str:
    return _p_attr(g.p, "negative_prompt") or ""


def _denoising(g: FilenameGenerator):
    value = _p_attr(g.p, "denoising_strength")
    return value if value else NOTHING_AND_SKIP_PREVIOUS_TEXT


FilenameGenerator.replacements = {
    "basename": lambda g: g.basename or "img",
    "seed": lambda g: g.seed if g.seed is not None else "",
    "seed_first": lambda g: (_p_attr(g.p, "all_seeds") or [g.seed])[0],
    "seed_last": _seed_last,
    "steps": lambda g: g._p_or_nothing("steps"),
    "cfg": lambda g: g._p_or_nothing("cfg_scale"),
    "width": lambda g: _size(g, "width"),
    "height": lambda g: _size(g, "height"),
    "styles": _styles,
    "sampler": lambda g: (sanitize_filename_part(g.p.sampler_name, replace_spaces=False)
                          if _p_attr(g.p, "sampler_name") else NOTHING_AND_SKIP_PREVIOUS_TEXT),
    "sampler_scheduler": lambda g: g.sampler_scheduler(True),
    "scheduler": lambda g: g.sampler_scheduler(False),
    "model_hash": FilenameGenerator.model_hash,
    "model_name": FilenameGenerator.model_name,
    "date": lambda g: datetime.datetime.now().strftime("%Y-%m-%d"),
    "datetime": FilenameGenerator.datetime,
    "job_timestamp": lambda g: _p_attr(g.p, "job_timestamp") or shared.state.job_timestamp,
    "prompt_hash": lambda g, *a: g.string_hash(g.prompt, *a),
    "negative_prompt_hash": lambda g, *a: g.string_hash(_negative(g), *a),
    "full_prompt_hash": lambda g, *a: g.string_hash(f"{g.prompt or ''} {_negative(g)}", *a),
    "prompt": lambda g: sanitize_filename_part(g.prompt),
    "prompt_no_styles": FilenameGenerator.prompt_no_style,
    "prompt_spaces": lambda g: sanitize_filename_part(g.prompt, replace_spaces=False),
    "prompt_words": FilenameGenerator.prompt_words,
    "batch_number": _batch_number,
    "batch_size": lambda g: g._p_or_nothing("batch_size"),
    "generation_number": _generation_number,
    "hasprompt": FilenameGenerator.hasprompt,
    "clip_skip": lambda g: shared.opts.CLIP_stop_at_last_layers,
    "denoising": _denoising,
    "user": lambda g: sanitize_filename_part(g.p.user) if _p_attr(g.p, "user") else NOTHING_AND_SKIP_PREVIOUS_TEXT,
    "vae_filename": FilenameGenerator.vae_filename,
    "none": lambda g: "",
    "image_hash": FilenameGenerator.image_hash,
}


# -----------------------------------------------------------------------------------------------
# Encoding (§13)

def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit grayscale -> 8-bit L (JPEG and WebP cannot hold it)."""
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray((np.clip(values, 0, 65535) / 257).round().astype(np.uint8), mode="L")


def _prepared(image: Image.Image, fmt: str) -> Image.Image:
    if fmt not in _EXIF_FORMATS:
        return image
    if image.mode.startswith("I"):
        image = _to_8bit(image)
    keep = ("RGB", "L") if fmt == "JPEG" else ("RGB",)
    return image if image.mode in keep else image.convert("RGB")


def _encode(image: Image.Image, file, fmt: str, pnginfo: dict, section: str) -> None:
    """Write `image` as `fmt` to an open binary file, with the metadata of `pnginfo`."""
    opts = shared.opts
    image = _prepared(image, fmt)
    text = pnginfo.get(section)
    embed = bool(opts.enable_pnginfo)
    if fmt == "PNG":
        chunks = infotext_utils.pnginfo_for(text, section, pnginfo) if embed and pnginfo else None
        image.save(file, format="PNG", pnginfo=chunks)
    elif fmt in _EXIF_FORMATS:
        kwargs = {"quality": opts.jpeg_quality}
        if fmt == "WEBP":
            kwargs["lossless"] = opts.webp_lossless
        if embed and text:
            kwargs["exif"] = infotext_utils.exif_bytes_for(text)
        image.save(file, format=fmt, **kwargs)
    elif fmt == "GIF" and embed and text:
        image.save(file, format="GIF", comment=text.encode("utf-8"))
    else:
        image.save(file, format=fmt)


def _open_temp(folder: str):
    """A new hidden temp file in `folder` (same file system as the target, so rename is atomic).
    Created with os.open so the file gets the normal permissions (mkstemp would make it 0600)."""
    while True:
        tmp = os.path.join(folder, f".{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, "wb")


def _write_temp(folder: str, write) -> str:
    """Run write(file) into a temp file; nothing stays behind when it raises."""
    tmp, file = _open_temp(folder)
    try:
        with file:
            write(file)
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def _claim(tmp: str, target: str) -> bool:
    """Publish tmp as target only if target does not exist yet (atomic across processes)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system (FAT, some network shares)
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            return False
        try:
            os.replace(tmp, target)
        except OSError:
            os.remove(target)  # do not leave the empty placeholder behind
            raise
        return True
    os.remove(tmp)
    return True


def _publish(tmp: str, folder: str, stems, extension: str) -> str:
    """Give tmp the first free name of `stems` (an iterable); returns the full path."""
    for stem in stems:
        target = os.path.join(folder, f"{stem}.{extension}")
        if _claim(tmp, target):
            return target
    raise FileExistsError(f"no free file name in {folder}")


def _publish_fixed(tmp: str, folder: str, stem: str, extension: str) -> str:
    """A name without a running number: Replace, or add -1, -2, ... (save_images_replace_action)."""
    if shared.opts.save_images_replace_action == "Replace":
        target = os.path.join(folder, f"{stem}.{extension}")
        os.replace(tmp, target)
        return target
    stems = (stem if n == 0 else _fit_stem(stem, folder, extension, f"-{n}") for n in range(100000))
    return _publish(tmp, folder, stems, extension)


def write_new_file(folder: str, stem: str, extension: str, write) -> str:
    """Write a new file `<stem>.<extension>` (or `<stem>-1.<extension>`, ... when taken) from
    write(binary file), atomically and never replacing anything; returns its path."""
    os.makedirs(folder, exist_ok=True)
    stem = _fit_stem(_translate_forbidden(stem) or "_", folder, extension)
    tmp = _write_temp(folder, write)
    try:
        stems = (stem if n == 0 else _fit_stem(stem, folder, extension, f"-{n}") for n in range(100000))
        return _publish(tmp, folder, stems, extension)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_file_atomically(path: str, write) -> None:
    """Replace `path` with what write(file) produces, via a temp file and rename."""
    os.replace(_write_temp(os.path.dirname(path) or ".", write), path)


def save_image_with_geninfo(image: Image.Image, geninfo: str | None, filename: str,
                            extension: str | None = None, existing_pnginfo: dict | None = None,
                            pnginfo_section_name: str = "parameters") -> None:
    """Write `image` to `filename` (format from the extension) with `geninfo` embedded."""
    extension = (extension or os.path.splitext(filename)[1]).lower().lstrip(".")
    fmt = _pillow_format(extension) or "PNG"
    items = dict(existing_pnginfo or {})
    if geninfo is not None:
        items[pnginfo_section_name] = geninfo
    write_file_atomically(filename, lambda f: _encode(image, f, fmt, items, pnginfo_section_name))


# -----------------------------------------------------------------------------------------------
# save_image

def script_callbacks_module():
    """modules.script_callbacks when this build has it (on_before_image_saved / on_image_saved)."""
    module = sys.modules.get("modules.script_callbacks")
    if module is None and importlib.util.find_spec("modules.script_callbacks") is not None:
        module = importlib.import_module("modules.script_callbacks")
    return module


def _run_callback(module, name: str, params) -> None:
    callback = getattr(module, name, None) if module is not None else None
    if callback is not None:
        callback(params)


def _choose_extension(extension: str, image: Image.Image) -> str:
    extension = (extension or "png").lower().lstrip(".")
    fmt = _pillow_format(extension)
    if fmt is None:
        log.warning("Unknown image format '%s'; saving as PNG", extension)
        return "png"
    if max(image.size) > _MAX_SIDE.get(fmt, math.inf):
        log.info("Image is too large for %s (%dx%d); saving as PNG", fmt, *image.size)
        return "png"
    return extension


def save_image(image: Image.Image, path: str, basename: str, seed=None, prompt=None, extension="png",
               info=None, short_filename=False, no_prompt=False, grid=False,
               pnginfo_section_name="parameters", p=None, existing_info=None, forced_filename=None,
               suffix="", save_to_dirs=None) -> tuple[str, str | None]:
    """Save one image as §11 says; returns (full path, path of the .txt sidecar or None)."""
    opts = shared.opts
    namegen = FilenameGenerator(p, seed, prompt, image, basename=basename)
    extension = _choose_extension(extension, image)
    if not os.path.isabs(path):
        path = os.path.join(shared.paths.data, path)

    if save_to_dirs is None:
        save_to_dirs = (grid and opts.grid_save_to_dirs) or (not grid and opts.save_to_dirs and not no_prompt)
    if save_to_dirs:
        dirname = namegen.apply(opts.directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /")
        path = _folder_path(path, dirname)
    os.makedirs(path, exist_ok=True)

    pnginfo = dict(existing_info or {})
    if info is not None:
        pnginfo[pnginfo_section_name] = info

    numbered, stem = False, None
    if forced_filename is not None:
        stem = _fit_stem(_translate_forbidden(forced_filename) if forced_filename else "_", path, extension)
    else:
        if short_filename or seed is None:
            decoration = ""
        else:
            decoration = opts.samples_filename_pattern or ("[seed]" if save_to_dirs else "[seed]-[prompt_spaces]")
            decoration = _translate_forbidden(namegen.apply(decoration))
        decoration += suffix or ""
        numbered = bool(opts.save_images_add_number) or decoration == ""
        if not numbered:
            stem = _fit_stem(decoration, path, extension)

    def numbered_stem(number: int) -> str:
        head = f"{number:05}" if not basename else f"{basename}-{number:04}"
        return _fit_stem(f"{head}-{decoration}" if decoration else head, path, extension)

    first_number = get_next_sequence_number(path, basename) if numbered else 0
    fullfn = os.path.join(path, f"{numbered_stem(first_number) if numbered else stem}.{extension}")

    callbacks = script_callbacks_module()
    params = None
    if callbacks is not None and hasattr(callbacks, "ImageSaveParams"):
        params = callbacks.ImageSaveParams(image, p, fullfn, pnginfo)
        _run_callback(callbacks, "before_image_saved_callback", params)
        image, pnginfo = params.image, params.pnginfo
        if params.filename != fullfn:  # a callback chose the name: honour it as a fixed name
            path, fname = os.path.split(params.filename)
            stem, extension = os.path.splitext(fname)[0], os.path.splitext(fname)[1].lstrip(".") or extension
            numbered = False
            os.makedirs(path, exist_ok=True)

    fmt = _pillow_format(extension) or "PNG"
    tmp = _write_temp(path, lambda f: _encode(image, f, fmt, pnginfo, pnginfo_section_name))
    try:
        if numbered:
            stems = (numbered_stem(first_number + i) for i in range(MAX_SEQUENCE_TRIES))
            try:
                fullfn = _publish(tmp, path, stems, extension)
            except FileExistsError:  # 500 numbers taken: the replace action decides
                fullfn = _publish_fixed(tmp, path, numbered_stem(first_number + MAX_SEQUENCE_TRIES - 1), extension)
        else:
            fullfn = _publish_fixed(tmp, path, stem, extension)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

    image.already_saved_as = fullfn
    stem_path = os.path.splitext(fullfn)[0]
    if opts.export_for_4chan:
        _save_downscaled_copy(image, fullfn, stem_path, extension, pnginfo.get(pnginfo_section_name))

    txt_fullfn = None
    if opts.save_txt and info is not None:
        txt_fullfn = f"{stem_path}.txt"
        write_file_atomically(txt_fullfn, lambda f: f.write(f"{info}\n".encode("utf8")))

    if params is not None:
        params.filename = fullfn
        _run_callback(callbacks, "image_saved_callback", params)
    if opts.samples_log_stdout:
        print(f"Saved: {fullfn}")
    return fullfn, txt_fullfn


def _save_downscaled_copy(image: Image.Image, fullfn: str, stem_path: str, extension: str, text) -> None:
    """§11.1 step 7 (export_for_4chan): a .jpg next to large images, scaled down when oversized."""
    opts = shared.opts
    if extension in ("jpg", "jpeg"):
        return  # the image already is a JPEG; a copy would replace it
    limit = opts.target_side_length
    oversize = max(image.size) > limit
    if not oversize and os.path.getsize(fullfn) <= opts.img_downscale_threshold * 1024 * 1024:
        return
    copy = image
    if oversize:
        scale = limit / max(image.size)
        copy = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                            Image.LANCZOS)
    items = {"parameters": text} if text else {}
    write_file_atomically(f"{stem_path}.jpg", lambda f: _encode(copy, f, "JPEG", items, "parameters"))


def write_params_txt(infotext: str) -> None:
    """params.txt keeps the last generation's infotext (the UI's paste button reads it)."""
    target = shared.paths.params_file
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    write_file_atomically(target, lambda f: f.write(infotext.encode("utf8")))


# -----------------------------------------------------------------------------------------------
# Grids (§12)

def grid_rows(count: int, batch_size: int = 1) -> int:
    """Rows of an automatic grid for `count` images (settings n_rows, grid_prevent_empty_spots)."""
    opts = shared.opts
    if opts.n_rows > 0:
        rows = opts.n_rows
    elif opts.n_rows == 0:
        rows = batch_size
    elif opts.grid_prevent_empty_spots:
        rows = max(math.isqrt(count), 1)
        while count % rows:
            rows -= 1
    else:
        rows = round(math.sqrt(count))
    return max(1, min(rows, count))


def image_grid(imgs: list, batch_size: int = 1, rows: int | None = None) -> Image.Image:
    """Images left to right, top to bottom, each centred in a cell of the largest width/height."""
    if not imgs:
        raise ValueError("image_grid needs at least one image")
    rows = grid_rows(len(imgs), batch_size) if rows is None else max(1, min(rows, len(imgs)))
    cols = math.ceil(len(imgs) / rows)

    callbacks = script_callbacks_module()
    if callbacks is not None and hasattr(callbacks, "ImageGridLoopParams"):
        params = callbacks.ImageGridLoopParams(imgs, cols, rows)
        _run_callback(callbacks, "image_grid_callback", params)
        imgs, cols, rows = params.imgs, params.cols, params.rows

    w = max(img.width for img in imgs)
    h = max(img.height for img in imgs)
    background = ImageColor.getcolor(shared.opts.grid_background_color, "RGB")
    grid = Image.new("RGB", (cols * w, rows * h), background)
    for i, img in enumerate(imgs):
        x = (i % cols) * w + (w - img.width) // 2
        y = (i // cols) * h + (h - img.height) // 2
        grid.paste(img, (x, y), img if img.mode == "RGBA" else None)
    return grid


@dataclass(frozen=True)
class GridPlan:
    make: bool    # build a grid at all
    save: bool    # write it to disk (grid_save)
    show: bool    # put it first in the results (return_grid)


def grid_plan(image_count: int, do_not_save_grid: bool = False) -> GridPlan:
    """§12 / api.md §8.4: a grid needs ≥ 2 images (unless grid_only_if_multiple is off), a job that
    may save grids, and grid_save or return_grid."""
    opts = shared.opts
    enough = image_count >= 2 or (image_count == 1 and not opts.grid_only_if_multiple)
    allowed = enough and not do_not_save_grid
    save = allowed and bool(opts.grid_save)
    show = allowed and bool(opts.return_grid)
    return GridPlan(make=save or show, save=save, show=show)


def grid_folder(p) -> str:
    """Where the job's grids go: p.outpath_grids, else outdir_grids, else the tab's grid folder."""
    opts = shared.opts
    tab = "outdir_txt2img_grids" if getattr(p, "is_txt2img", True) else "outdir_img2img_grids"
    return getattr(p, "outpath_grids", None) or opts.outdir_grids or getattr(opts, tab)


def make_job_grid(p, output_images: list, infotext: str | None) -> tuple[Image.Image | None, GridPlan]:
    """Build and save the job's grid when §12 asks for one. Returns (grid or None, plan);
    the caller puts the grid first in the results when plan.show."""
    plan = grid_plan(len(output_images), getattr(p, "do_not_save_grid", False))
    if not plan.make:
        return None, plan
    grid = image_grid(output_images, getattr(p, "batch_size", 1))
    if plan.save:
        seeds = getattr(p, "all_seeds", None) or [getattr(p, "seed", None)]
        prompts = getattr(p, "all_prompts", None) or [getattr(p, "prompt", "")]
        save_image(grid, grid_folder(p), "grid", seeds[0], prompts[0], shared.opts.grid_format,
                   info=infotext, short_filename=not shared.opts.grid_extended_filename, p=p, grid=True)
    return grid, plan


# -----------------------------------------------------------------------------------------------
# Small helpers extensions import from this module

def fix_image(image: Image.Image | None) -> Image.Image | None:
    """Apply the EXIF orientation; an image whose EXIF cannot be read is returned as is."""
    if image is None:
        return None
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError) as e:
        log.warning("Could not apply EXIF orientation: %s", e)
        return image


def read(fp, **kwargs) -> Image.Image:
    """Open an image and apply its EXIF orientation."""
    image = Image.open(fp, **kwargs)
    return fix_image(image)


def flatten(img: Image.Image, bgcolor) -> Image.Image:
    """Replace transparency with `bgcolor`; returns an RGB image."""
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


# Labelled grids (X/Y/Z plot, Prompt matrix) live in modules.grid_annotations; A1111 names here.
from modules.grid_annotations import GridAnnotation, draw_grid_annotations, draw_prompt_matrix  # noqa: E402,F401

# Overlapping tiles (SD upscale, Poor man's outpainting) live in modules.image_tiles; A1111 names here.
from modules.image_tiles import Grid, combine_grid, split_grid  # noqa: E402,F401
