"""The networks of model-based ControlNet preprocessors (controlnet.md §4.3): the nn.Module classes
of `controlnet_aux` 0.0.10, built here and filled from a local weight file (never its
`from_pretrained`, which would go to the Hub). Loaded nets are cached by file and modification time."""
import functools
import os
import pickle
import threading
import warnings

import torch

from modules import shared


class AnnotatorError(ValueError):
    pass


def _aux(module: str):
    """A controlnet_aux submodule, imported on first use: the package imports every detector (~5 s)
    and warns about optional ones."""
    import importlib
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"controlnet_aux.{module}")


def _hed():
    return _aux("hed").ControlNetHED_Apache2()


def _lineart():
    return _aux("lineart").Generator(3, 1, 3)


def _lineart_anime():
    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return _aux("lineart_anime").UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False)


def _pidinet():
    return _aux("pidi.model").pidinet()


def _mlsd():
    return _aux("mlsd.models.mbv2_mlsd_large").MobileV2_MLSD_Large()


# kind -> builder of the empty network
BUILDERS = {"hed": _hed, "lineart": _lineart, "lineart_anime": _lineart_anime, "pidinet": _pidinet,
            "mlsd": _mlsd}

_cache: dict[tuple, torch.nn.Module] = {}
_lock = threading.Lock()


def _state_dict(path: str) -> dict:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise AnnotatorError(f"Cannot read preprocessor weights {path}: {e}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # pidinet's training checkpoint
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise AnnotatorError(f"Preprocessor weights {path} hold no state dict (names to tensors)")
    # DataParallel checkpoints (pidinet, lineart_anime) prefix every key with `module.`
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def _fill(net: torch.nn.Module, state: dict, path: str, kind: str) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        def few(keys):
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
        parts = [f"{label}: {few(keys)}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if keys]
        raise AnnotatorError(f"Preprocessor weights {path} do not fit the {kind} network ({'; '.join(parts)})")
    net.load_state_dict(state, strict=True)


def device() -> torch.device:
    return shared.device_config.device


def load(kind: str, path: str) -> torch.nn.Module:
    """The `kind` network with the weights of `path`, on the job's device, in eval mode (cached)."""
    key = (kind, os.path.abspath(path), os.path.getmtime(path), str(device()))
    with _lock:
        net = _cache.get(key)
        if net is not None:
            return net
        net = BUILDERS[kind]()
        _fill(net, _state_dict(path), path, kind)
        net = net.float().eval().to(device())
        for stale in [k for k in _cache if k[:2] == key[:2]]:  # the file changed: drop its old net
            del _cache[stale]
        _cache[key] = net
        return net
