"""External VAE files: discovery and the selection rules of generation.md §15."""
import json
import os
import re

from modules import hashes, shared
from modules.models.loader import ModelLoadError, load_vae_file

VAE_EXTENSIONS = (".pt", ".ckpt", ".safetensors")

vae_dict: dict[str, str] = {}  # file name (with extension) -> absolute path


def _natural_key(text: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def refresh_vae_list() -> None:
    found: list[str] = []
    paths = shared.paths
    for folder in (paths.vae, paths.vae_extra):
        found += _files(folder, lambda name: name.lower().endswith(VAE_EXTENSIONS))
    for folder in (paths.checkpoints, paths.checkpoint_extra):
        found += _files(folder, lambda name: ".vae." in name.lower() and name.lower().endswith(VAE_EXTENSIONS))
    vae_dict.clear()
    for path in sorted(found, key=lambda p: _natural_key(os.path.basename(p))):
        vae_dict[os.path.basename(path)] = path  # later duplicates of a name win


def is_known_choice(choice: str) -> bool:
    """A value the sd_vae setting can take: Automatic, None or a file name from the VAE list."""
    return choice in ("Automatic", "None") or choice in vae_dict


def _files(folder, accept):
    if not folder or not os.path.isdir(folder):
        return []
    return [os.path.join(dirpath, name) for dirpath, _dirs, files in os.walk(folder, followlinks=True)
            for name in files if accept(name)]


def _user_metadata_vae(checkpoint_filename: str) -> str | None:
    sidecar = os.path.splitext(checkpoint_filename)[0] + ".json"
    if not os.path.exists(sidecar):
        return None
    try:
        with open(sidecar, encoding="utf8") as file:
            return json.load(file).get("vae")
    except (OSError, ValueError) as e:
        print(f"Ignoring unreadable user metadata {sidecar}: {e}")
        return None


def resolve_vae(checkpoint_filename: str) -> tuple[str | None, str]:
    """(path or None for the built-in VAE, the reason) for a checkpoint being loaded."""
    if shared.cmd_opts.vae_path:
        return shared.cmd_opts.vae_path, "from --vae-path"
    choice = shared.opts.sd_vae
    if shared.opts.sd_vae_overrides_per_model_preferences and choice != "Automatic":
        if choice == "None":
            return None, "settings: None"
        if choice in vae_dict:
            return vae_dict[choice], "from settings"
        print(f"VAE '{choice}' not found; using the checkpoint's own VAE")
        return None, "settings: not found"
    user = _user_metadata_vae(checkpoint_filename)
    if user == "None":
        return None, "user metadata: None"
    if user and user != "Automatic":
        if user in vae_dict:
            return vae_dict[user], "from user metadata"
        print(f"VAE '{user}' from user metadata not found")
    stem = os.path.splitext(os.path.basename(checkpoint_filename))[0]
    for name, path in vae_dict.items():
        if name.startswith(stem):
            return path, "found near the checkpoint"
    if choice in vae_dict:
        return vae_dict[choice], "from settings"
    return None, "built-in"


def apply_vae_for(model) -> None:
    path, reason = resolve_vae(model.sd_checkpoint_info.filename)
    if path != model.loaded_vae_file:
        load_vae(model, path)
        print(f"VAE: {os.path.basename(path) if path else 'the checkpoint own'} ({reason})")


def load_vae(model, path: str | None) -> None:
    """Swap the model's VAE weights to `path`, or back to its own weights for None."""
    if path == model.loaded_vae_file:
        return
    state = model.base_vae_state if path is None else load_vae_file(path)
    dtype = next(model.vae.parameters()).dtype
    try:
        model.vae.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        model.vae.load_state_dict(model.base_vae_state)  # a partial load must not linger
        model.loaded_vae_file = None
        raise ModelLoadError(f"VAE {path} does not fit the loaded checkpoint "
                             f"({model.sd_checkpoint_info.name}): {str(e).splitlines()[0]}") from None
    model.loaded_vae_file = path


def vae_name_and_hash(model) -> tuple[str | None, str | None]:
    if not model.loaded_vae_file:
        return None, None
    name = os.path.basename(model.loaded_vae_file)
    sha = hashes.sha256(shared.hash_cache, "vae", name, model.loaded_vae_file)
    return name, sha[:10]
