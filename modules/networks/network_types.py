"""The math of each LoRA / LyCORIS type (networks.md §3): a group of file tensors -> ΔW, Δb.

Every function works in float32 on the layer's current weight `w` (the original plus deltas of
networks applied earlier in the set) and returns the delta to add; `finalize` applies the common
rules of §3.0 (bias part, reshape, scale, DoRA, multiplier).
"""
from __future__ import annotations

import torch


class UnsupportedGroup(ValueError):
    """A group of tensors no type accepts (aborts loading of the whole network, §2.1)."""


def _f(t):
    return t.to(torch.float32)


def network_type(parts: dict) -> str:
    """Detection order of §2.1; first match wins."""
    if "lora_up.weight" in parts and "lora_down.weight" in parts:
        return "lora"
    if "lora_A.weight" in parts and "lora_B.weight" in parts:
        return "lora_ab"
    if all(k in parts for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")):
        return "loha"
    if "weight" in parts and "on_input" in parts:
        return "ia3"
    if ("lokr_w1" in parts or ("lokr_w1_a" in parts and "lokr_w1_b" in parts)) and \
            ("lokr_w2" in parts or ("lokr_w2_a" in parts and "lokr_w2_b" in parts)):
        return "lokr"
    if "diff" in parts:
        return "full"
    if "w_norm" in parts and "b_norm" in parts:
        return "norm"
    if all(k in parts for k in ("a1.weight", "a2.weight", "b1.weight", "b2.weight", "alpha")):
        return "glora"
    if "oft_blocks" in parts or "oft_diag" in parts:
        return "oft"
    raise UnsupportedGroup(f"no network type has the parts {sorted(parts)}")


def rank(kind: str, parts: dict) -> int | None:
    if kind in ("lora", "lora_ab"):
        return (parts["lora_down.weight"] if kind == "lora" else parts["lora_A.weight"]).shape[0]
    if kind == "loha":
        return parts["hada_w1_b"].shape[0]
    if kind == "lokr":
        if "lokr_w2_b" in parts:
            return parts["lokr_w2_b"].shape[0]
        if "lokr_w1_b" in parts:
            return parts["lokr_w1_b"].shape[0]
    return None


def scale(kind: str, parts: dict) -> float:
    """§3.0: `scale` part, else alpha / rank for ranked types, else 1 (OFT: always 1)."""
    if kind == "oft":
        return 1.0
    if "scale" in parts:
        return float(parts["scale"])
    r = rank(kind, parts)
    if r and "alpha" in parts:
        return float(parts["alpha"]) / r
    return 1.0


def _as_matrix(t):
    return t.reshape(t.shape[0], -1)


def lora_delta(up, down, mid=None, dyn=None, shape=None):
    up, down = _f(up), _f(down)
    if mid is not None:
        # Tucker: D[o,i,k,l] = Σ_{p,q} up[o,p]·mid[p,q,k,l]·down[q,i]
        return torch.einsum("op,pqkl,qi->oikl", _as_matrix(up), _f(mid), _as_matrix(down))
    u, v = _as_matrix(up), _as_matrix(down)
    if dyn is not None:
        u, v = u[:, :dyn], v[:dyn, :]
    return u @ v


def _tucker_factor(t, a, b):
    # Σ_{p,q} t[p,q,k,l]·a[p,o]·b[q,j]
    return torch.einsum("pqkl,po,qj->ojkl", _f(t), _as_matrix(_f(a)), _as_matrix(_f(b)))


def loha_delta(parts):
    if "hada_t1" in parts and "hada_t2" in parts:
        first = _tucker_factor(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"])
        second = _tucker_factor(parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"])
        return first * second
    first = _f(parts["hada_w1_a"]) @ _as_matrix(_f(parts["hada_w1_b"]))
    second = _f(parts["hada_w2_a"]) @ _as_matrix(_f(parts["hada_w2_b"]))
    return first * second


def lokr_delta(parts, weight_shape):
    w1 = _f(parts["lokr_w1"]) if "lokr_w1" in parts else _f(parts["lokr_w1_a"]) @ _f(parts["lokr_w1_b"])
    if "lokr_w2" in parts:
        w2 = _f(parts["lokr_w2"])
    elif "lokr_t2" in parts:
        w2 = _tucker_factor(parts["lokr_t2"], parts["lokr_w2_a"], parts["lokr_w2_b"])
    else:
        w2 = _f(parts["lokr_w2_a"]) @ _as_matrix(_f(parts["lokr_w2_b"]))
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    return torch.kron(w1, w2)


def ia3_delta(parts, w):
    vector = _f(parts["weight"])
    if bool(parts["on_input"]):
        shape = [1, -1] + [1] * (w.dim() - 2)
    else:
        shape = [-1] + [1] * (w.dim() - 1)
    return w * vector.reshape(shape)


def glora_delta(parts, w):
    a1, a2, b1, b2 = (_f(parts[k]) for k in ("a1.weight", "a2.weight", "b1.weight", "b2.weight"))
    w2d = _as_matrix(w)
    out, inp = w2d.shape
    a1, a2, b1, b2 = _as_matrix(a1), _as_matrix(a2), _as_matrix(b1), _as_matrix(b2)
    if b1.shape[0] == out and b2.shape[-1] == inp and a1.shape[0] == inp:
        return b1 @ b2 + w2d @ a1 @ a2  # later LyCORIS layout (§3.6, Ours: chosen by shape)
    return b2 @ b1 + w2d @ a2 @ a1  # mid-2023 layout


def _cayley(blocks, alpha, out_features):
    q = blocks - blocks.transpose(-1, -2)
    if alpha is not None:
        c = float(alpha) * out_features
        if c != 0:
            norm = torch.linalg.norm(q)
            q = q * (torch.clamp(norm, max=c) + 1e-8) / (norm + 1e-8)
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    return (eye + q) @ torch.linalg.inv(eye - q)


def oft_rotated(parts, w):
    """W rotated by the OFT / BOFT blocks (§3.5); returns W_rot (same shape as w)."""
    w2d = _as_matrix(w)
    out = w2d.shape[0]
    if "oft_diag" in parts:
        r = _f(parts["oft_diag"])
        k, n = out // r.shape[1], r.shape[1]
        rotated = torch.einsum("kmn,kmj->knj", r, w2d.reshape(k, n, -1)).reshape(out, -1)  # R_kᵀ·W_k
    else:
        blocks = _f(parts["oft_blocks"])
        alpha = parts.get("alpha")
        if blocks.dim() == 3:
            r = _cayley(blocks, alpha, out)
            k, n = r.shape[0], r.shape[1]
            rotated = torch.einsum("kmn,kmj->knj", r, w2d.reshape(k, n, -1)).reshape(out, -1)
        else:
            r = _cayley(blocks, alpha, out)  # M×K×n×n
            levels, _k, n = r.shape[0], r.shape[1], r.shape[2]
            rotated = w2d
            for i in range(levels):
                h = (2 ** i) * n // 2
                cols = rotated.shape[1]
                inter = rotated.reshape(-1, 2, h, cols).transpose(1, 2).reshape(out, cols)
                inter = torch.einsum("dmn,dnj->dmj", r[i], inter.reshape(-1, n, cols)).reshape(out, cols)
                rotated = inter.reshape(-1, h, 2, cols).transpose(1, 2).reshape(out, cols)
    if "rescale" in parts:
        rotated = rotated * _f(parts["rescale"]).reshape(out, 1)
    return rotated.reshape(w.shape)


def dora(v, dora_scale, w):
    """dora_scale ⊙ V/ν − W, ν along the axis dora_scale's shape says (§3.9, Ours)."""
    dora_scale = _f(dora_scale)
    if dora_scale.shape[0] == v.shape[0] and dora_scale.numel() == v.shape[0] and v.shape[0] != 1:
        norm = _as_matrix(v).norm(dim=1).reshape([-1] + [1] * (v.dim() - 1))  # per output row
        return dora_scale.reshape(norm.shape) * v / norm - w
    norm = v.transpose(0, 1).reshape(v.shape[1], -1).norm(dim=1).reshape([1, -1] + [1] * (v.dim() - 2))
    return dora_scale.reshape(norm.shape) * v / norm - w


def _fit(d, shape, module_name=""):
    if d.shape == shape:
        return d
    if d.numel() == torch.Size(shape).numel():
        return d.reshape(shape)
    # a 4-channel delta on a 9-channel inpainting conv_in: the extra input channels get 0 (§3.10)
    is_conv_in = module_name.endswith("conv_in") or module_name.endswith("input_blocks_0_0")
    if is_conv_in and len(shape) == 4:
        per_channel = shape[2] * shape[3]
        if d.numel() % (shape[0] * per_channel) == 0:
            d4 = d.reshape(shape[0], -1, shape[2], shape[3])
            if d4.shape[1] < shape[1]:
                return torch.nn.functional.pad(d4, (0, 0, 0, 0, 0, shape[1] - d4.shape[1]))
    raise ValueError(f"delta of shape {tuple(d.shape)} does not fit the layer's {tuple(shape)}")


def compute(parts: dict, w: torch.Tensor, b: torch.Tensor | None, multiplier: float, dyn: int | None = None,
            module_name: str = "") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """ΔW and Δb (float32, or None) of one group on a layer with current weight w, bias b."""
    kind = network_type(parts)
    shape = w.shape
    bias_delta = None
    if kind == "lora":
        d = lora_delta(parts["lora_up.weight"], parts["lora_down.weight"], parts.get("lora_mid.weight"),
                       dyn if "lora_mid.weight" not in parts else None, shape)
    elif kind == "lora_ab":
        d = lora_delta(parts["lora_B.weight"], parts["lora_A.weight"], dyn=dyn)
    elif kind == "loha":
        d = loha_delta(parts)
    elif kind == "lokr":
        d = lokr_delta(parts, shape)
    elif kind == "ia3":
        d = ia3_delta(parts, w)
    elif kind == "full":
        d = _f(parts["diff"])
        if "diff_b" in parts:
            bias_delta = _f(parts["diff_b"]) * multiplier
    elif kind == "norm":
        d = _f(parts["w_norm"])
        bias_delta = _f(parts["b_norm"]) * multiplier
    elif kind == "glora":
        d = glora_delta(parts, w)
    else:
        if w.dim() not in (2, 4):
            raise ValueError("OFT needs a Linear or Conv2d layer")
        d = oft_rotated(parts, w) - w
    if "bias" in parts and kind not in ("norm",):
        extra = _f(parts["bias"])
        d = (d.reshape(extra.shape) + extra)
    d = _fit(d, shape, module_name)
    d = d * scale(kind, parts)  # a new tensor: from here on in place (parts stay untouched)
    if "dora_scale" in parts:
        d = dora(w + d, parts["dora_scale"], w)
    if bias_delta is not None and (b is None or bias_delta.shape != b.shape):
        raise ValueError("bias delta does not fit the layer's bias")
    return d.mul_(multiplier), bias_delta


class Prepared:
    """One group with its type worked out once per loaded file (not once per job and layer).

    `plain` groups (LoRA without Tucker mid, bias or DoRA) take a short path in `compute_prepared`
    with exactly the operations `compute` does for them, so the result is the same to the bit.
    """
    __slots__ = ("parts", "kind", "plain", "_scale")

    def __init__(self, parts: dict):
        self.parts = parts
        self.kind = network_type(parts)
        self.plain = self.kind in ("lora", "lora_ab") and not any(
            k in parts for k in ("lora_mid.weight", "bias", "dora_scale"))
        self._scale = None

    def scale(self) -> float:
        if self._scale is None:  # here, not at load: a bad `alpha` fails this layer only, as before
            self._scale = scale(self.kind, self.parts)
        return self._scale


def compute_prepared(group: Prepared, w: torch.Tensor, b: torch.Tensor | None, multiplier: float,
                     dyn: int | None = None, module_name: str = "") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """`compute` for a prepared group, its tensors moved to w's device."""
    device = w.device
    if not group.plain:
        parts = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in group.parts.items()}
        return compute(parts, w, b, multiplier, dyn, module_name)
    parts = group.parts
    if group.kind == "lora":
        up, down = parts["lora_up.weight"], parts["lora_down.weight"]
    else:
        up, down = parts["lora_B.weight"], parts["lora_A.weight"]
    d = lora_delta(up.to(device), down.to(device), dyn=dyn)
    d = _fit(d, w.shape, module_name) * group.scale()
    return d.mul_(multiplier), None
