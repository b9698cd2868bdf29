"""Timestep samplers (generation.md §1.4): DDIM, DDIM CFG++, PLMS and UniPC.

They are written over the same denoiser as the k-diffusion solvers of modules.k_sampling and with
the same calling convention: `solver(model, x, sigmas, extra_args=None, callback=None, disable=None,
**options)`, where `model(x, sigma) -> D` works in k-diffusion space (x = x_ddpm/√ᾱ, σ = √((1−ᾱ)/ᾱ)).

A1111 runs these samplers in DDPM space on the UNet's ε at integer timesteps. Both views are the
same computation: at a table sigma σ_t the denoiser gives the UNet exactly the integer t and
c_in·x = x_ddpm, with ε = (x − D)/σ and x̂₀ = D. So every update below is A1111's, rewritten with
ᾱ = 1/(1+σ²) and x_ddpm = x/√(1+σ²).

`sigmas` are the sigmas of the timesteps to visit, highest first, **without** the final 0 of the
k-diffusion schedules (`timesteps_sigmas`). Each solver returns x in k-space at sigmas[-1]; the
DDPM-space latent A1111 ends with (and decodes) is `to_ddpm(x, sigmas[-1])`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import trange

from modules.noise_schedule import DiscreteSchedule

TIMESTEP_SAMPLERS = ("DDIM", "DDIM CFG++", "PLMS", "UniPC")
UNIPC_VARIANTS = ("bh1", "bh2", "vary_coeff")
UNIPC_SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")
CFGPP_SCALE_DIVISOR = 12.5  # CFG++ maps the UI's CFG 0–12.5 onto its guidance range 0–1


# --- timesteps and their sigmas -------------------------------------------------------------------

def ddim_timesteps(steps: int, num_timesteps: int = 1000) -> list[int]:
    """τ_k = min(999, k·⌊1000/n⌋ + 1) while k·⌊1000/n⌋ < 1000 (n = 3 gives 1, 334, 667, 999: kept)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"timestep samplers need 1 to {num_timesteps} steps, not {steps}")
    stride = num_timesteps // steps
    return [min(num_timesteps - 1, t + 1) for t in range(0, num_timesteps, stride)]


def unipc_sigmas(steps: int, schedule: DiscreteSchedule, skip_type: str = "time_uniform") -> torch.Tensor:
    """UniPC's steps+1 time points, as sigmas (highest first).

    UniPC's discrete-time model lives on continuous t ∈ [1/N, 1] and feeds the UNet the timestep
    N·t − 1, i.e. 999 … 0; `time_uniform` spaces t evenly, `time_quadratic` spaces √t evenly and
    `logSNR` spaces λ = −ln σ evenly between the table's ends.
    """
    n_table = len(schedule)
    if skip_type == "logSNR":
        lam = torch.linspace(-math.log(float(schedule.sigma_max)), -math.log(float(schedule.sigma_min)),
                             steps + 1, dtype=torch.float64)
        return lam.neg().exp().to(torch.float32)
    t_end = 1.0 / n_table
    if skip_type == "time_uniform":
        t = torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64)
    elif skip_type == "time_quadratic":
        t = torch.linspace(1.0, math.sqrt(t_end), steps + 1, dtype=torch.float64) ** 2
    else:
        raise ValueError(f"unknown UniPC skip type {skip_type!r}; valid: {', '.join(UNIPC_SKIP_TYPES)}")
    model_t = (t * n_table - 1).clamp(0, n_table - 1)
    return schedule.t_to_sigma(model_t.to(torch.float32))


def timesteps_sigmas(name: str, steps: int, schedule: DiscreteSchedule,
                     skip_type: str = "time_uniform") -> torch.Tensor:
    """The sigmas a timestep sampler visits for `steps` steps (discard-penultimate: pass steps + 1).

    DDIM, DDIM CFG++ and PLMS: the table sigmas of `ddim_timesteps`, highest first (len(τ) values,
    len(τ) − 1 steps). UniPC: `unipc_sigmas` with len(τ) steps (len(τ) + 1 values).
    """
    if name not in TIMESTEP_SAMPLERS:
        raise ValueError(f"{name!r} is not a timestep sampler; valid: {', '.join(TIMESTEP_SAMPLERS)}")
    taus = ddim_timesteps(steps, len(schedule))
    if name == "UniPC":
        return unipc_sigmas(len(taus), schedule, skip_type)
    return schedule.sigmas[torch.tensor(taus)].flip(0).clone()


def to_ddpm(x: torch.Tensor, sigma) -> torch.Tensor:
    """k-space x at σ → the DDPM-space latent x·√ᾱ that A1111's timestep samplers return."""
    return x / math.sqrt(1.0 + float(sigma) ** 2)


# --- shared helpers -------------------------------------------------------------------------------

def _setup(x, extra_args, noise_sampler):
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        noise_sampler = lambda sigma, sigma_next: torch.randn_like(x)  # noqa: E731
    return extra_args, noise_sampler, x.new_ones([x.shape[0]])


def _report(callback, x, i, sigma, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def _ddim_coefficients(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """DDIM's step τ_k → τ_{k−1} in k-space: x ← D + c_dir·ε + σ_up·noise.

    With ᾱ = 1/(1+σ²), A1111's σ_k = η·√((1−ᾱ_prev)/(1−ᾱ_k)·(1−ᾱ_k/ᾱ_prev)) divided by √ᾱ_prev is
    σ_up = η·σ_next·√(σ² − σ_next²)/σ (the ancestral split without its clamp), and
    √(1 − ᾱ_prev − σ_k²)/√ᾱ_prev = √(σ_next² − σ_up²).
    """
    sigma_up = eta * sigma_next * math.sqrt(max(sigma ** 2 - sigma_next ** 2, 0.0)) / sigma
    c_dir = math.sqrt(sigma_next ** 2 - sigma_up ** 2)  # η > 1 can make this invalid, as in A1111
    return c_dir, sigma_up


# --- DDIM and DDIM CFG++ --------------------------------------------------------------------------

@torch.no_grad()
def ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, noise_sampler=None):
    extra_args, noise_sampler, s_in = _setup(x, extra_args, noise_sampler)
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], denoised)
        eps = (x - denoised) / sigma
        c_dir, sigma_up = _ddim_coefficients(sigma, sigma_next, eta)
        x = denoised + c_dir * eps
        if eta:
            x = x + sigma_up * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


def _check_cfgpp_denoiser(model):
    missing = [a for a in ("cond_scale_multiplier", "last_denoised_uncond") if not hasattr(model, a)]
    if missing:
        raise TypeError("DDIM CFG++ needs a denoiser with the attributes cond_scale_multiplier (a factor "
                        "it applies to the CFG scale) and last_denoised_uncond (the unconditional "
                        f"prediction of its latest call); missing: {', '.join(missing)}")


@torch.no_grad()
def ddim_cfgpp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, noise_sampler=None):
    """DDIM whose direction term uses the unconditional prediction, with the CFG scale divided by 12.5.

    The denoiser must expose `cond_scale_multiplier` (set here for the run, restored afterwards) and
    `last_denoised_uncond` (D of the unconditional pass of its latest call, in k-space).
    """
    _check_cfgpp_denoiser(model)
    extra_args, noise_sampler, s_in = _setup(x, extra_args, noise_sampler)
    previous = model.cond_scale_multiplier
    model.cond_scale_multiplier = 1.0 / CFGPP_SCALE_DIVISOR
    try:
        for i in trange(len(sigmas) - 1, disable=disable):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            denoised = model(x, sigmas[i] * s_in, **extra_args)
            _report(callback, x, i, sigmas[i], denoised)
            eps_uncond = (x - model.last_denoised_uncond) / sigma
            c_dir, sigma_up = _ddim_coefficients(sigma, sigma_next, eta)
            x = denoised + c_dir * eps_uncond
            if eta:
                x = x + sigma_up * noise_sampler(sigmas[i], sigmas[i + 1])
    finally:
        model.cond_scale_multiplier = previous
    return x


# --- PLMS -----------------------------------------------------------------------------------------

@torch.no_grad()
def plms(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Pseudo linear multistep on ε: improved Euler first, then Adams–Bashforth of order 2, 3, 4.

    The DDIM (η = 0) update with ε' is x ← x + (σ_next − σ)·ε' in k-space.
    """
    extra_args, _, s_in = _setup(x, extra_args, None)
    old_eps = []
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        eps = (x - denoised) / sigma
        if not old_eps:
            x_next = x + (sigma_next - sigma) * eps
            eps_next = (x_next - model(x_next, sigma_next * s_in, **extra_args)) / sigma_next
            eps_prime = (eps + eps_next) / 2
        elif len(old_eps) == 1:
            eps_prime = (3 * eps - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            eps_prime = (23 * eps - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            eps_prime = (55 * eps - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        _report(callback, x, i, sigma, x - sigma * eps_prime)
        x = x + (sigma_next - sigma) * eps_prime
        old_eps = (old_eps + [eps])[-3:]
    return x


# --- UniPC ----------------------------------------------------------------------------------------
# Zhao et al. 2023, multistep predictor–corrector in data-prediction mode. In k-space the VP update
# x_t = (σ_t/σ_s)·x_s − α_t(e^{−h} − 1)·D_s − α_t·B(h)·Σ… divided by α_t becomes
# x_t = (σ_t/σ_s)·x_s − (e^{−h} − 1)·D_s − B(h)·Σ…, with λ = −ln σ and h = λ_t − λ_s.

def _bh_rhos(rks: list[float], hh: float, b_h: float, order: int):
    """Predictor and corrector weights of the B(h) variants (bh1: B = −h, bh2: B = e^{−h} − 1)."""
    g = math.expm1(hh) / hh - 1  # h·φ₂-type terms, built up recursively
    factorial = 1
    b = []
    for i in range(1, order + 1):
        b.append(g * factorial / b_h)
        factorial *= i + 1
        g = g / hh - 1 / factorial
    r = np.array([[rk ** (i - 1) for rk in rks] for i in range(1, order + 1)], dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    # orders 1 and 2 use the fixed weight ½ instead of solving (as the reference does)
    rhos_p = [0.5] if order == 2 else (list(np.linalg.solve(r[:-1, :-1], b[:-1])) if order > 2 else [])
    rhos_c = [0.5] if order == 1 else list(np.linalg.solve(r, b))
    return rhos_p, rhos_c


def _vary_coefficients(rks: list[float], hh: float):
    """Coefficient matrices and φ terms of the `vary_coeff` variant."""
    k_count = len(rks)
    c = np.array([[rk ** k / math.factorial(k + 1) for k in range(k_count)] for rk in rks], dtype=np.float64)
    h_phis = []
    value, factorial = math.expm1(hh), 1
    for k in range(1, k_count + 2):
        h_phis.append(value)
        value = value / hh - 1 / factorial
        factorial *= k + 1
    a_p = np.linalg.inv(c[:-1, :-1]) if k_count > 1 else None
    return a_p, np.linalg.inv(c), h_phis


def _weighted(weights, tensors):
    total = 0
    for w, t in zip(weights, tensors):
        total = total + float(w) * t
    return total


def _unipc_update(model, x, s_in, history, sigma_t, order, variant, use_corrector, extra_args):
    """One step from the newest history point to sigma_t; returns (x_t, D(x_t) or None)."""
    (m_s, lam_s, sigma_s) = history[-1]
    lam_t = -math.log(float(sigma_t))
    h = lam_t - lam_s
    hh = -h  # data prediction integrates in −λ
    rks = [(history[-(k + 1)][1] - lam_s) / h for k in range(1, order)]
    d1s = [(history[-(k + 1)][0] - m_s) / rk for k, rk in zip(range(1, order), rks)]
    rks.append(1.0)

    x_base = (float(sigma_t) / sigma_s) * x - math.expm1(hh) * m_s
    if variant == "vary_coeff":
        a_p, a_c, h_phis = _vary_coefficients(rks, hh)
        k_count = len(rks)
        x_t = x_base
        for k in range(k_count - 1):
            x_t = x_t - h_phis[k + 1] * _weighted(a_p[k], d1s)
        if not use_corrector:
            return x_t, None
        m_t = model(x_t, sigma_t * s_in, **extra_args)
        x_t = x_base
        for k in range(k_count - 1):
            x_t = x_t - h_phis[k + 1] * _weighted(a_c[k][:-1], d1s)
        # the reference weights D1_t with row max(K−2, 0) of the inverse (its loop variable); kept
        last_row = max(k_count - 2, 0)
        return x_t - h_phis[k_count] * float(a_c[last_row][-1]) * (m_t - m_s), m_t

    b_h = hh if variant == "bh1" else math.expm1(hh)
    rhos_p, rhos_c = _bh_rhos(rks, hh, b_h, order)
    x_t = x_base - b_h * _weighted(rhos_p, d1s) if d1s else x_base
    if not use_corrector:
        return x_t, None
    m_t = model(x_t, sigma_t * s_in, **extra_args)
    correction = _weighted(rhos_c[:-1], d1s) + float(rhos_c[-1]) * (m_t - m_s)
    return x_base - b_h * correction, m_t


@torch.no_grad()
def unipc(model, x, sigmas, extra_args=None, callback=None, disable=None,
          variant="bh1", order=3, lower_order_final=True):
    """UniPC over the len(sigmas) − 1 intervals of `sigmas` (from `unipc_sigmas`).

    `order` is clamped to steps − 1 (at least 1). The first steps warm up with orders 1, 2, …;
    every step but the last runs the corrector, whose model evaluation is reused as the next
    step's history, so a run costs `steps` model evaluations.
    """
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; valid: {', '.join(UNIPC_VARIANTS)}")
    extra_args, _, s_in = _setup(x, extra_args, None)
    steps = len(sigmas) - 1
    order = max(1, min(int(order), steps - 1))
    denoised = model(x, sigmas[0] * s_in, **extra_args)
    history = [(denoised, -math.log(float(sigmas[0])), float(sigmas[0]))]
    for step in trange(1, steps + 1, disable=disable):
        if step < order:
            step_order = step
        elif lower_order_final:
            step_order = min(order, steps + 1 - step)
        else:
            step_order = order
        _report(callback, x, step - 1, sigmas[step - 1], history[-1][0])
        x, denoised = _unipc_update(model, x, s_in, history, sigmas[step], step_order, variant,
                                    use_corrector=step < steps, extra_args=extra_args)
        if step < steps:
            history = (history + [(denoised, -math.log(float(sigmas[step])), float(sigmas[step]))])[-order:]
    return x
