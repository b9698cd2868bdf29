"""Patching network deltas into model weights and restoring them bit for bit (networks.md §4).

Each patched layer keeps a copy of its original weight and bias (on the CPU) and the key of the
set it is patched for; a layer whose wanted set did not change is left alone, so switching one
network re-patches only its layers. The sum runs in float32 from the original weight, with one
rounding into the layer's dtype.
"""
from __future__ import annotations

import logging
import weakref
from collections import Counter
from dataclasses import dataclass

import torch

from modules.networks import network_types

log = logging.getLogger(__name__)


@dataclass
class LayerPatch:
    """One network's contribution to one layer."""
    network_name: str
    network_key: tuple      # identifies the loaded file (object id, mtime)
    parts: dict
    multiplier: float
    dyn: int | None
    module_name: str


class Patcher:
    """The layers patched right now (weak references: a model that is dropped takes them along)."""

    def __init__(self):
        self._patched: list[weakref.ref] = []
        self.failures: Counter = Counter()
        self.failure_details: list[str] = []

    @staticmethod
    def _key(patches: list[LayerPatch]) -> tuple:
        return tuple((p.network_key, p.multiplier, p.dyn) for p in patches)

    def patched_modules(self) -> list[torch.nn.Module]:
        return [m for m in (ref() for ref in self._patched) if m is not None]

    @torch.no_grad()
    def apply(self, wanted: dict[int, tuple[torch.nn.Module, list[LayerPatch]]]) -> None:
        """Make exactly the layers in `wanted` ({id(module): (module, patches)}) patched."""
        self.failures = Counter()
        self.failure_details = []
        still = []
        for module in self.patched_modules():
            entry = wanted.get(id(module))
            if entry is None or getattr(module, "network_patch_key", None) != self._key(entry[1]):
                restore_module(module)
            else:
                still.append(weakref.ref(module))
        self._patched = still
        for module, patches in wanted.values():
            key = self._key(patches)
            if getattr(module, "network_patch_key", None) == key:
                continue
            self._patch(module, patches, key)
            self._patched.append(weakref.ref(module))

    def _patch(self, module, patches: list[LayerPatch], key: tuple) -> None:
        weight, bias = stored_tensors(module)
        module.network_backup = (weight.detach().to("cpu", copy=True),
                                 None if bias is None else bias.detach().to("cpu", copy=True))
        # float32 layers are summed in place (the same single rounding per add); others in a float32 copy
        in_place = weight.dtype == torch.float32 and (bias is None or bias.dtype == torch.float32)
        w = weight.detach() if in_place else weight.detach().to(torch.float32, copy=True)
        b = None if bias is None else (bias.detach() if in_place else bias.detach().to(torch.float32, copy=True))
        for patch in patches:
            parts = {k: v.to(w.device) if isinstance(v, torch.Tensor) else v for k, v in patch.parts.items()}
            try:
                dw, db = network_types.compute(parts, w, b, patch.multiplier, patch.dyn, patch.module_name)
            except (ValueError, RuntimeError, IndexError) as e:
                self.failures[patch.network_name] += 1
                detail = f"{patch.network_name}: layer {patch.module_name} (weight {tuple(w.shape)}): {e}"
                self.failure_details.append(detail)
                log.info("network layer not applied: %s", detail)
                continue
            w = w.add_(dw) if in_place else w + dw
            if db is not None:
                b = b.add_(db) if in_place else b + db
        if not in_place:
            weight.copy_(w.to(weight.dtype))
            if bias is not None and b is not None:
                bias.copy_(b.to(bias.dtype))
        module.network_patch_key = key

    def restore_all(self) -> None:
        for module in self.patched_modules():
            restore_module(module)
        self._patched = []


def _offload_hooks(module) -> list:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", [hook]))  # accelerate's SequentialHook holds several


def stored_tensors(module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The tensors that hold a layer's weight and bias. Under accelerate's sequential offload
    (--lowvram) the module's own parameters are empty `meta` tensors between forwards and the real
    ones live in the hook's weights map, which every forward copies from: patch those."""
    for hook in _offload_hooks(module):
        weights = getattr(hook, "weights_map", None)
        if getattr(hook, "offload", False) and weights is not None:
            bias = weights["bias"] if getattr(module, "bias", None) is not None else None
            return weights["weight"], bias
    return module.weight, getattr(module, "bias", None)


@torch.no_grad()
def restore_module(module) -> None:
    backup = getattr(module, "network_backup", None)
    if backup is None:
        return
    weight_backup, bias_backup = backup
    weight, bias = stored_tensors(module)
    weight.copy_(weight_backup)
    if bias_backup is not None:
        bias.copy_(bias_backup)
    module.network_backup = None  # no copy kept outside jobs (bounded memory)
    module.network_patch_key = None
