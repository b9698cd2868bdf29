"""Infotext: the text record of generation parameters (shared/spec/infotext.md).

Writing (`build_infotext`), parsing (`parse_generation_parameters`) and reading/writing it in image
metadata (PNG text chunks, EXIF UserComment, GIF comment, NovelAI PNGs). Plain functions with no
server state: callers pass the relevant settings as arguments.
"""
from __future__ import annotations

import json
import logging
import math
import re
import struct
from typing import Any, Iterable

from packaging import version as _version
from PIL import Image, PngImagePlugin

log = logging.getLogger(__name__)

# Our Version value (§3.2): the A1111 behaviour we reproduce, then our own name and version.
A1111_VERSION = "v1.10.1"
APP_NAME = "sdwebui"
APP_VERSION = "0.1.0"
VERSION_STRING = f"{A1111_VERSION}-{APP_NAME}-{APP_VERSION}"


def version_string() -> str:
    """The value we write as `Version`."""
    return VERSION_STRING


# §3.1, in writing order.
FIXED_KEYS = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration",
    "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE",
    "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "Tiling",
)
TRAILING_KEYS = ("Version", "User")

# ---------------------------------------------------------------------------------------------
# Writing


def quote(value: Any) -> str:
    """Render a value for the parameters line (§3.3): JSON string when it would break the line."""
    text = str(value)
    if "," in text or "\n" in text or ":" in text or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def order_generation_params(params: dict) -> dict:
    """Fixed keys in spec order, then the other keys as inserted, then Version and User."""
    present = {k: v for k, v in params.items() if v is not None}
    ordered = {k: present[k] for k in FIXED_KEYS if k in present}
    for key, value in present.items():
        if key not in ordered and key not in TRAILING_KEYS:
            ordered[key] = value
    for key in TRAILING_KEYS:
        if key in present:
            ordered[key] = present[key]
    return ordered


def build_infotext(prompt: str, negative_prompt: str, generation_params: dict) -> str:
    """The infotext of one image (§2, §4)."""
    pairs = []
    for key, value in order_generation_params(generation_params).items():
        text = str(value)
        pairs.append(key if text == key else f"{key}: {quote(text)}")
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(pairs)}".strip()


# ---------------------------------------------------------------------------------------------
# Parsing

# §5.2: key, colon, then a quoted string or a run without commas, ending at a comma or line end.
_PAIR_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"([0-9]+)x([0-9]+)")
_NEGATIVE_PREFIX = "Negative prompt:"

_PASS_DEFAULTS = {
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
}
_LATE_DEFAULTS = {
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
}

_V160 = _version.parse("1.6.0")
_V170_225 = _version.parse("1.7.0-225")
_V180 = _version.parse("1.8.0")
_V180_HR_STYLES = _version.parse("1.8.0-139")


def parse_infotext_version(text: str | None):
    """Version of the writer, or None when it does not parse (our own strings; §5.5)."""
    if not text:
        return None
    # "v1.7.0-225-gabc1234" -> "v1.7.0-225": keep up to the second '-'.
    parts = text.split("-")
    if len(parts) > 2:
        text = "-".join(parts[:2])
    try:
        return _version.parse(text)
    except _version.InvalidVersion:
        return None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _split_lines(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Prompt, negative prompt and (key, raw value) pairs of an infotext (§5.1)."""
    *lines, last = text.strip().split("\n")
    pairs = _PAIR_RE.findall(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt_lines, negative_lines = [], []
    target = prompt_lines
    for line in lines:
        line = line.strip()
        if target is prompt_lines and line.startswith(_NEGATIVE_PREFIX):
            target = negative_lines
            line = line[len(_NEGATIVE_PREFIX):].strip()
        target.append(line)
    return "\n".join(prompt_lines), "\n".join(negative_lines), pairs


def _style_fields(style) -> tuple[str, str, str]:
    if isinstance(style, (tuple, list)):
        name, prompt, negative = style[:3]
        return name, prompt or "", negative or ""
    return style.name, style.prompt or "", style.negative_prompt or ""


def _extract_style_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """Remove one style's text from a prompt (prompt-syntax.md §2, the inverse of applying)."""
    stripped = prompt.strip()
    style_text = style_text.strip()
    if "{prompt}" in style_text:
        left, _, right = style_text.partition("{prompt}")
        if len(left) + len(right) <= len(stripped) and stripped.startswith(left) and stripped.endswith(right):
            return True, stripped[len(left):len(stripped) - len(right)]
        return False, prompt
    if stripped.endswith(style_text):
        rest = stripped[:len(stripped) - len(style_text)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def extract_styles_from_prompt(prompt: str, negative_prompt: str, styles=None) -> tuple[list[str], str, str]:
    """Names of the styles found in the texts (in application order) and the texts without them."""
    if isinstance(styles, dict):
        styles = styles.values()
    candidates = [_style_fields(s) for s in (styles or [])]
    found = []
    while True:
        for candidate in candidates:
            name, style_prompt, style_negative = candidate
            if not style_prompt and not style_negative:
                continue
            ok_prompt, new_prompt = _extract_style_text(style_prompt, prompt)
            ok_negative, new_negative = _extract_style_text(style_negative, negative_prompt)
            if ok_prompt and ok_negative:
                prompt, negative_prompt = new_prompt, new_negative
                candidates.remove(candidate)
                found.append(name)
                break
        else:
            break
    # The outermost style was applied last, so it is found first.
    return found[::-1], prompt, negative_prompt


_ATTENTION_WEIGHT_RE = re.compile(r":\s*([+-]?[.\d]+)\s*\)")


def prompt_uses_emphasis(text: str) -> bool:
    """Whether the attention parser (prompt-syntax.md §8) would give any text a weight other than 1.

    Only the weights matter here, so texts are not collected and BREAK is not split out.
    """
    weights: list[float] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def close(start: int, factor: float) -> None:
        for i in range(start, len(weights)):
            weights[i] *= factor

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            weights.append(1.0)
            i += 2
            continue
        if char == "(":
            round_open.append(len(weights))
        elif char == "[":
            square_open.append(len(weights))
        elif char == ")" and round_open:
            close(round_open.pop(), 1.1)
        elif char == "]" and square_open:
            close(square_open.pop(), 1 / 1.1)
        elif char == ":" and round_open and (m := _ATTENTION_WEIGHT_RE.match(text, i)):
            try:
                weight = float(m.group(1))
            except ValueError:  # malformed number: the ':' is text (prompt-syntax.md §8.2)
                weights.append(1.0)
            else:
                close(round_open.pop(), weight)
                i = m.end()
                continue
        else:
            weights.append(1.0)
        i += 1
    for start in reversed(round_open):
        close(start, 1.1)
    for start in reversed(square_open):
        close(start, 1 / 1.1)
    return any(w != 1.0 for w in weights)


def _restore_old_hires_fix(res: dict, use_old_hires_fix_width_height: bool) -> None:
    """Pre-1.0 hires fix wrote the final size as Size and the first pass as `First pass size`."""
    if use_old_hires_fix_width_height:
        hires_w, hires_h = int(res.get("Hires resize-1", 0)), int(res.get("Hires resize-2", 0))
        if hires_w and hires_h:
            res["Size-1"], res["Size-2"] = hires_w, hires_h
            return
    if "First pass size-1" not in res or "First pass size-2" not in res:
        return
    first_w, first_h = int(res["First pass size-1"]), int(res["First pass size-2"])
    width, height = int(res.get("Size-1", 512)), int(res.get("Size-2", 512))
    if (first_w == 0 or first_h == 0) and width and height:
        scale = math.sqrt(512 * 512 / (width * height))
        first_w = math.ceil(scale * width / 64) * 64
        first_h = math.ceil(scale * height / 64) * 64
    res["Size-1"], res["Size-2"] = first_w, first_h
    res["Hires resize-1"], res["Hires resize-2"] = width, height


def _apply_styles(res: dict, prompt: str, negative: str, styles, mode: str) -> tuple[str, str]:
    """§5.4; also blanks hires prompts that only repeat the main ones."""
    found, prompt_rest, negative_rest = extract_styles_from_prompt(prompt, negative, styles)
    same_hr_styles = True
    if "Hires prompt" in res or "Hires negative prompt" in res:
        ver = parse_infotext_version(res.get("Version"))
        if ver is None or ver > _V180_HR_STYLES:
            hr_found, hr_prompt, hr_negative = extract_styles_from_prompt(
                res.get("Hires prompt", prompt), res.get("Hires negative prompt", negative), styles)
            same_hr_styles = hr_found == found
            if same_hr_styles:
                res["Hires prompt"] = "" if hr_prompt == prompt_rest else hr_prompt
                res["Hires negative prompt"] = "" if hr_negative == negative_rest else hr_negative
    if not same_hr_styles:
        return prompt, negative
    if mode == "Apply" or (mode == "Apply if any" and found):
        res["Styles array"] = found
    return prompt_rest, negative_rest


def _add_backcompat_flags(res: dict) -> None:
    ver = parse_infotext_version(res.get("Version"))
    if ver is None:
        return
    if ver < _V160 and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if ver < _V160 and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < _V170_225:
        res["Downcast alphas_cumprod"] = True
    if ver < _V180 and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def parse_generation_parameters(
    x: str,
    skip_fields: list[str] | None = None,
    *,
    styles: Iterable | None = None,
    infotext_styles: str = "Apply if any",
    auto_backcompat: bool = True,
    use_old_hires_fix_width_height: bool = False,
) -> dict:
    """Parse an infotext into a dict (§5). Parsed values are strings; defaults have their own types.

    `skip_fields` is the setting `infotext_skip_pasting`; `styles` the known styles (objects with
    name/prompt/negative_prompt, (name, prompt, negative) tuples, or a dict of either);
    the other keywords are the settings of the same name.
    """
    prompt, negative, pairs = _split_lines(x)
    res: dict[str, Any] = {}
    for key, raw in pairs:
        value = _unquote(raw)
        size = _SIZE_RE.fullmatch(value)
        if size:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value

    if infotext_styles != "Ignore":
        prompt, negative = _apply_styles(res, prompt, negative, styles, infotext_styles)

    res["Prompt"] = prompt
    res["Negative prompt"] = negative
    res.setdefault("Clip skip", "1")
    if "Hypernet" in res:
        res["Prompt"] += f"<hypernet:{res['Hypernet']}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key, default in _PASS_DEFAULTS.items():
        res.setdefault(key, default)
    _restore_old_hires_fix(res, use_old_hires_fix_width_height)
    for key, default in _LATE_DEFAULTS.items():
        res.setdefault(key, default)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    if "Emphasis" not in res and (prompt_uses_emphasis(prompt) or prompt_uses_emphasis(negative)):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)
    if auto_backcompat:
        _add_backcompat_flags(res)
    for key in skip_fields or []:
        res.pop(key, None)
    return res


# ---------------------------------------------------------------------------------------------
# Image metadata

EXIF_IFD_POINTER = 0x8769
EXIF_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\0"
_ASCII_PREFIX = b"ASCII\0\0\0"
_JIS_PREFIX = b"JIS\0\0\0\0\0"
_UNDEFINED_PREFIX = b"\0" * 8

# Pillow info items that are image properties, not text metadata worth showing.
IGNORED_INFO_KEYS = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
    "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
    "photoshop", "transparency", "gamma", "aspect",
}

# Sampler names and aliases (generation.md §1.1), for NovelAI's sampler field.
SAMPLER_ALIASES = {
    "DPM++ 2M": ["k_dpmpp_2m"],
    "DPM++ SDE": ["k_dpmpp_sde"],
    "DPM++ 2M SDE": ["k_dpmpp_2m_sde"],
    "DPM++ 2M SDE Heun": ["k_dpmpp_2m_sde_heun"],
    "DPM++ 2S a": ["k_dpmpp_2s_a"],
    "DPM++ 3M SDE": ["k_dpmpp_3m_sde"],
    "Euler a": ["k_euler_a", "k_euler_ancestral"],
    "Euler": ["k_euler"],
    "LMS": ["k_lms"],
    "Heun": ["k_heun"],
    "DPM2": ["k_dpm_2"],
    "DPM2 a": ["k_dpm_2_a"],
    "DPM fast": ["k_dpm_fast"],
    "DPM adaptive": ["k_dpm_ad"],
    "Restart": ["restart"],
    "DDIM": ["ddim"],
    "DDIM CFG++": ["ddim_cfgpp"],
    "PLMS": ["plms"],
    "UniPC": ["unipc"],
    "LCM": ["k_lcm"],
}
_SAMPLER_LOOKUP = {
    alias.lower(): name for name, aliases in SAMPLER_ALIASES.items() for alias in [name, *aliases]
}


def exif_user_comment_bytes(text: str) -> bytes:
    """EXIF UserComment payload in the "UNICODE" encoding (UTF-16 big-endian), as A1111 writes."""
    return _UNICODE_PREFIX + text.encode("utf-16-be")


def exif_bytes_for(text: str) -> bytes:
    """A complete EXIF block holding `text` as UserComment, for `Image.save(..., exif=...)`.

    Built by hand because Pillow would store the bytes as type BYTE, while readers (piexif,
    exiftool) expect UserComment as UNDEFINED. Layout (big-endian TIFF): header, IFD0 with one
    pointer to the Exif IFD at offset 26, the Exif IFD with one UserComment entry whose data is
    at offset 44.
    """
    comment = exif_user_comment_bytes(text)
    header = b"MM\x00\x2a" + struct.pack(">I", 8)
    ifd0 = struct.pack(">HHHIII", 1, EXIF_IFD_POINTER, 4, 1, 26, 0)  # type 4 = LONG
    exif_ifd = struct.pack(">HHHIII", 1, EXIF_USER_COMMENT, 7, len(comment), 44, 0)  # 7 = UNDEFINED
    return b"Exif\x00\x00" + header + ifd0 + exif_ifd + comment


def pnginfo_for(text: str | None, key: str = "parameters", existing: dict | None = None) -> PngImagePlugin.PngInfo:
    """PNG text chunks: `text` under `key` (tEXt if Latin-1 encodable, else iTXt) plus the other
    text items of `existing` (an image's info, kept when re-saving)."""
    info = PngImagePlugin.PngInfo()
    for other_key, value in (existing or {}).items():
        if other_key != key and other_key not in IGNORED_INFO_KEYS and isinstance(value, str):
            _add_png_text(info, other_key, value)
    if text is not None:
        _add_png_text(info, key, text)
    return info


def _add_png_text(info: PngImagePlugin.PngInfo, key: str, value: str) -> None:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        info.add_itxt(key, value)
    else:
        info.add_text(key, value)


def decode_user_comment(data: bytes | str) -> str:
    """Text of an EXIF UserComment, tolerant of the encodings other writers use (§1)."""
    if isinstance(data, str):
        return data
    prefix, body = data[:8], data[8:]
    if prefix == _UNICODE_PREFIX:
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a BOM says which byte order
            text = body.decode("utf-16", errors="replace")
        else:
            text = body.decode("utf-16-be", errors="replace")
    elif prefix == _ASCII_PREFIX or prefix == _UNDEFINED_PREFIX:
        # Writers put UTF-8 here in practice, so read it as such.
        text = body.decode("utf-8", errors="ignore")
    elif prefix == _JIS_PREFIX:
        text = body.decode("shift_jis", errors="replace")
    else:
        text = data.decode("utf-8", errors="ignore")
    return text.rstrip("\0")


def _exif_user_comment(raw_exif: bytes) -> str:
    exif = Image.Exif()
    try:
        exif.load(raw_exif)
        comment = exif.get_ifd(EXIF_IFD_POINTER).get(EXIF_USER_COMMENT)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError) as exc:  # corrupt EXIF block
        log.warning("Ignoring unreadable EXIF data: %s", exc)
        return ""
    return decode_user_comment(comment) if comment else ""


def _novelai_infotext(image: Image.Image, items: dict) -> str | None:
    """A NovelAI PNG's metadata as an A1111 infotext (§9); None when it does not parse."""
    try:
        meta = json.loads(items["Comment"])
        sampler = _SAMPLER_LOOKUP.get(str(meta.get("sampler", "")).lower(), "Euler a")
        params = (f"Steps: {meta['steps']}, Sampler: {sampler}, CFG scale: {meta['scale']}, "
                  f"Seed: {meta['seed']}, Size: {image.width}x{image.height}, Clip skip: 2, ENSD: 31337")
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        log.warning("Could not read NovelAI parameters: %r", exc)
        return None
    negative = meta.get("uc") or ""
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    return f"{items.get('Description', '')}{negative_line}\n{params}".strip()


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict]:
    """The infotext of an image (or None) and its other metadata items (§1, §9)."""
    items = dict(image.info or {})
    geninfo = items.pop("parameters", None)
    if geninfo is None and isinstance(image, PngImagePlugin.PngImageFile):
        # Text chunks after the image data are only seen once the image is loaded.
        try:
            late_text = dict(image.text)
        except OSError as exc:  # truncated file: keep what the header gave
            log.warning("Could not load PNG text chunks: %s", exc)
            late_text = {}
        geninfo = late_text.pop("parameters", None)
        items.update({k: v for k, v in late_text.items() if k not in items})

    if "exif" in items:
        comment = _exif_user_comment(items.pop("exif"))
        if comment:
            geninfo = comment
    elif "comment" in items:  # GIF comment extension
        comment = items.pop("comment")
        geninfo = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else comment

    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)

    if items.get("Software") == "NovelAI" and "Comment" in items:
        geninfo = _novelai_infotext(image, items) or geninfo

    if geninfo is not None:
        geninfo = str(geninfo)  # iTXt values are a str subclass
    return geninfo, items
