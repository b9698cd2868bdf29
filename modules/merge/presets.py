"""Block-weight presets: 25 values (IN00..IN11, M00, OUT00..OUT11), the names MBW and supermerger ship.

Generated from their formulas (merge-train.md §2.2), i = 0..24. User presets come from a text file
with one `NAME<TAB>values` or `NAME:values` per line.
"""
from __future__ import annotations

import math
import os

N = 25


def _ones_on(*ranges) -> list[float]:
    values = [0.0] * N
    for first, last in ranges:
        for i in range(first, last + 1):
            values[i] = 1.0
    return values


def _wrap(k: int) -> list[float]:
    return _ones_on((0, k - 1), (N - k, N - 1))


def _builtin() -> dict[str, list[float]]:
    grad_v = [abs(i - 12) / 12 for i in range(N)]
    smooth = [3 * (i / 24) ** 2 - 2 * (i / 24) ** 3 for i in range(N)]
    cosine = [(1 + math.cos(math.pi * i / 24)) / 2 for i in range(N)]
    ring08_soft = [0.0] * N
    for start in (5, 15):
        for offset, value in enumerate((0.5, 1, 1, 1, 0.5)):
            ring08_soft[start + offset] = float(value)
    out12_5 = _ones_on((13, 24))
    out12_5[12] = 0.5
    return {
        "GRAD_V": grad_v,
        "GRAD_A": [1 - v for v in grad_v],
        "FLAT_25": [0.25] * N,
        "FLAT_75": [0.75] * N,
        "WRAP08": _wrap(4),
        "WRAP12": _wrap(6),
        "WRAP14": _wrap(7),
        "WRAP16": _wrap(8),
        "MID12_50": [0.5 if 5 <= i <= 18 else 0.0 for i in range(N)],
        "OUT07": _ones_on((N - 7, N - 1)),
        "OUT12": _ones_on((13, 24)),
        "OUT12_5": out12_5,
        "RING08_SOFT": ring08_soft,
        "RING08_5": _ones_on((6, 9), (15, 18)),
        "RING10_5": _ones_on((5, 9), (15, 19)),
        "RING10_3": _ones_on((6, 10), (14, 18)),
        "SMOOTHSTEP": smooth,
        "REVERSE_SMOOTHSTEP": [1 - v for v in smooth],
        "COSINE": cosine,
        "REVERSE_COSINE": [1 - v for v in cosine],
        "ALL_A": [0.0] * N,
        "ALL_B": [1.0] * N,
    }


BUILTIN_PRESETS: dict[str, list[float]] = _builtin()


def parse_preset_lines(text: str, source: str = "presets") -> dict[str, list[float]]:
    """`NAME<TAB>v1,v2,...` or `NAME:v1,...` per line; blank lines and `#` comments ignored."""
    presets = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, values = line.partition("\t") if "\t" in line else line.partition(":")
        if not sep:
            raise ValueError(f"{source} line {number}: expected NAME<TAB>values or NAME:values")
        try:
            presets[name.strip()] = [float(v) for v in values.replace(" ", "").strip(",").split(",")]
        except ValueError:
            raise ValueError(f"{source} line {number}: values must be numbers separated by commas") from None
    return presets


def load_presets(user_file: str | None = None) -> dict[str, list[float]]:
    """Shipped presets, then the user's file (if it exists), whose names win."""
    presets = dict(BUILTIN_PRESETS)
    if user_file and os.path.isfile(user_file):
        with open(user_file, encoding="utf-8") as file:
            presets.update(parse_preset_lines(file.read(), user_file))
    return presets


def format_values(values) -> str:
    return ",".join(f"{v:g}" for v in values)
