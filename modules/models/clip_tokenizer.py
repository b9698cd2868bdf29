"""CLIP BPE tokenizer built offline from the vocabulary file that open_clip_torch ships.

SD1 (CLIP ViT-L/14), SD2 (OpenCLIP ViT-H/14) and SDXL (both) share one 49408-token vocabulary;
they differ only in the padding token (offline.md §1.4). Nothing is fetched from the Hub: the
vocabulary and merges are derived from ``open_clip/bpe_simple_vocab_16e6.txt.gz`` as described in
offline.md §1.2.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
from pathlib import Path

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 49408
MERGE_COUNT = 49152 - 256 - 2  # 48894: the file holds more merge lines than CLIP uses
MODEL_MAX_LENGTH = 77

# Pad tokens per text encoder family.
PAD_CLIP_L = END_TOKEN
PAD_OPEN_CLIP = "!"


def bpe_file_path() -> Path:
    """Locate the BPE vocabulary inside the installed open_clip package without importing it
    (its __init__ pulls torchvision and more)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"open_clip_torch is not installed; it provides {BPE_FILE_NAME}, needed for the CLIP tokenizer"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BPE_FILE_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{BPE_FILE_NAME} not found in the open_clip package at {list(spec.submodule_search_locations)}")


def _byte_characters() -> list[str]:
    """The 256 byte-level symbols in id order: printable Latin-1 first, the rest moved to 256+."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    printable_set = set(printable)
    remapped = [b for b in range(256) if b not in printable_set]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(remapped))]


@functools.lru_cache(maxsize=1)
def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return (token -> id, merges) exactly as CLIP's reference tokenizer builds them."""
    with gzip.open(bpe_file_path(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    if len(merges) != MERGE_COUNT or any(len(m) != 2 for m in merges):
        raise ValueError(f"{bpe_file_path()} does not hold {MERGE_COUNT} two-symbol merge lines")
    chars = _byte_characters()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"CLIP vocabulary built from {bpe_file_path()} has {len(vocab)} entries, expected {VOCAB_SIZE}")
    return vocab, merges


def _tokenizer_config(pad_token: str) -> dict:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": pad_token,
    }


@functools.lru_cache(maxsize=None)
def load_clip_tokenizer(pad_token: str = PAD_CLIP_L):
    """A ready CLIPTokenizer (77-token context) with the given pad token; cached per pad token.

    Callers share the returned object: do not add tokens to it.
    """
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges()
    if pad_token not in vocab:
        raise ValueError(f"pad token {pad_token!r} is not in the CLIP vocabulary")
    config = _tokenizer_config(pad_token)
    del config["tokenizer_class"]
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), **config)
    # A tokenizer silently built without vocabulary maps everything to one id (offline.md §1.3).
    assert len(tokenizer) == VOCAB_SIZE, f"CLIP tokenizer has {len(tokenizer)} tokens, expected {VOCAB_SIZE}"
    # Without this, diffusers pads to 1e30 tokens and overflows.
    tokenizer.model_max_length = MODEL_MAX_LENGTH
    return tokenizer


def write_tokenizer_folder(folder: str | os.PathLike, pad_token: str = PAD_CLIP_L) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json, the layout
    `CLIPTokenizer.from_pretrained` (transformers 4 and 5) and diffusers config folders expect."""
    vocab, merges = vocab_and_merges()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = _tokenizer_config(pad_token)
    special = {key: config[key] for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a CLIP tokenizer folder generated from the packaged BPE file.")
    parser.add_argument("folder")
    parser.add_argument("--pad", default=PAD_CLIP_L, help=f"pad token: {PAD_CLIP_L!r} (CLIP-L) or {PAD_OPEN_CLIP!r} (OpenCLIP)")
    args = parser.parse_args()
    print(write_tokenizer_folder(args.folder, args.pad))
