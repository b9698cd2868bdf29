"""Prompt template files for embedding / hypernetwork training (merge-train.md §4.4).

One prompt per line; `[name]` becomes the embedding or hypernetwork name and `[filewords]` the
image's caption. Files are found recursively under the templates folder and keyed by file name.
"""
from __future__ import annotations

import os

from modules.paths import script_path

DEFAULT_TEMPLATES_DIR = os.path.join(script_path, "textual_inversion_templates")


def templates_dir(cmd_opts=None) -> str:
    folder = getattr(cmd_opts, "textual_inversion_templates_dir", None) if cmd_opts is not None else None
    return folder or DEFAULT_TEMPLATES_DIR


def list_templates(folder: str) -> dict[str, str]:
    """{file name: path} of every .txt under folder, sorted by name."""
    found = {}
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".txt"):
                found.setdefault(name, os.path.join(root, name))
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def read_template(path: str) -> list[str]:
    with open(path, encoding="utf8") as file:
        lines = [line.strip() for line in file.read().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"prompt template {path} has no lines")
    return lines


def fill(template: str, name: str, filewords: str) -> str:
    return template.replace("[filewords]", filewords).replace("[name]", name)
