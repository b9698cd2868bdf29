"""Patching network deltas into model weights and restoring them bit for bit (networks.md §4).

Each patched layer keeps a copy of its original weight and bias (on the CPU) and the key of the
set it is patched for; a layer whose wanted set did not change is left alone, so switching one
network re-patches only its layers. The sum runs in float32 from the original weight, with one
rounding into the layer's dtype.
"""
from __future__ import annotations

import logging
import weakref
from collections import Counter, OrderedDict
from dataclasses import dataclass

import torch

from modules.networks import functional, network_types

log = logging.getLogger(__name__)


@dataclass
class LayerPatch:
    """One network's contribution to one layer."""
    network_name: str
    network_key: tuple      # identifies the loaded file's content (path, mtime and size, key style)
    group: network_types.Prepared
    multiplier: float
    dyn: int | None
    module_name: str


# Per-layer state lives in the module's __dict__, read and written past nn.Module's __getattr__ /
# __setattr__: those cost microseconds each, which adds up over every layer of every job.
def _state(module, name):
    return module.__dict__.get(name)


def _set_state(module, name, value) -> None:
    module.__dict__[name] = value


DELTA_CACHE_BYTES = 128 * 2 ** 20


class DeltaCache:
    """Float32 deltas of plain LoRA groups on CPU layers, kept between jobs so that a repeated job
    adds them without recomputing them. A plain delta depends only on the file's tensors, the
    multiplier, dyn and the layer's shape, all in the key. Bounded: the least recently used go
    past `limit_bytes`; never on an accelerator, whose memory the model needs."""

    def __init__(self, limit_bytes: int = DELTA_CACHE_BYTES):
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self._items: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()

    def get(self, key: tuple) -> torch.Tensor | None:
        delta = self._items.get(key)
        if delta is not None:
            self._items.move_to_end(key)
        return delta

    def put(self, key: tuple, delta: torch.Tensor) -> None:
        size = delta.numel() * delta.element_size()
        if size > self.limit_bytes or key in self._items:
            return
        self._items[key] = delta
        self.bytes += size
        while self.bytes > self.limit_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class Patcher:
    """The layers patched right now (weak references: a model that is dropped takes them along)."""

    def __init__(self):
        self._patched: list[weakref.ref] = []
        self.deltas = DeltaCache()
        self.failures: Counter = Counter()
        self.failure_details: list[str] = []

    @staticmethod
    def _key(patches: list[LayerPatch], functional: bool = False) -> tuple:
        return (functional,) + tuple((p.network_key, p.multiplier, p.dyn) for p in patches)

    def patched_modules(self) -> list[torch.nn.Module]:
        return [m for m in (ref() for ref in self._patched) if m is not None]

    @torch.no_grad()
    def apply(self, wanted: dict[int, tuple[torch.nn.Module, list[LayerPatch]]], functional: bool = False) -> None:
        """Make exactly the layers in `wanted` ({id(module): (module, patches)}) patched; with
        `functional` (setting lora_functional) the weights stay as they are and each layer adds
        the networks' output in its forward instead (networks.md §4.3)."""
        self.failures = Counter()
        self.failure_details = []
        still = []
        keys = {i: self._key(patches, functional) for i, (_, patches) in wanted.items()}
        for module in self.patched_modules():
            key = keys.get(id(module))
            if key is None or _state(module, "network_patch_key") != key:
                restore_module(module)
            else:
                still.append(weakref.ref(module))
        self._patched = still
        for i, (module, patches) in wanted.items():
            key = keys[i]
            if _state(module, "network_patch_key") == key:
                continue
            if functional:
                self._hook(module, patches, key)
            else:
                self._patch(module, patches, key)
            self._patched.append(weakref.ref(module))

    def _fail(self, patch: LayerPatch, shape, error) -> None:
        self.failures[patch.network_name] += 1
        detail = f"{patch.network_name}: layer {patch.module_name} (weight {tuple(shape)}): {error}"
        self.failure_details.append(detail)
        log.info("network layer not applied: %s", detail)

    def _hook(self, module, patches: list[LayerPatch], key: tuple) -> None:
        """lora_functional: a forward hook adding each network's output; weights untouched."""
        weight, bias = stored_tensors(module)
        terms = []
        for patch in patches:
            try:
                terms.append(functional.term_for(module, patch, weight.detach(), None if bias is None else bias.detach()))
            except (ValueError, RuntimeError, IndexError) as e:
                self._fail(patch, weight.shape, e)
        if terms:
            _set_state(module, "network_hook", module.register_forward_hook(functional.ForwardAdd(terms)))
        _set_state(module, "network_patch_key", key)

    def _patch(self, module, patches: list[LayerPatch], key: tuple) -> None:
        weight, bias = stored_tensors(module)
        weight = weight.detach()
        # plain LoRA never changes a bias: it is neither copied nor restored
        bias = None if bias is None or all(p.group.plain for p in patches) else bias.detach()
        _set_state(module, "network_backup", (weight.to("cpu", copy=True),
                                              None if bias is None else bias.to("cpu", copy=True)))
        # float32 layers are summed in place (the same single rounding per add); others in a float32 copy
        in_place = weight.dtype == torch.float32 and (bias is None or bias.dtype == torch.float32)
        w = weight if in_place else weight.to(torch.float32, copy=True)
        b = None if bias is None else (bias if in_place else bias.to(torch.float32, copy=True))
        cacheable = w.device.type == "cpu"
        for patch in patches:
            try:
                if cacheable and patch.group.plain:
                    cache_key = (patch.network_key, patch.module_name, patch.multiplier, patch.dyn, w.shape)
                    dw, db = self.deltas.get(cache_key), None
                    if dw is None:
                        dw, db = network_types.compute_prepared(patch.group, w, b, patch.multiplier, patch.dyn,
                                                                patch.module_name)
                        self.deltas.put(cache_key, dw)
                else:
                    dw, db = network_types.compute_prepared(patch.group, w, b, patch.multiplier, patch.dyn,
                                                            patch.module_name)
            except (ValueError, RuntimeError, IndexError) as e:
                self._fail(patch, w.shape, e)
                continue
            w = w.add_(dw) if in_place else w + dw
            if db is not None:
                b = b.add_(db) if in_place else b + db
        if not in_place:
            weight.copy_(w.to(weight.dtype))
            if bias is not None and b is not None:
                bias.copy_(b.to(bias.dtype))
        _set_state(module, "network_patch_key", key)

    @torch.no_grad()
    def restore_all(self) -> None:
        for module in self.patched_modules():
            restore_module(module)
        self._patched = []


def _offload_hooks(module) -> list:
    hook = _state(module, "_hf_hook")  # accelerate sets it as a plain attribute
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


def restore_module(module) -> None:
    """The layer's original weight and bias back from its backup, its functional hook removed
    (call under torch.no_grad())."""
    hook = _state(module, "network_hook")
    if hook is not None:
        hook.remove()
        _set_state(module, "network_hook", None)
        _set_state(module, "network_patch_key", None)
    backup = _state(module, "network_backup")
    if backup is None:
        return
    weight_backup, bias_backup = backup
    weight, bias = stored_tensors(module)
    weight.copy_(weight_backup)
    if bias_backup is not None:
        bias.copy_(bias_backup)
    _set_state(module, "network_backup", None)  # no copy kept outside jobs (bounded memory)
    _set_state(module, "network_patch_key", None)
