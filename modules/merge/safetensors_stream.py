"""Write a .safetensors file one tensor (or one slice of rows) at a time.

safetensors' own `save_file` needs every tensor in memory at once. The format is simple enough to
write as we go: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw little-endian bytes in header order. The header is planned from
the shapes and dtypes alone, so it is written first and the data follows.
"""
from __future__ import annotations

import hashlib
import json
import math

import torch

DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
DTYPES_BY_NAME = {name: dtype for dtype, name in DTYPE_NAMES.items()}


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return DTYPES_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unsupported safetensors dtype {name!r}") from None


def tensor_nbytes(shape, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return math.prod(shape) * itemsize


class StreamingSafetensorsWriter:
    """Writes the header for a planned list of (key, shape, dtype), then accepts the data in order.

    `write(key, tensor)` may be called several times per key with consecutive row slices; the
    writer checks that each tensor receives exactly its planned number of bytes, in plan order.
    The sha256 of everything written is available as `sha256` after `finish()`.
    """

    def __init__(self, file, plan: list[tuple[str, tuple, torch.dtype]], metadata: dict[str, str] | None):
        self.file = file
        self._digest = hashlib.sha256()
        header: dict = {}
        if metadata:
            bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise ValueError(f"safetensors metadata values must be strings: {bad[:3]}")
            header["__metadata__"] = metadata
        self._expected: list[tuple[str, int]] = []
        offset = 0
        for key, shape, dtype in plan:
            size = tensor_nbytes(shape, dtype)
            header[key] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            self._expected.append((key, size))
            offset += size
        self.data_size = offset
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the format allows trailing spaces; 8-aligned data
        self._put(len(raw).to_bytes(8, "little"))
        self._put(raw)
        self._index = 0
        self._written_for_current = 0
        self._skip_empty()

    def _skip_empty(self) -> None:
        # zero-size tensors take no bytes, so no write call comes for them
        while self._index < len(self._expected) and self._expected[self._index][1] == 0:
            self._index += 1

    def _put(self, data) -> None:
        self.file.write(data)
        self._digest.update(data)

    def write(self, key: str, tensor: torch.Tensor) -> None:
        if self._index >= len(self._expected):
            raise ValueError(f"tensor {key!r} was not planned")
        expected_key, size = self._expected[self._index]
        if key != expected_key:
            raise ValueError(f"tensor {key!r} written out of order (expected {expected_key!r})")
        data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        if self._written_for_current + data.nbytes > size:
            raise ValueError(f"tensor {key!r}: more bytes than planned")
        self._put(memoryview(data))
        self._written_for_current += data.nbytes
        if self._written_for_current == size:
            self._index += 1
            self._written_for_current = 0
            self._skip_empty()

    def finish(self) -> str:
        if self._index != len(self._expected) or self._written_for_current:
            missing = self._expected[self._index][0]
            raise ValueError(f"file incomplete: tensor {missing!r} was not fully written")
        self.file.flush()
        return self._digest.hexdigest()
