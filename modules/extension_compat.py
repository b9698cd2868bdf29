"""A1111 names that extensions read from modules whose own job is elsewhere (extensions.md §7):
attached to those modules when extensions load, so `shared.sd_upscalers`, `devices.device`,
`sd_samplers.samplers_map` ... exist with A1111's meaning."""
import contextlib
import os
import re

from modules import devices, hashes, hires, infotext_utils, paths, sd_models, sd_samplers, shared
from modules.options import OptionInfo


class OptionHTML(OptionInfo):
    """A settings-page text block (no value)."""

    def __init__(self, text):
        super().__init__(str(text).strip(), label="", component=None)
        self.do_not_save = True


def natural_sort_key(s, regex=re.compile(r"([0-9]+)")):
    return [int(text) if text.isdigit() else text.lower() for text in regex.split(s)]


def listfiles(dirname):
    names = [name for name in sorted(os.listdir(dirname), key=natural_sort_key) if not name.startswith(".")]
    return [os.path.join(dirname, name) for name in names if os.path.isfile(os.path.join(dirname, name))]


def walk_files(path, allowed_extensions=None):
    if not os.path.exists(path):
        return
    allowed = {e.lower() for e in allowed_extensions} if allowed_extensions else None
    for root, _dirs, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is None or os.path.splitext(filename)[1].lower() in allowed:
                yield os.path.join(root, filename)


def html_path(filename):
    return os.path.join(paths.script_path, "html", filename)


def html(filename):
    path = html_path(filename)
    if os.path.exists(path):
        with open(path, encoding="utf8") as file:
            return file.read()
    return ""


class _TotalTqdm:
    """shared.total_tqdm: the console's whole-job progress bar (ours is per pass): no-ops."""

    def reset(self):
        pass

    def update(self):
        pass

    def updateTotal(self, new_total):  # noqa: N802 - A1111's name
        pass

    def clear(self):
        pass


class Upscaler:
    def __init__(self, name):
        self.name = name
        self.data_path = None
        self.model_path = None
        self.scale = 4


def _upscalers() -> list:
    """shared.sd_upscalers: the upscaler registry's entries (each has .name), as listed now."""
    from modules import upscaling
    return list(upscaling.core.list_upscalers())


def install() -> None:
    config = shared.device_config
    for name, value in {
        "OptionHTML": OptionHTML, "options_templates": {}, "demo": getattr(shared, "demo", None),
        "sd_upscalers": _upscalers(),
        "face_restorers": [], "hypernetworks": {},
        "latent_upscale_modes": {name: {} for name in hires.LATENT_UPSCALE_MODES},
        "latent_upscale_default_mode": "Latent", "listfiles": listfiles, "walk_files": walk_files,
        "natural_sort_key": natural_sort_key, "html": html, "html_path": html_path,
        "models_path": shared.paths.models, "script_path": paths.script_path, "data_path": shared.paths.data,
        "refresh_checkpoints": sd_models.list_models, "list_checkpoint_tiles": lambda *a: sd_models.checkpoint_titles(),
        "total_tqdm": _TotalTqdm(), "device": config.device,
    }.items():
        setattr(shared, name, value)
    for name, value in {
        "device": config.device, "cpu": __import__("torch").device("cpu"), "dtype": config.dtype,
        "dtype_vae": config.dtype_vae, "autocast": lambda disable=False: contextlib.nullcontext(),
        "without_autocast": lambda disable=False: contextlib.nullcontext(),
        "get_optimal_device": lambda: config.device,
    }.items():
        if not hasattr(devices, name) or name in ("device", "dtype", "dtype_vae"):
            setattr(devices, name, value)
    samplers_map = {}
    for sampler in sd_samplers.all_samplers:
        samplers_map[sampler.name.lower()] = sampler.name
        for alias in sampler.aliases:
            samplers_map[alias.lower()] = sampler.name
    sd_samplers.samplers_map = samplers_map
    sd_samplers.samplers_for_img2img = list(sd_samplers.all_samplers)

    def find_sampler_config(name):
        try:
            return sd_samplers.find_sampler(name)
        except sd_samplers.SamplerNotFound:
            return None
    sd_samplers.find_sampler_config = find_sampler_config
    if not hasattr(sd_models, "select_checkpoint"):
        sd_models.select_checkpoint = sd_models.select_checkpoint_at_start
    if not hasattr(sd_models, "model_hash"):
        sd_models.model_hash = hashes.legacy_model_hash
    if not hasattr(infotext_utils, "unquote"):
        import json

        def unquote(text):
            if len(text) == 0 or text[0] != '"' or text[-1] != '"':
                return text
            try:
                return json.loads(text)
            except ValueError:
                return text
        infotext_utils.unquote = unquote
    paths.data_path = shared.paths.data
    paths.models_path = shared.paths.models
    paths.extensions_dir = os.path.join(shared.paths.data, "extensions")
    paths.extensions_builtin_dir = os.path.join(paths.script_path, "extensions-builtin")
