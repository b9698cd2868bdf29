"""LoRA files on disk: listing, header metadata, aliases, hashes and SD version (networks.md §1).

Nothing here touches a model; `NetworkOnDisk` describes one file and `NetworkRegistry` is the
table prompts, cards, the API and paste resolve names through.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading

log = logging.getLogger(__name__)

NETWORK_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
FORBIDDEN_ALIASES = ("none",)

# kohya keys listed first in the metadata view (networks.md §1.2)
_METADATA_FIRST = ("ss_sd_model_name", "ss_resolution", "ss_clip_skip", "ss_num_train_images", "ss_tag_frequency")


class SdVersion:
    """A1111's network.SdVersion names (as strings, the way user metadata stores them)."""
    Unknown = "Unknown"
    SD1 = "SD1"
    SD2 = "SD2"
    SDXL = "SDXL"


def natural_key(text: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def read_safetensors_metadata(path: str) -> dict:
    """The `__metadata__` of a .safetensors header, JSON-looking strings decoded (§1.2).

    Raises ValueError with a message naming the file when the header is not a safetensors header.
    """
    with open(path, "rb") as file:
        raw = file.read(8)
        length = int.from_bytes(raw, "little") if len(raw) == 8 else 0
        start = file.read(2)
        if length <= 2 or start not in (b'{"', b"{'"):
            raise ValueError(f"{path} is not a safetensors file (bad header)")
        header = json.loads(start + file.read(length - 2))
    metadata = header.get("__metadata__", {}) or {}
    decoded = {}
    for key, value in metadata.items():
        if isinstance(value, str) and value[:1] == "{":
            try:
                value = json.loads(value)
            except ValueError:
                pass  # A1111 keeps such a value as the string
        decoded[key] = value
    ordered = {k: decoded[k] for k in _METADATA_FIRST if k in decoded}
    ordered.update({k: v for k, v in decoded.items() if k not in ordered})
    return ordered


def addnet_hash(path: str) -> str:
    """SHA-256 of a safetensors file's tensor data: bytes [8 + n, EOF) (§1.4)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        file.seek(8 + length)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_from_metadata(metadata: dict) -> str:
    """SD version the way A1111 reads it from kohya metadata (§1.5), plus modelspec (Ours)."""
    base = str(metadata.get("ss_base_model_version", ""))
    if base.startswith("sdxl_"):
        return SdVersion.SDXL
    if str(metadata.get("ss_v2", "")) == "True":
        return SdVersion.SD2
    architecture = str(metadata.get("modelspec.architecture", ""))
    if architecture.startswith("stable-diffusion-xl"):
        return SdVersion.SDXL
    if architecture.startswith("stable-diffusion-v2"):
        return SdVersion.SD2
    if any(k.startswith("ss_") for k in metadata) or architecture.startswith("stable-diffusion-v1"):
        return SdVersion.SD1
    return SdVersion.Unknown


class NetworkOnDisk:
    """One LoRA/LyCORIS file: name (stem), alias, metadata, hash (A1111's network.NetworkOnDisk)."""

    def __init__(self, name: str, filename: str, hash_cache=None, root: str | None = None):
        self.name = name
        self.filename = filename
        self.root = root
        self.is_safetensors = filename.lower().endswith(".safetensors")
        self.mtime = os.path.getmtime(filename)
        self.metadata: dict = {}
        self.metadata_error: str | None = None
        if self.is_safetensors:
            try:
                self.metadata = read_safetensors_metadata(filename)
            except (OSError, ValueError) as e:
                self.metadata_error = str(e)
                log.error("reading metadata of %s: %s", filename, e)
        self.alias = self.metadata.get("ss_output_name") or self.name
        if not isinstance(self.alias, str):
            self.alias = str(self.alias)
        self._hash_cache = hash_cache
        self.hash: str | None = None
        self.shorthash: str | None = None
        self.sd_version = version_from_metadata(self.metadata)
        self._use_known_hash()

    def _hash_kind(self):
        return "addnet" if self.is_safetensors else "lora"

    def _use_known_hash(self):
        """Metadata or cached hashes only; no hashing while listing (§1.4)."""
        trusted = self.metadata.get("sshs_model_hash")
        if isinstance(trusted, str) and trusted:
            self.set_hash(trusted)
            return
        if self._hash_cache is not None:
            cached = self._hash_cache.get(self._hash_kind(), f"lora/{self.name}", self.filename)
            if cached:
                self.set_hash(cached)

    def set_hash(self, value: str):
        self.hash = value
        self.shorthash = value[:12] if value else None

    def read_hash(self, no_hashing: bool = False) -> str | None:
        """Compute (and cache) the hash if still unknown: at first load for a job."""
        if self.hash or no_hashing:
            return self.hash
        value = addnet_hash(self.filename) if self.is_safetensors else file_sha256(self.filename)
        if self._hash_cache is not None:
            self._hash_cache.put(self._hash_kind(), f"lora/{self.name}", self.filename, value)
        self.set_hash(value)
        return value

    def get_alias(self, preferred_name: str = "Alias from file") -> str:
        """The name cards and paste write (§1.3)."""
        if preferred_name == "Filename" or self.alias.lower() in FORBIDDEN_ALIASES:
            return self.name
        return self.alias

    def read_user_metadata(self) -> dict:
        from modules import extra_networks
        return extra_networks.get_user_metadata(self.filename)

    def effective_sd_version(self) -> str:
        user = self.read_user_metadata().get("sd version")
        return user if user in (SdVersion.SD1, SdVersion.SD2, SdVersion.SDXL, SdVersion.Unknown) else self.sd_version


def list_network_files(folders, list_hidden: bool = True) -> list[tuple[str, str]]:
    """(path, root) of every network file under the folders, natural-sorted, symlinks followed."""
    found = []
    for root in folders:
        if not root or not os.path.isdir(root):
            continue
        for dirpath, dirs, files in os.walk(root, followlinks=True):
            if not list_hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.lower().endswith(NETWORK_EXTENSIONS):
                    found.append((os.path.join(dirpath, name), root))
    found.sort(key=lambda item: natural_key(os.path.relpath(item[0], item[1])))
    return found


class NetworkRegistry:
    """The one table names resolve through, in listing order, with the forbidden-alias rule (§1.3)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.available_networks: dict[str, NetworkOnDisk] = {}
        self.available_network_aliases: dict[str, NetworkOnDisk] = {}
        self.forbidden_network_aliases: dict[str, int] = {}
        self.available_network_hash_lookup: dict[str, NetworkOnDisk] = {}
        self.folders: list[str] = []
        self._index: dict[str, tuple] = {}  # path -> (size, mtime, NetworkOnDisk), reused by re-listings

    def list_networks(self, folders, hash_cache=None, list_hidden: bool = True) -> None:
        with self.lock:
            self.folders = list(folders)
            for folder in self.folders[:1]:
                os.makedirs(folder, exist_ok=True)
            by_name, by_alias, hash_lookup = {}, {}, {}
            forbidden = {alias: 1 for alias in FORBIDDEN_ALIASES}
            index = {}
            for path, root in list_network_files(self.folders, list_hidden):
                name = os.path.splitext(os.path.basename(path))[0]
                try:
                    stat = os.stat(path)
                    previous = self._index.get(path)
                    if previous and previous[:2] == (stat.st_size, stat.st_mtime):
                        entry = previous[2]
                    else:
                        entry = NetworkOnDisk(name, path, hash_cache, root)
                except OSError as e:
                    log.error("listing LoRA %s: %s", path, e)
                    continue
                index[path] = (stat.st_size, stat.st_mtime, entry)
                by_name[name] = entry
                if entry.alias in by_alias:
                    forbidden[entry.alias.lower()] = 1
                by_alias[name] = entry
                by_alias[entry.alias] = entry
                if entry.shorthash:
                    hash_lookup[entry.shorthash] = entry
            self._index = index
            self.available_networks = by_name
            self.available_network_aliases = by_alias
            self.forbidden_network_aliases = forbidden
            self.available_network_hash_lookup = hash_lookup

    def note_hash(self, entry: NetworkOnDisk) -> None:
        if entry.shorthash:
            self.available_network_hash_lookup[entry.shorthash] = entry

    def find(self, name: str) -> NetworkOnDisk | None:
        """Prompt name -> file: a forbidden alias only as a stem, else by alias (or stem)."""
        with self.lock:
            if name.lower() in self.forbidden_network_aliases:
                return self.available_networks.get(name)
            return self.available_network_aliases.get(name)
