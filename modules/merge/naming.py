"""Output file names (A1111's rules, merge-train.md §1.6) and the checks on the target path."""
from __future__ import annotations

import os

from modules.merge.errors import MergeError

FORMATS = ("safetensors", "ckpt")


def model_name(path: str, root: str | None = None) -> str:
    """A1111's `model_name`: the path relative to the checkpoint folder, no extension, / and \\ -> _."""
    path = os.path.abspath(path)
    if root and os.path.commonpath([os.path.abspath(root), path]) == os.path.abspath(root):
        name = os.path.relpath(path, root)
    else:
        name = os.path.basename(path)
    return os.path.splitext(name)[0].replace("/", "_").replace("\\", "_")


def default_stem(method: str, a: str, b: str | None, c: str | None, multiplier: float, block_weights: bool) -> str:
    if method == "No interpolation":
        return a
    if block_weights:
        return f"{a} + {b} (blocks)" if method == "Weighted sum" else f"{a} + ({b} - {c}) (blocks)"
    if method == "Weighted sum":
        return f"{round(1 - multiplier, 2)}({a}) + {round(multiplier, 2)}({b})"
    return f"{a} + {round(multiplier, 2)}({b} - {c})"


def output_path(folder: str, stem: str, checkpoint_format: str, flag: str | None) -> str:
    """`<folder>/<stem>[.inpainting|.instruct-pix2pix].<format>`; the stem may name an existing sub-folder."""
    if checkpoint_format not in FORMATS:
        raise MergeError(f"checkpoint_format must be one of {', '.join(FORMATS)}, got {checkpoint_format!r}")
    if not stem.strip():
        raise MergeError("the output name is empty")
    if os.path.isabs(stem) or ".." in stem.replace("\\", "/").split("/"):
        raise MergeError(f"custom name {stem!r} must stay inside the checkpoint folder")
    name = stem + (f".{flag}" if flag else "") + "." + checkpoint_format
    path = os.path.join(folder, name)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise MergeError(f"folder {parent} does not exist (a custom name with / needs an existing sub-folder)")
    return path


def check_target(path: str, inputs: list[str], overwrite: bool) -> None:
    real = os.path.realpath(path)
    for source in inputs:
        if source and real == os.path.realpath(source):
            raise MergeError(f"{path} is one of the models being merged; choose another name")
    if os.path.exists(path) and not overwrite:
        raise MergeError(f"{path} already exists; choose another name or allow overwriting")
