"""Sampler registry, name resolution, sigmas, options, infotext keys and every sampler end to end
(generation.md §1–§3, api.md §8.3/§12, infotext.md §3), plus the timestep samplers against hand
computations in DDPM space."""

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modules import k_sampling
from modules import sd_samplers as S
from modules import sd_samplers_timesteps as T
from modules.noise_schedule import DiscreteSchedule
from modules.settings_table import SETTINGS

SCHEDULE = DiscreteSchedule.scaled_linear()

NAMES = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
         "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
         "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"]


@pytest.fixture(autouse=True)
def quiet_torchsde():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Should have t[ab]")  # torchsde's harmless float edge warning
        yield


def settings(**overrides):
    values = {row[2]: row[3] for row in SETTINGS}
    unknown = set(overrides) - set(values)
    assert not unknown, unknown
    values.update(overrides)
    return SimpleNamespace(**values)


def request(eta=None, s_churn=None, s_tmin=None, s_tmax=None, s_noise=None):
    return SimpleNamespace(eta=eta, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)


# --- registry -------------------------------------------------------------------------------------

def test_registry_order_names_and_aliases():
    assert [s.name for s in S.all_samplers] == NAMES
    assert S.samplers is S.all_samplers
    assert set(S.all_samplers_map) == set(NAMES)
    aliases = {s.name: s.aliases for s in S.all_samplers}
    assert aliases["Euler a"] == ["k_euler_a", "k_euler_ancestral"]
    assert aliases["DPM adaptive"] == ["k_dpm_ad"]
    assert aliases["DDIM CFG++"] == ["ddim_cfgpp"]
    assert aliases["LCM"] == ["k_lcm"]
    assert aliases["DPM++ 2M SDE Heun"] == ["k_dpmpp_2m_sde_heun"]


def test_options_as_get_samplers_reports_them():
    as_api = {s.name: {k: str(v) for k, v in s.options.items()} for s in S.all_samplers}
    assert as_api["DPM++ SDE"] == {"scheduler": "karras", "second_order": "True", "brownian_noise": "True"}
    assert as_api["DPM++ 2M"] == {"scheduler": "karras"}
    assert as_api["DPM++ 2M SDE Heun"] == {"scheduler": "exponential", "brownian_noise": "True", "solver_type": "heun"}
    assert as_api["DPM++ 3M SDE"] == {"scheduler": "exponential", "discard_next_to_last_sigma": "True",
                                      "brownian_noise": "True"}
    assert as_api["DPM2 a"] == {"scheduler": "karras", "discard_next_to_last_sigma": "True", "uses_ensd": "True",
                                "second_order": "True"}
    assert as_api["Euler a"] == {"uses_ensd": "True"}
    assert as_api["Heun"] == {"second_order": "True"}
    assert as_api["Restart"] == {"scheduler": "karras", "second_order": "True"}
    for name in ("Euler", "LMS", "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"):
        assert as_api[name] == {}
    ensd = [s.name for s in S.all_samplers if s.options.get("uses_ensd")]
    assert ensd == ["DPM++ 2S a", "Euler a", "DPM2 a", "DPM fast", "DPM adaptive"]
    brownian = [s.name for s in S.all_samplers if s.options.get("brownian_noise")]
    assert brownian == ["DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"]


def test_parameters_and_eta_sources():
    by = S.all_samplers_map
    assert {n for n in NAMES if by[n].eta_setting == "eta_ddim"} == {"DDIM", "DDIM CFG++"}
    assert {n for n in NAMES if by[n].eta_setting == "eta_ancestral"} == {
        "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "DPM2 a",
        "DPM fast", "DPM adaptive"}
    assert {n for n in NAMES if "churn" in by[n].params} == {"Euler", "Heun", "DPM2"}
    assert {n for n in NAMES if by[n].second_order} == {"DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}
    # every solver name exists where run_sampler looks for it
    for s in S.all_samplers:
        module = T if s.kind == S.TIMESTEPS else k_sampling
        assert callable(getattr(module, s.function)), s.name


def test_find_sampler():
    assert S.find_sampler("Euler a").name == "Euler a"
    assert S.find_sampler("euler A").name == "Euler a"
    assert S.find_sampler("K_EULER_A").name == "Euler a"
    assert S.find_sampler("k_dpm_ad").name == "DPM adaptive"
    assert S.find_sampler("ddim").name == "DDIM"
    assert S.find_sampler(None).name == "Euler"
    assert S.find_sampler("").name == "Euler"
    with pytest.raises(S.SamplerNotFound, match="valid names: DPM\\+\\+ 2M, DPM\\+\\+ SDE"):
        S.find_sampler("Euler b")


def test_visible_sampler_names_honours_hide_samplers():
    assert S.visible_sampler_names(settings()) == NAMES
    hidden = ["PLMS", "LCM"]
    assert S.visible_sampler_names(settings(hide_samplers=hidden)) == [n for n in NAMES if n not in hidden]
    from modules import shared
    with shared.opts.override({"hide_samplers": ["DDIM"]}):
        assert "DDIM" not in S.visible_sampler_names()
    assert S.find_sampler("DDIM").name == "DDIM"  # hidden names still work


# --- legacy combined names (api.md §8.3) ----------------------------------------------------------

@pytest.mark.parametrize("name, scheduler, expected", [
    ("DPM++ 2M Karras", None, ("DPM++ 2M", "Automatic")),
    ("Euler a Exponential", None, ("Euler a", "Exponential")),
    ("DPM++ SDE karras", None, ("DPM++ SDE", "Automatic")),
    ("DPM++ 2M Karras", "Exponential", ("DPM++ 2M", "Exponential")),
    ("DPM++ 2M SDE Karras", "", ("DPM++ 2M SDE", "Karras")),
    ("DPM++ 2M SDE Heun Exponential", None, ("DPM++ 2M SDE Heun", "Automatic")),
    ("Euler", "karras", ("Euler", "Karras")),
    ("Euler", "sgmuniform", ("Euler", "SGM Uniform")),
    ("Euler SGM Uniform", None, ("Euler", "SGM Uniform")),
    ("Euler sgm_uniform", None, ("Euler", "SGM Uniform")),
    ("k_euler_a Karras", None, ("Euler a", "Karras")),
    ("DDIM", None, ("DDIM", "Automatic")),
    ("LMS Automatic", None, ("LMS", "Automatic")),
    (None, None, ("Euler", "Automatic")),
    ("DPM++ 2M", "Automatic", ("DPM++ 2M", "Automatic")),
])
def test_split_legacy_name(name, scheduler, expected):
    assert S.split_legacy_name(name, scheduler) == expected


def test_split_legacy_name_errors():
    with pytest.raises(S.SamplerNotFound, match="'Foo Karras' not found"):
        S.split_legacy_name("Foo Karras", None)
    with pytest.raises(S.SamplerNotFound):
        S.split_legacy_name("Foo", None)
    with pytest.raises(ValueError, match="unknown schedule type 'Fancy'.*Karras"):
        S.split_legacy_name("Euler", "Fancy")


# --- sigmas and their infotext keys ---------------------------------------------------------------

KARRAS_5 = [14.6146, 4.7965, 1.2741, 0.2479, 0.0292, 0]
EXPONENTIAL_5 = [14.6146, 3.0890, 0.6529, 0.1380, 0.0292, 0]
UNIFORM_5 = [14.6146, 4.0861, 1.6156, 0.6951, 0.0292, 0]


def sigmas_for(name, scheduler, steps=5, is_sdxl=False, **overrides):
    return S.compute_sampler_sigmas(S.find_sampler(name), scheduler, steps, SCHEDULE, settings(**overrides), is_sdxl)


def test_automatic_resolves_to_the_samplers_default():
    sigmas, keys = sigmas_for("DPM++ 2M", "Automatic")
    assert np.allclose(sigmas.numpy(), KARRAS_5, atol=1e-4)
    assert keys == {"Schedule type": "Karras"}
    sigmas, keys = sigmas_for("DPM++ 2M SDE", None)
    assert np.allclose(sigmas.numpy(), EXPONENTIAL_5, atol=1e-4)
    assert keys == {"Schedule type": "Exponential"}


def test_automatic_without_default_is_the_models_own_sigmas():
    sigmas, keys = sigmas_for("Euler", "Automatic")
    assert np.allclose(sigmas.numpy(), UNIFORM_5, atol=1e-4)
    assert torch.equal(sigmas, SCHEDULE.get_sigmas(5))
    assert keys == {"Schedule type": "Automatic"}
    # overrides do not apply to the model's own sigmas (A1111)
    same, keys = sigmas_for("Euler", "Automatic", sigma_min=0.1, sigma_max=10.0, rho=3.0)
    assert torch.equal(same, sigmas) and keys == {"Schedule type": "Automatic"}


def test_explicit_schedule_by_label_or_name():
    sigmas, keys = sigmas_for("Euler", "karras")
    assert np.allclose(sigmas.numpy(), KARRAS_5, atol=1e-4)
    assert keys == {"Schedule type": "Karras"}
    sigmas, keys = sigmas_for("DPM++ 2M", "Exponential")
    assert np.allclose(sigmas.numpy(), EXPONENTIAL_5, atol=1e-4)
    assert keys == {"Schedule type": "Exponential"}
    with pytest.raises(ValueError, match="unknown schedule type"):
        sigmas_for("Euler", "Fancy")


def test_discard_penultimate_sigma():
    karras_6 = sigmas_for("Euler", "Karras", steps=6)[0]
    sigmas, keys = sigmas_for("DPM2", "Automatic")
    assert torch.equal(sigmas, torch.cat([karras_6[:-2], karras_6[-1:]]))
    assert len(sigmas) == 6 and keys == {"Schedule type": "Karras"}
    # the setting forces it on samplers that do not do it, and only then writes the key
    uniform_6 = SCHEDULE.get_sigmas(6)
    sigmas, keys = sigmas_for("Euler", None, always_discard_next_to_last_sigma=True)
    assert torch.equal(sigmas, torch.cat([uniform_6[:-2], uniform_6[-1:]]))
    assert keys == {"Discard penultimate sigma": True, "Schedule type": "Automatic"}
    assert list(keys) == ["Discard penultimate sigma", "Schedule type"]
    _, keys = sigmas_for("DPM++ 3M SDE", None, always_discard_next_to_last_sigma=True)
    assert keys == {"Schedule type": "Exponential"}


def test_sigma_and_rho_overrides():
    sigmas, keys = sigmas_for("Euler", "Karras", sigma_min=0.1, sigma_max=10.0, rho=5.0)
    ramp = np.linspace(0, 1, 5)
    expected = (10.0 ** (1 / 5) + ramp * (0.1 ** (1 / 5) - 10.0 ** (1 / 5))) ** 5
    assert np.allclose(sigmas.numpy()[:-1], expected, rtol=1e-5) and sigmas[-1] == 0
    assert keys == {"Schedule type": "Karras", "Schedule min sigma": 0.1, "Schedule max sigma": 10.0,
                    "Schedule rho": 5.0}
    # "non-zero and different": the model's own values and the schedule's default rho are no override
    _, keys = sigmas_for("Euler", "Karras", sigma_min=float(SCHEDULE.sigma_min), rho=7.0)
    assert keys == {"Schedule type": "Karras"}
    # rho only for schedules that have one
    sigmas, keys = sigmas_for("Euler", "Exponential", rho=3.0)
    assert np.allclose(sigmas.numpy(), EXPONENTIAL_5, atol=1e-4) and keys == {"Schedule type": "Exponential"}
    _, keys = sigmas_for("Euler", "Polyexponential", rho=3.0)
    assert keys["Schedule rho"] == 3.0


def test_old_karras_range():
    sigmas, keys = sigmas_for("DPM++ 2M", None, use_old_karras_scheduler_sigmas=True)
    assert math.isclose(float(sigmas[0]), 10.0, rel_tol=1e-6)
    assert math.isclose(float(sigmas[-2]), 0.1, rel_tol=1e-5)
    assert keys == {"Schedule type": "Karras"}


def test_beta_schedule_keys():
    sigmas, keys = sigmas_for("Euler", "Beta")
    assert keys == {"Schedule type": "Beta", "Beta schedule alpha": 0.6, "Beta schedule beta": 0.6}
    other, keys = sigmas_for("Euler", "Beta", beta_dist_alpha=0.5, beta_dist_beta=0.7)
    assert keys["Beta schedule alpha"] == 0.5 and keys["Beta schedule beta"] == 0.7
    assert not torch.equal(sigmas, other)


def test_align_your_steps_uses_the_sdxl_list():
    sigmas, _ = sigmas_for("Euler", "Align Your Steps", steps=11, is_sdxl=True)
    assert np.allclose(sigmas.numpy()[:-1], [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234,
                                             0.113, 0.029], atol=1e-6)


def test_timestep_sampler_sigmas():
    sigmas, keys = sigmas_for("DDIM", None, steps=3)
    assert torch.equal(sigmas, SCHEDULE.sigmas[[999, 667, 334, 1]])
    assert keys == {"Schedule type": "Automatic"}
    # the schedule type does not change them; the label is still reported
    same, keys = sigmas_for("PLMS", "Karras", steps=3)
    assert torch.equal(same, sigmas) and keys == {"Schedule type": "Karras"}
    sigmas, keys = sigmas_for("DDIM", None, steps=3, always_discard_next_to_last_sigma=True)
    assert torch.equal(sigmas, SCHEDULE.sigmas[[751, 501, 251, 1]])
    assert keys == {"Discard penultimate sigma": True, "Schedule type": "Automatic"}
    sigmas, _ = sigmas_for("UniPC", None, steps=20)
    assert len(sigmas) == 21
    assert torch.allclose(sigmas, SCHEDULE.t_to_sigma(torch.linspace(999, 0, 21)), rtol=1e-5)


def test_ddim_timesteps():
    assert T.ddim_timesteps(3) == [1, 334, 667, 999]
    assert T.ddim_timesteps(20) == list(range(1, 1000, 50))
    assert T.ddim_timesteps(1) == [1]
    with pytest.raises(ValueError):
        T.ddim_timesteps(0)


def test_unipc_skip_types():
    t = (torch.linspace(1, math.sqrt(0.001), 11, dtype=torch.float64) ** 2 * 1000 - 1).clamp(0, 999)
    assert torch.allclose(T.unipc_sigmas(10, SCHEDULE, "time_quadratic"), SCHEDULE.t_to_sigma(t.float()), rtol=1e-5)
    logsnr = T.unipc_sigmas(10, SCHEDULE, "logSNR").double()
    assert math.isclose(float(logsnr[0]), float(SCHEDULE.sigma_max), rel_tol=1e-6)
    assert math.isclose(float(logsnr[-1]), float(SCHEDULE.sigma_min), rel_tol=1e-6)
    assert torch.allclose(logsnr.log().diff(), logsnr.log().diff()[:1].expand(10), rtol=1e-4)
    with pytest.raises(ValueError, match="skip type"):
        T.unipc_sigmas(10, SCHEDULE, "linear")


def test_lcm_sigmas_use_lcms_grid():
    sigmas, keys = sigmas_for("LCM", None, steps=4)
    grid = SCHEDULE.sigmas[19::20]
    assert len(grid) == 50
    expected = DiscreteSchedule(SCHEDULE.alphas_cumprod[19::20]).t_to_sigma(torch.linspace(49, 0, 4))
    assert torch.allclose(sigmas[:-1], expected) and sigmas[-1] == 0
    assert sigmas[0].item() == pytest.approx(SCHEDULE.sigmas[999].item(), rel=1e-6)  # exp(ln σ): last bit may differ
    assert sigmas[-2].item() == pytest.approx(SCHEDULE.sigmas[19].item(), rel=1e-6)
    assert keys == {"Schedule type": "Automatic"}


def test_initial_noise_multiplier():
    sigmas = torch.tensor([14.6, 1.0, 0.0])
    euler, ddim = S.find_sampler("Euler"), S.find_sampler("DDIM")
    assert S.initial_noise_multiplier(euler, sigmas, settings()) == (pytest.approx(14.6), {})
    factor, keys = S.initial_noise_multiplier(euler, sigmas, settings(sgm_noise_multiplier=True))
    assert factor == pytest.approx(math.sqrt(1 + 14.6 ** 2)) and keys == {"SGM noise multiplier": True}
    factor, keys = S.initial_noise_multiplier(ddim, sigmas, settings(sgm_noise_multiplier=True))
    assert factor == pytest.approx(math.sqrt(1 + 14.6 ** 2)) and keys == {}


# --- solver options and their infotext keys -------------------------------------------------------

def options_for(name, p=None, **overrides):
    sampler = S.find_sampler(name)
    opts = settings(**overrides)
    options = S.solver_options(sampler, p or request(), opts)
    return options, S.infotext_options(sampler, options, opts)


def test_eta_defaults_and_keys():
    assert options_for("Euler a") == ({"eta": 1.0}, {})
    assert options_for("Euler a", request(eta=0.5)) == ({"eta": 0.5}, {"Eta": 0.5})
    assert options_for("Euler a", eta_ancestral=0.7) == ({"eta": 0.7}, {"Eta": 0.7})
    assert options_for("DDIM") == ({"eta": 0.0}, {})
    assert options_for("DDIM", eta_ddim=0.3) == ({"eta": 0.3}, {"Eta DDIM": 0.3})
    assert options_for("DDIM CFG++", request(eta=1.0)) == ({"eta": 1.0}, {"Eta DDIM": 1.0})
    assert options_for("DPM adaptive", request(eta=0.0)) == ({"eta": 0.0}, {"Eta": 0.0})


def test_churn_and_s_noise():
    options, keys = options_for("Euler")
    assert options == {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0} and keys == {}
    options, keys = options_for("Heun", request(s_churn=0.5, s_tmax=None, s_noise=None), s_tmax=8.0, s_noise=0.9,
                                s_churn=0.2)
    assert options == {"s_churn": 0.5, "s_tmin": 0.0, "s_tmax": 8.0, "s_noise": 0.9}
    assert keys == {"Sigma churn": 0.5, "Sigma tmax": 8.0, "Sigma noise": 0.9}
    options, keys = options_for("DPM2", request(s_tmin=0.3, s_tmax=0.0))
    assert options["s_tmax"] == math.inf and keys == {"Sigma tmin": 0.3}
    # s_noise is fixed 1 where the sampler does not take it
    assert options_for("Euler a", s_noise=0.5) == ({"eta": 1.0}, {})
    assert options_for("DPM adaptive", s_noise=0.5) == ({"eta": 1.0}, {})
    assert options_for("Restart", s_noise=0.5) == ({}, {})
    assert options_for("DPM fast", s_noise=0.5) == ({"eta": 1.0, "s_noise": 0.5}, {"Sigma noise": 0.5})
    assert options_for("DPM++ 2M", request(eta=0.3, s_noise=0.5)) == ({}, {})


def test_brownian_heun_and_unipc_options():
    options, _ = options_for("DPM++ 2M SDE Heun")
    assert options == {"eta": 1.0, "s_noise": 1.0, "solver_type": "heun", "brownian_per_image_seeds": True}
    options, _ = options_for("DPM++ SDE", no_dpmpp_sde_batch_determinism=True)
    assert options["brownian_per_image_seeds"] is False
    options, keys = options_for("UniPC", uni_pc_variant="bh2", uni_pc_order=2)
    assert options == {"variant": "bh2", "order": 2, "lower_order_final": True} and keys == {}


def test_ensd_key():
    ensd = {"eta_noise_seed_delta": 31337}
    assert options_for("Euler a", **ensd)[1] == {"ENSD": 31337}
    assert options_for("Euler a", request(eta=0.0), **ensd)[1] == {"Eta": 0.0}
    assert options_for("DPM++ 2S a", request(eta=0.5), **ensd)[1] == {"Eta": 0.5, "ENSD": 31337}
    assert options_for("DPM fast", **ensd)[1] == {"ENSD": 31337}
    assert options_for("DPM adaptive", **ensd)[1] == {"ENSD": 31337}
    assert options_for("DPM2 a", **ensd)[1] == {"ENSD": 31337}
    # samplers not marked uses_ensd, even with an eta, and no ENSD without the setting
    assert options_for("DPM++ SDE", **ensd)[1] == {}
    assert options_for("DDIM", request(eta=0.5), **ensd)[1] == {"Eta DDIM": 0.5}
    assert options_for("Euler", **ensd)[1] == {}
    assert options_for("Euler a")[1] == {}


# --- every sampler on a toy problem ---------------------------------------------------------------

S2 = 1.0  # data ~ N(0, S2): D(x, σ) = x·S2/(S2 + σ²) is exact, and the ODE gives x ∝ √(S2 + σ²)


class ToyDenoiser:
    """Exact denoiser of Gaussian data, with the two attributes DDIM CFG++ needs (cond = uncond here)."""

    def __init__(self):
        self.cond_scale_multiplier = 1.0
        self.last_denoised_uncond = None
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        s = sigma.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        self.last_denoised_uncond = x * S2 / (S2 + s ** 2)
        return self.last_denoised_uncond


def generator_noise(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return lambda sigma=None, sigma_next=None: torch.randn(shape, generator=generator, dtype=torch.float64)


def run_toy(name, steps, p, scheduler=None, opts=None, seeds=(11, 12), shape=(2, 4, 16, 16)):
    sampler = S.find_sampler(name)
    opts = opts or settings()
    sigmas, _ = S.compute_sampler_sigmas(sampler, scheduler, steps, SCHEDULE, opts)
    options = S.solver_options(sampler, p, opts)
    factor, _ = S.initial_noise_multiplier(sampler, sigmas, opts)
    x = generator_noise(shape, seed=99)() * factor
    out = S.run_sampler(sampler, ToyDenoiser(), x, sigmas, options, generator_noise(shape), list(seeds),
                        schedule=SCHEDULE, disable=True)
    return sampler, sigmas, x, out


def exact_end(sampler, sigmas, x):
    """The ODE solution at the sampler's end, in the space run_sampler returns."""
    if sampler.kind == S.SIGMA_RANGE:  # DPM fast / adaptive run over the model's range and stop at σ_min
        start, end = float(SCHEDULE.sigma_max), float(SCHEDULE.sigma_min)
    else:
        start, end = float(sigmas[0]), float(sigmas[-1])
    solution = x * math.sqrt((S2 + end ** 2) / (S2 + start ** 2))
    return solution / math.sqrt(1 + end ** 2) if sampler.kind == S.TIMESTEPS else solution


# relative error bound at 15 steps with eta 0 (first-order methods are the loose ones)
TOLERANCE = {"Euler": 0.12, "Euler a": 0.12, "DDIM": 0.12, "DDIM CFG++": 0.12, "DPM adaptive": 0.05}


@pytest.mark.parametrize("name", [n for n in NAMES if n != "LCM"])
def test_deterministic_run_matches_the_ode_solution(name):
    sampler, sigmas, x, out = run_toy(name, 15, request(eta=0.0))  # Restart: no restarts below 20 steps
    assert out.shape == x.shape and torch.isfinite(out).all()
    exact = exact_end(sampler, sigmas, x)
    error = float((out - exact).abs().max() / exact.abs().max())
    assert error < TOLERANCE.get(name, 0.03), error


@pytest.mark.parametrize("name", NAMES)
def test_default_run_is_finite_and_keeps_the_data_scale(name):
    # default settings: eta 1 for ancestral/SDE samplers, restarts at 20 steps, LCM's jumps
    _, _, _, out = run_toy(name, 20, request())
    assert torch.isfinite(out).all()
    # the toy data has variance S2; LCM on a non-LCM model shrinks it, the others stay near it
    low = 0.3 if name == "LCM" else 0.75
    assert low < float(out.var()) < 1.3


def run_brownian(name, x, seeds, opts=None):
    sampler = S.find_sampler(name)
    opts = opts or settings()
    sigmas, _ = S.compute_sampler_sigmas(sampler, None, 8, SCHEDULE, opts)
    options = S.solver_options(sampler, request(), opts)
    image_noise = generator_noise(x.shape, seed=int(seeds[0]))  # must not be used by these samplers
    return S.run_sampler(sampler, ToyDenoiser(), x * float(sigmas[0]), sigmas, options, image_noise, seeds,
                         disable=True)


@pytest.mark.parametrize("name", ["DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"])
def test_brownian_noise_is_one_tree_per_image_seed(name):
    x = generator_noise((2, 4, 8, 8), seed=99)()
    batch = run_brownian(name, x, [5, 6])
    alone = run_brownian(name, x[1:], [6])
    assert torch.allclose(batch[1], alone[0], atol=1e-6)  # independent of the batch it is in
    other = run_brownian(name, x, [7, 6])
    assert torch.allclose(batch[1], other[1], atol=1e-6) and not torch.allclose(batch[0], other[0])


def test_brownian_noise_without_batch_determinism_is_random():
    x = generator_noise((1, 4, 8, 8), seed=99)()
    opts = settings(no_dpmpp_sde_batch_determinism=True)
    assert not torch.allclose(run_brownian("DPM++ SDE", x, [1], opts), run_brownian("DPM++ SDE", x, [1], opts))


def test_brownian_noise_needs_one_seed_per_image():
    with pytest.raises(ValueError, match="seeds for a batch"):
        run_toy("DPM++ 3M SDE", 5, request(), seeds=(1,))


def test_dpm_fast_runs_over_the_models_range():
    sampler = S.find_sampler("DPM fast")
    opts = settings(sigma_max=10.0)
    sigmas, keys = S.compute_sampler_sigmas(sampler, "Karras", 9, SCHEDULE, opts)
    assert keys["Schedule max sigma"] == 10.0 and float(sigmas[0]) == pytest.approx(10.0)
    options = S.solver_options(sampler, request(eta=0.0), opts)
    x = generator_noise((1, 4, 8, 8))() * float(sigmas[0])
    ours = S.run_sampler(sampler, ToyDenoiser(), x, sigmas, options, None, [1], schedule=SCHEDULE, disable=True)
    direct = k_sampling.sample_dpm_fast(ToyDenoiser(), x, float(SCHEDULE.sigma_min), float(SCHEDULE.sigma_max), 9,
                                        eta=0.0, s_noise=1.0, disable=True)
    assert torch.equal(ours, direct)
    # without the schedule (img2img): the range of the given sigmas
    img2img = S.run_sampler(sampler, ToyDenoiser(), x, sigmas, options, None, [1], disable=True)
    direct = k_sampling.sample_dpm_fast(ToyDenoiser(), x, float(sigmas[-2]), 10.0, 9, eta=0.0, disable=True)
    assert torch.allclose(img2img, direct)


def test_lcm_needs_the_schedule():
    sampler = S.find_sampler("LCM")
    sigmas, _ = S.compute_sampler_sigmas(sampler, None, 4, SCHEDULE, settings())
    with pytest.raises(ValueError, match="LCM needs"):
        S.run_sampler(sampler, ToyDenoiser(), torch.zeros(1, 1), sigmas, {}, None, [1])


def eps_model(x_ddpm, t):
    """A toy ε-prediction in DDPM space that depends on both the latent and the timestep."""
    t = t.to(x_ddpm.dtype).view(-1, *[1] * (x_ddpm.ndim - 1))
    return (0.4 + t / 2000) * x_ddpm + 0.05


class EpsDenoiser:
    """The k-space denoiser over eps_model, as the web UI's CFGDenoiser builds it (generation.md §0.3)."""

    def __init__(self):
        self.timesteps = []

    def __call__(self, x, sigma):
        t = SCHEDULE.sigma_to_t(sigma)
        self.timesteps.append(t)
        s = sigma.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        return x - s * eps_model(x / (s ** 2 + 1).sqrt(), t)


def test_lcm_denoiser_quantises_the_timestep_and_scales_the_output():
    inner = EpsDenoiser()
    lcm = S.LCMDenoiser(inner, SCHEDULE)
    x = torch.randn(2, 3, dtype=torch.float64)
    sigma = torch.tensor([3.0, 0.05])
    out = lcm(x, sigma)
    t = inner.timesteps[-1]
    grid_t = torch.arange(19, 1000, 20)
    nearest = [int(grid_t[(SCHEDULE.sigmas[grid_t].log() - math.log(s)).abs().argmin()]) for s in (3.0, 0.05)]
    assert t.tolist() == nearest  # exact integers on LCM's grid
    s = sigma.double().view(-1, 1)
    eps = eps_model(x / (s ** 2 + 1).sqrt(), t)  # the UNet input is c_in(σ)·x as in A1111
    t_scaled = torch.tensor(nearest, dtype=torch.float64).view(-1, 1) * 10
    expected = 0.25 / (t_scaled ** 2 + 0.25) * x + t_scaled / (t_scaled ** 2 + 0.25).sqrt() * (x - s * eps)
    assert torch.allclose(out, expected, rtol=1e-6)


# --- timestep samplers against hand computations in DDPM space ------------------------------------

ALPHAS = SCHEDULE.alphas_cumprod.double()


def ddim_by_hand(x, taus, eta=0.0, noises=(), eps_fn=None):
    """A1111's DDIM in DDPM space: x̂₀ = (x − √(1−ᾱ)ε)/√ᾱ, x ← √ᾱ_prev·x̂₀ + √(1−ᾱ_prev−σ²)·ε + σ·noise."""
    noises = iter(noises)
    for k in range(len(taus) - 1, 0, -1):
        a, a_prev = ALPHAS[taus[k]], ALPHAS[taus[k - 1]]
        eps, direction_eps = (eps_fn or (lambda x_, t: (eps_model(x_, torch.tensor([t])),) * 2))(x, taus[k])
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).sqrt() * direction_eps
        if eta:
            x = x + sigma * next(noises)
    return x


class NoiseList:
    def __init__(self, shape, seed=3):
        generator = torch.Generator().manual_seed(seed)
        self.values = [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(50)]
        self.calls = 0

    def __call__(self, sigma=None, sigma_next=None):
        self.calls += 1
        return self.values[self.calls - 1]


def run_timestep_sampler(name, steps, denoiser, options, noise=None, shape=(2, 5)):
    sampler = S.find_sampler(name)
    sigmas, _ = S.compute_sampler_sigmas(sampler, None, steps, SCHEDULE, settings())
    x_ddpm = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    factor, _ = S.initial_noise_multiplier(sampler, sigmas, settings())
    out = S.run_sampler(sampler, denoiser, x_ddpm * factor, sigmas, options, noise, [1, 2], disable=True)
    return x_ddpm, out


def test_ddim_eta0_equals_the_ddpm_update():
    denoiser = EpsDenoiser()
    x_ddpm, out = run_timestep_sampler("DDIM", 10, denoiser, {"eta": 0.0})
    taus = T.ddim_timesteps(10)
    # the UNet saw exactly the integer timesteps, highest first, one call per step
    assert [t[0].item() for t in denoiser.timesteps] == taus[:0:-1]
    assert torch.allclose(out, ddim_by_hand(x_ddpm, taus), rtol=1e-5, atol=1e-6)


def test_ddim_with_eta_equals_the_ddpm_update():
    noise = NoiseList((2, 5))
    x_ddpm, out = run_timestep_sampler("DDIM", 6, EpsDenoiser(), {"eta": 0.7}, noise)
    expected = ddim_by_hand(x_ddpm, T.ddim_timesteps(6), eta=0.7, noises=NoiseList((2, 5)).values)
    assert noise.calls == len(T.ddim_timesteps(6)) - 1
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)


class GuidedDenoiser:
    """cond/uncond toy predictions combined with CFG, exposing what DDIM CFG++ needs."""

    def __init__(self, scale):
        self.scale = scale
        self.cond_scale_multiplier = 1.0
        self.last_denoised_uncond = None
        self.multipliers = []

    def __call__(self, x, sigma):
        t = SCHEDULE.sigma_to_t(sigma)
        s = sigma.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        x_ddpm = x / (s ** 2 + 1).sqrt()
        uncond = x - s * eps_model(x_ddpm, t)
        cond = x - s * (eps_model(x_ddpm, t) * 0.8 - 0.1)
        self.last_denoised_uncond = uncond
        self.multipliers.append(self.cond_scale_multiplier)
        return uncond + (cond - uncond) * self.scale * self.cond_scale_multiplier


def test_ddim_cfgpp_uses_the_unconditional_direction():
    denoiser = GuidedDenoiser(scale=7.5)
    x_ddpm, out = run_timestep_sampler("DDIM CFG++", 8, denoiser, {"eta": 0.0})
    assert set(denoiser.multipliers) == {1 / 12.5} and denoiser.cond_scale_multiplier == 1.0

    def eps_fn(x, t):
        tt = torch.tensor([t])
        e_u = eps_model(x, tt)
        e_c = e_u * 0.8 - 0.1
        return e_u + (e_c - e_u) * 7.5 / 12.5, e_u

    assert torch.allclose(out, ddim_by_hand(x_ddpm, T.ddim_timesteps(8), eps_fn=eps_fn), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="last_denoised_uncond"):
        run_timestep_sampler("DDIM CFG++", 4, EpsDenoiser(), {"eta": 0.0})


def test_plms_equals_the_ddpm_update():
    denoiser = EpsDenoiser()
    x_ddpm, out = run_timestep_sampler("PLMS", 5, denoiser, {})
    taus = T.ddim_timesteps(5)  # 1, 201, 401, 601, 801: four steps reach the fourth-order formula
    assert len(denoiser.timesteps) == 5  # the first step evaluates twice

    def update(x, eps, k):
        a, a_prev = ALPHAS[taus[k]], ALPHAS[taus[k - 1]]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    x, old = x_ddpm, []
    for k in range(len(taus) - 1, 0, -1):
        eps = eps_model(x, torch.tensor([taus[k]]))
        if not old:
            eps_next = eps_model(update(x, eps, k), torch.tensor([taus[k - 1]]))
            eps_prime = (eps + eps_next) / 2
        elif len(old) == 1:
            eps_prime = (3 * eps - old[-1]) / 2
        elif len(old) == 2:
            eps_prime = (23 * eps - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            eps_prime = (55 * eps - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = update(x, eps_prime, k)
        old.append(eps)
    assert torch.allclose(out, x, rtol=1e-5, atol=1e-6)


def unipc_by_hand(x_vp, sigmas, model, variant):
    """Three UniPC steps of order 2 (lower order at the ends), in VP space with data prediction.

    α = 1/√(1+σ²), σ_vp = σ/√(1+σ²), λ = ln(α/σ_vp); model(x_vp, i) is the x₀ prediction at point i.
    """
    alpha = [1 / math.sqrt(1 + float(s) ** 2) for s in sigmas]
    svp = [float(s) / math.sqrt(1 + float(s) ** 2) for s in sigmas]
    lam = [math.log(a / s) for a, s in zip(alpha, svp)]

    def b_of(h):
        return -h if variant == "bh1" else math.expm1(-h)

    m0 = model(x_vp, 0)
    # step 1: order 1, corrector with weight ½
    h1 = lam[1] - lam[0]
    base = svp[1] / svp[0] * x_vp - alpha[1] * math.expm1(-h1) * m0
    m1 = model(base, 1)
    x1 = base - alpha[1] * b_of(h1) * 0.5 * (m1 - m0)
    # step 2: order 2, predictor with weight ½, corrector from the 2×2 system
    h2 = lam[2] - lam[1]
    r1 = (lam[0] - lam[1]) / h2
    d1 = (m0 - m1) / r1
    base = svp[2] / svp[1] * x1 - alpha[2] * math.expm1(-h2) * m1
    predicted = base - alpha[2] * b_of(h2) * 0.5 * d1
    m2 = model(predicted, 2)
    hh = -h2
    g1 = math.expm1(hh) / hh - 1
    g2 = g1 / hh - 0.5
    rhos = np.linalg.solve(np.array([[1.0, 1.0], [r1, 1.0]]), np.array([g1 / b_of(h2), 2 * g2 / b_of(h2)]))
    x2 = base - alpha[2] * b_of(h2) * (rhos[0] * d1 + rhos[1] * (m2 - m1))
    # step 3 (last): lower order final → order 1, no corrector
    h3 = lam[3] - lam[2]
    return svp[3] / svp[2] * x2 - alpha[3] * math.expm1(-h3) * m2


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_first_steps_by_hand(variant):
    sigmas = T.unipc_sigmas(3, SCHEDULE)
    denoiser = EpsDenoiser()
    x_ddpm = torch.randn(2, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = x_ddpm * math.sqrt(1 + float(sigmas[0]) ** 2)
    out = T.to_ddpm(T.unipc(denoiser, x, sigmas, variant=variant, order=2, disable=True), sigmas[-1])

    def model(x_vp, i):  # x₀ prediction of the ε model at the grid point
        s = float(sigmas[i])
        a, svp = 1 / math.sqrt(1 + s ** 2), s / math.sqrt(1 + s ** 2)
        return (x_vp - svp * eps_model(x_vp, SCHEDULE.sigma_to_t(sigmas[i:i + 1]))) / a

    assert len(denoiser.timesteps) == 3  # one evaluation per step
    assert torch.allclose(out, unipc_by_hand(x_ddpm, sigmas, model, variant), rtol=1e-5, atol=1e-6)


def test_unipc_order_is_clamped_and_variants_checked():
    sigmas = T.unipc_sigmas(2, SCHEDULE)
    x = torch.ones(1, 3, dtype=torch.float64)
    # order 3 with 2 steps runs as order 1 (clamped to steps − 1)
    assert torch.equal(T.unipc(ToyDenoiser(), x, sigmas, order=3, disable=True),
                       T.unipc(ToyDenoiser(), x, sigmas, order=1, disable=True))
    vary = T.unipc(ToyDenoiser(), x, T.unipc_sigmas(8, SCHEDULE), variant="vary_coeff", disable=True)
    assert torch.isfinite(vary).all()
    with pytest.raises(ValueError, match="UniPC variant"):
        T.unipc(ToyDenoiser(), x, sigmas, variant="bh3")
