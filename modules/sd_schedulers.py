"""Sigma schedules ("Schedule type", spec §2).

Every schedule function takes keyword arguments `n`, `sigma_min`, `sigma_max`, `device` and, where the
registry says `need_inner_model`, `inner_model` (a `noise_schedule.DiscreteSchedule`). Each returns a
float32 tensor of n sigmas (descending) followed by a final 0 — except KL Optimal (§2.2).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Callable, Optional

import numpy as np
import torch

from modules.noise_schedule import DiscreteSchedule


def _append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0, device="cpu"):
    """Karras et al. (2022): evenly spaced in σ^(1/ρ)."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return _append_zero(sigmas).to(device)


def get_sigmas_exponential(n, sigma_min, sigma_max, device="cpu"):
    """Evenly spaced in ln σ."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp()
    return _append_zero(sigmas).to(device)


def get_sigmas_polyexponential(n, sigma_min, sigma_max, rho=1.0, device="cpu"):
    """ln σ follows (1 − ramp)^ρ; ρ = 1 is Exponential."""
    ramp = torch.linspace(1, 0, n) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return _append_zero(sigmas).to(device)


def uniform(n, sigma_min, sigma_max, inner_model: DiscreteSchedule, device="cpu"):
    """The model's own sigmas; like A1111 it ignores sigma_min/sigma_max."""
    return inner_model.get_sigmas(n).to(device)


def normal_scheduler(n, sigma_min, sigma_max, inner_model: DiscreteSchedule, device="cpu", sgm=False):
    """Evenly spaced in fractional timestep between t(σ_max) and t(σ_min).

    With sgm=True the grid has n+1 points and the last one (t(σ_min)) is dropped.
    """
    start = inner_model.sigma_to_t(torch.tensor(float(sigma_max)))
    end = inner_model.sigma_to_t(torch.tensor(float(sigma_min)))
    if sgm:
        timesteps = torch.linspace(start.item(), end.item(), n + 1)[:-1]
    else:
        timesteps = torch.linspace(start.item(), end.item(), n)
    return _append_zero(inner_model.t_to_sigma(timesteps)).to(device)


def sgm_uniform(n, sigma_min, sigma_max, inner_model: DiscreteSchedule, device="cpu"):
    return normal_scheduler(n, sigma_min, sigma_max, inner_model, device, sgm=True)


def simple_scheduler(n, sigma_min, sigma_max, inner_model: DiscreteSchedule, device="cpu"):
    """Every (len/n)-th table entry from the top.

    The stride is the float len/n and the index is truncated, exactly as A1111 computes it; for a few
    (n, i) pairs (e.g. n = 38, i = 19) this is one less than the exact integer ⌊i·1000/n⌋.
    """
    table = inner_model.sigmas
    stride = len(table) / n
    sigs = [table[-(1 + int(i * stride))] for i in range(n)]
    return _append_zero(torch.stack(sigs)).to(device)


def ddim_scheduler(n, sigma_min, sigma_max, inner_model: DiscreteSchedule, device="cpu"):
    """Table entries 1, 1+k, 1+2k, … (k = ⌊len/n⌋, at least 1), highest first."""
    table = inner_model.sigmas
    stride = max(len(table) // n, 1)
    sigs = table[1::stride].flip(0)
    return _append_zero(sigs).to(device)


def kl_optimal(n, sigma_min, sigma_max, device="cpu"):
    """KL-optimal schedule: n+1 values evenly spaced in atan σ, ending at σ_min — no final 0 (§2.2)."""
    alpha_min = torch.arctan(torch.tensor(float(sigma_min), device=device))
    alpha_max = torch.arctan(torch.tensor(float(sigma_max), device=device))
    frac = torch.arange(n + 1, device=device) / n
    return torch.tan(frac * alpha_min + (1 - frac) * alpha_max)


AYS_SD1 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]


def _loglinear_interp(values, num_steps):
    """Resample a descending list to num_steps points, linear in ln σ over a uniform grid."""
    xs = np.linspace(0, 1, len(values))
    ys = np.log(np.asarray(values, dtype=np.float64)[::-1])
    new_ys = np.interp(np.linspace(0, 1, num_steps), xs, ys)
    return np.exp(new_ys)[::-1].copy()


def get_align_your_steps_sigmas(n, sigma_min, sigma_max, device="cpu", is_sdxl=False):
    """Align Your Steps (NVIDIA's tuned 10-step lists), interpolated to n values; sigma_min/max unused."""
    base = AYS_SDXL if is_sdxl else AYS_SD1
    sigmas = np.asarray(base, dtype=np.float64) if n == len(base) else _loglinear_interp(base, n)
    return torch.tensor(np.append(sigmas, 0.0), dtype=torch.float32, device=device)


def beta_scheduler(n, sigma_min, sigma_max, device="cpu", alpha=0.6, beta=0.6):
    """σ placed at the quantiles of a Beta(α, β) distribution over [σ_min, σ_max]."""
    from scipy import stats

    quantiles = stats.beta.ppf(1 - np.linspace(0, 1, n), alpha, beta)
    sigmas = [sigma_min + q * (sigma_max - sigma_min) for q in quantiles]
    return torch.tensor(sigmas + [0.0], dtype=torch.float32, device=device)


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: Optional[Callable]
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: Optional[list] = None


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", uniform, need_inner_model=True),
    Scheduler("karras", "Karras", get_sigmas_karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", get_sigmas_exponential),
    Scheduler("polyexponential", "Polyexponential", get_sigmas_polyexponential, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", sgm_uniform, need_inner_model=True, aliases=["SGMUniform"]),
    Scheduler("kl_optimal", "KL Optimal", kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", get_align_your_steps_sigmas),
    Scheduler("simple", "Simple", simple_scheduler, need_inner_model=True),
    Scheduler("normal", "Normal", normal_scheduler, need_inner_model=True),
    Scheduler("ddim", "DDIM", ddim_scheduler, need_inner_model=True),
    Scheduler("beta", "Beta", beta_scheduler, need_inner_model=True),
]

schedulers_map = {**{s.name: s for s in schedulers}, **{s.label: s for s in schedulers}}


def get_scheduler(name: str) -> Scheduler:
    """Look a schedule up by name or label: exact, then case-insensitive, then alias (case-insensitive)."""
    if name in schedulers_map:
        return schedulers_map[name]
    lowered = str(name).lower()
    for s in schedulers:
        if lowered in (s.name.lower(), s.label.lower()):
            return s
    for s in schedulers:
        if any(lowered == alias.lower() for alias in s.aliases or []):
            return s
    valid = ", ".join(f"{s.label} ({s.name})" for s in schedulers)
    raise ValueError(f"unknown schedule type {name!r}; valid: {valid}")


def discard_penultimate(sigmas: torch.Tensor) -> torch.Tensor:
    """Drop the second-to-last sigma, keeping the final one (used with a schedule computed for n+1 steps)."""
    return torch.cat([sigmas[:-2], sigmas[-1:]])


def compute_sigmas(
    scheduler: str,
    n: int,
    inner_model: DiscreteSchedule,
    *,
    sigma_min: Optional[float] = None,
    sigma_max: Optional[float] = None,
    rho: Optional[float] = None,
    discard_penultimate_sigma: bool = False,
    sampler_default: Optional[str] = None,
    is_sdxl: bool = False,
    beta_alpha: float = 0.6,
    beta_beta: float = 0.6,
    device="cpu",
) -> torch.Tensor:
    """Sigmas for `n` sampling steps with the named schedule.

    `Automatic` resolves to `sampler_default` (the sampler's default schedule, §1.1) or, when that is
    None, to the model's own sigmas (Uniform). sigma_min/sigma_max default to the model's table; rho
    None means the schedule's default. With discard_penultimate_sigma the schedule is computed for n+1
    steps and its second-to-last value removed, leaving n intervals.
    """
    entry = get_scheduler(scheduler)
    if entry.function is None:
        entry = get_scheduler(sampler_default or "uniform")
        if entry.function is None:
            raise ValueError("sampler_default must name a concrete schedule, not 'automatic'")

    steps = n + 1 if discard_penultimate_sigma else n
    kwargs = {
        "n": steps,
        "sigma_min": float(inner_model.sigma_min) if sigma_min is None else float(sigma_min),
        "sigma_max": float(inner_model.sigma_max) if sigma_max is None else float(sigma_max),
        "device": device,
    }
    accepted = inspect.signature(entry.function).parameters
    optional = {"inner_model": inner_model, "is_sdxl": is_sdxl, "alpha": beta_alpha, "beta": beta_beta}
    if rho is not None and entry.default_rho != -1:
        optional["rho"] = rho
    kwargs.update({k: v for k, v in optional.items() if k in accepted})

    sigmas = entry.function(**kwargs)
    return discard_penultimate(sigmas) if discard_penultimate_sigma else sigmas
