"""`lora_functional` (networks.md §4.3): networks as extra computation in a layer's forward, the
weights never changed.

Per network and layer the forward adds `m·s·up(down(x))` for plain LoRA (down/up run as the layer's
own op: linear, or the conv with its stride and padding, then a 1×1 conv), else `op(x, ΔW, Δb)`
with the type's full delta (for norms: the layer's normalisation with ΔW, Δb as affine parameters,
so `norm(x)·(W + ΔW) + b + Δb`). Ours: Tucker `lora_mid`, `dyn`, DoRA and `bias` parts are honoured
through the delta instead of being ignored as in A1111, so every type gives the merged result.
Deltas of types that read W use the layer's original weight, not the sum of earlier networks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modules.networks import network_types


class _Cast:
    """Tensors for the forward's device and dtype, converted once per (device, dtype)."""

    def __init__(self, *tensors):
        self.tensors = tensors
        self._cast: dict = {}

    def get(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        found = self._cast.get(key)
        if found is None:
            found = tuple(None if t is None else t.to(like.device, like.dtype) for t in self.tensors)
            self._cast[key] = found
        return found


def _op(module, x, weight, bias):
    if isinstance(module, torch.nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, torch.nn.Conv2d):
        return module._conv_forward(x, weight, bias)  # the layer's stride, padding, dilation, groups
    if isinstance(module, torch.nn.GroupNorm):
        return F.group_norm(x, module.num_groups, weight, bias, module.eps)
    if isinstance(module, torch.nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, weight, bias, module.eps)
    raise ValueError(f"no functional form for {type(module).__name__}")


class LoraTerm:
    """m·s·up(down(x)) of a plain LoRA whose factors fit the layer as they are."""

    def __init__(self, module, up, down, factor):
        self.module = module
        self.factor = factor
        self.tensors = _Cast(up, down)

    def __call__(self, x):
        up, down = self.tensors.get(x)
        if isinstance(self.module, torch.nn.Linear):
            return F.linear(F.linear(x, down), up) * self.factor
        hidden = self.module._conv_forward(x, down, None)
        return F.conv2d(hidden, up) * self.factor


class DeltaTerm:
    """op(x, ΔW, Δb) with the layer's own op."""

    def __init__(self, module, dw, db):
        self.module = module
        self.tensors = _Cast(dw, db)

    def __call__(self, x):
        dw, db = self.tensors.get(x)
        return _op(self.module, x, dw, db)


def _plain_factors(module, group, dyn, weight):
    """(up, down) shaped for the layer's op, or None when the plain path does not fit it."""
    parts = group.parts
    up, down = (parts["lora_up.weight"], parts["lora_down.weight"]) if group.kind == "lora" else \
        (parts["lora_B.weight"], parts["lora_A.weight"])
    if dyn is not None:
        up, down = up[:, :dyn], down[:dyn]
    rank = down.shape[0]
    if isinstance(module, torch.nn.Linear):
        up, down = up.reshape(up.shape[0], -1), down.reshape(rank, -1)
        if up.shape[1] != rank or (up.shape[0], down.shape[1]) != tuple(weight.shape):
            return None
        return up, down
    if isinstance(module, torch.nn.Conv2d) and module.groups == 1:
        out, inp, kh, kw = weight.shape
        if down.dim() == 2:
            if (kh, kw) != (1, 1):
                return None
            down = down.reshape(rank, inp, 1, 1)
        up = up.reshape(up.shape[0], -1, 1, 1) if up.dim() in (2, 4) and up[0].numel() == rank else None
        if up is None or tuple(down.shape) != (rank, inp, kh, kw) or up.shape[0] != out:
            return None
        return up, down
    return None


@torch.no_grad()
def term_for(module, patch, weight: torch.Tensor, bias: torch.Tensor | None):
    """The forward term of one network on one layer; ValueError/RuntimeError when it does not fit."""
    group = patch.group
    if group.plain:
        factors = _plain_factors(module, group, patch.dyn, weight)
        if factors is not None:
            up, down = (t.to(torch.float32) for t in factors)
            return LoraTerm(module, up, down, patch.multiplier * group.scale())
    w = weight.to(torch.float32)
    b = None if bias is None else bias.to(torch.float32)
    dw, db = network_types.compute_prepared(group, w, b, patch.multiplier, patch.dyn, patch.module_name)
    _op_check(module)
    return DeltaTerm(module, dw, db)


def _op_check(module):
    if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)):
        raise ValueError(f"no functional form for {type(module).__name__}")


class ForwardAdd:
    """Forward hook: the layer's output plus every term of the input."""

    def __init__(self, terms):
        self.terms = terms

    def __call__(self, module, args, output):
        x = args[0]
        for term in self.terms:
            output = output + term(x)
        return output
