"""Embeddings carried inside PNG/WebP images (A1111's image embedding format).

Two places can hold the data; a reader tries them in this order:

1. A PNG text chunk ``sd-ti-embedding`` whose value is base64 of the embedding dict as JSON.
2. The pixels. The picture sits between two data blocks, each separated from it by one black
   column: ``[low-nibble block] | picture | [high-nibble block]``. The payload is the JSON,
   zlib-compressed; its bytes are split into high and low 4-bit halves, laid out row-major over a
   (height, width, RGB) block, and every nibble is XOR-ed with the low 4 bits of a linear
   congruential stream (m = 2**32, a = 1664525, c = 1013904223, seed 0, each value taken mod 255).
   Only the low 4 bits of each channel carry data; the high 4 bits are decoration.

In the JSON, tensors are objects ``{"TORCHTENSOR": nested lists}``.
"""
from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import torch
from PIL import Image, PngImagePlugin

TEXT_CHUNK_KEY = "sd-ti-embedding"
TENSOR_KEY = "TORCHTENSOR"

_LCG_M = 2 ** 32
_LCG_A = 1664525
_LCG_C = 1013904223
_DECORATION = 0x80  # high nibble of data pixels: keeps every channel non-zero so no row/column looks black


class ImageEmbeddingError(ValueError):
    """The image claims to carry an embedding but the data cannot be decoded."""


# --- JSON with tensors ----------------------------------------------------------------------

def _tensor_to_json(value):
    if isinstance(value, torch.Tensor):
        return {TENSOR_KEY: value.detach().cpu().float().tolist()}
    raise TypeError(f"cannot store {type(value).__name__} in an embedding image")


def _json_to_tensor(obj: dict):
    if TENSOR_KEY in obj:
        return torch.tensor(obj[TENSOR_KEY], dtype=torch.float32)
    return obj


def data_to_json(data: dict) -> bytes:
    return json.dumps(data, default=_tensor_to_json).encode("utf-8")


def data_from_json(raw: bytes | str) -> dict:
    data = json.loads(raw, object_hook=_json_to_tensor)
    if not isinstance(data, dict):
        raise ImageEmbeddingError("embedding data is not a JSON object")
    return data


def data_to_b64(data: dict) -> str:
    return base64.b64encode(data_to_json(data)).decode("ascii")


def data_from_b64(text: str) -> dict:
    try:
        raw = base64.b64decode(text, validate=False)
    except ValueError as e:
        raise ImageEmbeddingError(f"text chunk {TEXT_CHUNK_KEY} is not base64: {e}") from e
    try:
        return data_from_json(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageEmbeddingError(f"text chunk {TEXT_CHUNK_KEY} does not hold embedding JSON: {e}") from e


# --- the nibble mask ------------------------------------------------------------------------

def lcg_nibbles(count: int) -> np.ndarray:
    """The first `count` values of the LCG stream, reduced to the 4 bits that mask the data.

    Computed a block at a time: stepping a whole block of states by `block` positions is one affine
    map (a**block, c * (a**(block-1) + … + 1)) mod 2**32, so no Python loop runs per value.
    """
    block = 4096
    first = np.empty(min(count, block), dtype=np.uint64)
    state = 0
    for i in range(first.size):
        state = (_LCG_A * state + _LCG_C) % _LCG_M
        first[i] = state
    jump_a, jump_c = 1, 0
    for _ in range(block):
        jump_a, jump_c = (_LCG_A * jump_a) % _LCG_M, (_LCG_A * jump_c + _LCG_C) % _LCG_M
    parts, states = [first], first
    total = first.size
    while total < count:
        # uint64 arithmetic wraps mod 2**64, which preserves the value mod 2**32
        states = (states * np.uint64(jump_a) + np.uint64(jump_c)) & np.uint64(_LCG_M - 1)
        parts.append(states)
        total += block
    values = np.concatenate(parts)[:count]
    return ((values % np.uint64(255)) & np.uint64(0x0F)).astype(np.uint8)


def _mask(block: np.ndarray) -> np.ndarray:
    return block ^ lcg_nibbles(block.size).reshape(block.shape)


# --- writing --------------------------------------------------------------------------------

def _nibble_block(nibbles: np.ndarray, height: int) -> np.ndarray:
    """Lay nibbles out over (height, width, 3), repeating the stream to fill the last column
    (zlib ignores what follows the end of its stream)."""
    width = -(-nibbles.size // (height * 3))
    filled = np.resize(nibbles, height * width * 3).reshape(height, width, 3)
    return (_mask(filled) | _DECORATION).astype(np.uint8)


def insert_data_into_pixels(image: Image.Image, data: dict) -> Image.Image:
    """Return a new RGB image: low-nibble block, black column, `image`, black column, high block."""
    payload = np.frombuffer(zlib.compress(data_to_json(data), 9), dtype=np.uint8)
    height = image.size[1]
    low = _nibble_block(payload & 0x0F, height)
    high = _nibble_block(payload >> 4, height)
    picture = np.asarray(image.convert("RGB"), dtype=np.uint8)
    gap = np.zeros((height, 1, 3), dtype=np.uint8)
    return Image.fromarray(np.concatenate([low, gap, picture, gap, high], axis=1), mode="RGB")


def write_embedding_image(path: str, data: dict, image: Image.Image | None = None,
                          text_chunk: bool = True, pixels: bool = True) -> str:
    """Save an embedding dict (as `embedding_to_data` builds it) into a PNG or lossless WebP.

    `text_chunk` applies to PNG only (WebP has no text chunks); `pixels` adds the data blocks.
    """
    if image is None:
        image = Image.new("RGB", (96, 96), (90, 90, 110))
    if pixels:
        image = insert_data_into_pixels(image, data)
    if path.lower().endswith(".webp"):
        image.save(path, format="WEBP", lossless=True, quality=100)
        return path
    info = PngImagePlugin.PngInfo()
    if text_chunk:
        info.add_text(TEXT_CHUNK_KEY, data_to_b64(data))
    image.save(path, format="PNG", pnginfo=info)
    return path


# --- reading --------------------------------------------------------------------------------

def _crop_black_border(pixels: np.ndarray) -> np.ndarray:
    """Drop outer rows/columns without a single pixel whose three channels are all non-zero."""
    lit = (pixels > 0).all(axis=2)
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if rows.size == 0:
        return pixels
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def extract_data_from_pixels(image: Image.Image) -> dict | None:
    """The embedding hidden in the pixels; None when the image has no data-block layout."""
    pixels = _crop_black_border(np.asarray(image.convert("RGB"), dtype=np.uint8)) & 0x0F
    separators = np.flatnonzero(pixels.sum(axis=(0, 2)) == 0)
    if separators.size < 2:
        return None
    low = pixels[:, :separators[0], :]
    high = pixels[:, separators[-1] + 1:, :]
    if low.size == 0 or low.shape != high.shape:
        return None
    payload = ((_mask(high) << 4) | _mask(low)).astype(np.uint8).tobytes()
    try:
        raw = zlib.decompressobj().decompress(payload)
    except zlib.error as e:
        raise ImageEmbeddingError(f"pixel data blocks do not decompress: {e}") from e
    try:
        return data_from_json(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageEmbeddingError(f"pixel data is not embedding JSON: {e}") from e


def read_embedding_image(path: str) -> dict | None:
    """The embedding dict stored in an image (text chunk first, then pixels), or None if it holds
    none (an ordinary picture). Raises ImageEmbeddingError / OSError for unreadable data."""
    with Image.open(path) as image:
        text = getattr(image, "text", None) or image.info
        if TEXT_CHUNK_KEY in text:
            return data_from_b64(text[TEXT_CHUNK_KEY])
        return extract_data_from_pixels(image)
