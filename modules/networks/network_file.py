"""Reading a LoRA / LyCORIS file into groups of tensors, independent of any model.

This is the function API other parts (training, merging) use:

    network = load_network_file(path)          # NetworkData: groups, metadata, sd version
    groups = network.groups                    # {kohya module name: {part: tensor}}
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field

import torch

from modules.networks import bundled as bundled_embeddings, files, keymap, network_types


class NetworkLoadError(ValueError):
    """A network file that cannot be used; the message names the file and the reason."""


@dataclass
class NetworkData:
    name: str
    filename: str
    mtime: float
    metadata: dict
    groups: dict[str, dict[str, torch.Tensor]]
    sd_version: str = files.SdVersion.Unknown
    bundled_embeddings: dict = field(default_factory=dict)  # embedding name -> its file data (§3.11)
    sdxl_text_names: bool = False
    # (st_mtime_ns, st_size) of the file taken before it was read: a file that changes after (or
    # while) it is read no longer matches, so it is read again
    stamp: tuple = ()
    # worked out once per loaded file, not per job (modules.networks.lora):
    # module name -> network_types.Prepared, and UNet -> layers of that model the groups match
    prepared: dict = field(default_factory=dict, repr=False, compare=False)
    matches: "weakref.WeakKeyDictionary" = field(default_factory=weakref.WeakKeyDictionary, repr=False,
                                                 compare=False)

    @property
    def key(self) -> tuple:
        """Identifies this content of the file: the same for a re-read of an unchanged file."""
        return (self.filename, self.stamp, self.sdxl_text_names)


def file_stamp(path: str) -> tuple[int, int]:
    """(mtime in ns, size) of a file: what tells a changed file from the one read before."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a .pt/.ckpt read with weights_only (no custom classes)."""
    lowered = path.lower()
    try:
        if lowered.endswith(".safetensors"):
            from safetensors.torch import load_file
            return load_file(path, device="cpu")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NetworkLoadError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's problem, reported by name
        raise NetworkLoadError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise NetworkLoadError(f"{path}: not a dictionary of tensors")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def version_from_keys(groups: dict) -> str:
    """SD version from key names and shapes (networks.md §1.5, Ours)."""
    if any(name.startswith("lora_te2_") for name in groups):
        return files.SdVersion.SDXL
    for name, parts in groups.items():
        down = parts.get("lora_down.weight")
        if down is None or down.dim() != 2:
            continue
        if name.endswith("attn2_to_k") and name.startswith("lora_unet_"):
            return {768: files.SdVersion.SD1, 1024: files.SdVersion.SD2, 2048: files.SdVersion.SDXL}.get(
                down.shape[1], files.SdVersion.Unknown)
        if name.startswith("lora_te_") and name.endswith("self_attn_q_proj"):
            return {768: files.SdVersion.SD1, 1024: files.SdVersion.SD2}.get(down.shape[1], files.SdVersion.Unknown)
    return files.SdVersion.Unknown


def load_network_file(path: str, name: str | None = None, sdxl_text_names: bool = False) -> NetworkData:
    """Read and group a network file. `sdxl_text_names`: diffusers `text_encoder.` keys are
    SDXL's first encoder (`lora_te1_`) rather than SD1/SD2's (`lora_te_`)."""
    name = name or os.path.splitext(os.path.basename(path))[0]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NetworkLoadError(f"{path}: file not found") from None
    state = read_state_dict(path)
    metadata = {}
    if path.lower().endswith(".safetensors"):
        try:
            metadata = files.read_safetensors_metadata(path)
        except ValueError as e:
            raise NetworkLoadError(str(e)) from None
    try:
        bundled = bundled_embeddings.group_bundled(state, path)
        bundled_embeddings.embeddings_of(bundled, path, name)  # a malformed one fails the file here
    except bundled_embeddings.BundleError as e:
        raise NetworkLoadError(str(e)) from None
    groups = keymap.group_state_dict({k: v for k, v in state.items() if not k.startswith(bundled_embeddings.PREFIX)},
                                     sdxl_text_names)
    for module, parts in groups.items():
        try:
            network_types.network_type(parts)
        except network_types.UnsupportedGroup as e:
            raise NetworkLoadError(f"{path}: module {module}: {e}") from None
    version = files.version_from_metadata(metadata)
    if version == files.SdVersion.Unknown or not metadata.get("ss_base_model_version"):
        by_keys = version_from_keys(groups)
        if by_keys != files.SdVersion.Unknown:
            version = by_keys
    return NetworkData(name=name, filename=path, mtime=st.st_mtime, metadata=metadata,
                       groups=groups, sd_version=version, bundled_embeddings=bundled,
                       sdxl_text_names=sdxl_text_names, stamp=(st.st_mtime_ns, st.st_size))
