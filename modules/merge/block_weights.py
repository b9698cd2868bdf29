"""Per-block merge ratios: parsing both accepted forms into one table, and key -> alpha.

Alpha is always the share of the SECOND model (B): merged = A·(1−α) + B·α.

* Form A, per-block flags (the `merge_unet_blocks.py` form): `input_blocks "0:0.5, 3:0.6"`,
  `middle_blocks`, `output_blocks`, `out`, `time_embed` as `index:alpha` pairs, plus `label_emb`
  (SDXL, one value), `base_alpha` for every other UNet key, and `text_encoder` / `vae` (default 0:
  those keys stay model A's).
* Form B, a comma list (MBW / supermerger): 25 values IN00..IN11, M00, OUT00..OUT11, or 26 with
  BASE first (text encoder, VAE and other keys); SDXL 19 / 20 (IN00..IN08, M00, OUT00..OUT08); a
  25/26 list on SDXL keeps IN00..08, M00, OUT00..08. A single word is a preset name.

Matching is by whole dotted components after `model.diffusion_model.`: `input_blocks.1.` is block
1 only (never 10 or 11), and `out.N.` is the final layer only (never an attention `to_out`).
`time_embed` and `label_emb` follow IN00 in form B, `out` follows the last output block.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from modules.merge.errors import MergeError
from modules.merge.presets import BUILTIN_PRESETS

UNET_PREFIX = "model.diffusion_model."
TEXT_ENCODER_PREFIXES = ("cond_stage_model.", "conditioner.")
VAE_PREFIX = "first_stage_model."

# UNet layout per family kind: number of input / output blocks
LAYOUT_BLOCKS = {"sd": 12, "sdxl": 9}
LAYOUT_NAMES = {"sd": "SD1/SD2", "sdxl": "SDXL"}
# form-A flag -> key component; the indices each takes (None: the layout's block count)
FLAG_GROUPS = {
    "input_blocks": ("input_blocks", None),
    "middle_blocks": ("middle_block", (0, 1, 2)),
    "output_blocks": ("output_blocks", None),
    "out": ("out", (0, 2)),
    "time_embed": ("time_embed", (0, 2)),
}
LIST_LENGTHS = {"sd": (25, 26), "sdxl": (19, 20, 25, 26)}


@dataclass
class BlockAlphas:
    layout: str
    blocks: dict[tuple[str, int], float] = field(default_factory=dict)  # ("input_blocks", 3) -> alpha
    label_emb: float | None = None
    base: float = 0.0          # UNet keys no block names
    text_encoder: float = 0.0
    vae: float = 0.0
    other: float = 0.0         # other mergeable keys (EMA copies)
    source: str = ""           # as the user typed it, for the recipe

    def alpha_for(self, key: str) -> float:
        if key.startswith(UNET_PREFIX):
            parts = key[len(UNET_PREFIX):].split(".")
            if parts[0] == "label_emb":
                return self.base if self.label_emb is None else self.label_emb
            if len(parts) > 2 and parts[1].isdigit():
                return self.blocks.get((parts[0], int(parts[1])), self.base)
            return self.base
        if key.startswith(TEXT_ENCODER_PREFIXES):
            return self.text_encoder
        if key.startswith(VAE_PREFIX):
            return self.vae
        return self.other

    def normalised(self) -> dict:
        """Form A as JSON-ready values (recorded in the merge recipe)."""
        result: dict = {"base_alpha": self.base}
        for flag, (component, _indices) in FLAG_GROUPS.items():
            entries = {str(i): a for (c, i), a in sorted(self.blocks.items()) if c == component}
            if entries:
                result[flag] = entries
        if self.label_emb is not None:
            result["label_emb"] = self.label_emb
        result["text_encoder"] = self.text_encoder
        result["vae"] = self.vae
        return result


def uniform(layout: str, alpha: float) -> BlockAlphas:
    """Every mergeable key gets the same alpha (the plain Weighted sum / Add difference)."""
    return BlockAlphas(layout, base=alpha, text_encoder=alpha, vae=alpha, other=alpha, source="")


def _float(text, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise MergeError(f"{what}: {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise MergeError(f"{what}: {text!r} is not a finite number")
    return value


def _valid_indices(layout: str, flag: str) -> tuple[int, ...]:
    indices = FLAG_GROUPS[flag][1]
    return tuple(range(LAYOUT_BLOCKS[layout])) if indices is None else indices


def parse_pairs(value, flag: str, layout: str) -> dict[int, float]:
    """`"0:0.5, 3:0.6,"` (or {"0": 0.5}) -> {0: 0.5, 3: 0.6}; indices checked against the family."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            index, sep, alpha = part.partition(":")
            if not sep:
                raise MergeError(f"{flag}: {part!r} is not index:alpha (for example \"3:0.6\")")
            items.append((index.strip(), alpha.strip()))
    else:
        raise MergeError(f"{flag}: expected \"index:alpha, ...\" text, got {type(value).__name__}")
    valid = _valid_indices(layout, flag)
    result: dict[int, float] = {}
    for index_text, alpha_text in items:
        if not index_text.isdigit():
            raise MergeError(f"{flag}: index {index_text!r} is not a whole number")
        index = int(index_text)
        if index not in valid:
            raise MergeError(f"{flag}: {LAYOUT_NAMES[layout]} has no index {index}; "
                             f"valid: {', '.join(map(str, valid))}")
        if index in result:
            raise MergeError(f"{flag}: index {index} is given twice")
        result[index] = _float(alpha_text, f"{flag} {index}")
    return result


def from_flags(layout: str, *, base_alpha=0.0, input_blocks=None, middle_blocks=None, output_blocks=None,
               out=None, time_embed=None, label_emb=None, text_encoder=None, vae=None) -> BlockAlphas:
    """Form A. Non-UNet keys stay model A's unless text_encoder / vae are given."""
    table = BlockAlphas(layout, base=_float(base_alpha, "base_alpha"))
    given = {"input_blocks": input_blocks, "middle_blocks": middle_blocks, "output_blocks": output_blocks,
             "out": out, "time_embed": time_embed}
    source = {"base_alpha": table.base}
    for flag, value in given.items():
        component = FLAG_GROUPS[flag][0]
        for index, alpha in parse_pairs(value, flag, layout).items():
            table.blocks[(component, index)] = alpha
        if value not in (None, ""):
            source[flag] = value
    if label_emb not in (None, ""):
        if layout != "sdxl":
            raise MergeError(f"label_emb: {LAYOUT_NAMES[layout]} models have no label_emb (only SDXL)")
        table.label_emb = _float(label_emb, "label_emb")
        source["label_emb"] = label_emb
    if text_encoder is not None:
        table.text_encoder = _float(text_encoder, "text_encoder_alpha")
        source["text_encoder"] = text_encoder
    if vae is not None:
        table.vae = _float(vae, "vae_alpha")
        source["vae"] = vae
    table.source = json.dumps(source)
    return table


def parse_list(text: str, presets: dict[str, list[float]] | None = None) -> list[float]:
    """A comma list of numbers, or one preset name -> the values."""
    presets = BUILTIN_PRESETS if presets is None else presets
    stripped = text.strip()
    if not stripped:
        raise MergeError("block_weights: empty")
    if "," not in stripped:
        try:
            float(stripped)
        except ValueError:
            if stripped in presets:
                return list(presets[stripped])
            raise MergeError(f"block_weights: unknown preset {stripped!r}; presets: {', '.join(presets)}") from None
    parts = [p.strip() for p in stripped.split(",")]
    if parts and parts[-1] == "":
        parts.pop()  # a trailing comma
    return [_float(p, f"block_weights value {i + 1}") for i, p in enumerate(parts)]


def from_list(layout: str, text: str, multiplier: float, presets=None) -> BlockAlphas:
    """Form B. Without a BASE value, the text encoder, VAE and other keys get the multiplier."""
    values = parse_list(text, presets)
    lengths = LIST_LENGTHS[layout]
    if len(values) not in lengths:
        accepted = " or ".join(map(str, lengths))
        hint = " (19/20 are for SDXL)" if layout == "sd" and len(values) in (19, 20) else ""
        raise MergeError(f"block_weights: {len(values)} values given; {LAYOUT_NAMES[layout]} takes {accepted}{hint}")
    has_base = len(values) in (20, 26)
    base = values[0] if has_base else multiplier
    blocks = values[1:] if has_base else values
    n = LAYOUT_BLOCKS[layout]
    if len(blocks) == 25:      # IN00..IN11, M00, OUT00..OUT11 (SDXL keeps the first 9 of each)
        ins, mid, outs = blocks[0:n], blocks[12], blocks[13:13 + n]
    else:                      # 19: IN00..IN08, M00, OUT00..OUT08
        ins, mid, outs = blocks[0:9], blocks[9], blocks[10:19]
    table = BlockAlphas(layout, base=base, text_encoder=base, vae=base, other=base, source=text.strip())
    for i, alpha in enumerate(ins):
        table.blocks[("input_blocks", i)] = alpha
    for i in (0, 1, 2):
        table.blocks[("middle_block", i)] = mid
    for i, alpha in enumerate(outs):
        table.blocks[("output_blocks", i)] = alpha
    for i in (0, 2):
        table.blocks[("out", i)] = outs[-1]
        table.blocks[("time_embed", i)] = ins[0]
    table.label_emb = ins[0] if layout == "sdxl" else None
    return table
