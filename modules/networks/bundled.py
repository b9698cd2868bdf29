"""Textual-inversion embeddings bundled in a LoRA file (networks.md §3.11).

A file's `bundle_emb.<emb>.string_to_param.<tok>` (SD1/SD2) or `bundle_emb.<emb>.<vec>` keys
(`clip_l`, `clip_g` for SDXL, or a single `{token: tensor}`) form the embedding `<emb>`. While the
LoRA is active for a job the model's embedding database is a view with them added; the next
activation (and the restore after the job) points the model back at the folders' database.
"""
from __future__ import annotations

import logging

from modules.textual_inversion import textual_inversion as ti

log = logging.getLogger(__name__)

PREFIX = "bundle_emb."


class BundleError(ValueError):
    """Bundled tensors that form no embedding; the message names the file and the embedding."""


def group_bundled(state: dict, path: str) -> dict[str, dict]:
    """{embedding name: embedding file data} from the `bundle_emb.*` keys of a LoRA state dict."""
    grouped: dict[str, dict] = {}
    for key, tensor in state.items():
        if not key.startswith(PREFIX):
            continue
        name, _, vec_name = key[len(PREFIX):].partition(".")
        if not name or not vec_name:
            raise BundleError(f"{path}: bundled embedding key {key!r} has no <name>.<vectors> part")
        data = grouped.setdefault(name, {})
        head, _, token = vec_name.partition(".")
        if head == "string_to_param":
            data.setdefault("string_to_param", {})[token or "*"] = tensor
        else:
            data[vec_name] = tensor
    return grouped


def embeddings_of(bundled: dict[str, dict], path: str, written_name: str) -> list[ti.Embedding]:
    """The Embedding objects of a file's bundled data, for the LoRA as `written_name` in the prompt."""
    found = []
    for name, data in bundled.items():
        try:
            embedding = ti.embedding_from_data(data, name)
        except ti.EmbeddingLoadError as e:
            raise BundleError(f"{path}: bundled embedding {name}: {e}") from None
        embedding.filename = path
        embedding.bundled_in = written_name
        found.append(embedding)
    return found


def base_database(model):
    """The folders' database behind the model's current (possibly bundled-view) database."""
    db = getattr(model, "embedding_db", None)
    return db.base if db is not None and db.base is not None else db


def point_model_at(model, embeddings: list[ti.Embedding]) -> list[str]:
    """Make `model.embedding_db` the folders' database plus `embeddings` (none: the plain one).
    Returns the names skipped because an embeddings-folder file has that name."""
    base = base_database(model)
    if base is None:
        model.embedding_db = None
        if embeddings:
            log.warning("bundled embeddings %s ignored: the model has no embedding database",
                        ", ".join(e.name for e in embeddings))
        return [e.name for e in embeddings]
    if not embeddings:
        model.embedding_db = base
        return []
    view, shadowed = base.with_bundled(embeddings, ti.widths_for_model(model))
    for name in shadowed:
        log.warning("Skip bundle embedding: %s (the embeddings folder has one of that name)", name)
    model.embedding_db = view
    return shadowed
