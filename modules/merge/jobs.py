"""A merge as a job on the queue: names -> files, progress in `shared.state`, the new file listed.

Shared by the tab and the API, so both resolve names, report progress and refresh the checkpoint
list the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from modules import hashes, sd_models, sd_vae, shared
from modules.merge import engine
from modules.merge.errors import MergeError
from modules.merge.presets import load_presets

JOB_NAME = "model-merge"
USER_PRESETS_FILE = "merge_block_presets.txt"  # in the data folder: NAME<TAB>values per line


@dataclass
class SavedCheckpoint:
    filename: str
    title: str
    sha256: str
    info: str


def resolve_checkpoint(identifier: str | None, field: str, exact: bool) -> sd_models.CheckpointInfo | None:
    """A checkpoint title/name -> its info; unknown names raise MergeError listing the valid ones."""
    if not identifier:
        return None
    info = sd_models.checkpoint_aliases.get(identifier) if exact else sd_models.get_closet_checkpoint_match(identifier)
    if info is None or info.is_folder:
        valid = ", ".join(sd_models.checkpoint_titles()) or "(none: put checkpoints into " + shared.paths.checkpoints + ")"
        what = "is a diffusers folder and cannot be merged" if info is not None else "not found"
        raise MergeError(f"{field}: checkpoint '{identifier}' {what}; valid: {valid}")
    return info


def resolve_vae(name: str | None) -> tuple[str | None, str]:
    if not name or name == "None":
        return None, "None"
    if name not in sd_vae.vae_dict:
        valid = ", ".join(["None", *sd_vae.vae_dict])
        raise MergeError(f"bake_in_vae: VAE '{name}' not found; valid: {valid}")
    return sd_vae.vae_dict[name], name


def user_presets() -> dict[str, list[float]]:
    return load_presets(os.path.join(shared.paths.data, USER_PRESETS_FILE))


def _hash_input(path: str) -> str:
    for info in list(sd_models.checkpoints_list.values()):
        if info.filename == os.path.abspath(path) and info.calculate_shorthash():
            return info.sha256
    return hashes.calculate_sha256(path)


def _progress(text: str, done: int, total: int) -> None:
    state = shared.state
    state.textinfo = text
    state.job_count = 1
    state.sampling_steps = total
    state.sampling_step = done


def run_merge(req: engine.MergeRequest) -> SavedCheckpoint:
    """On the worker: merge, cache the new file's hash, rescan the checkpoint list."""
    result = engine.merge(req, progress=_progress, should_stop=lambda: shared.state.interrupted,
                          hash_file=_hash_input)
    root = shared.paths.checkpoints
    if shared.paths.checkpoint_extra and os.path.commonpath(
            [os.path.abspath(shared.paths.checkpoint_extra), result.filename]) == os.path.abspath(shared.paths.checkpoint_extra):
        root = shared.paths.checkpoint_extra
    name = os.path.relpath(result.filename, root) if os.path.commonpath(
        [os.path.abspath(root), result.filename]) == os.path.abspath(root) else os.path.basename(result.filename)
    if not shared.cmd_opts.no_hashing:
        shared.hash_cache.put("checkpoint", name, result.filename, result.sha256)
    sd_models.list_models()
    info = next((i for i in sd_models.checkpoints_list.values() if i.filename == result.filename), None)
    title = info.title if info is not None else name
    return SavedCheckpoint(result.filename, title, result.sha256, f"Checkpoint saved to {result.filename}")


def submit_merge(req: engine.MergeRequest) -> SavedCheckpoint:
    """Queue the merge and wait for it (UI and API callers)."""
    return shared.job_queue.run(lambda: run_merge(req), name=JOB_NAME)
