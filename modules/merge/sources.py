"""Read a checkpoint's tensors one at a time (or a slice of rows at a time) without loading it whole.

* `.safetensors`: `safe_open`; shapes and dtypes come from the header, data from the memory-mapped
  file, so pages of the input count as file cache, not as the process's own memory.
* `.ckpt` / `.pt`: `torch.load(weights_only=True, mmap=True)`; the tensors stay backed by the file.
  A legacy (non-zip) pickle cannot be memory-mapped and is loaded whole, with a notice.

Key names are normalised as A1111 does when merging (old SD1 text-encoder keys gain `text_model.`).
"""
from __future__ import annotations

import os
import pickle
import re

import torch

from modules.merge.errors import MergeError
from modules.merge.safetensors_stream import dtype_from_name

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_OLD_SD1_TEXT = re.compile(r"^cond_stage_model\.transformer\.(embeddings|encoder|final_layer_norm)\.")


def normalise_key(key: str) -> str:
    return _OLD_SD1_TEXT.sub(r"cond_stage_model.transformer.text_model.\1.", key)


class CheckpointSource:
    """One input file. `shapes[key]`, `dtypes[key]`, `read(key, start, stop)` (rows of dim 0)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if not os.path.exists(self.path):
            raise MergeError(f"{path}: file not found")
        if not os.path.isfile(self.path):
            raise MergeError(f"{path}: not a file")
        self.metadata: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self._names: dict[str, str] = {}  # normalised key -> key in the file
        self._handle = None
        self._tensors: dict[str, torch.Tensor] | None = None
        suffix = os.path.splitext(self.path)[1].lower()
        if suffix == ".safetensors":
            self._open_safetensors()
        elif suffix in PICKLE_SUFFIXES:
            self._open_pickle()
        else:
            raise MergeError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .safetensors or .ckpt")
        if not self.shapes:
            raise MergeError(f"{path}: contains no tensors")

    @property
    def keys(self) -> list[str]:
        return list(self.shapes)

    def _open_safetensors(self) -> None:
        from safetensors import SafetensorError, safe_open
        try:
            self._handle = safe_open(self.path, framework="pt", device="cpu")
            self.metadata = dict(self._handle.metadata() or {})
            for name in self._handle.keys():
                view = self._handle.get_slice(name)
                key = normalise_key(name)
                self._names[key] = name
                self.shapes[key] = tuple(int(n) for n in view.get_shape())
                self.dtypes[key] = dtype_from_name(view.get_dtype())
        except (SafetensorError, ValueError, OSError) as error:
            raise MergeError(f"{self.path}: corrupt or unreadable safetensors file ({error})") from error

    def _open_pickle(self) -> None:
        try:
            try:
                data = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error) and "zip" not in str(error):
                    raise
                print(f"Notice: {self.path} is a legacy (non-zip) pickle and is read whole into memory; "
                      "convert it to .safetensors to merge it with little memory")
                data = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
            what = f"the pickle contains the class {found[1]}" if found else "not a plain weights file"
            raise MergeError(f"{self.path}: refused to load: {what}; only plain tensors are read from .ckpt files") from error
        except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
            raise MergeError(f"{self.path}: corrupt or unreadable file ({type(error).__name__}: {str(error)[:200]})") from error
        if not isinstance(data, dict):
            raise MergeError(f"{self.path}: holds a {type(data).__name__}, not a dictionary of tensors")
        self.metadata = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
        while isinstance(data.get("state_dict"), dict):
            data = data["state_dict"]
        self._tensors = {}
        for name, value in data.items():
            if isinstance(value, torch.Tensor):
                key = normalise_key(name)
                self._names[key] = name
                self._tensors[key] = value
                self.shapes[key] = tuple(value.shape)
                self.dtypes[key] = value.dtype

    def read(self, key: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """The tensor, or rows start:stop of its first dimension (a fresh tensor, not a view)."""
        whole = start is None or not self.shapes[key]
        if self._handle is not None:
            name = self._names[key]
            if whole:
                return self._handle.get_tensor(name)
            return self._handle.get_slice(name)[start:stop]
        tensor = self._tensors[key]
        return tensor.clone() if whole else tensor[start:stop].clone()

    def close(self) -> None:
        self._handle = None
        self._tensors = None
