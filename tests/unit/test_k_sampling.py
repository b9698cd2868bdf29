"""Solvers of modules/k_sampling.py against closed-form trajectories and step-by-step hand computation (spec §1.3)."""

import math
import warnings

import pytest
import torch
from scipy import integrate

from modules import k_sampling as K
from modules.rng import ImageRNG
from modules.sd_schedulers import get_sigmas_karras

SIGMAS = [10.0, 3.0, 0.7, 0.0]  # three steps, the last one to 0


def sig_tensor(values=SIGMAS):
    return torch.tensor(values, dtype=torch.float64)


def expand(sigma, x):
    return sigma.view(-1, *[1] * (x.ndim - 1))


# --- toy denoisers --------------------------------------------------------------------------------

def affine_model(x, sigma):
    """D(x, σ) = 0.6·x + 0.05·σ: depends on both x and σ, so every formula term matters."""
    return 0.6 * x + 0.05 * expand(sigma, x)


def affine_ref(x, sigma):
    return 0.6 * x + 0.05 * sigma


def constant_model(value):
    return lambda x, sigma: torch.full_like(x, value)


S2 = 0.25  # data variance of the Gaussian toy problem


def gaussian_model(x, sigma):
    """Exact denoiser for data ~ N(0, S2): D = x·S2/(S2 + σ²)."""
    return x * S2 / (S2 + expand(sigma, x) ** 2)


def gaussian_exact(x_start, sigma_start, sigma_end):
    """The probability-flow ODE solution for gaussian_model: x ∝ √(S2 + σ²)."""
    return x_start * math.sqrt((S2 + sigma_end ** 2) / (S2 + sigma_start ** 2))


class NoiseList:
    """A noise_sampler returning a fixed sequence of scalars (as tensors shaped like x), counting calls."""

    def __init__(self, values, like):
        self.values = list(values)
        self.like = like
        self.calls = []

    def __call__(self, sigma, sigma_next):
        self.calls.append((float(sigma), float(sigma_next)))
        return torch.full_like(self.like, self.values[len(self.calls) - 1])


NOISE = [0.3, -1.2, 0.8, 0.5, -0.4, 1.1, -0.7, 0.9]


def run(solver, x0=2.0, sigmas=SIGMAS, model=affine_model, noise=None, **options):
    x = torch.tensor([[x0]], dtype=torch.float64)
    if noise is not None:
        options["noise_sampler"] = NoiseList(noise, x)
    return solver(model, x, sig_tensor(sigmas), **options).item(), options.get("noise_sampler")


def ancestral_ref(s_from, s_to, eta):
    if eta == 0:
        return s_to, 0.0
    up = min(s_to, eta * math.sqrt(s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2))
    return math.sqrt(s_to ** 2 - up ** 2), up


# --- hand-computed references, written from the spec text ------------------------------------------

def ref_churn(x, s, s_next, n, noise, s_churn, s_tmin, s_tmax, s_noise):
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
    eps = next(noise) * s_noise
    s_hat = s * (1 + gamma)
    if gamma > 0:
        x = x + eps * math.sqrt(s_hat ** 2 - s ** 2)
    return x, s_hat


def ref_euler(x, sig, noise, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0):
    n = len(sig) - 1
    for i in range(n):
        x, sh = ref_churn(x, sig[i], sig[i + 1], n, noise, s_churn, s_tmin, s_tmax, s_noise)
        d = (x - affine_ref(x, sh)) / sh
        x = x + d * (sig[i + 1] - sh)
    return x


def ref_heun(x, sig, noise, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0):
    n = len(sig) - 1
    for i in range(n):
        x, sh = ref_churn(x, sig[i], sig[i + 1], n, noise, s_churn, s_tmin, s_tmax, s_noise)
        d = (x - affine_ref(x, sh)) / sh
        dt = sig[i + 1] - sh
        if sig[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - affine_ref(x2, sig[i + 1])) / sig[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def ref_dpm2(x, sig, noise, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0):
    n = len(sig) - 1
    for i in range(n):
        x, sh = ref_churn(x, sig[i], sig[i + 1], n, noise, s_churn, s_tmin, s_tmax, s_noise)
        d = (x - affine_ref(x, sh)) / sh
        if sig[i + 1] == 0:
            x = x + d * (sig[i + 1] - sh)
        else:
            mid = math.exp((math.log(sh) + math.log(sig[i + 1])) / 2)
            x2 = x + d * (mid - sh)
            d2 = (x2 - affine_ref(x2, mid)) / mid
            x = x + d2 * (sig[i + 1] - sh)
    return x


def ref_euler_a(x, sig, noise, eta=1.0, s_noise=1.0):
    for i in range(len(sig) - 1):
        d = (x - affine_ref(x, sig[i])) / sig[i]
        down, up = ancestral_ref(sig[i], sig[i + 1], eta)
        x = x + d * (down - sig[i])
        if sig[i + 1] > 0:
            x = x + next(noise) * s_noise * up
    return x


def ref_dpm2_a(x, sig, noise, eta=1.0, s_noise=1.0):
    for i in range(len(sig) - 1):
        d = (x - affine_ref(x, sig[i])) / sig[i]
        down, up = ancestral_ref(sig[i], sig[i + 1], eta)
        if down == 0:
            x = x + d * (down - sig[i])
        else:
            mid = math.exp((math.log(sig[i]) + math.log(down)) / 2)
            x2 = x + d * (mid - sig[i])
            d2 = (x2 - affine_ref(x2, mid)) / mid
            x = x + d2 * (down - sig[i]) + next(noise) * s_noise * up
    return x


def ref_lms(x, sig, order=4):
    ds = []
    for i in range(len(sig) - 1):
        ds.append((x - affine_ref(x, sig[i])) / sig[i])
        o = min(i + 1, order)
        for j in range(o):
            def basis(tau, j=j):
                p = 1.0
                for k in range(o):
                    if k != j:
                        p *= (tau - sig[i - k]) / (sig[i - j] - sig[i - k])
                return p
            x = x + integrate.quad(basis, sig[i], sig[i + 1], epsrel=1e-12)[0] * ds[i - j]
    return x


def lam(s):
    return -math.log(s)


def ref_dpmpp_2m(x, sig):
    prev = None
    for i in range(len(sig) - 1):
        den = affine_ref(x, sig[i])
        if prev is None or sig[i + 1] == 0:
            dd = den
        else:
            h = lam(sig[i + 1]) - lam(sig[i])
            r = (lam(sig[i]) - lam(sig[i - 1])) / h
            dd = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * prev
        if sig[i + 1] == 0:
            x = dd
        else:
            h = lam(sig[i + 1]) - lam(sig[i])
            x = (sig[i + 1] / sig[i]) * x - math.expm1(-h) * dd
        prev = den
    return x


def ref_dpmpp_2s_a(x, sig, noise, eta=1.0, s_noise=1.0):
    for i in range(len(sig) - 1):
        den = affine_ref(x, sig[i])
        down, up = ancestral_ref(sig[i], sig[i + 1], eta)
        if down == 0:
            x = x + (x - den) / sig[i] * (down - sig[i])
        else:
            t, tn = lam(sig[i]), lam(down)
            h = tn - t
            s = t + h / 2
            x2 = math.exp(-s) / math.exp(-t) * x - math.expm1(-h / 2) * den
            den2 = affine_ref(x2, math.exp(-s))
            x = math.exp(-tn) / math.exp(-t) * x - math.expm1(-h) * den2
        if sig[i + 1] > 0:
            x = x + next(noise) * s_noise * up
    return x


def ref_dpmpp_sde(x, sig, noise, eta=1.0, s_noise=1.0):
    for i in range(len(sig) - 1):
        den = affine_ref(x, sig[i])
        if sig[i + 1] == 0:
            x = x + (x - den) / sig[i] * (sig[i + 1] - sig[i])
            continue
        t, tn = lam(sig[i]), lam(sig[i + 1])
        h = tn - t
        s = t + h / 2
        sd, su = ancestral_ref(math.exp(-t), math.exp(-s), eta)
        s_ = lam(sd)
        x2 = math.exp(-s_) / math.exp(-t) * x - math.expm1(t - s_) * den
        x2 = x2 + next(noise) * s_noise * su
        den2 = affine_ref(x2, math.exp(-s))
        sd, su = ancestral_ref(math.exp(-t), math.exp(-tn), eta)
        tn_ = lam(sd)
        x = math.exp(-tn_) / math.exp(-t) * x - math.expm1(t - tn_) * den2
        x = x + next(noise) * s_noise * su
    return x


def ref_dpmpp_2m_sde(x, sig, noise, eta=1.0, s_noise=1.0, solver_type="midpoint"):
    prev, h_prev = None, None
    for i in range(len(sig) - 1):
        den = affine_ref(x, sig[i])
        if sig[i + 1] == 0:
            x = den
        else:
            h = lam(sig[i + 1]) - lam(sig[i])
            eh = eta * h
            x = sig[i + 1] / sig[i] * math.exp(-eh) * x + (1 - math.exp(-h - eh)) * den
            if prev is not None:
                r = h_prev / h
                if solver_type == "midpoint":
                    x = x + 0.5 * (1 - math.exp(-h - eh)) * (1 / r) * (den - prev)
                else:
                    x = x + ((1 - math.exp(-h - eh)) / (-h - eh) + 1) * (1 / r) * (den - prev)
            if eta:
                x = x + next(noise) * sig[i + 1] * math.sqrt(1 - math.exp(-2 * eh)) * s_noise
            h_prev = h
        prev = den
    return x


def ref_dpmpp_3m_sde(x, sig, noise, eta=1.0, s_noise=1.0):
    hist = []  # (h, D) of previous steps, newest first
    for i in range(len(sig) - 1):
        den = affine_ref(x, sig[i])
        if sig[i + 1] == 0:
            x = den
            break
        h = lam(sig[i + 1]) - lam(sig[i])
        he = h * (eta + 1)
        x = math.exp(-he) * x + (1 - math.exp(-he)) * den
        phi2 = (math.exp(-he) - 1) / he + 1
        if len(hist) >= 2:
            (h1, d1_), (h2, d2_) = hist[0], hist[1]
            r0, r1 = h1 / h, h2 / h
            delta0, delta1 = (den - d1_) / r0, (d1_ - d2_) / r1
            d1 = delta0 + (delta0 - delta1) * r0 / (r0 + r1)
            d2 = (delta0 - delta1) / (r0 + r1)
            phi3 = phi2 / he - 0.5
            x = x + phi2 * d1 - phi3 * d2
        elif len(hist) == 1:
            x = x + phi2 * (den - hist[0][1]) / (hist[0][0] / h)
        if eta:
            x = x + next(noise) * sig[i + 1] * math.sqrt(1 - math.exp(-2 * h * eta)) * s_noise
        hist.insert(0, (h, den))
    return x


SIGMAS_4 = [12.0, 5.0, 2.0, 0.6, 0.0]  # four steps so the 3M history is fully exercised


HAND_CASES = [
    ("euler", K.sample_euler, ref_euler, SIGMAS, {}),
    ("euler churn", K.sample_euler, ref_euler, SIGMAS, {"s_churn": 0.9, "s_tmin": 0.5, "s_tmax": 5.0, "s_noise": 1.1}),
    ("heun", K.sample_heun, ref_heun, SIGMAS, {}),
    ("heun churn", K.sample_heun, ref_heun, SIGMAS, {"s_churn": 1.5, "s_noise": 0.9}),
    ("dpm_2", K.sample_dpm_2, ref_dpm2, SIGMAS, {}),
    ("dpm_2 churn", K.sample_dpm_2, ref_dpm2, SIGMAS, {"s_churn": 0.6}),
    ("euler_a", K.sample_euler_ancestral, ref_euler_a, SIGMAS, {}),
    ("euler_a eta", K.sample_euler_ancestral, ref_euler_a, SIGMAS, {"eta": 0.5, "s_noise": 1.3}),
    ("dpm_2_a", K.sample_dpm_2_ancestral, ref_dpm2_a, SIGMAS, {}),
    ("dpm_2_a eta0", K.sample_dpm_2_ancestral, ref_dpm2_a, SIGMAS, {"eta": 0.0}),
    ("dpmpp_2s_a", K.sample_dpmpp_2s_ancestral, ref_dpmpp_2s_a, SIGMAS, {"eta": 0.7}),
    ("dpmpp_sde", K.sample_dpmpp_sde, ref_dpmpp_sde, SIGMAS, {}),
    ("dpmpp_sde eta", K.sample_dpmpp_sde, ref_dpmpp_sde, SIGMAS, {"eta": 0.4, "s_noise": 0.8}),
    ("dpmpp_2m_sde", K.sample_dpmpp_2m_sde, ref_dpmpp_2m_sde, SIGMAS_4, {}),
    ("dpmpp_2m_sde heun", K.sample_dpmpp_2m_sde, ref_dpmpp_2m_sde, SIGMAS_4, {"solver_type": "heun", "eta": 0.5}),
    ("dpmpp_2m_sde eta0", K.sample_dpmpp_2m_sde, ref_dpmpp_2m_sde, SIGMAS_4, {"eta": 0.0}),
    ("dpmpp_3m_sde", K.sample_dpmpp_3m_sde, ref_dpmpp_3m_sde, SIGMAS_4, {}),
    ("dpmpp_3m_sde eta", K.sample_dpmpp_3m_sde, ref_dpmpp_3m_sde, SIGMAS_4, {"eta": 0.3, "s_noise": 1.2}),
]


@pytest.mark.parametrize("name, solver, ref, sigmas, options", HAND_CASES, ids=[c[0] for c in HAND_CASES])
def test_solver_matches_hand_computation(name, solver, ref, sigmas, options):
    got, _ = run(solver, sigmas=sigmas, noise=NOISE, **options)
    want = ref(2.0, sigmas, iter(NOISE), **options)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("solver, ref", [(K.sample_dpmpp_2m, ref_dpmpp_2m), (K.sample_lms, ref_lms)])
@pytest.mark.parametrize("sigmas", [SIGMAS, SIGMAS_4, [14.0, 9.0, 5.0, 2.5, 1.0, 0.4, 0.1, 0.0]])
def test_deterministic_solver_matches_hand_computation(solver, ref, sigmas):
    got, _ = run(solver, sigmas=sigmas)
    assert got == pytest.approx(ref(2.0, sigmas), rel=1e-9)


def test_euler_on_linear_denoiser_is_a_product():
    # D = a·x: each Euler step multiplies x by 1 + (1 − a)(σ_{i+1} − σ_i)/σ_i
    a = 0.3
    sigmas = [8.0, 4.0, 1.5, 0.5, 0.0]
    got, _ = run(K.sample_euler, x0=1.7, sigmas=sigmas, model=lambda x, s: a * x)
    want = 1.7
    for s, s_next in zip(sigmas, sigmas[1:]):
        want *= 1 + (1 - a) * (s_next - s) / s
    assert got == pytest.approx(want, rel=1e-12)


# --- closed-form trajectories ----------------------------------------------------------------------

CONSTANT_EXACT = [
    ("euler", K.sample_euler, {}),
    ("heun", K.sample_heun, {}),
    ("dpm_2", K.sample_dpm_2, {}),
    ("lms", K.sample_lms, {}),
    ("dpmpp_2m", K.sample_dpmpp_2m, {}),
    ("euler_a eta0", K.sample_euler_ancestral, {"eta": 0.0}),
    ("dpm_2_a eta0", K.sample_dpm_2_ancestral, {"eta": 0.0}),
    ("dpmpp_2s_a eta0", K.sample_dpmpp_2s_ancestral, {"eta": 0.0}),
    ("dpmpp_sde eta0", K.sample_dpmpp_sde, {"eta": 0.0, "noise_sampler": lambda a, b: 0.0}),
    ("dpmpp_2m_sde eta0", K.sample_dpmpp_2m_sde, {"eta": 0.0}),
    ("dpmpp_3m_sde eta0", K.sample_dpmpp_3m_sde, {"eta": 0.0}),
    ("restart", K.sample_restart, {}),
]


@pytest.mark.parametrize("name, solver, options", CONSTANT_EXACT, ids=[c[0] for c in CONSTANT_EXACT])
def test_constant_denoiser_follows_straight_line(name, solver, options):
    # D ≡ c: the ODE solution x(σ) = c + (x₀ − c)·σ/σ₀ is linear in σ, so every deterministic
    # solver is exact, at every step and at the end
    c, x0 = 0.25, 3.0
    sigmas = sig_tensor([14.6, 7.0, 3.3, 1.2, 0.4, 0.03, 0.0])
    seen = []
    x = torch.full((2, 3), x0, dtype=torch.float64)
    out = solver(constant_model(c), x, sigmas, callback=lambda d: seen.append(d), **options)
    assert torch.allclose(out, torch.full_like(out, c), atol=1e-10)
    for info in seen:
        expected = c + (x0 - c) * float(info["sigma_hat"]) / 14.6
        assert torch.allclose(info["x"], torch.full_like(out, expected), atol=1e-10)
        assert set(info) >= {"x", "i", "sigma", "sigma_hat", "denoised"}
    assert [info["i"] for info in seen] == list(range(len(seen)))


@pytest.mark.parametrize("solver", [K.sample_dpm_fast, K.sample_dpm_adaptive])
def test_dpm_solver_constant_denoiser_is_exact(solver):
    c, x0 = -0.5, 2.0
    x = torch.full((1, 4), x0, dtype=torch.float64)
    out = solver(constant_model(c), x, 0.05, 10.0, n=7)
    assert torch.allclose(out, torch.full_like(out, c + (x0 - c) * 0.05 / 10.0), atol=1e-5)


def gaussian_error(solver, n, **options):
    """Error at the last non-zero σ (the x handed to the final step's callback): the final jump to
    σ = 0 is a plain Euler/denoise step in several solvers and would hide the convergence order."""
    torch.manual_seed(0)
    x0 = torch.randn(2, 3, dtype=torch.float64)
    sigmas = get_sigmas_karras(n, 0.03, 14.6).double()
    seen = []
    solver(gaussian_model, x0 * sigmas[0], sigmas, callback=seen.append, **options)
    assert float(seen[-1]["sigma"]) == pytest.approx(float(sigmas[-2]))
    exact = gaussian_exact(x0 * sigmas[0], float(sigmas[0]), float(sigmas[-2]))
    return (seen[-1]["x"] - exact).abs().max().item()


@pytest.mark.parametrize("solver, tol40, min_ratio", [
    (K.sample_euler, 0.05, 1.8),
    (K.sample_heun, 5e-3, 3.5),
    (K.sample_dpm_2, 3e-3, 3.5),
    (K.sample_lms, 1e-3, 4.0),
    (K.sample_dpmpp_2m, 5e-3, 3.5),
    (K.sample_dpmpp_2m_sde, 5e-3, 3.5),
    (K.sample_dpmpp_3m_sde, 1.5e-3, 2.5),
])
def test_gaussian_ode_converges(solver, tol40, min_ratio):
    options = {"eta": 0.0} if solver in (K.sample_dpmpp_2m_sde, K.sample_dpmpp_3m_sde) else {}
    e20, e40 = gaussian_error(solver, 20, **options), gaussian_error(solver, 40, **options)
    assert e40 < tol40
    assert e20 / e40 > min_ratio  # the convergence order shows when the step count doubles


@pytest.mark.parametrize("solver", [K.sample_dpm_fast, K.sample_dpm_adaptive])
def test_dpm_solver_gaussian_accuracy(solver):
    torch.manual_seed(0)
    x0 = torch.randn(2, 3, dtype=torch.float64)
    out = solver(gaussian_model, x0 * 14.6, 0.03, 14.6, n=30)
    assert torch.allclose(out, gaussian_exact(x0 * 14.6, 14.6, 0.03), atol=3e-2)


def test_dpm_fast_uses_exactly_n_evaluations():
    for n in (4, 5, 6, 9, 10, 20):
        calls = []

        def model(x, sigma):
            calls.append(float(sigma[0]))
            return x * 0.5

        K.sample_dpm_fast(model, torch.ones(1, 2, dtype=torch.float64), 0.1, 10.0, n)
        assert len(calls) == n
        assert calls[0] == pytest.approx(10.0)


def test_dpm_fast_eta_draws_one_noise_per_step():
    x = torch.ones(1, 2, dtype=torch.float64)
    noise = NoiseList([0.0] * 10, x)
    K.sample_dpm_fast(lambda x, s: 0.5 * x, x, 0.1, 10.0, 9, eta=1.0, noise_sampler=noise)
    assert len(noise.calls) == 4  # m = 4 intervals: orders 3, 3, 2, 1


# --- LMS coefficients ------------------------------------------------------------------------------

def test_lms_coefficients_match_quadrature_and_sum_to_interval():
    t = [14.0, 6.0, 2.5, 0.9, 0.2, 0.0]
    for i in range(len(t) - 1):
        order = min(i + 1, 4)
        coeffs = [K.linear_multistep_coeff(order, t, i, j) for j in range(order)]
        assert sum(coeffs) == pytest.approx(t[i + 1] - t[i], rel=1e-12)
        for j, c in enumerate(coeffs):
            def basis(tau):
                p = 1.0
                for k in range(order):
                    if k != j:
                        p *= (tau - t[i - k]) / (t[i - j] - t[i - k])
                return p
            assert c == pytest.approx(integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0], rel=1e-9)


# --- noise draws -----------------------------------------------------------------------------------

@pytest.mark.parametrize("solver, expected_calls", [
    (K.sample_euler, 0),             # no churn: γ = 0 everywhere, so the reference's draws go unused
    (K.sample_heun, 0),
    (K.sample_dpm_2, 0),
    (K.sample_euler_ancestral, 2),   # not on the step to σ = 0
    (K.sample_dpm_2_ancestral, 2),
    (K.sample_dpmpp_2s_ancestral, 2),
    (K.sample_lcm, 2),
    (K.sample_dpmpp_sde, 4),         # two Brownian increments per non-final step
    (K.sample_dpmpp_2m_sde, 2),
    (K.sample_dpmpp_3m_sde, 2),
])
def test_noise_draw_counts(solver, expected_calls):
    _, noise = run(solver, noise=NOISE)
    assert len(noise.calls) == expected_calls


@pytest.mark.parametrize("solver", [K.sample_euler, K.sample_heun, K.sample_dpm_2])
def test_churn_draws_every_step_once_it_is_on(solver):
    # with s_churn > 0 the reference draws on every step, also where γ = 0 (outside s_tmin..s_tmax),
    # so the later draws depend on it
    _, noise = run(solver, noise=NOISE, s_churn=0.5, s_tmin=0.0, s_tmax=0.5)
    assert len(noise.calls) == 3


def test_sde_solvers_skip_noise_when_eta_is_zero():
    for solver in (K.sample_dpmpp_2m_sde, K.sample_dpmpp_3m_sde):
        _, noise = run(solver, noise=NOISE, eta=0.0)
        assert noise.calls == []


def test_batch_with_image_rng_equals_single_images():
    # per-image generators make image k of a batch identical to generating it alone
    sigmas = get_sigmas_karras(6, 0.03, 14.6)
    for solver in (K.sample_euler_ancestral, K.sample_dpmpp_2s_ancestral, K.sample_euler):
        batch_rng = ImageRNG((4, 8, 8), [100, 101], source="CPU")
        x = batch_rng.first() * sigmas[0]
        options = {"s_churn": 1.0} if solver is K.sample_euler else {}
        batch = solver(gaussian_model, x, sigmas, noise_sampler=batch_rng.noise_sampler, **options)
        single_rng = ImageRNG((4, 8, 8), [101], source="CPU")
        single = solver(gaussian_model, single_rng.first() * sigmas[0], sigmas,
                        noise_sampler=single_rng.noise_sampler, **options)
        assert torch.allclose(batch[1:], single, atol=1e-5)


def test_default_noise_is_reproducible_with_global_seed():
    sigmas = get_sigmas_karras(5, 0.03, 14.6)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(K.sample_euler_ancestral(gaussian_model, torch.randn(1, 4, 4, 4) * 14.6, sigmas))
    assert torch.equal(outs[0], outs[1])


def test_callback_exception_interrupts():
    class Stop(Exception):
        pass

    def callback(info):
        if info["i"] == 1:
            raise Stop

    with pytest.raises(Stop):
        K.sample_euler(gaussian_model, torch.ones(1, 2), get_sigmas_karras(5, 0.03, 14.6), callback=callback)


def test_get_ancestral_step():
    down, up = K.get_ancestral_step(torch.tensor(2.0), torch.tensor(1.0), eta=1.0)
    assert float(up) == pytest.approx(math.sqrt(1 * (4 - 1) / 4))
    assert float(down) ** 2 + float(up) ** 2 == pytest.approx(1.0)
    assert K.get_ancestral_step(torch.tensor(2.0), torch.tensor(1.0), eta=0.0) == (torch.tensor(1.0), 0.0)
    # eta so large that σ_up is capped at σ_to: everything becomes noise
    down, up = K.get_ancestral_step(torch.tensor(2.0), torch.tensor(1.0), eta=10.0)
    assert float(up) == 1.0 and float(down) == 0.0


def test_2m_sde_rejects_unknown_solver_type():
    with pytest.raises(ValueError):
        run(K.sample_dpmpp_2m_sde, solver_type="euler", noise=NOISE)


# --- Restart ---------------------------------------------------------------------------------------

def test_restart_short_schedule_has_no_restarts():
    sigmas = get_sigmas_karras(10, 0.03, 14.6)
    steps = K.restart_step_list(sigmas)
    assert [(float(a), float(b)) for a, b in steps] == [(float(a), float(b)) for a, b in zip(sigmas[:-1], sigmas[1:])]


@pytest.mark.parametrize("n, k, r", [(20, 9, 1), (30, 9, 1), (36, 9, 2), (40, 10, 2)])
def test_restart_layout(n, k, r):
    sigmas = get_sigmas_karras(n, 0.0292, 14.6146)
    steps = K.restart_step_list(sigmas)
    assert len(steps) == n  # N − K·R main steps plus K·R restart steps
    main = get_sigmas_karras(n - k * r, float(sigmas[-2]), float(sigmas[0]))
    at = int(torch.argmin((main - 0.1).abs()))  # the restart goes in after reaching this index
    back = int(torch.argmin((main - 2.0).abs()))
    ups = [j for j in range(1, len(steps)) if steps[j][0] > steps[j - 1][1]]
    assert len(ups) == r
    assert ups[0] == at
    for j in ups:
        assert float(steps[j][0]) == pytest.approx(float(main[back]), rel=1e-5)
        assert float(steps[j - 1][1]) == pytest.approx(float(main[at]), rel=1e-5)
    assert float(steps[-1][1]) == 0.0


def test_restart_adds_noise_for_the_jump_up():
    sigmas = get_sigmas_karras(20, 0.0292, 14.6146).double()
    x = torch.zeros(1, 1, dtype=torch.float64)
    noise = NoiseList([1.0] * 5, x)
    K.sample_restart(constant_model(0.0), x, sigmas, noise_sampler=noise)
    assert len(noise.calls) == 1
    low, high = noise.calls[0]
    assert high > low


# --- Brownian tree ---------------------------------------------------------------------------------

@pytest.fixture
def quiet_torchsde():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
        yield


def test_brownian_tree_is_deterministic_per_seed(quiet_torchsde):
    x = torch.zeros(2, 4, 4, 4)
    a = K.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=[11, 12])
    b = K.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=[11, 12])
    c = K.BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, seed=[12])
    s0, s1 = torch.tensor(5.0), torch.tensor(2.0)
    na = a(s0, s1)
    assert na.shape == x.shape
    assert torch.equal(na, b(s0, s1))
    assert torch.allclose(na[1:], c(s0, s1))
    assert not torch.allclose(na[0], na[1])


def test_brownian_tree_increments_are_consistent(quiet_torchsde):
    x = torch.zeros(1, 4, 16, 16)
    ns = K.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=[3])
    s = [torch.tensor(v) for v in (8.0, 3.0, 1.0)]
    w01 = ns(s[0], s[1]) * 5.0 ** 0.5
    w12 = ns(s[1], s[2]) * 2.0 ** 0.5
    w02 = ns(s[0], s[2]) * 7.0 ** 0.5
    assert torch.allclose(w01 + w12, w02, atol=1e-4)  # W is a single path
    assert torch.allclose(ns(s[2], s[0]), -ns(s[0], s[2]))
    assert 0.85 < float(ns(s[0], s[1]).std()) < 1.15  # normalised to unit variance


def test_sde_solver_with_per_image_seeds(quiet_torchsde):
    sigmas = get_sigmas_karras(6, 0.03, 14.6)
    x = torch.randn(2, 4, 4, 4) * sigmas[0]
    batch = K.sample_dpmpp_2m_sde(gaussian_model, x, sigmas, seed=[1, 2])
    single = K.sample_dpmpp_2m_sde(gaussian_model, x[1:], sigmas, seed=[2])
    other = K.sample_dpmpp_2m_sde(gaussian_model, x[1:], sigmas, seed=[3])
    assert torch.allclose(batch[1:], single, atol=1e-6)
    assert not torch.allclose(single, other)
