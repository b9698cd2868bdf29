"""Noise table (spec §0) and schedule types (spec §2) against their formulas and reference values."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from modules import sd_schedulers as S
from modules.noise_schedule import (
    DiscreteSchedule,
    downcast_alphas_cumprod,
    rescale_zero_terminal_snr,
    scaled_linear_alphas_cumprod,
)

SIGMA_MIN, SIGMA_MAX = 0.0291672, 14.614641


@pytest.fixture(scope="module")
def model():
    return DiscreteSchedule.scaled_linear()


def table64():
    """The σ table recomputed independently in float64 (ᾱ rounded to float32, as stored)."""
    t = np.arange(1000)
    betas = (math.sqrt(0.00085) + t / 999 * (math.sqrt(0.012) - math.sqrt(0.00085))) ** 2
    abar = np.cumprod(1 - betas).astype(np.float32).astype(np.float64)
    return np.sqrt((1 - abar) / abar)


def sigma_at(table, t):
    """§0.2 σ(t) in float64."""
    lo, hi = math.floor(t), math.ceil(t)
    f = t - lo
    return math.exp((1 - f) * math.log(table[lo]) + f * math.log(table[hi]))


def t_at(table, sigma):
    """§0.2 t(σ) in float64."""
    logs = np.log(table)
    ls = math.log(sigma)
    lo = int(np.clip(np.sum(logs <= ls) - 1, 0, len(table) - 2))
    w = min(max((logs[lo] - ls) / (logs[lo] - logs[lo + 1]), 0.0), 1.0)
    return lo + w


def assert_close(got, want, rtol=2e-5, atol=1e-6):
    got = np.asarray(got.tolist() if torch.is_tensor(got) else got, dtype=np.float64)
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)


# --- noise table -----------------------------------------------------------------------------------

def test_alphas_cumprod_formula():
    abar = scaled_linear_alphas_cumprod()
    assert abar.dtype == torch.float32 and abar.shape == (1000,)
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    assert_close(abar, np.cumprod(1 - betas), rtol=1e-6)


def test_sigma_table(model):
    assert model.sigmas.dtype == torch.float32
    # from the float32 ᾱ; the spec's 0.0291672 is the all-float64 value, 1.2e-5 lower
    assert float(model.sigma_min) == pytest.approx(0.02916753, rel=1e-6)
    assert float(model.sigma_min) == pytest.approx(SIGMA_MIN, rel=2e-5)
    assert float(model.sigma_max) == pytest.approx(SIGMA_MAX, rel=1e-6)
    assert torch.all(model.sigmas[1:] > model.sigmas[:-1])
    assert_close(model.sigmas, table64(), rtol=1e-6)
    assert torch.equal(model.log_sigmas, model.sigmas.log())


def test_sigma_to_t_and_back(model):
    table = table64()
    for t in [0, 1, 17, 500, 998, 999]:
        assert float(model.t_to_sigma(torch.tensor(float(t)))) == pytest.approx(table[t], rel=1e-6)
        assert float(model.sigma_to_t(model.sigmas[t])) == pytest.approx(t, abs=1e-3)
    for t in [0.25, 123.5, 700.9, 998.3]:
        assert float(model.t_to_sigma(torch.tensor(t))) == pytest.approx(sigma_at(table, t), rel=1e-5)
    for sigma in [0.05, 0.7, 1.0, 3.3, 14.0]:
        assert float(model.sigma_to_t(torch.tensor(sigma))) == pytest.approx(t_at(table, sigma), abs=2e-3)
    # out of range: clamped to the ends of the table
    assert float(model.sigma_to_t(torch.tensor(0.001))) == 0.0
    assert float(model.sigma_to_t(torch.tensor(100.0))) == 999.0


def test_timestep_conversion_keeps_shape(model):
    sigmas = torch.tensor([[14.0, 1.0], [0.1, 0.5]])
    t = model.sigma_to_t(sigmas)
    assert t.shape == (2, 2)
    assert_close(model.t_to_sigma(t), sigmas, rtol=1e-4)


def test_zero_terminal_snr_and_downcast(model):
    rescaled = DiscreteSchedule(rescale_zero_terminal_snr(model.alphas_cumprod))
    assert float(rescaled.sigma_max) == pytest.approx(4518.8, rel=1e-4)
    assert float(rescaled.sigma_min) == pytest.approx(SIGMA_MIN, rel=1e-4)  # the first entry is kept
    down = downcast_alphas_cumprod(model.alphas_cumprod)
    assert torch.equal(down, model.alphas_cumprod.half().float())


# --- §2.2 reference table --------------------------------------------------------------------------

REFERENCE = {
    "karras": [14.6146, 4.7965, 1.2741, 0.2479, 0.0292, 0],
    "exponential": [14.6146, 3.0890, 0.6529, 0.1380, 0.0292, 0],
    "uniform": [14.6146, 4.0861, 1.6156, 0.6951, 0.0292, 0],
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_values(model, name):
    got = S.compute_sigmas(name, 5, model)
    np.testing.assert_allclose(got.tolist(), REFERENCE[name], atol=1e-4)


def test_function_signatures_match_reference(model):
    np.testing.assert_allclose(S.get_sigmas_karras(5, SIGMA_MIN, SIGMA_MAX).tolist(), REFERENCE["karras"], atol=1e-4)
    np.testing.assert_allclose(S.get_sigmas_exponential(5, SIGMA_MIN, SIGMA_MAX).tolist(), REFERENCE["exponential"],
                               atol=1e-4)
    np.testing.assert_allclose(model.get_sigmas(5).tolist(), REFERENCE["uniform"], atol=1e-4)


# --- every schedule against its formula ------------------------------------------------------------

N = 12
RAMP = np.linspace(0, 1, N)


def with_zero(values):
    return list(values) + [0.0]


def test_karras_formula():
    for rho in (7.0, 3.0):
        want = (SIGMA_MAX ** (1 / rho) + RAMP * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho
        assert_close(S.get_sigmas_karras(N, SIGMA_MIN, SIGMA_MAX, rho=rho), with_zero(want))


def test_exponential_and_polyexponential_formula():
    want = np.exp(math.log(SIGMA_MAX) + RAMP * (math.log(SIGMA_MIN) - math.log(SIGMA_MAX)))
    assert_close(S.get_sigmas_exponential(N, SIGMA_MIN, SIGMA_MAX), with_zero(want))
    assert_close(S.get_sigmas_polyexponential(N, SIGMA_MIN, SIGMA_MAX, rho=1.0), with_zero(want))
    rho = 2.0
    poly = np.exp((1 - RAMP) ** rho * (math.log(SIGMA_MAX) - math.log(SIGMA_MIN)) + math.log(SIGMA_MIN))
    assert_close(S.get_sigmas_polyexponential(N, SIGMA_MIN, SIGMA_MAX, rho=rho), with_zero(poly))


def test_uniform_formula(model):
    table = table64()
    want = [sigma_at(table, 999 * (1 - i / (N - 1))) for i in range(N)]
    assert_close(S.compute_sigmas("uniform", N, model), with_zero(want))


def test_normal_and_sgm_uniform_formula(model):
    table = table64()
    t_max, t_min = t_at(table, float(model.sigma_max)), t_at(table, float(model.sigma_min))
    normal = [sigma_at(table, t_max + r * (t_min - t_max)) for r in RAMP]
    assert_close(S.compute_sigmas("normal", N, model), with_zero(normal), rtol=1e-4)
    sgm = [sigma_at(table, t_max + i / N * (t_min - t_max)) for i in range(N)]
    assert_close(S.compute_sigmas("sgm_uniform", N, model), with_zero(sgm), rtol=1e-4)


def test_simple_formula(model):
    table = table64()
    want = [table[999 - (i * 1000) // N] for i in range(N)]
    assert_close(S.compute_sigmas("simple", N, model), with_zero(want), rtol=1e-6)
    assert_close(S.compute_sigmas("simple", 5, model), with_zero(table[[999, 799, 599, 399, 199]]), rtol=1e-6)


def test_ddim_formula(model):
    table = table64()
    k = 1000 // N
    want = table[np.arange(1, 1000, k)][::-1]
    assert_close(S.compute_sigmas("ddim", N, model), with_zero(want), rtol=1e-6)
    assert_close(S.compute_sigmas("ddim", 5, model), with_zero(table[[801, 601, 401, 201, 1]]), rtol=1e-6)


def test_kl_optimal_formula():
    i = np.arange(N + 1)
    want = np.tan(i / N * math.atan(SIGMA_MIN) + (1 - i / N) * math.atan(SIGMA_MAX))
    got = S.kl_optimal(N, SIGMA_MIN, SIGMA_MAX)
    assert len(got) == N + 1  # no appended 0: the run ends at σ_min
    assert_close(got, want)
    assert float(got[-1]) == pytest.approx(SIGMA_MIN, rel=1e-5)


def test_align_your_steps():
    assert_close(S.get_align_your_steps_sigmas(11, SIGMA_MIN, SIGMA_MAX), with_zero(S.AYS_SD1))
    assert_close(S.get_align_your_steps_sigmas(11, SIGMA_MIN, SIGMA_MAX, is_sdxl=True), with_zero(S.AYS_SDXL))
    # 21 points on a uniform grid hit every base point at even indices; odd ones are log-midpoints
    got = S.get_align_your_steps_sigmas(21, SIGMA_MIN, SIGMA_MAX).tolist()
    assert len(got) == 22 and got[-1] == 0.0
    assert_close(got[0:21:2], S.AYS_SD1)
    assert_close(got[1:21:2], [math.sqrt(a * b) for a, b in zip(S.AYS_SD1, S.AYS_SD1[1:])])
    got = S.get_align_your_steps_sigmas(5, SIGMA_MIN, SIGMA_MAX).tolist()
    assert got[0] == pytest.approx(14.615) and got[4] == pytest.approx(0.029) and got[5] == 0.0


def test_beta_formula():
    for alpha, beta in [(0.6, 0.6), (0.5, 0.7)]:
        q = stats.beta.ppf(1 - RAMP, alpha, beta)
        want = SIGMA_MIN + q * (SIGMA_MAX - SIGMA_MIN)
        assert_close(S.beta_scheduler(N, SIGMA_MIN, SIGMA_MAX, alpha=alpha, beta=beta), with_zero(want))


def test_beta_settings_through_compute_sigmas(model):
    got = S.compute_sigmas("Beta", N, model, beta_alpha=0.5, beta_beta=0.7)
    assert torch.equal(got, S.beta_scheduler(N, float(model.sigma_min), float(model.sigma_max), alpha=0.5, beta=0.7))


def test_every_schedule_is_descending_and_ends_in_zero(model):
    for entry in S.schedulers[1:]:
        sigmas = S.compute_sigmas(entry.name, 9, model)
        assert sigmas.dtype == torch.float32
        assert torch.all(sigmas[1:] < sigmas[:-1]), entry.name
        if entry.name == "kl_optimal":
            assert len(sigmas) == 10 and float(sigmas[-1]) > 0
        else:
            assert len(sigmas) == 10 and float(sigmas[-1]) == 0.0


# --- options of compute_sigmas ---------------------------------------------------------------------

def test_discard_penultimate(model):
    for name in ("karras", "exponential", "uniform"):
        full = S.compute_sigmas(name, 11, model)
        got = S.compute_sigmas(name, 10, model, discard_penultimate_sigma=True)
        assert len(got) == 11  # still 10 intervals
        assert torch.equal(got, torch.cat([full[:-2], full[-1:]]))
        assert float(got[-1]) == 0.0 and float(got[-2]) == pytest.approx(float(full[-3]))


def test_automatic_resolves_to_sampler_default_or_uniform(model):
    assert torch.equal(S.compute_sigmas("Automatic", 7, model, sampler_default="karras"),
                       S.compute_sigmas("karras", 7, model))
    assert torch.equal(S.compute_sigmas("automatic", 7, model), model.get_sigmas(7))


def test_rho_and_sigma_range_overrides(model):
    got = S.compute_sigmas("karras", 6, model, rho=3.0, sigma_min=0.1, sigma_max=10.0)
    assert torch.equal(got, S.get_sigmas_karras(6, 0.1, 10.0, rho=3.0))
    # Polyexponential's own default ρ is 1 (= Exponential)
    assert torch.allclose(S.compute_sigmas("polyexponential", 6, model), S.compute_sigmas("exponential", 6, model))


# --- registry --------------------------------------------------------------------------------------

def test_registry_contents():
    table = [(s.name, s.label, s.default_rho, s.need_inner_model, s.aliases) for s in S.schedulers]
    assert table == [
        ("automatic", "Automatic", -1, False, None),
        ("uniform", "Uniform", -1, True, None),
        ("karras", "Karras", 7.0, False, None),
        ("exponential", "Exponential", -1, False, None),
        ("polyexponential", "Polyexponential", 1.0, False, None),
        ("sgm_uniform", "SGM Uniform", -1, True, ["SGMUniform"]),
        ("kl_optimal", "KL Optimal", -1, False, None),
        ("align_your_steps", "Align Your Steps", -1, False, None),
        ("simple", "Simple", -1, True, None),
        ("normal", "Normal", -1, True, None),
        ("ddim", "DDIM", -1, True, None),
        ("beta", "Beta", -1, True, None),
    ]
    assert S.schedulers_map["Karras"] is S.schedulers_map["karras"]


def test_lookup():
    assert S.get_scheduler("SGM Uniform").name == "sgm_uniform"
    assert S.get_scheduler("sgm uniform").name == "sgm_uniform"
    assert S.get_scheduler("KARRAS").name == "karras"
    assert S.get_scheduler("sgmuniform").name == "sgm_uniform"
    with pytest.raises(ValueError, match="Karras"):
        S.get_scheduler("nonexistent")
    with pytest.raises(ValueError, match="valid"):
        S.compute_sigmas("nonexistent", 5, DiscreteSchedule.scaled_linear())
