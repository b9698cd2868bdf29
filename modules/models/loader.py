"""The single path that turns a model file or folder into ready diffusers/transformers modules.

Supported inputs:

* A1111 single files (``.safetensors``; ``.ckpt``/``.pt`` read with ``torch.load(weights_only=True)``
  only, so pickles with custom classes are refused). Family detection: ``detection.py``.
* diffusers folders (``model_index.json`` with ``unet/``, ``vae/``, ``text_encoder/`` …).
* standalone VAE files (``load_vae_file``).

Models are built from the shipped configs in ``configs/<family>/`` (real full-size values) — never
from the Hub — and filled with the file's tensors. Missing tensors are reported by their name in the
file; tensors the model does not use are logged and dropped.

Architecture overrides (how tiny test models load through this same path): a ``.safetensors`` file
may carry the ``__metadata__`` key ``sdwebui_architecture`` whose value is JSON of the form
``{"unet": {...}, "vae": {...}, "text_encoder": {...}, "text_encoder_2": {...}}``. Each dict is
merged key by key over the family's shipped config of that component before the model is built
(e.g. ``{"unet": {"block_out_channels": [16, 32], ...}}``). In a ``.ckpt``/``.pt`` pickle the same JSON
string may sit next to ``state_dict`` at the top level under the same key.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.models import attention_call, ldm_convert
from modules.models.clip_tokenizer import PAD_CLIP_L, PAD_OPEN_CLIP, VOCAB_SIZE, load_clip_tokenizer
from modules.models.detection import detect_family, detect_prediction_type, normalize_prediction
from modules.models.errors import ModelLoadError
from modules.noise_schedule import scaled_linear_alphas_cumprod

__all__ = [
    "ARCHITECTURE_METADATA_KEY",
    "LoadedModel",
    "ModelLoadError",
    "apply_vae_state_dict",
    "family_configs",
    "load_checkpoint",
    "load_diffusers_folder",
    "load_vae_file",
    "read_metadata",
    "read_state_dict",
    "scaled_linear_alphas_cumprod",
]

logger = logging.getLogger(__name__)

ARCHITECTURE_METADATA_KEY = "sdwebui_architecture"
CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# family -> [(config subfolder, pad token)] in LoadedModel.text_encoders order; the single-file
# layout of each encoder is ldm_convert.TEXT_ENCODER_LAYOUT[family].
TEXT_ENCODERS: dict[str, list[tuple[str, str]]] = {
    "sd1": [("text_encoder", PAD_CLIP_L)],
    "sd1-inpaint": [("text_encoder", PAD_CLIP_L)],
    "sd1-pix2pix": [("text_encoder", PAD_CLIP_L)],
    "sd2": [("text_encoder", PAD_OPEN_CLIP)],
    "sdxl": [("text_encoder", PAD_CLIP_L), ("text_encoder_2", PAD_OPEN_CLIP)],
    "sdxl-inpaint": [("text_encoder", PAD_CLIP_L), ("text_encoder_2", PAD_OPEN_CLIP)],
    "sdxl-refiner": [("text_encoder_2", PAD_OPEN_CLIP)],
}


@dataclass
class LoadedModel:
    path: str
    family: str
    prediction_type: str  # "epsilon" | "v_prediction"
    unet: object  # UNet2DConditionModel
    vae: object  # AutoencoderKL
    text_encoders: list  # [CLIPTextModel] or [CLIPTextModel, CLIPTextModelWithProjection] (SDXL)
    tokenizers: list  # CLIPTokenizer per encoder (shared, cached objects: do not add tokens)
    alphas_cumprod: torch.Tensor  # float32, 1000 entries
    vae_scaling_factor: float
    is_sdxl: bool  # SDXL base and refiner (family tells them apart)
    is_inpainting: bool
    is_pix2pix: bool = False  # instruct-pix2pix: 8-channel UNet conditioned on the init image


def _loaded_model(source, family, prediction, unet, vae, text_encoders, tokenizers, scaling) -> LoadedModel:
    attention_call.install(unet)
    attention_call.install(vae)
    return LoadedModel(
        path=source, family=family, prediction_type=prediction, unet=unet, vae=vae,
        text_encoders=text_encoders, tokenizers=tokenizers,
        alphas_cumprod=scaled_linear_alphas_cumprod(), vae_scaling_factor=float(scaling),
        is_sdxl=family in ("sdxl", "sdxl-inpaint", "sdxl-refiner"),
        is_inpainting=family in ("sd1-inpaint", "sdxl-inpaint"), is_pix2pix=family == "sd1-pix2pix")


# ----------------------------------------------------------------------------------------- files


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: file not found")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except SafetensorError as error:
        raise ModelLoadError(f"{path}: corrupt or truncated safetensors file ({error})") from error
    return state, metadata


def _read_pickle(path: Path) -> tuple[dict, dict[str, str]]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise ModelLoadError(
                f"{path}: refused to load: the pickle contains the class {found[1]}, and only plain "
                "tensors are loaded from .ckpt/.pt files (convert it to .safetensors if you trust it)"
            ) from error
        raise ModelLoadError(f"{path}: not a readable PyTorch weights file (corrupt, or unsupported content)") from error
    except Exception as error:  # torch.load raises many types (RuntimeError, KeyError, EOFError…) on bad data
        detail = str(error).split(". ")[0][:200]
        raise ModelLoadError(f"{path}: corrupt or truncated file ({type(error).__name__}: {detail})") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: holds a {type(data).__name__}, not a dictionary of tensors")
    metadata = {key: value for key, value in data.items() if isinstance(key, str) and isinstance(value, str)}
    # Lightning/LDM checkpoints nest the weights under "state_dict" (sometimes twice).
    while isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    return data, metadata


def _read_file(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        state, metadata = _read_pickle(path)
    else:
        raise ModelLoadError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .safetensors, .ckpt or .pt")
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path}: contains no tensors")
    return tensors, metadata


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors / .ckpt / .pt file (nested "state_dict" unwrapped)."""
    return _read_file(path)[0]


def read_metadata(path) -> dict[str, str]:
    """safetensors ``__metadata__`` (or top-level strings of a pickle); {} when there is none."""
    return _read_file(path)[1] if Path(path).suffix.lower() in PICKLE_SUFFIXES else _safetensors_metadata(Path(path))


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    _check_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except SafetensorError as error:
        raise ModelLoadError(f"{path}: corrupt or truncated safetensors file ({error})") from error


# --------------------------------------------------------------------------------------- configs


@functools.lru_cache(maxsize=None)
def _shipped_config(family: str, component: str) -> dict | None:
    file = CONFIG_ROOT / family / component / "config.json"
    if not file.is_file():
        return None
    return json.loads(file.read_text(encoding="utf-8"))


def parse_architecture_overrides(metadata: Mapping[str, str], source) -> dict[str, dict]:
    raw = metadata.get(ARCHITECTURE_METADATA_KEY)
    if raw is None:
        return {}
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{source}: metadata {ARCHITECTURE_METADATA_KEY} is not valid JSON ({error})") from error
    if not isinstance(overrides, dict):
        raise ModelLoadError(f"{source}: metadata {ARCHITECTURE_METADATA_KEY} must be a JSON object")
    for name, value in overrides.items():
        if name not in COMPONENTS or not isinstance(value, dict):
            raise ModelLoadError(
                f"{source}: metadata {ARCHITECTURE_METADATA_KEY}: {name!r} must be one of {COMPONENTS} mapped to an object"
            )
    return overrides


def family_configs(family: str, overrides: Mapping[str, Mapping] | None = None) -> dict[str, dict]:
    """Shipped configs of ``family`` per component, with ``overrides`` merged over them."""
    if family not in TEXT_ENCODERS:
        raise ModelLoadError(f"unknown model family {family!r}")
    configs = {}
    for component in COMPONENTS:
        shipped = _shipped_config(family, component)
        if shipped is not None:
            configs[component] = copy.deepcopy(shipped)
    for component, values in (overrides or {}).items():
        if component not in configs:
            raise ModelLoadError(f"architecture override for {component!r}, which {family} does not have")
        configs[component].update(copy.deepcopy(dict(values)))
    return configs


# ---------------------------------------------------------------------------------------- models


def text_encoder_class(config: Mapping):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    architectures = config.get("architectures") or ["CLIPTextModel"]
    return CLIPTextModelWithProjection if architectures[0] == "CLIPTextModelWithProjection" else CLIPTextModel


def text_encoder_config(config: Mapping):
    from transformers import CLIPTextConfig

    config = dict(config)
    # Pooled output at the first end token even if tokens are added (offline.md §2.4 trap).
    config["eos_token_id"] = 49407
    return CLIPTextConfig.from_dict(config)


def _build_on_meta(factory: Callable):
    """Construct without allocating or initialising weights; the file provides all of them."""
    with torch.device("meta"):
        return factory()


def build_unet(config: Mapping):
    from diffusers import UNet2DConditionModel

    return _build_on_meta(lambda: UNet2DConditionModel.from_config(dict(config)))


def build_vae(config: Mapping):
    from diffusers import AutoencoderKL

    return _build_on_meta(lambda: AutoencoderKL.from_config(dict(config)))


def build_text_encoder(config: Mapping):
    cls = text_encoder_class(config)
    hf_config = text_encoder_config(config)
    return _build_on_meta(lambda: cls(hf_config))


def _fix_meta_buffers(model, device) -> None:
    """Non-persistent buffers are not in any file; recreate those we know."""
    for name, buffer in list(model.named_buffers()):
        if not buffer.is_meta:
            continue
        owner_name, _, attr = name.rpartition(".")
        if attr != "position_ids":
            raise RuntimeError(f"buffer {name} of {type(model).__name__} has no value after loading")
        owner = model.get_submodule(owner_name)
        values = torch.arange(buffer.shape[-1], device=device).expand(buffer.shape)
        owner.register_buffer(attr, values, persistent=False)


def _cast(tensor: torch.Tensor, dtype, device) -> torch.Tensor:
    target = dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(device=device, dtype=target).contiguous()


def _fill(model, state: Mapping[str, torch.Tensor], source: str, what: str, file_key: Callable[[str], str], dtype, device):
    """Load ``state`` (model's own key names) into a meta-built model, checking names and shapes."""
    expected = model.state_dict()
    present = {key: value for key, value in state.items() if value is not None}
    unused = sorted(key for key in present if key not in expected)
    # A shape difference means another architecture, so it is reported before missing tensors.
    wrong = [key for key in expected if key in present and tuple(present[key].shape) != tuple(expected[key].shape)]
    if wrong:
        key = wrong[0]
        raise ModelLoadError(
            f"{source}: {what} does not match the expected architecture: {_safe_name(file_key, key)} has shape "
            f"{tuple(present[key].shape)}, expected {tuple(expected[key].shape)} ({len(wrong)} mismatched tensor(s))"
        )
    missing = [key for key in expected if key not in present]
    if missing:
        names = list(dict.fromkeys(_safe_name(file_key, key) for key in missing))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        hint = f" ({len(unused)} tensor(s) of the file do not fit this architecture)" if unused else ""
        raise ModelLoadError(f"{source}: incomplete {what}: {len(names)} tensor(s) missing: {shown}{hint}")
    if unused:
        logger.warning("%s: %d unused %s tensor(s) ignored, e.g. %s", source, len(unused), what, ", ".join(unused[:3]))
    model.load_state_dict({key: _cast(present[key], dtype, device) for key in expected}, strict=True, assign=True)
    _fix_meta_buffers(model, device)
    model.eval()
    model.requires_grad_(False)
    return model


def _safe_name(file_key: Callable[[str], str], key: str) -> str:
    try:
        return file_key(key)
    except (KeyError, ValueError):
        return key  # no LDM name known; the model's own name is still informative


def _model_keys(model, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Put text-encoder keys in the form the model uses (transformers >= 5.6 flattened CLIPTextModel)."""
    if hasattr(model, "text_model"):
        return {key if key.startswith(("text_model.", "text_projection.")) else "text_model." + key: value for key, value in state.items()}
    return {key.removeprefix("text_model."): value for key, value in state.items()}


# ------------------------------------------------------------------------------ single-file load


def _convert_unet(state, config, source):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    try:
        return convert_ldm_unet_checkpoint(state, dict(config))
    except KeyError as error:
        raise ModelLoadError(f"{source}: incomplete UNet: tensor {ldm_convert.UNET_PREFIX}{error.args[0]} missing") from error


def _convert_vae(state, config, source):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    try:
        return convert_ldm_vae_checkpoint(state, dict(config))
    except KeyError as error:
        raise ModelLoadError(f"{source}: incomplete VAE: tensor {error.args[0]} missing") from error


def _convert_text_encoder(layout: str, prefix: str, model, state) -> dict[str, torch.Tensor]:
    if layout == "clip":
        head = prefix + "text_model."
        converted = {"text_model." + key[len(head):]: value for key, value in state.items() if key.startswith(head)}
        # Older transformers saved this non-persistent buffer; it is rebuilt, not loaded.
        converted.pop("text_model.embeddings.position_ids", None)
        return converted
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    return convert_open_clip_checkpoint(model, state, prefix=prefix)


def load_checkpoint(path, prediction_override=None, dtype=torch.float32, device="cpu") -> LoadedModel:
    """Load an A1111 single-file checkpoint (.safetensors / .ckpt / .pt)."""
    source = str(path)
    state, metadata = _read_file(path)
    try:
        family = detect_family(state)
    except ModelLoadError as error:
        raise ModelLoadError(f"{source}: {error}") from error
    configs = family_configs(family, parse_architecture_overrides(metadata, source))
    prediction = detect_prediction_type(path, family, prediction_override)

    unet_config, vae_config = configs["unet"], configs["vae"]
    unet = _fill(
        build_unet(unet_config), _convert_unet(state, unet_config, source), source, "UNet",
        lambda key: ldm_convert.unet_key_to_ldm(key, unet_config), dtype, device,
    )
    num_up = len(vae_config["up_block_types"])
    vae = _fill(
        build_vae(vae_config), _convert_vae(state, vae_config, source), source, "VAE",
        lambda key: ldm_convert.vae_key_to_ldm(key, num_up), dtype, device,
    )
    text_encoders, tokenizers = [], []
    for (component, pad), (layout, prefix) in zip(TEXT_ENCODERS[family], ldm_convert.TEXT_ENCODER_LAYOUT[family]):
        model = build_text_encoder(configs[component])
        converted = _model_keys(model, _convert_text_encoder(layout, prefix, model, state))
        what = f"text encoder ({prefix}*)"
        name_in_file = functools.partial(ldm_convert.text_encoder_key_to_ldm, layout, prefix=prefix)
        text_encoders.append(_fill(model, converted, source, what, name_in_file, dtype, device))
        tokenizers.append(load_clip_tokenizer(pad))
    del state

    return _loaded_model(source, family, prediction, unet, vae, text_encoders, tokenizers,
                         vae_config["scaling_factor"])


# ----------------------------------------------------------------------------------- diffusers dir

_WEIGHT_FILES = {
    "diffusers": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                  "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"),
    "transformers": ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin"),
}


def _read_component_weights(folder: Path, library: str) -> dict[str, torch.Tensor]:
    for name in _WEIGHT_FILES[library]:
        if (folder / name).is_file():
            return read_state_dict(folder / name)
        index = folder / (name + ".index.json")
        if index.is_file():  # sharded weights
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as error:
                raise ModelLoadError(f"{index}: unreadable shard index ({error})") from error
            state = {}
            for shard in shards:
                state.update(read_state_dict(folder / shard))
            return state
    raise ModelLoadError(f"{folder}: no weights file (looked for {', '.join(_WEIGHT_FILES[library])})")


def _read_json(file: Path) -> dict:
    if not file.is_file():
        raise ModelLoadError(f"{file}: file not found")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{file}: invalid JSON ({error})") from error


def _folder_family(folder: Path, index: Mapping, configs: Mapping[str, dict]) -> str:
    def present(name):
        entry = index.get(name)
        return isinstance(entry, (list, tuple)) and entry and entry[0] is not None

    if present("text_encoder_2"):
        family = "sdxl" if present("text_encoder") else "sdxl-refiner"
    elif present("text_encoder"):
        # OpenCLIP-H uses gelu, OpenAI CLIP-L quick_gelu; this also holds for tiny models.
        family = "sd2" if configs["text_encoder"].get("hidden_act") == "gelu" else "sd1"
    else:
        raise ModelLoadError(f"{folder}: model_index.json names no text encoder; not a Stable Diffusion folder")
    in_channels = configs["unet"].get("in_channels", 4)
    variant = {(9, "sd1"): "sd1-inpaint", (8, "sd1"): "sd1-pix2pix", (9, "sdxl"): "sdxl-inpaint"}.get((in_channels, family))
    if variant:
        return variant
    if in_channels != 4:
        raise ModelLoadError(f"{folder}: unsupported architecture: {family} UNet with {in_channels} input channels")
    return family


def _folder_tokenizer(folder: Path, pad: str):
    has_files = ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()) or (folder / "tokenizer.json").is_file()
    if not has_files:
        return load_clip_tokenizer(pad)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    if len(tokenizer) != VOCAB_SIZE:
        raise ModelLoadError(f"{folder}: tokenizer has {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    tokenizer.model_max_length = 77
    return tokenizer


def load_diffusers_folder(path, prediction_override=None, dtype=torch.float32, device="cpu") -> LoadedModel:
    """Load a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/ …)."""
    folder = Path(path)
    source = str(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{source}: folder not found")
    index = _read_json(folder / "model_index.json")
    configs = {
        component: _read_json(folder / component / "config.json")
        for component in COMPONENTS
        if (folder / component / "config.json").is_file()
    }
    for required in ("unet", "vae"):
        if required not in configs:
            raise ModelLoadError(f"{source}: missing {required}/config.json")
    family = _folder_family(folder, index, configs)

    unet = _fill(build_unet(configs["unet"]), _read_component_weights(folder / "unet", "diffusers"),
                 source, "UNet", str, dtype, device)
    vae = _fill(build_vae(configs["vae"]), _read_component_weights(folder / "vae", "diffusers"),
                source, "VAE", str, dtype, device)
    text_encoders, tokenizers = [], []
    for component, pad in TEXT_ENCODERS[family]:
        if component not in configs:
            raise ModelLoadError(f"{source}: missing {component}/config.json")
        model = build_text_encoder(configs[component])
        weights = _model_keys(model, _read_component_weights(folder / component, "transformers"))
        weights.pop("embeddings.position_ids", None)
        weights.pop("text_model.embeddings.position_ids", None)
        text_encoders.append(_fill(model, weights, source, component, str, dtype, device))
        tokenizers.append(_folder_tokenizer(folder / component.replace("text_encoder", "tokenizer"), pad))

    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler_prediction = _read_json(scheduler_file).get("prediction_type") if scheduler_file.is_file() else None
    if prediction_override:
        prediction = normalize_prediction(prediction_override, f"{source}: prediction override")
    elif scheduler_prediction:
        prediction = normalize_prediction(scheduler_prediction, str(scheduler_file))
    else:
        prediction = detect_prediction_type(folder, family)

    return _loaded_model(source, family, prediction, unet, vae, text_encoders, tokenizers,
                         vae.config.scaling_factor)


# ------------------------------------------------------------------------------------ VAE files

_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_OLD_DIFFUSERS_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def load_vae_file(path) -> dict[str, torch.Tensor]:
    """A standalone VAE file (LDM layout with or without ``first_stage_model.``/``vae.`` prefix, or
    diffusers layout) as AutoencoderKL keys."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    source = str(path)
    state = read_state_dict(path)
    for prefix in ("first_stage_model.", "vae."):
        if any(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
            break
    # Drop training leftovers such as "loss.*" and "model_ema.*".
    state = {key: value for key, value in state.items() if key.startswith(_VAE_PARTS)}

    if any(key.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for key in state):
        converted = {}
        for key, value in state.items():
            for old, new in _OLD_DIFFUSERS_ATTENTION.items():
                key = key.replace(old, new)
            if ".attentions." in key and key.endswith(".weight") and value.ndim == 4:
                value = value[:, :, 0, 0]
            converted[key] = value
    elif any(key.startswith(("encoder.down.", "decoder.up.")) for key in state):
        levels = {key.split(".")[2] for key in state if key.startswith(("encoder.down.", "decoder.up."))}
        config = {"down_block_types": ["DownEncoderBlock2D"] * len(levels), "up_block_types": ["UpDecoderBlock2D"] * len(levels)}
        try:
            converted = convert_ldm_vae_checkpoint(state, config)
        except KeyError as error:
            raise ModelLoadError(f"{source}: incomplete VAE: tensor {error.args[0]} missing") from error
        converted = {key: value for key, value in converted.items() if value is not None}
    else:
        raise ModelLoadError(f"{source}: not a VAE file: no encoder/decoder weights found")

    for required in ("decoder.conv_in.weight", "post_quant_conv.weight"):
        if required not in converted:
            raise ModelLoadError(f"{source}: not a complete VAE: {required} missing")
    return converted


def apply_vae_state_dict(vae, state_dict: Mapping[str, torch.Tensor], source: str = "VAE") -> None:
    """Copy AutoencoderKL weights (from ``load_vae_file`` or a saved copy) into ``vae`` in place,
    keeping its dtype and device; ModelLoadError names missing or mismatched tensors."""
    expected = vae.state_dict()
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise ModelLoadError(f"{source}: incomplete VAE: {len(missing)} tensor(s) missing: {', '.join(missing[:5])}")
    for key, target in expected.items():
        if tuple(state_dict[key].shape) != tuple(target.shape):
            raise ModelLoadError(
                f"{source}: VAE does not fit this model: {key} has shape {tuple(state_dict[key].shape)}, "
                f"expected {tuple(target.shape)}"
            )
    with torch.no_grad():
        for key, target in expected.items():
            target.copy_(state_dict[key])
