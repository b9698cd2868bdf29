"""The merge engine: one pass over model A's keys, reading and writing a slice of rows at a time.

Used by the Checkpoint Merger tab, `POST /sdapi/v1/merge-checkpoints` and
`tools/merge_unet_blocks.py`. Memory stays near a few slices whatever the model size: inputs are
memory-mapped (`safe_open`, or `torch.load(mmap=True)` for .ckpt), the math runs in float32 on
slices of at most CHUNK_BYTES, and a .safetensors output is written as it goes to `<target>.tmp`,
renamed when complete. A .ckpt output is one `torch.save` of {"state_dict": ...}, so it needs the
whole result in memory (about one model).

Per key (merge-train.md §1.4, §1.10): keys are A's minus the discarded ones; a key mergeable in
both gets `A·(1−α) + B·α` (Weighted sum) or `A + (B − C)·α` (Add difference, C's missing keys
count as B − C = 0); alpha 0, missing in B, integer tensors, schedule buffers and position ids
keep A's bytes; "Save as float16" turns every floating tensor into float16.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Callable

import torch

from modules.merge import block_weights, naming, rules
from modules.merge.errors import MergeError
from modules.merge.safetensors_stream import StreamingSafetensorsWriter
from modules.merge.sources import CheckpointSource

METHODS = ("No interpolation", "Weighted sum", "Add difference")
CHUNK_BYTES = 8 << 20  # float32 bytes of one slice of rows
ARCHITECTURE_METADATA_KEY = "sdwebui_architecture"  # layer sizes the loader needs (tiny models)
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")


class MergeInterrupted(Exception):
    """The user stopped the merge; no output file was left behind."""


@dataclass
class MergeRequest:
    primary: str
    secondary: str | None = None
    tertiary: str | None = None
    interp_method: str = "Weighted sum"
    multiplier: float = 0.3
    block_weights: str | None = None          # form B: comma list or preset name
    block_alphas: dict | None = None          # form A: input_blocks, middle_blocks, ..., base_alpha
    text_encoder_alpha: float | None = None
    vae_alpha: float | None = None
    save_as_half: bool = False
    output_path: str | None = None            # explicit target (CLI); else folder + name rules
    output_dir: str | None = None
    custom_name: str = ""
    checkpoint_format: str = "safetensors"
    bake_in_vae: str | None = None            # path of a VAE file
    bake_in_vae_name: str = "None"
    discard_weights: str = ""
    save_metadata: bool = True
    add_recipe: bool = True
    copy_metadata: bool = True
    metadata_json: str = "{}"
    config_source: int = 0
    overwrite: bool = False
    names: dict = field(default_factory=dict)      # "A"/"B"/"C" -> model_name for names and metadata
    presets: dict | None = None                    # block-weight presets (default: shipped ones)


@dataclass
class MergeResult:
    filename: str
    sha256: str
    is_inpainting: bool
    is_instruct_pix2pix: bool
    metadata: dict
    alphas: block_weights.BlockAlphas | None


@dataclass
class _Step:
    key: str
    shape: tuple
    dtype: torch.dtype
    alpha: float = 0.0           # 0: copy A
    channels: int | None = None  # merge only A[:, :channels] (inpainting / ip2p first conv)
    from_vae: bool = False


ProgressFn = Callable[[str, int, int], None]


def _no_progress(text: str, done: int, total: int) -> None:
    pass


def _check_request(req: MergeRequest) -> None:
    if req.interp_method not in METHODS:
        raise MergeError(f"interp_method must be one of {', '.join(METHODS)}, got {req.interp_method!r}")
    if not req.primary:
        raise MergeError("Failed: Merging requires a primary model.")
    if req.interp_method != "No interpolation" and not req.secondary:
        raise MergeError("Failed: Merging requires a secondary model.")
    if req.interp_method == "Add difference" and not req.tertiary:
        raise MergeError("Failed: Interpolation method (Add difference) requires a tertiary model.")
    if req.block_weights and req.block_alphas:
        raise MergeError("give block_weights (the comma list) or block_alphas (per block), not both")
    if (req.block_weights or req.block_alphas) and req.interp_method == "No interpolation":
        raise MergeError("block weights need Weighted sum or Add difference")
    if not 0 <= int(req.config_source) < len(CONFIG_SOURCES):
        raise MergeError(f"config_source must be 0-3 ({', '.join(CONFIG_SOURCES)})")


def _discard_pattern(text: str):
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as error:
        raise MergeError(f"Discard weights with matching name: {text!r} is not a valid regular expression ({error})") from None


def build_alphas(req: MergeRequest, layout: str) -> block_weights.BlockAlphas | None:
    """The per-key alpha table of the request, or None for a plain (uniform) merge."""
    if req.block_weights:
        table = block_weights.from_list(layout, req.block_weights, float(req.multiplier), req.presets)
    elif req.block_alphas:
        known = {"base_alpha", "input_blocks", "middle_blocks", "output_blocks", "out", "time_embed", "label_emb"}
        unknown = sorted(set(req.block_alphas) - known)
        if unknown:
            raise MergeError(f"block_alphas: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        fields = dict(req.block_alphas)
        return block_weights.from_flags(layout, **fields, text_encoder=req.text_encoder_alpha, vae=req.vae_alpha)
    else:
        if req.text_encoder_alpha is None and req.vae_alpha is None:
            return None
        table = block_weights.uniform(layout, float(req.multiplier))
    if req.text_encoder_alpha is not None:
        table.text_encoder = float(req.text_encoder_alpha)
    if req.vae_alpha is not None:
        table.vae = float(req.vae_alpha)
    return table


def _plan(req, a: CheckpointSource, b, c, alphas, vae_keys: dict) -> tuple[list[_Step], str | None]:
    discard = _discard_pattern(req.discard_weights)
    merging = req.interp_method != "No interpolation"
    flag = None
    steps = []
    for key in a.keys:
        if discard is not None and discard.search(key):
            continue
        dtype_a = a.dtypes[key]
        floating = dtype_a.is_floating_point
        step = _Step(key, a.shapes[key], dtype_a)
        if key in vae_keys:
            if vae_keys[key].shape != a.shapes[key]:
                raise MergeError(f"Bake in VAE: {key} is {list(vae_keys[key].shape)} in the VAE file and "
                                 f"{list(a.shapes[key])} in A; this VAE does not fit the model")
            step.from_vae = True
            step.dtype = vae_keys[key].dtype
        elif merging and floating and rules.is_mergeable(key) and key in b.shapes and b.dtypes[key].is_floating_point:
            alpha = alphas.alpha_for(key) if alphas is not None else float(req.multiplier)
            if c is not None and key not in c.shapes:
                alpha = 0.0  # B − C counts as zero: the output keeps A
            if alpha != 0.0:
                step.alpha = alpha
                others = [(b, "B")] + ([(c, "C")] if c is not None else [])
                for source, label in others:
                    if source.shapes[key] != a.shapes[key]:
                        channels, key_flag = rules.channel_rule(key, a.shapes[key], source.shapes[key], label)
                        step.channels, flag = channels, key_flag
                promoted = torch.promote_types(dtype_a, b.dtypes[key])
                if c is not None:
                    promoted = torch.promote_types(promoted, c.dtypes[key])
                step.dtype = promoted
        if req.save_as_half and step.dtype.is_floating_point:
            step.dtype = torch.float16
        steps.append(step)
    if not steps:
        raise MergeError("every key was discarded; nothing to write")
    return steps, flag


def _check_compatible(a: CheckpointSource, others: list[tuple[CheckpointSource, str]]) -> str:
    layout = rules.layout_of(a.keys, a.path)
    for source, label in others:
        other_layout = rules.layout_of(source.keys, source.path)
        if other_layout != layout:
            raise MergeError(f"mismatched families: A is {rules.family_name(a.shapes)}, {label} is "
                             f"{rules.family_name(source.shapes)} ({source.path}); nothing was written")
        for key, shape in a.shapes.items():
            if key in source.shapes and source.shapes[key] != shape and rules.is_mergeable(key):
                rules.channel_rule(key, shape, source.shapes[key], label)  # raises unless the conv_in rule
    return layout


def _read_vae(path: str) -> dict[str, torch.Tensor]:
    """VAE file keys as `first_stage_model.*` (training leftovers dropped)."""
    source = CheckpointSource(path)
    tensors = {}
    for key in source.keys:
        if key.startswith("loss") or key in ("model_ema.decay", "model_ema.num_updates"):
            continue
        target = key if key.startswith(block_weights.VAE_PREFIX) else block_weights.VAE_PREFIX + key
        tensors[target] = source.read(key)
    source.close()
    return tensors


def _rows_per_chunk(shape: tuple) -> int:
    row = math.prod(shape[1:]) if len(shape) > 1 else 1
    return max(1, CHUNK_BYTES // max(1, row * 4))


def _compute(step: _Step, req, a, b, c, start, stop) -> torch.Tensor:
    """Rows start:stop of the output tensor, already in the output dtype."""
    if step.alpha == 0.0:
        return a.read(step.key, start, stop).to(step.dtype)
    alpha = step.alpha
    a32 = a.read(step.key, start, stop).to(torch.float32)
    b32 = b.read(step.key, start, stop).to(torch.float32)
    n = step.channels
    target = a32[:, :n] if n is not None else a32
    if req.interp_method == "Weighted sum":
        merged = target * (1 - alpha) + b32 * alpha
    else:
        c32 = c.read(step.key, start, stop).to(torch.float32)
        merged = target + (b32 - c32) * alpha
    if n is not None:
        a32[:, :n] = merged
        merged = a32
    return merged.to(step.dtype)


def _iter_slices(step: _Step):
    if not step.shape or step.shape[0] == 0:
        yield None, None
        return
    rows = _rows_per_chunk(step.shape)
    for start in range(0, step.shape[0], rows):
        yield start, min(start + rows, step.shape[0])


def _hash_or_none(path, hash_file):
    return hash_file(path) if path else None


def _parse_json_value(value):
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def build_metadata(req, sources: dict, hashes: dict, flag, alphas) -> dict[str, str]:
    """safetensors metadata (merge-train.md §1.7); every value a string."""
    metadata: dict[str, str] = {}
    if req.copy_metadata:
        for label in ("A", "B", "C"):
            if sources.get(label) is not None:
                metadata.update(sources[label].metadata)
        metadata.pop("modelspec.thumbnail", None)
    try:
        extra = json.loads(req.metadata_json or "{}")
    except json.JSONDecodeError as error:
        raise MergeError(f"Metadata in JSON format is not valid JSON ({error})") from None
    if not isinstance(extra, dict):
        raise MergeError("Metadata in JSON format must be a JSON object")
    metadata.update(extra)
    metadata["format"] = "pt"
    if req.add_recipe:
        recipe = {
            "type": "webui",
            "primary_model_hash": hashes.get("A"),
            "secondary_model_hash": hashes.get("B"),
            "tertiary_model_hash": hashes.get("C"),
            "interp_method": req.interp_method,
            "multiplier": float(req.multiplier),
            "save_as_half": bool(req.save_as_half),
            "custom_name": req.custom_name,
            "config_source": int(req.config_source),
            "bake_in_vae": req.bake_in_vae_name,
            "discard_weights": req.discard_weights,
            "is_inpainting": flag == "inpainting",
            "is_instruct_pix2pix": flag == "instruct-pix2pix",
        }
        if alphas is not None:
            recipe["block_weights"] = alphas.normalised()
            recipe["block_weights_source"] = alphas.source
        metadata["sd_merge_recipe"] = json.dumps(recipe)
        models = {}
        for label in ("A", "B", "C"):
            source = sources.get(label)
            if source is None:
                continue
            from modules.hashes import legacy_model_hash
            models[hashes[label]] = {"name": req.names.get(label) or naming.model_name(source.path),
                                     "legacy_hash": legacy_model_hash(source.path),
                                     "sd_merge_recipe": _parse_json_value(source.metadata.get("sd_merge_recipe"))}
            ancestry = _parse_json_value(source.metadata.get("sd_merge_models"))
            if isinstance(ancestry, dict):
                models.update(ancestry)
        metadata["sd_merge_models"] = json.dumps(models)
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def _target_path(req, a_path, flag, alphas_used: bool) -> str:
    if req.output_path:
        path = os.path.abspath(req.output_path)
        if os.path.splitext(path)[1].lower() not in (".safetensors", ".ckpt"):
            raise MergeError(f"{req.output_path}: the output must end in .safetensors or .ckpt")
        if not os.path.isdir(os.path.dirname(path)):
            raise MergeError(f"folder {os.path.dirname(path)} does not exist")
        return path
    folder = req.output_dir or os.path.dirname(a_path)
    names = {label: req.names.get(label) or (naming.model_name(p) if p else None)
             for label, p in (("A", req.primary), ("B", req.secondary), ("C", req.tertiary))}
    stem = req.custom_name or naming.default_stem(req.interp_method, names["A"], names["B"], names["C"],
                                                  float(req.multiplier), alphas_used)
    return naming.output_path(folder, stem, req.checkpoint_format, flag)


def _copy_config(req, target: str) -> None:
    """`<stem>.yaml` beside the result: from the first of A, B, C that has one (0), B (1), C (2), none (3)."""
    candidates = {0: [req.primary, req.secondary, req.tertiary], 1: [req.secondary], 2: [req.tertiary]}.get(
        int(req.config_source), [])
    for path in candidates:
        if path:
            yaml = os.path.splitext(path)[0] + ".yaml"
            if os.path.isfile(yaml):
                shutil.copyfile(yaml, os.path.splitext(target)[0] + ".yaml")
                return


def merge(req: MergeRequest, progress: ProgressFn = _no_progress, should_stop: Callable[[], bool] = lambda: False,
          hash_file: Callable[[str], str] | None = None) -> MergeResult:
    """Run one merge; raises MergeError (nothing written) or MergeInterrupted (nothing left)."""
    from modules import hashes as hashes_module
    hash_file = hash_file or hashes_module.calculate_sha256
    _check_request(req)
    method = req.interp_method
    progress("Loading A", 0, 0)
    a = CheckpointSource(req.primary)
    b = c = None
    if method != "No interpolation":
        progress("Loading B", 0, 0)
        b = CheckpointSource(req.secondary)
    if method == "Add difference":
        progress("Loading C", 0, 0)
        c = CheckpointSource(req.tertiary)
    others = [(s, label) for s, label in ((b, "B"), (c, "C")) if s is not None]
    layout = _check_compatible(a, others)
    alphas = build_alphas(req, layout) if b is not None else None
    if alphas is not None and req.block_alphas:
        _warn_unmatched(alphas, a)
    vae_tensors = {}
    if req.bake_in_vae:
        progress("Baking in VAE", 0, 0)
        vae_tensors = {k: v for k, v in _read_vae(req.bake_in_vae).items() if k in a.shapes}
    steps, flag = _plan(req, a, b, c, alphas, vae_tensors)
    target = _target_path(req, a.path, flag, alphas is not None and bool(req.block_weights or req.block_alphas))
    naming.check_target(target, [req.primary, req.secondary, req.tertiary], req.overwrite)
    is_ckpt = target.lower().endswith(".ckpt")

    progress("Hashing the inputs", 0, 0)
    sources = {"A": a, "B": b, "C": c}
    input_hashes = {label: hash_file(s.path) for label, s in sources.items() if s is not None}
    metadata = build_metadata(req, sources, input_hashes, flag, alphas) if req.save_metadata and not is_ckpt else {}
    if ARCHITECTURE_METADATA_KEY in a.metadata:
        metadata[ARCHITECTURE_METADATA_KEY] = a.metadata[ARCHITECTURE_METADATA_KEY]

    stage = "Merging A and B" if b is not None else "Saving"
    temp = target + ".tmp"
    total = len(steps)
    try:
        if is_ckpt:
            state = {}
            for done, step in enumerate(steps):
                if should_stop():
                    raise MergeInterrupted()
                progress(stage, done, total)
                state[step.key] = _whole(step, req, a, b, c, vae_tensors)
            progress("Saving", total, total)
            payload = {"state_dict": state}
            if ARCHITECTURE_METADATA_KEY in a.metadata:
                payload[ARCHITECTURE_METADATA_KEY] = a.metadata[ARCHITECTURE_METADATA_KEY]
            torch.save(payload, temp)
            del state, payload
            sha256 = hashes_module.calculate_sha256(temp)
        else:
            with open(temp, "wb", buffering=1 << 20) as file:
                writer = StreamingSafetensorsWriter(file, [(s.key, s.shape, s.dtype) for s in steps], metadata)
                for done, step in enumerate(steps):
                    if should_stop():
                        raise MergeInterrupted()
                    progress(stage, done, total)
                    if step.from_vae:
                        writer.write(step.key, vae_tensors[step.key].to(step.dtype))
                        continue
                    for start, stop in _iter_slices(step):
                        writer.write(step.key, _compute(step, req, a, b, c, start, stop))
                sha256 = writer.finish()
                os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    finally:
        for source in sources.values():
            if source is not None:
                source.close()
    _copy_config(req, target)
    progress("Checkpoint saved", total, total)
    return MergeResult(target, sha256, flag == "inpainting", flag == "instruct-pix2pix", metadata, alphas)


def _whole(step, req, a, b, c, vae_tensors) -> torch.Tensor:
    if step.from_vae:
        return vae_tensors[step.key].to(step.dtype)
    parts = [_compute(step, req, a, b, c, start, stop) for start, stop in _iter_slices(step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _warn_unmatched(alphas: block_weights.BlockAlphas, a: CheckpointSource) -> None:
    """A block the family has but this file lacks (tiny test models) is reported, not an error."""
    present = set()
    for key in a.keys:
        if key.startswith(block_weights.UNET_PREFIX):
            parts = key[len(block_weights.UNET_PREFIX):].split(".")
            if len(parts) > 2 and parts[1].isdigit():
                present.add((parts[0], int(parts[1])))
    missing = sorted(k for k in alphas.blocks if k not in present)
    if missing:
        names = ", ".join(f"{c}.{i}" for c, i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        print(f"Notice: {a.path} has no {names}; those block weights match no key")
