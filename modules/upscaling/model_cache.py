"""Loading weight files with spandrel, kept in a small LRU so repeated passes do not re-read disk.

Keyed by path, size and modification time, so a replaced file is loaded again; bounded so that a
user trying many upscalers does not fill RAM/VRAM.
"""
import collections
import os
import threading

import torch

from modules.upscaling.registry import UpscalerUnavailable

MAX_LOADED = 2

_loaded: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()
_lock = threading.Lock()
_extra_arches_installed = False


def _install_extra_arches() -> None:
    """CodeFormer lives in spandrel-extra-arches; its registry may be added only once."""
    global _extra_arches_installed
    if _extra_arches_installed:
        return
    import spandrel_extra_arches
    spandrel_extra_arches.install()
    _extra_arches_installed = True


def file_identity(path: str) -> tuple:
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def load_descriptor(path: str, device: torch.device, half: bool):
    """The spandrel descriptor of a weight file, on `device`, fp16 when asked and supported."""
    try:
        key = (*file_identity(path), str(device), half)
    except OSError:
        raise UpscalerUnavailable(f"Model file {path} cannot be read") from None
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
    import spandrel
    _install_extra_arches()
    try:
        descriptor = spandrel.ModelLoader(torch.device("cpu")).load_from_file(path)
    except Exception as e:  # noqa: BLE001 - pickle, zip, safetensors, spandrel: all "this file is unusable"
        raise UpscalerUnavailable(f"Model file {path} could not be loaded: {type(e).__name__}: {e}") from None
    descriptor.model.eval().requires_grad_(False)
    if half and descriptor.supports_half:
        descriptor.model.half()
    descriptor.model.to(device)
    with _lock:
        _loaded[key] = descriptor
        while len(_loaded) > MAX_LOADED:
            _loaded.popitem(last=False)
    return descriptor


def clear() -> None:
    with _lock:
        _loaded.clear()
