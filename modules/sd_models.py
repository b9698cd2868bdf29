"""Checkpoint registry (names, titles, hashes) and the currently loaded model.

Discovery and naming follow generation.md §14. Loading goes through modules.models.loader; a file
that fails to load leaves the previously loaded model in place and raises ModelLoadError.
"""
import json
import os
import threading

from modules import devices, hashes, shared
from modules.models.loader import ModelLoadError, load_checkpoint, load_diffusers_folder

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt")


class CheckpointNotFound(LookupError):
    pass


class CheckpointInfo:
    def __init__(self, filename: str, root: str | None):
        self.filename = os.path.abspath(filename)
        self.is_folder = os.path.isdir(self.filename)
        if root and os.path.commonpath([root, self.filename]) == os.path.abspath(root):
            self.name = os.path.relpath(self.filename, root)
        else:
            self.name = os.path.basename(self.filename)
        base = self.name if self.is_folder else os.path.splitext(self.name)[0]
        self.name_for_extra = os.path.basename(base)
        self.model_name = base.replace("/", "_").replace("\\", "_")
        self.hash = None if self.is_folder else hashes.legacy_model_hash(self.filename)
        self.sha256 = None
        self.shorthash = None
        sidecar = os.path.splitext(self.filename)[0] + ".yaml"
        self.config = sidecar if os.path.exists(sidecar) else None
        self.metadata = self._read_metadata()

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.shorthash else self.name

    @property
    def short_title(self) -> str:
        return f"{self.name_for_extra} [{self.shorthash}]" if self.shorthash else self.name_for_extra

    @property
    def ids(self) -> list[str]:
        ids = [self.model_name, self.name, self.name_for_extra, self.title]
        if self.hash:
            ids += [self.hash, f"{self.name} [{self.hash}]"]
        if self.shorthash:
            ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]", self.short_title]
        return ids

    def _read_metadata(self) -> dict:
        if not self.filename.endswith(".safetensors"):
            return {}
        try:
            with open(self.filename, "rb") as file:
                length = int.from_bytes(file.read(8), "little")
                if length <= 0 or length > 100_000_000:
                    return {}
                header = json.loads(file.read(length))
            return header.get("__metadata__", {}) or {}
        except (OSError, ValueError):
            return {}  # an unreadable header is reported when the file is loaded

    def calculate_shorthash(self) -> str | None:
        if self.shorthash or shared.cmd_opts.no_hashing:
            return self.shorthash
        if self.is_folder:
            self.sha256 = _folder_sha256(self.filename)
        else:
            self.sha256 = hashes.sha256(shared.hash_cache, "checkpoint", self.name, self.filename)
        self.shorthash = self.sha256[:10]
        _register_aliases(self)
        return self.shorthash


def _folder_sha256(folder: str) -> str:
    """A diffusers folder's identity: sha256 over the sha256 of each weight file, in path order."""
    import hashlib
    digest = hashlib.sha256()
    for dirpath, _dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if name.endswith((".safetensors", ".bin")):
                digest.update(hashes.calculate_sha256(os.path.join(dirpath, name)).encode())
    return digest.hexdigest()


# Registry of known checkpoints, rebuilt by list_models(); names as in A1111 for extensions.
checkpoints_list: dict[str, CheckpointInfo] = {}
checkpoint_aliases: dict[str, CheckpointInfo] = {}
_registry_lock = threading.Lock()


def _register_aliases(info: CheckpointInfo) -> None:
    with _registry_lock:
        for key in info.ids:
            checkpoint_aliases[key] = info
        # keep checkpoints_list keyed by the current title
        for title, existing in list(checkpoints_list.items()):
            if existing is info and title != info.title:
                del checkpoints_list[title]
        checkpoints_list[info.title] = info


def _scan(folder: str) -> list[str]:
    found = []
    if not folder or not os.path.isdir(folder):
        return found
    for dirpath, dirs, files in os.walk(folder, followlinks=True):
        if "model_index.json" in files and dirpath != folder:
            found.append(dirpath)
            dirs[:] = []  # the components inside are not separate checkpoints
            continue
        dirs.sort()
        for name in sorted(files):
            lowered = name.lower()
            if lowered.endswith(CHECKPOINT_EXTENSIONS) and ".vae." not in lowered:
                found.append(os.path.join(dirpath, name))
    return found


def list_models() -> None:
    """Rescan the checkpoint folders (models/Stable-diffusion, --ckpt-dir, --ckpt)."""
    paths = shared.paths
    infos = [CheckpointInfo(path, paths.checkpoints) for path in _scan(paths.checkpoints)]
    if paths.checkpoint_extra:
        infos += [CheckpointInfo(path, paths.checkpoint_extra) for path in _scan(paths.checkpoint_extra)]
    ckpt = shared.cmd_opts.ckpt
    if ckpt and os.path.exists(ckpt):
        infos.append(CheckpointInfo(ckpt, paths.checkpoints))
    elif ckpt:
        print(f"Checkpoint given with --ckpt not found: {ckpt}")
    with _registry_lock:
        checkpoints_list.clear()
        checkpoint_aliases.clear()
    for info in infos:
        cached = None if info.is_folder else shared.hash_cache.get("checkpoint", info.name, info.filename)
        if cached:
            info.sha256, info.shorthash = cached, cached[:10]
        _register_aliases(info)


def checkpoint_titles() -> list[str]:
    return sorted(checkpoints_list, key=str.lower)


def get_closet_checkpoint_match(search: str) -> CheckpointInfo | None:
    """Exact identifier first, then the shortest title containing the text (A1111's fuzzy rule)."""
    if not search:
        return None
    info = checkpoint_aliases.get(search)
    if info is not None:
        return info
    found = sorted((t for t in checkpoints_list if search in t), key=len)
    if found:
        return checkpoints_list[found[0]]
    stripped = search.rsplit(" [", 1)[0]
    found = sorted((t for t in checkpoints_list if stripped in t), key=len)
    return checkpoints_list[found[0]] if found else None


def find_checkpoint(identifier: str) -> CheckpointInfo:
    """Exact identifiers only (title, name, stem, model_name, hashes): what the API accepts."""
    info = checkpoint_aliases.get(identifier)
    if info is None:
        raise CheckpointNotFound(f"Checkpoint '{identifier}' not found")
    return info


def no_model_message() -> str:
    return ("No checkpoint is loaded. Put a Stable Diffusion checkpoint (.safetensors) into "
            f"{shared.paths.checkpoints} (or pass --ckpt / --ckpt-dir), then press the refresh "
            "button next to the checkpoint list.")


class NoModelError(RuntimeError):
    pass


class SdModel:
    """A loaded checkpoint: the diffusers components plus what the rest of the program asks of it."""

    def __init__(self, info: CheckpointInfo, loaded, device_config: devices.DeviceConfig):
        self.sd_checkpoint_info = info
        self.sd_model_checkpoint = info.filename
        self.sd_model_hash = info.shorthash
        self.loaded = loaded
        self.family = loaded.family
        self.unet = loaded.unet
        self.vae = loaded.vae
        self.text_encoders = loaded.text_encoders
        self.tokenizers = loaded.tokenizers
        self.alphas_cumprod = loaded.alphas_cumprod
        self.vae_scaling_factor = loaded.vae_scaling_factor
        self.parameterization = "v" if loaded.prediction_type == "v_prediction" else "eps"
        self.is_sdxl = loaded.is_sdxl
        self.is_sd2 = loaded.family.startswith("sd2")
        self.is_sd1 = loaded.family.startswith("sd1")
        self.is_inpainting = loaded.is_inpainting
        self.is_pix2pix = loaded.is_pix2pix
        self.device_config = device_config
        self.base_vae_state = {k: v.detach().to("cpu", copy=True) for k, v in self.vae.state_dict().items()}
        self.loaded_vae_file: str | None = None
        self.cond_cache: dict = {}  # the last job's conds (modules.processing.get_conds)
        self._noise_schedules: dict = {}  # settings -> DiscreteSchedule, kept so its t(σ) memo lasts
        self.embedding_db = None     # set by refresh_embeddings

    def noise_schedule(self, opts):
        """The noise table jobs sample with: this model's, with the schedule settings applied."""
        from modules.noise_schedule import DiscreteSchedule, apply_schedule_settings
        key = (bool(opts.use_downcasted_alpha_bar), opts.sd_noise_schedule)
        schedule = self._noise_schedules.get(key)
        if schedule is None:
            schedule = self._noise_schedules[key] = DiscreteSchedule(
                apply_schedule_settings(self.alphas_cumprod, opts))
        return schedule

    def get_learned_conditioning(self, texts: list[str]):
        """A1111's model method: texts (an SdConditioning may mark a negative prompt) -> conds."""
        from modules import conditioning
        return conditioning.encode(self, list(texts), is_negative=getattr(texts, "is_negative_prompt", False))


def _load(info: CheckpointInfo) -> SdModel:
    info.calculate_shorthash()
    # v-prediction is decided by the loader from the sidecar files (offline.md §3.2)
    if info.is_folder:
        loaded = load_diffusers_folder(info.filename)
    else:
        loaded = load_checkpoint(info.filename)
    config = shared.device_config
    components = {"unet": loaded.unet, "vae": loaded.vae}
    components.update({f"text_encoder_{i}": enc for i, enc in enumerate(loaded.text_encoders)})
    devices.place_model(components, config)
    return SdModel(info, loaded, config)


class ModelHolder:
    """Owns the loaded model; only jobs on the queue worker call load/switch."""

    def __init__(self):
        self.sd_model: SdModel | None = None
        self.startup_job = None  # the queue job that loads the first model, if any

    def require(self) -> SdModel:
        if self.sd_model is None:
            raise NoModelError(no_model_message())
        return self.sd_model

    def switch_to(self, info: CheckpointInfo) -> SdModel:
        """Load `info` unless already loaded; on failure the current model stays."""
        current = self.sd_model
        if current is not None and current.sd_checkpoint_info.filename == info.filename:
            return current
        print(f"Loading checkpoint {info.filename}")
        new_model = _load(info)  # raises ModelLoadError; the current model is untouched
        self.sd_model = new_model
        del current
        devices.torch_gc()
        from modules import sd_hijack, sd_vae
        sd_vae.apply_vae_for(new_model)
        sd_hijack.apply_for_job(new_model)  # A1111 applies the attention optimisation on every load
        print(f"Loaded {info.title} ({new_model.family}, {new_model.parameterization})")
        from modules import script_callbacks
        script_callbacks.model_loaded_callback(new_model)  # extensions (reported, never fatal)
        from modules import extra_networks
        extra_networks.model_switched(new_model)  # a job's active LoRA / hypernetworks follow it
        return new_model

    def take_back(self, model: SdModel) -> None:
        """Make a model that is still in memory the loaded one again: a job's base checkpoint for its
        next batch, after the refiner or the hires checkpoint took over in the previous one."""
        if self.sd_model is not model:
            self.sd_model = model
            devices.torch_gc()

    def ensure_for_job(self) -> SdModel:
        """The model named by the (possibly overridden) sd_model_checkpoint setting."""
        from modules import sd_vae
        wanted = shared.opts.sd_model_checkpoint
        if wanted:
            info = get_closet_checkpoint_match(wanted)
            if info is None:
                raise CheckpointNotFound(f"Checkpoint '{wanted}' not found")
            model = self.switch_to(info)
        elif self.sd_model is not None:
            model = self.sd_model
        else:
            first = select_checkpoint_at_start()
            if first is None:
                raise NoModelError(no_model_message())
            model = self.switch_to(first)
        from modules import checkpoint_residency
        checkpoint_residency.restore(model)  # weights moved to RAM by "unload checkpoint" come back
        sd_vae.apply_vae_for(model)  # the job's sd_vae setting may differ from the last job's
        from modules import sd_hijack, sd_unet
        sd_hijack.apply_for_job(model)  # ... and its cross_attention_optimization
        sd_unet.apply_unet(model=model)  # ... and its sd_unet (raises SdUnetError naming the extension)
        refresh_embeddings(model)  # cheap unless the embeddings folder changed
        return model


def refresh_embeddings(model: SdModel, force: bool = False) -> None:
    """Point the model at the embedding database, rescanned for its text-encoder widths."""
    from modules.textual_inversion import widths_for_model
    shared.embedding_db.load_textual_inversion_embeddings(widths_for_model(model), force_reload=force)
    model.embedding_db = shared.embedding_db


def select_checkpoint_at_start() -> CheckpointInfo | None:
    """--ckpt, else the saved setting, else the first checkpoint found."""
    if shared.cmd_opts.ckpt and os.path.exists(shared.cmd_opts.ckpt):
        return checkpoint_aliases.get(CheckpointInfo(shared.cmd_opts.ckpt, shared.paths.checkpoints).name)
    saved = shared.opts.sd_model_checkpoint
    if saved:
        info = get_closet_checkpoint_match(saved)
        if info is not None:
            return info
        print(f"Saved checkpoint '{saved}' not found; using the first one available")
    return next(iter(sorted(checkpoints_list.values(), key=lambda i: i.title.lower())), None)


def load_at_start(holder: ModelHolder) -> None:
    info = select_checkpoint_at_start()
    if info is None:
        print(no_model_message())
        return
    try:
        model = holder.switch_to(info)
    except ModelLoadError as e:
        print(f"Could not load checkpoint: {e}")
        return
    shared.opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title, run_callbacks=False)
