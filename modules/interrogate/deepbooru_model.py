"""The DeepDanbooru `resnet_custom_v3` network in torch (extras.md §6.2), batch norm folded into the
conv biases as in the torch weight file (`n_Conv_0` … `n_Conv_178`, plus `tags`).

Channel widths are read from the file's shapes, so a small file with the same layer layout (tests)
loads through the same code. The wiring is fixed: a 7×7/2 stem, a 3×3/2 max pool, six stages of
bottleneck blocks, a 1×1 head, global mean, sigmoid. Within each stage's first block the order of
the projection conv among the block's four convs is taken from the shapes (see `_first_block_order`).
"""
import torch
import torch.nn.functional as F
from torch import nn

STAGE_BLOCKS = (3, 8, 20, 20, 3, 3)
CONV_COUNT = 179


def _conv(state: dict, index: int, stride: int = 1) -> nn.Conv2d:
    weight = state[f"n_Conv_{index}.weight"]
    out_ch, in_ch, kh, kw = weight.shape
    return nn.Conv2d(in_ch, out_ch, (kh, kw), stride=stride, bias=f"n_Conv_{index}.bias" in state)


def _first_block_order(state: dict, start: int) -> dict:
    """Positions of c1, c2 (3×3), c3 and the projection among convs start..start+3: c2 is the 3×3,
    c3 the 1×1 right after it, c1 the 1×1 before it whose output feeds c2 (it narrows to the
    block's middle width, a quarter of the output width), the projection the one left."""
    indices = list(range(start, start + 4))
    shape = {i: state[f"n_Conv_{i}.weight"].shape for i in indices}
    c2 = next(i for i in indices if shape[i][-1] == 3)
    c3 = c2 + 1
    c1 = next(i for i in indices if i < c2 and shape[i][0] == shape[c2][1] and shape[i][0] != shape[c3][0])
    proj = next(i for i in indices if i not in (c1, c2, c3))
    return {"c1": c1, "c2": c2, "c3": c3, "proj": proj}


class DeepDanbooru(nn.Module):
    def __init__(self, state: dict):
        super().__init__()
        self.tags = list(state.get("tags", []))
        self.plan = []  # per block: dict of role -> conv index, and the stride
        index = 1
        for stage, blocks in enumerate(STAGE_BLOCKS):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                if block == 0:
                    roles = _first_block_order(state, index)
                    index += 4
                else:
                    roles = {"c1": index, "c2": index + 1, "c3": index + 2}
                    index += 3
                self.plan.append((roles, stride))
        if index != CONV_COUNT - 1:
            raise ValueError(f"unexpected layer count {index}")
        strides = {roles["c2"]: stride for roles, stride in self.plan}
        strides.update({roles["proj"]: stride for roles, stride in self.plan if "proj" in roles})
        strides[0] = 2
        for i in range(CONV_COUNT):
            setattr(self, f"n_Conv_{i}", _conv(state, i, strides.get(i, 1)))

    def conv(self, i):
        return getattr(self, f"n_Conv_{i}")

    def _same(self, i, x):
        """3×3 convs: padding 1 all round at stride 1, right/bottom 1 at stride 2."""
        conv = self.conv(i)
        if conv.kernel_size[0] == 3:
            x = F.pad(x, (1, 1, 1, 1) if conv.stride[0] == 1 else (0, 1, 0, 1))
        return conv(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, H, W, 3) RGB in [0,1] -> (N, tags) probabilities."""
        x = images.permute(0, 3, 1, 2)
        x = F.relu(self.conv(0)(F.pad(x, (2, 3, 2, 3))))
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
        for roles, _stride in self.plan:
            y = F.relu(self._same(roles["c1"], x))
            y = F.relu(self._same(roles["c2"], y))
            y = self._same(roles["c3"], y)
            shortcut = self.conv(roles["proj"])(x) if "proj" in roles else x
            x = F.relu(y + shortcut)
        x = self.conv(CONV_COUNT - 1)(x)
        return torch.sigmoid(x.mean(dim=(2, 3)))


def load(path: str) -> DeepDanbooru:
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = DeepDanbooru(state)
    net.load_state_dict({k: v for k, v in state.items() if k != "tags"}, strict=True)
    return net.eval().requires_grad_(False)


def tiny_state_dict(tags: list[str], width: int = 4, seed: int = 0, projection_first: bool = False) -> dict:
    """A random state dict with the real layer layout at small widths (tests)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def add(i, out_ch, in_ch, k, bias=True):
        state[f"n_Conv_{i}.weight"] = torch.randn((out_ch, in_ch, k, k), generator=generator) / (in_ch * k * k) ** 0.5
        if bias:
            state[f"n_Conv_{i}.bias"] = torch.randn(out_ch, generator=generator) * 0.02
    stem = width
    add(0, stem, 3, 7)
    index, channels = 1, stem
    mids = [width * m for m in (1, 2, 4, 4, 8, 16)]
    for stage, blocks in enumerate(STAGE_BLOCKS):
        mid, out = mids[stage], mids[stage] * 4
        for block in range(blocks):
            if block == 0:
                order = ["proj", "c1", "c2", "c3"] if projection_first else ["c1", "c2", "c3", "proj"]
                # (c1, proj, c2, c3) loads too; the real file's order is read from its shapes
                shapes = {"c1": (mid, channels, 1), "c2": (mid, mid, 3), "c3": (out, mid, 1),
                          "proj": (out, channels, 1)}
                for role in order:
                    add(index, *shapes[role])
                    index += 1
            else:
                add(index, mid, channels, 1)
                add(index + 1, mid, mid, 3)
                add(index + 2, out, mid, 1)
                index += 3
            channels = out
    add(index, len(tags), channels, 1, bias=False)
    state["tags"] = list(tags)
    return state
