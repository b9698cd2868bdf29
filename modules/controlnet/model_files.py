"""ControlNet model files: where they are found, how they are named and looked up (controlnet.md §1.1).

A model is listed as `<stem> [<legacy hash>]`; clients name it by that title, by its stem, or by a
part of its stem (`canny`)."""
import os
from dataclasses import dataclass

from modules import hashes, shared

SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
NONE = "None"


class ControlNetModelNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ControlNetFile:
    path: str          # a file, or a diffusers folder (config.json + weights)
    stem: str
    legacy_hash: str

    @property
    def title(self) -> str:
        return f"{self.stem} [{self.legacy_hash}]"


def model_folders() -> list[str]:
    """In the order the extension scans them; an earlier folder's entry wins over a later one."""
    folders = [os.path.join(shared.paths.models, "ControlNet")]
    setting = shared.opts.control_net_models_path
    if setting:
        folders.append(setting)
    if shared.cmd_opts.controlnet_dir:
        folders.append(shared.cmd_opts.controlnet_dir)
    return folders


_hash_cache: dict[tuple, str] = {}


def _legacy_hash(path: str) -> str:
    """sha256 of the 64 KiB at 1 MiB, first 8 hex (a file under 1 MiB hashes the empty string)."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime)
    if key not in _hash_cache:
        _hash_cache[key] = hashes.legacy_model_hash(path)
    return _hash_cache[key]


def _is_diffusers_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        name.startswith("diffusion_pytorch_model") for name in os.listdir(path))


def _scan(folder: str) -> list[ControlNetFile]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        if root != folder and _is_diffusers_folder(root):
            weights = sorted(n for n in files if n.startswith("diffusion_pytorch_model"))
            found.append(ControlNetFile(root, os.path.basename(root), _legacy_hash(os.path.join(root, weights[0]))))
            dirs[:] = []
            continue
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in SUFFIXES or stem == NONE or name.startswith("diffusion_pytorch_model"):
                continue
            path = os.path.join(root, name)
            found.append(ControlNetFile(path, stem, _legacy_hash(path)))
    return found


def list_models() -> list[ControlNetFile]:
    seen, models = set(), []
    for folder in model_folders():
        if not os.path.isdir(folder):
            continue
        for entry in _scan(folder):
            if entry.stem not in seen:
                seen.add(entry.stem)
                models.append(entry)
    return models


def find_model(name: str, models: list[ControlNetFile] | None = None) -> ControlNetFile:
    """Exact title, then lower-cased stem, then the shortest stem containing the text."""
    models = list_models() if models is None else models
    for entry in models:
        if entry.title == name:
            return entry
    wanted = name.split(" [")[0].strip().lower()
    has_hash = "[" in name
    for entry in models:
        if entry.stem.lower() == wanted and not has_hash:
            return entry
    if not has_hash:
        matches = sorted((e for e in models if wanted and wanted in e.stem.lower()), key=lambda e: len(e.stem))
        if matches:
            return matches[0]
    valid = ", ".join(e.title for e in models) or f"none (put ControlNet models into {model_folders()[0]})"
    raise ControlNetModelNotFound(f"ControlNet model '{name}' not found; valid names: {valid}")
