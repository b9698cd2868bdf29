"""Textual-inversion embeddings: the files in the embeddings folders and the lookup used while
tokenising prompts (prompt-syntax.md §10, generation.md §16).

File formats (all reduced to vectors [k, D], or {"clip_l": [k, 768], "clip_g": [k, 1280]} for SDXL):

* ``.pt`` / ``.bin`` with ``string_to_param`` (exactly one entry) and optional ``name``, ``step``,
  ``sd_checkpoint``, ``sd_checkpoint_name``; read with ``torch.load(weights_only=True)`` only;
* diffusers "concept" files: one ``{token: tensor}`` entry (a 1-D tensor is one vector);
* ``.safetensors`` with ``emb_params`` (A1111) or ``clip_l`` + ``clip_g`` (SDXL);
* ``.png`` / ``.webp`` / ``.jxl`` / ``.avif`` images carrying the data (see image_embedding.py).

The trigger word is the file stem; for images it is the name stored in the data.
"""
from __future__ import annotations

import logging
import os
import pickle
import struct
import threading
import zlib
from typing import Callable

import torch
from PIL import Image
from safetensors import SafetensorError

from modules import hashes
from modules.textual_inversion import image_embedding

log = logging.getLogger(__name__)

TENSOR_EXTENSIONS = (".pt", ".bin", ".safetensors")
IMAGE_EXTENSIONS = (".png", ".webp", ".jxl", ".avif")
SDXL_KEYS = ("clip_l", "clip_g")
PLACEHOLDER_TOKEN_ID = 265  # what A1111 stores as `string_to_token` for '*'

# What reading a broken or hostile file can raise (found by feeding truncated and corrupted files
# to torch.load, safetensors and Pillow: the legacy pickle reader raises struct.error and
# AssertionError, Pillow SyntaxError and DecompressionBombError). Anything else propagates.
LOAD_ERRORS = (OSError, EOFError, RuntimeError, ValueError, TypeError, KeyError, IndexError,
               AttributeError, AssertionError, SyntaxError, struct.error, pickle.UnpicklingError,
               zlib.error, SafetensorError, Image.DecompressionBombError)


class EmbeddingLoadError(ValueError):
    """A file in the embeddings folder is not a usable embedding; the message says why."""


class Embedding:
    def __init__(self, vec, name: str, step: int | None = None):
        self.vec = vec
        self.name = name
        self.step = step
        self.filename: str | None = None
        self.sd_checkpoint: str | None = None
        self.sd_checkpoint_name: str | None = None
        self.hash: str | None = None
        # set for an embedding bundled in a LoRA file: the LoRA name as written in the prompt,
        # what `TI hashes` records for it (networks.md §3.11)
        self.bundled_in: str | None = None
        if isinstance(vec, dict):
            self.vectors = int(vec["clip_g"].shape[0])
            # A1111 reports the concatenated width (768 + 1280 = 2048) for SDXL embeddings
            self.shape = sum(int(vec[key].shape[-1]) for key in SDXL_KEYS)
        else:
            self.vectors = int(vec.shape[0])
            self.shape = int(vec.shape[-1])

    @property
    def shorthash(self) -> str | None:
        return self.hash[:12] if self.hash else None

    @property
    def widths(self) -> dict[str, int]:
        """Vector width per text encoder, in the form `load_textual_inversion_embeddings` takes."""
        if isinstance(self.vec, dict):
            return {key: int(self.vec[key].shape[-1]) for key in SDXL_KEYS}
        return {"default": self.shape}

    def fits(self, widths: dict | None) -> bool:
        return widths is None or self.widths == dict(widths)

    def api_item(self) -> dict:
        return {"step": self.step, "sd_checkpoint": self.sd_checkpoint,
                "sd_checkpoint_name": self.sd_checkpoint_name, "shape": self.shape, "vectors": self.vectors}

    def __repr__(self) -> str:
        return f"Embedding({self.name!r}, vectors={self.vectors}, shape={self.shape})"


# --- turning file contents into an Embedding ------------------------------------------------

def _as_vectors(value, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise EmbeddingLoadError(f"{where} is a {type(value).__name__}, not a tensor")
    if not value.is_floating_point():
        raise EmbeddingLoadError(f"{where} has dtype {value.dtype}, not floating point")
    vec = value.detach().to("cpu", torch.float32)
    if vec.ndim == 1:
        vec = vec.unsqueeze(0)
    if vec.ndim != 2 or vec.shape[0] == 0 or vec.shape[1] == 0:
        raise EmbeddingLoadError(f"{where} has shape {tuple(value.shape)}, expected [vectors, width]")
    return vec


def _optional_int(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return int(value.item())
    return None


def _optional_str(value) -> str | None:
    return value if isinstance(value, str) else None


def embedding_from_data(data, name: str) -> Embedding:
    """Build an Embedding from a loaded file's contents, or raise EmbeddingLoadError."""
    if not isinstance(data, dict) or not data:
        raise EmbeddingLoadError(f"holds a {type(data).__name__}, not an embedding dict")
    if "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            count = len(params) if isinstance(params, dict) else type(params).__name__
            raise EmbeddingLoadError(f"string_to_param must hold exactly one entry, found {count}")
        vec = _as_vectors(next(iter(params.values())), "string_to_param")
    elif all(key in data for key in SDXL_KEYS):
        vec = {key: _as_vectors(data[key], key) for key in SDXL_KEYS}
        if vec["clip_l"].shape[0] != vec["clip_g"].shape[0]:
            raise EmbeddingLoadError(f"clip_l has {vec['clip_l'].shape[0]} vectors but clip_g has {vec['clip_g'].shape[0]}")
    else:
        tensors = [key for key, value in data.items() if isinstance(value, torch.Tensor)]
        if len(data) != 1 or len(tensors) != 1:
            raise EmbeddingLoadError(
                "not an embedding: expected string_to_param, clip_l + clip_g, or a single "
                f"{{token: tensor}} entry; found keys {sorted(map(str, data))[:8]}")
        vec = _as_vectors(data[tensors[0]], repr(tensors[0]))
    embedding = Embedding(vec, name, step=_optional_int(data.get("step")))
    embedding.sd_checkpoint = _optional_str(data.get("sd_checkpoint"))
    embedding.sd_checkpoint_name = _optional_str(data.get("sd_checkpoint_name"))
    return embedding


def embedding_to_data(embedding: Embedding) -> dict:
    """The dict A1111 saves for an embedding (the inverse of `embedding_from_data`)."""
    if isinstance(embedding.vec, dict):
        data = {key: embedding.vec[key] for key in SDXL_KEYS}
    else:
        data = {"string_to_token": {"*": PLACEHOLDER_TOKEN_ID}, "string_to_param": {"*": embedding.vec}}
    data.update(name=embedding.name, step=embedding.step, sd_checkpoint=embedding.sd_checkpoint,
                sd_checkpoint_name=embedding.sd_checkpoint_name)
    return data


def is_candidate(filename: str) -> bool:
    """An embedding file by its extension, excluding `*.preview.*` pictures."""
    stem, ext = os.path.splitext(filename)
    if ext.lower() not in TENSOR_EXTENSIONS + IMAGE_EXTENSIONS:
        return False
    return os.path.splitext(stem)[1].lower() != ".preview"


def load_embedding_file(path: str) -> Embedding | None:
    """Read one file. None: an image without embedding data (just a picture). Raises
    EmbeddingLoadError or one of LOAD_ERRORS when the file is broken."""
    stem, ext = os.path.splitext(os.path.basename(path))
    ext = ext.lower()
    if os.path.getsize(path) == 0:
        raise EmbeddingLoadError("empty file")
    if ext in IMAGE_EXTENSIONS:
        data = image_embedding.read_embedding_image(path)
        if data is None:
            return None
        name = data.get("name")
        return embedding_from_data(data, name if isinstance(name, str) and name.strip() else stem)
    if ext == ".safetensors":
        import safetensors.torch
        data = safetensors.torch.load_file(path, device="cpu")
    else:
        # weights_only: a file that needs custom classes is refused instead of running its code
        data = torch.load(path, map_location="cpu", weights_only=True)
    return embedding_from_data(data, stem)


def _reason(error: BaseException) -> str:
    """One line for the error list; torch's weights-only refusal is a page of advice around the
    line that names the refused class."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith("WeightsUnpickler error:")), lines[0] if lines else "")
    detail = detail.split(" Please use ")[0]
    if isinstance(error, EmbeddingLoadError):
        return detail
    kind = type(error).__name__
    if kind == "error":  # struct.error, zlib.error
        kind = f"{type(error).__module__}.error"
    return f"{kind}: {detail}"[:400]


# --- the database ---------------------------------------------------------------------------

def _clip_tokenize(text: str) -> list[int]:
    from modules.models.clip_tokenizer import load_clip_tokenizer
    return load_clip_tokenizer()(text, add_special_tokens=False, truncation=False)["input_ids"]


def widths_for_model(sd_model) -> dict[str, int] | None:
    """The widths an embedding must have for a loaded SdModel (its text encoders' hidden sizes)."""
    if sd_model is None:
        return None
    sizes = [int(encoder.config.hidden_size) for encoder in sd_model.text_encoders]
    if getattr(sd_model, "is_sdxl", False):
        return dict(zip(SDXL_KEYS, sizes))
    return {"default": sizes[0]}


class EmbeddingDatabase:
    def __init__(self, dirs: list[str] | None = None,
                 tokenize: Callable[[str], list[int]] | None = None,
                 hash_cache: hashes.HashCache | None = None):
        """`tokenize`: text -> token ids without start/end tokens (default: the CLIP BPE tokenizer,
        shared by every SD family). `hash_cache`: cache sha256 values by mtime (cache.json)."""
        self.dirs: list[str] = []
        for path in dirs or []:
            self.add_embedding_dir(path)
        self.tokenize = tokenize or _clip_tokenize
        self.hash_cache = hash_cache
        self.word_embeddings: dict[str, Embedding] = {}
        self.skipped_embeddings: dict[str, Embedding] = {}
        self.errors: dict[str, str] = {}
        self._files: dict[str, tuple[tuple, Embedding | None]] = {}  # path -> (stat key, result)
        self._scanned: tuple | None = None  # (widths, file signature) of the last scan
        self._ids_lookup: dict[int, list[tuple[list[int], Embedding]]] | None = None
        self._lock = threading.RLock()
        self.base: "EmbeddingDatabase | None" = None  # the folders' database, for a with_bundled view

    def add_embedding_dir(self, path: str) -> None:
        path = os.path.abspath(path)
        if path not in self.dirs:
            self.dirs.append(path)
            self._scanned = None

    def _list_files(self) -> list[tuple[str, tuple]]:
        """Candidate files with (size, mtime) keys, in load order: folders as given, then sorted
        relative paths (so the later file of two with the same name wins predictably)."""
        found = []
        for folder in self.dirs:
            if not os.path.isdir(folder):
                continue
            in_folder = []
            for root, dirs, files in os.walk(folder, followlinks=True):
                dirs.sort()
                for filename in files:
                    if is_candidate(filename):
                        path = os.path.join(root, filename)
                        in_folder.append((os.path.relpath(path, folder).split(os.sep), path))
            for _, path in sorted(in_folder):
                try:
                    stat = os.stat(path)
                except OSError as e:  # removed or a broken link between walk and stat
                    log.warning("Embedding file %s cannot be read: %s", path, e)
                    continue
                found.append((path, (stat.st_size, stat.st_mtime_ns)))
        return found

    def _read(self, path: str, key: tuple, force: bool) -> Embedding | None:
        """The file's embedding, re-read only when the file changed (or on force)."""
        cached = self._files.get(path)
        if cached is not None and cached[0] == key and not force:
            return cached[1]
        embedding = load_embedding_file(path)
        if embedding is not None:
            embedding.filename = path
            if self.hash_cache is not None:
                # keyed by path: two files may carry the same trigger word
                embedding.hash = hashes.sha256(self.hash_cache, "textual_inversion", path, path)
            else:
                embedding.hash = hashes.calculate_sha256(path)
        self._files[path] = (key, embedding)
        return embedding

    def load_textual_inversion_embeddings(self, widths: dict | None, force_reload: bool = False) -> None:
        """Rescan the folders if anything changed. `widths`: what the loaded model needs
        ({"default": 768}, {"clip_l": 768, "clip_g": 1280}); None accepts every width."""
        if self.base is not None:  # a job's bundled-embeddings view has no folders of its own
            self.base.load_textual_inversion_embeddings(widths, force_reload)
            return
        with self._lock:
            files = self._list_files()
            state = (None if widths is None else tuple(sorted(widths.items())), tuple(files))
            if not force_reload and state == self._scanned:
                return
            loaded: dict[str, Embedding] = {}
            skipped: dict[str, Embedding] = {}
            errors: dict[str, str] = {}
            origin: dict[str, str] = {}
            for path, key in files:
                try:
                    embedding = self._read(path, key, force_reload)
                except (EmbeddingLoadError, *LOAD_ERRORS) as e:
                    self._files.pop(path, None)
                    name = os.path.splitext(os.path.basename(path))[0]
                    errors[name] = f"{path}: {_reason(e)}"
                    log.error("Error loading embedding %s", errors[name])
                    log.debug("Full error for %s", path, exc_info=e)
                    continue
                if embedding is None:
                    log.debug("%s holds no embedding data; treated as an ordinary picture", path)
                    continue
                name = embedding.name
                if name in origin:
                    log.warning("Embedding name %r: %s replaces %s", name, path, origin[name])
                    loaded.pop(name, None)
                    skipped.pop(name, None)
                origin[name] = path
                (loaded if embedding.fits(widths) else skipped)[name] = embedding
            known = {path for path, _ in files}
            for path in [p for p in self._files if p not in known]:
                del self._files[path]

            def by_name(items: dict) -> dict:
                return dict(sorted(items.items(), key=lambda item: item[0].lower()))

            loaded, skipped = by_name(loaded), by_name(skipped)
            changed = list(loaded) != list(self.word_embeddings) or list(skipped) != list(self.skipped_embeddings)
            self.word_embeddings, self.skipped_embeddings = loaded, skipped
            self.errors = errors
            self._ids_lookup = None
            self._scanned = state
            if changed:
                log.info("Textual inversion embeddings loaded(%d): %s", len(loaded), ", ".join(self.word_embeddings))
                if skipped:
                    log.info("Textual inversion embeddings skipped(%d): %s", len(skipped), ", ".join(self.skipped_embeddings))

    def register_embedding(self, embedding: Embedding) -> None:
        """Add an embedding that does not come from the folders (e.g. bundled in a LoRA file);
        it lasts until the next rescan."""
        with self._lock:  # new dicts, so readers iterating the old ones are not disturbed
            self.skipped_embeddings = {k: v for k, v in self.skipped_embeddings.items() if k != embedding.name}
            self.word_embeddings = {**self.word_embeddings, embedding.name: embedding}
            self._ids_lookup = None

    def with_bundled(self, bundled: list[Embedding], widths: dict | None) -> tuple["EmbeddingDatabase", list[str]]:
        """A read-only view for one job: this database plus embeddings bundled in active LoRA
        files (networks.md §3.11). A name the folders already loaded keeps the file's embedding
        (the bundled one is returned in the second list); one of the wrong width is listed as
        skipped. This database is left unchanged."""
        view = EmbeddingDatabase(tokenize=self.tokenize)
        view.hash_cache = self.hash_cache
        loaded, skipped, shadowed = dict(self.word_embeddings), dict(self.skipped_embeddings), []
        for embedding in bundled:
            if embedding.name in self.word_embeddings:
                shadowed.append(embedding.name)
                continue
            target, other = (loaded, skipped) if embedding.fits(widths) else (skipped, loaded)
            other.pop(embedding.name, None)
            target[embedding.name] = embedding
        view.word_embeddings, view.skipped_embeddings = loaded, skipped
        view.errors = self.errors
        view.base = self
        return view, shadowed

    def _lookup(self) -> dict[int, list[tuple[list[int], Embedding]]]:
        """First token id -> [(name ids, embedding)], longest name first; built on first use so
        loading files never needs the tokenizer."""
        lookup = self._ids_lookup
        if lookup is not None:
            return lookup
        with self._lock:  # a rescan must not be overwritten by a lookup built from the old names
            if self._ids_lookup is not None:
                return self._ids_lookup
            lookup = {}
            for name, embedding in self.word_embeddings.items():
                ids = list(self.tokenize(name))
                if ids:
                    lookup.setdefault(ids[0], []).append((ids, embedding))
            for candidates in lookup.values():
                candidates.sort(key=lambda pair: len(pair[0]), reverse=True)
            self._ids_lookup = lookup
            return lookup

    def find_embedding_at_position(self, tokens, offset: int) -> tuple[Embedding | None, int | None]:
        """The embedding whose name's token ids start at tokens[offset] (longest wins), with the
        number of ids it covers; (None, None) when none does."""
        if offset < 0 or offset >= len(tokens):
            return None, None
        for ids, embedding in self._lookup().get(int(tokens[offset]), ()):
            if [int(t) for t in tokens[offset:offset + len(ids)]] == ids:
                return embedding, len(ids)
        return None, None

    def api_listing(self) -> dict:
        """The body of GET /sdapi/v1/embeddings (api.md §12)."""
        return {"loaded": {name: e.api_item() for name, e in self.word_embeddings.items()},
                "skipped": {name: e.api_item() for name, e in self.skipped_embeddings.items()}}
