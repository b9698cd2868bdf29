"""Seeds and noise (spec §3): per-image generators, variation seeds, resize-from, ENSD and the NV generator."""

from __future__ import annotations

import random
from typing import Optional, Sequence

import numpy as np
import torch

SOURCES = ("GPU", "CPU", "NV")

# A random seed is drawn from [0, MAX_RANDOM_SEED) (§3.1).
MAX_RANDOM_SEED = 4294967294


def get_fixed_seed(seed) -> int:
    """−1, None, empty or non-numeric text mean "random"; anything else is used as given."""
    if seed is None or (isinstance(seed, str) and seed.strip() == ""):
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed.strip())
        except ValueError:
            seed = -1
    seed = int(seed)
    if seed == -1:
        return random.randrange(MAX_RANDOM_SEED)
    return seed


def get_image_seeds(seed: int, subseed: int, subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Per-image seeds and subseeds (§3.2): with variation on, all images share the seed."""
    seeds = [seed] * count if subseed_strength != 0 else [seed + i for i in range(count)]
    subseeds = [subseed + i for i in range(count)]
    return seeds, subseeds


# --- NV: CPU re-implementation of CUDA's Philox4x32-10 + Box–Muller (§3.5) ---------------------------

_PHILOX_M0, _PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
# The float32 constants CUDA's curand uses; the products below are then evaluated in float64
# (uint32 × float32 promotes to float64), which reproduces the GPU's numbers.
_TWO_POW32_INV = np.float32(2.3283064e-10)
_TWO_POW32_INV_2PI = np.float32(2.3283064e-10 * 6.2831855)


def _philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Ten Philox rounds over columns of a (4, n) uint32 counter with a (2, n) uint32 key."""
    c = counter.copy()
    k = key.copy()
    for round_index in range(10):
        prod0 = c[0].astype(np.uint64) * _PHILOX_M0
        prod1 = c[2].astype(np.uint64) * _PHILOX_M1
        hi0, lo0 = (prod0 >> np.uint64(32)).astype(np.uint32), (prod0 & _MASK32).astype(np.uint32)
        hi1, lo1 = (prod1 >> np.uint64(32)).astype(np.uint32), (prod1 & _MASK32).astype(np.uint32)
        c = np.stack([hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0])
        if round_index < 9:
            k = np.stack([k[0] + _PHILOX_W0, k[1] + _PHILOX_W1])  # uint32 arithmetic wraps mod 2³²
    return c


def _box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    u = x * _TWO_POW32_INV + _TWO_POW32_INV / 2
    v = y * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    """Produces what torch.randn gives on an NVIDIA GPU for the same seed, on any hardware."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.offset = 0  # advances by one per tensor drawn, not per number

    def randn_numpy(self, shape) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64))
        if n >= 2 ** 32:
            raise ValueError("NV generator: at most 2**32 - 1 numbers per tensor")
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)
        seed64 = self.seed % 2 ** 64
        key = np.empty((2, n), dtype=np.uint32)
        key[0] = seed64 & 0xFFFFFFFF
        key[1] = seed64 >> 32
        self.offset += 1
        out = _philox4x32_10(counter, key)
        return _box_muller(out[0], out[1]).reshape(shape)  # words 2 and 3 are not used

    def randn(self, shape, device="cpu") -> torch.Tensor:
        return torch.from_numpy(self.randn_numpy(shape)).to(device)


# --- generators for the three sources -------------------------------------------------------------

class TorchGenerator:
    """torch.Generator on the sampling device (GPU source) or on the CPU (CPU source)."""

    def __init__(self, seed: int, generator_device="cpu"):
        self.generator = torch.Generator(generator_device).manual_seed(int(seed))
        self.generator_device = generator_device

    def randn(self, shape, device="cpu") -> torch.Tensor:
        x = torch.randn(tuple(shape), generator=self.generator, device=self.generator_device)
        return x.to(device)


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown random number source {source!r}; valid: {', '.join(SOURCES)}")
    return source


def create_generator(seed: int, source: str = "GPU", device="cpu"):
    """A fresh per-image generator seeded with `seed`; draw from it with `.randn(shape, device)`."""
    _check_source(source)
    if source == "NV":
        return PhiloxGenerator(seed)
    device = torch.device(device)
    # GPU = the device's own generator; MPS is not reproducible, so it uses the CPU one like CPU does
    if source == "CPU" or device.type == "mps":
        return TorchGenerator(seed, "cpu")
    return TorchGenerator(seed, device)


def randn(seed: int, shape, source: str = "GPU", device="cpu") -> torch.Tensor:
    """The first normal tensor of a generator seeded with `seed`."""
    return create_generator(seed, source, device).randn(shape, device)


# --- variation seeds and the image RNG ------------------------------------------------------------

def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's variation slerp (§3.4): angles measured per (channel, column) along the height axis.

    `low`/`high` are C × H × W; val = 0 gives low, val = 1 gives high.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        # nearly parallel: a linear blend — with weights reversed relative to the slerp, as in A1111
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def _paste_centered(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Paste C × h × w `source` centred onto C × H × W `target`, cropping it where it is larger (§3.3)."""
    dx = (target.shape[2] - source.shape[2]) // 2
    dy = (target.shape[1] - source.shape[1]) // 2
    w = source.shape[2] if dx >= 0 else source.shape[2] + 2 * dx
    h = source.shape[1] if dy >= 0 else source.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    target[:, ty:ty + h, tx:tx + w] = source[:, sy:sy + h, sx:sx + w]
    return target


class ImageRNG:
    """One noise generator per image of a batch (§3.3, §3.6).

    `first()` returns the initial noise (B × C × H × W, with variation and resize-from applied);
    every later `next()` returns the next draw of each image's generator, stacked. `shape` is one
    image's latent shape (C, H, W); `seed_resize_from_h/w` are pixel sizes.
    """

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int],
        subseeds: Optional[Sequence[int]] = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        source: str = "GPU",
        device="cpu",
        eta_noise_seed_delta: int = 0,
    ):
        self.shape = tuple(int(s) for s in shape)
        self.seeds = [int(s) for s in seeds]
        self.subseeds = None if subseeds is None else [int(s) for s in subseeds]
        self.subseed_strength = subseed_strength
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = _check_source(source)
        self.device = device
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        if self.subseed_strength != 0 and (self.subseeds is None or len(self.subseeds) < len(self.seeds)):
            raise ValueError("variation seeds need one subseed per seed")
        self.generators = [create_generator(s, source, device) for s in self.seeds]
        self.is_first = True

    def _noise_shape(self):
        if self.seed_resize_from_h > 0 and self.seed_resize_from_w > 0:
            return (self.shape[0], self.seed_resize_from_h // 8, self.seed_resize_from_w // 8)
        return self.shape

    def first(self) -> torch.Tensor:
        noise_shape = self._noise_shape()
        resized = noise_shape != self.shape
        xs = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators)):
            if resized:
                # the small tensor comes from a throwaway generator; the image's own generator
                # then draws the full-size base, so both start with the same numbers
                noise = randn(seed, noise_shape, self.source, self.device)
            else:
                noise = generator.randn(self.shape, self.device)
            if self.subseed_strength != 0:
                subnoise = randn(self.subseeds[i], noise_shape, self.source, self.device)
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                noise = _paste_centered(generator.randn(self.shape, self.device), noise)
            xs.append(noise)
        if self.eta_noise_seed_delta:
            # ENSD: all later draws come from generators reseeded with seed + delta
            self.generators = [create_generator(s + self.eta_noise_seed_delta, self.source, self.device) for s in self.seeds]
        self.is_first = False
        return torch.stack(xs)

    def next(self) -> torch.Tensor:
        # as in A1111, the very first next() is the initial noise
        if self.is_first:
            return self.first()
        return torch.stack([g.randn(self.shape, self.device) for g in self.generators])

    def noise_sampler(self, sigma=None, sigma_next=None) -> torch.Tensor:
        """k_sampling's noise_sampler signature; every call is one draw per image."""
        return self.next()
