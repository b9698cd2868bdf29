"""Sampler registry (generation.md §1.1) and everything a job needs to run one sampler.

* `all_samplers` / `find_sampler` / `split_legacy_name`: names, aliases, flags, name resolution
  (api.md §8.3). Unknown names are errors listing the valid ones (A1111 silently substitutes).
* `compute_sampler_sigmas`: the sigmas a job uses and the infotext keys that follow from them.
* `solver_options` / `infotext_options`: eta, churn and s_noise resolution and their infotext keys.
* `initial_noise_multiplier`: the factor for the unit initial noise.
* `run_sampler`: calls the solver (modules.k_sampling or modules.sd_samplers_timesteps).

A job runs, per batch:

    sigmas, keys = compute_sampler_sigmas(sampler, p.scheduler, p.steps, schedule, opts, is_sdxl)
    options = solver_options(sampler, p, opts)
    keys |= infotext_options(sampler, options, opts)
    factor, more_keys = initial_noise_multiplier(sampler, sigmas, opts)
    latent = run_sampler(sampler, denoiser, noise * factor, sigmas, options, rng.noise_sampler,
                         seeds, callback, schedule=schedule)
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch

from modules import k_sampling, sd_samplers_timesteps, sd_schedulers
from modules.noise_schedule import DiscreteSchedule

# how a sampler is run (SamplerData.kind)
KDIFFUSION = "kdiffusion"    # k_sampling solver over a sigma list
SIGMA_RANGE = "sigma_range"  # DPM fast / adaptive: k_sampling solver over (sigma_min, sigma_max)
LCM = "lcm"                  # k_sampling.sample_lcm on LCM's 50-step grid, with LCM's output scaling
TIMESTEPS = "timesteps"      # sd_samplers_timesteps solver over timestep sigmas

ETA_ANCESTRAL, ETA_DDIM = "eta_ancestral", "eta_ddim"
LCM_ORIGINAL_STEPS = 50


@dataclass(frozen=True)
class SamplerData:
    name: str
    function: str                      # solver name in modules.k_sampling (or sd_samplers_timesteps for TIMESTEPS)
    aliases: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)   # flags reported by GET /samplers (as strings)
    # extra parameters: "eta", "churn" (s_churn/s_tmin/s_tmax/s_noise), "s_noise", "unipc" (UniPC settings)
    params: tuple[str, ...] = ()
    eta_setting: str | None = None     # setting that gives eta's default: eta_ancestral or eta_ddim
    kind: str = KDIFFUSION

    @property
    def default_scheduler(self) -> str | None:
        """The schedule `Automatic` means for this sampler (a schedule name), None = the model's own."""
        return self.options.get("scheduler")

    @property
    def second_order(self) -> bool:
        """Two model evaluations per step (prompt schedules count steps twice for these)."""
        return bool(self.options.get("second_order", False))


_ETA = ("eta",)
_ETA_S_NOISE = ("eta", "s_noise")
_CHURN = ("churn",)

# generation.md §1.1 order
all_samplers = [
    SamplerData("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    SamplerData("DPM++ SDE", "sample_dpmpp_sde", ["k_dpmpp_sde"],
                {"scheduler": "karras", "second_order": True, "brownian_noise": True}, _ETA_S_NOISE, ETA_ANCESTRAL),
    SamplerData("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde"],
                {"scheduler": "exponential", "brownian_noise": True}, _ETA_S_NOISE, ETA_ANCESTRAL),
    SamplerData("DPM++ 2M SDE Heun", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde_heun"],
                {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
                _ETA_S_NOISE, ETA_ANCESTRAL),
    SamplerData("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a"],
                {"scheduler": "karras", "uses_ensd": True, "second_order": True}, _ETA_S_NOISE, ETA_ANCESTRAL),
    SamplerData("DPM++ 3M SDE", "sample_dpmpp_3m_sde", ["k_dpmpp_3m_sde"],
                {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
                _ETA_S_NOISE, ETA_ANCESTRAL),
    SamplerData("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True},
                _ETA, ETA_ANCESTRAL),
    SamplerData("Euler", "sample_euler", ["k_euler"], {}, _CHURN),
    SamplerData("LMS", "sample_lms", ["k_lms"], {}),
    SamplerData("Heun", "sample_heun", ["k_heun"], {"second_order": True}, _CHURN),
    SamplerData("DPM2", "sample_dpm_2", ["k_dpm_2"],
                {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}, _CHURN),
    SamplerData("DPM2 a", "sample_dpm_2_ancestral", ["k_dpm_2_a"],
                {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True},
                _ETA_S_NOISE, ETA_ANCESTRAL),
    SamplerData("DPM fast", "sample_dpm_fast", ["k_dpm_fast"], {"uses_ensd": True}, _ETA_S_NOISE, ETA_ANCESTRAL,
                SIGMA_RANGE),
    SamplerData("DPM adaptive", "sample_dpm_adaptive", ["k_dpm_ad"], {"uses_ensd": True}, _ETA, ETA_ANCESTRAL,
                SIGMA_RANGE),
    SamplerData("Restart", "sample_restart", ["restart"], {"scheduler": "karras", "second_order": True}),
    SamplerData("DDIM", "ddim", ["ddim"], {}, _ETA, ETA_DDIM, TIMESTEPS),
    SamplerData("DDIM CFG++", "ddim_cfgpp", ["ddim_cfgpp"], {}, _ETA, ETA_DDIM, TIMESTEPS),
    SamplerData("PLMS", "plms", ["plms"], {}, (), None, TIMESTEPS),
    SamplerData("UniPC", "unipc", ["unipc"], {}, ("unipc",), None, TIMESTEPS),
    SamplerData("LCM", "sample_lcm", ["k_lcm"], {}, (), None, LCM),
]
all_samplers_map = {s.name: s for s in all_samplers}
samplers = all_samplers  # A1111 exposes both names


class SamplerNotFound(ValueError):
    pass


def _not_found(name) -> SamplerNotFound:
    valid = ", ".join(s.name for s in all_samplers)
    return SamplerNotFound(f"Sampler '{name}' not found; valid names: {valid}")


def find_sampler(name: str | None) -> SamplerData:
    """Exact name, then case-insensitive name, then alias (generation.md §1.1); empty → Euler (API default)."""
    if not name:
        return all_samplers_map["Euler"]
    if name in all_samplers_map:
        return all_samplers_map[name]
    lowered = name.lower()
    for sampler in all_samplers:
        if sampler.name.lower() == lowered:
            return sampler
    for sampler in all_samplers:
        if lowered in (a.lower() for a in sampler.aliases):
            return sampler
    raise _not_found(name)


def visible_sampler_names(settings=None) -> list[str]:
    """Names for the UI: all samplers except those in the `hide_samplers` setting."""
    if settings is None:
        from modules import shared
        settings = shared.opts
    hidden = set(settings.hide_samplers or [])
    return [s.name for s in all_samplers if s.name not in hidden]


# --- legacy combined names (api.md §8.3) ----------------------------------------------------------

def split_schedule_suffix(name: str):
    """("DPM++ 2M", karras) for "DPM++ 2M Karras": the longest schedule label/name/alias after a space."""
    lowered = name.lower()
    best = None
    for scheduler in sd_schedulers.schedulers:
        for option in [scheduler.label, scheduler.name, *(scheduler.aliases or [])]:
            suffix = " " + option.lower()
            if lowered.endswith(suffix) and (best is None or len(suffix) > best[1]):
                best = (scheduler, len(suffix))
    if best is None:
        return name, None
    return name[:-best[1]], best[0]


def split_legacy_name(name: str | None, scheduler: str | None = None) -> tuple[str, str]:
    """(sampler name, schedule label) for a requested sampler name and scheduler field (api.md §8.3 steps 2–4).

    A trailing schedule label, name or alias (case-insensitive) is split off the name; it becomes the
    schedule unless the `scheduler` field is non-empty (which wins), and it turns back into
    "Automatic" when it is the sampler's own default. Raises SamplerNotFound for an unknown sampler
    and ValueError (listing the valid schedules) for an unknown schedule.
    """
    suffix = None
    try:
        sampler = find_sampler(name)  # a full sampler name is never split
    except SamplerNotFound:
        base, suffix = split_schedule_suffix(name)
        if suffix is None:
            raise
        try:
            sampler = find_sampler(base)
        except SamplerNotFound:
            raise _not_found(name) from None
    if scheduler:
        return sampler.name, sd_schedulers.get_scheduler(scheduler).label
    if suffix is None or suffix.name == sampler.default_scheduler:
        return sampler.name, "Automatic"
    return sampler.name, suffix.label


# --- sigmas ---------------------------------------------------------------------------------------

def lcm_schedule(schedule: DiscreteSchedule) -> DiscreteSchedule:
    """LCM's 50-entry table: every 20th timestep of the model's, ending at t = 999 (19, 39, …, 999)."""
    skip = len(schedule) // LCM_ORIGINAL_STEPS
    return DiscreteSchedule(schedule.alphas_cumprod[skip - 1::skip])


def compute_sampler_sigmas(sampler: SamplerData, scheduler_label: str | None, steps: int,
                           schedule: DiscreteSchedule, settings, is_sdxl: bool = False) -> tuple[torch.Tensor, dict]:
    """The sigmas (float32, CPU) a job samples over, and the infotext keys that result (infotext.md §3).

    `scheduler_label`: a schedule label or name, "Automatic"/None = the sampler's default schedule,
    or the model's own sigmas (Uniform) when it has none. `schedule` is the model's noise table.
    `settings` needs always_discard_next_to_last_sigma, sigma_min, sigma_max, rho,
    use_old_karras_scheduler_sigmas, beta_dist_alpha, beta_dist_beta, uni_pc_skip_type.

    Per kind: k-diffusion samplers get a descending list ending with 0 (KL Optimal: ending at σ_min);
    LCM the same, computed on LCM's own 50-step table; DPM fast / adaptive get the same list as
    k-diffusion samplers (used for the initial noise, the infotext and img2img) — `run_sampler`
    turns it into their sigma range; timestep samplers get `sd_samplers_timesteps.timesteps_sigmas`
    (no final 0; the schedule type does not apply to them).

    Keys: "Discard penultimate sigma" (True, when the setting forces it on a sampler that does not do
    it anyway), "Schedule type" (always: the label used, the resolved default, or "Automatic" — fixed
    key #3 of infotext.md §3.1), "Schedule min sigma", "Schedule max sigma", "Schedule rho",
    "Beta schedule alpha", "Beta schedule beta" (when they apply).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    keys = {}
    discard = bool(sampler.options.get("discard_next_to_last_sigma", False))
    if settings.always_discard_next_to_last_sigma and not discard:
        discard = True
        keys["Discard penultimate sigma"] = True
    requested = sd_schedulers.get_scheduler(scheduler_label or "Automatic")

    if sampler.kind == TIMESTEPS:
        # timestep samplers ignore the schedule type; discard = one more timestep (generation.md §1.4)
        n = steps + 1 if discard else steps
        sigmas = sd_samplers_timesteps.timesteps_sigmas(sampler.name, n, schedule, settings.uni_pc_skip_type)
        keys["Schedule type"] = requested.label
        return sigmas, keys

    if sampler.kind == LCM:
        schedule = lcm_schedule(schedule)
    entry = requested
    if entry.function is None and sampler.default_scheduler:
        entry = sd_schedulers.get_scheduler(sampler.default_scheduler)
    if entry.function is None:
        # Automatic without a default: the model's own sigmas; no overrides apply (A1111)
        keys["Schedule type"] = entry.label
        sigmas = sd_schedulers.compute_sigmas("uniform", steps, schedule, discard_penultimate_sigma=discard)
        return sigmas, keys

    keys["Schedule type"] = entry.label
    model_min, model_max = float(schedule.sigma_min), float(schedule.sigma_max)
    sigma_min, sigma_max = (0.1, 10.0) if settings.use_old_karras_scheduler_sigmas else (model_min, model_max)
    if settings.sigma_min != 0 and settings.sigma_min != model_min:
        sigma_min = settings.sigma_min
        keys["Schedule min sigma"] = settings.sigma_min
    if settings.sigma_max != 0 and settings.sigma_max != model_max:
        sigma_max = settings.sigma_max
        keys["Schedule max sigma"] = settings.sigma_max
    rho = None
    if entry.default_rho != -1 and settings.rho != 0 and settings.rho != entry.default_rho:
        rho = settings.rho
        keys["Schedule rho"] = settings.rho
    if entry.name == "beta":
        keys["Beta schedule alpha"] = settings.beta_dist_alpha
        keys["Beta schedule beta"] = settings.beta_dist_beta
    sigmas = sd_schedulers.compute_sigmas(
        entry.name, steps, schedule, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
        discard_penultimate_sigma=discard, is_sdxl=is_sdxl,
        beta_alpha=settings.beta_dist_alpha, beta_beta=settings.beta_dist_beta)
    return sigmas, keys


def initial_noise_multiplier(sampler: SamplerData, sigmas: torch.Tensor, settings) -> tuple[float, dict]:
    """The factor for the unit-variance initial noise (txt2img, generation.md §3.3), and its infotext keys.

    k-diffusion samplers: σ_0, or √(1 + σ_0²) with the `sgm_noise_multiplier` setting. Timestep
    samplers start from the unit noise in DDPM space, which is noise·√(1 + σ_0²) in k-space.
    """
    sigma0 = float(sigmas[0])
    if sampler.kind == TIMESTEPS:
        return math.sqrt(1.0 + sigma0 ** 2), {}
    if settings.sgm_noise_multiplier:
        return math.sqrt(1.0 + sigma0 ** 2), {"SGM noise multiplier": True}
    return sigma0, {}


# --- solver parameters ----------------------------------------------------------------------------

def _request_or_setting(p, settings, name):
    value = getattr(p, name, None)
    return value if value is not None else getattr(settings, name)


def solver_options(sampler: SamplerData, p, settings) -> dict:
    """The solver's keyword arguments (generation.md §1.1), plus control keys for `run_sampler`.

    `p` has eta, s_churn, s_tmin, s_tmax, s_noise (None = unset → the setting of that name; eta's
    setting is eta_ancestral or eta_ddim per sampler). s_tmax 0 means ∞. Samplers without an s_noise
    parameter use 1 (not listed). Brownian samplers get `brownian_per_image_seeds` (False with the
    `no_dpmpp_sde_batch_determinism` setting); UniPC gets variant/order/lower_order_final from settings.
    """
    options = {}
    if "eta" in sampler.params:
        eta = getattr(p, "eta", None)
        options["eta"] = eta if eta is not None else getattr(settings, sampler.eta_setting)
    if "churn" in sampler.params:
        options["s_churn"] = _request_or_setting(p, settings, "s_churn")
        options["s_tmin"] = _request_or_setting(p, settings, "s_tmin")
        options["s_tmax"] = _request_or_setting(p, settings, "s_tmax") or float("inf")
    if "churn" in sampler.params or "s_noise" in sampler.params:
        options["s_noise"] = _request_or_setting(p, settings, "s_noise")
    if "solver_type" in sampler.options:
        options["solver_type"] = sampler.options["solver_type"]
    if sampler.options.get("brownian_noise"):
        options["brownian_per_image_seeds"] = not settings.no_dpmpp_sde_batch_determinism
    if "unipc" in sampler.params:
        options["variant"] = settings.uni_pc_variant
        options["order"] = settings.uni_pc_order
        options["lower_order_final"] = settings.uni_pc_lower_order_final
    return options


def infotext_options(sampler: SamplerData, options: dict, settings) -> dict:
    """Infotext keys for the resolved `options` (infotext.md §3.2, and §3.1 #21 for ENSD).

    `Eta` when a k-diffusion eta ≠ 1.0, `Eta DDIM` when a DDIM-family eta ≠ 0.0; `Sigma churn`,
    `Sigma tmin`, `Sigma tmax`, `Sigma noise` when the sampler takes them and they differ from
    0 / 0 / ∞ / 1. `ENSD` (a fixed key: place it at its fixed position) when the setting is
    non-zero, the sampler is marked uses_ensd and its eta ≠ 0.
    """
    keys = {}
    if "eta" in options:
        if sampler.eta_setting == ETA_DDIM:
            if options["eta"] != 0.0:
                keys["Eta DDIM"] = options["eta"]
        elif options["eta"] != 1.0:
            keys["Eta"] = options["eta"]
    for name, key, neutral in (("s_churn", "Sigma churn", 0.0), ("s_tmin", "Sigma tmin", 0.0),
                               ("s_tmax", "Sigma tmax", float("inf")), ("s_noise", "Sigma noise", 1.0)):
        if name in options and options[name] != neutral:
            keys[key] = options[name]
    ensd = settings.eta_noise_seed_delta
    if ensd and sampler.options.get("uses_ensd") and options.get("eta", 0) != 0:
        keys["ENSD"] = ensd
    return keys


# --- running --------------------------------------------------------------------------------------

class LCMDenoiser:
    """LCM's denoiser over the guided one (generation.md §1.3 LCM).

    The UNet sees the LCM grid timestep nearest to σ in log σ (20·j + 19); its prediction is then
    scaled with the LCM boundary condition c_skip·x + c_out·D, t' = 10·timestep. Both steps are
    affine in the prediction, so applying them after classifier-free guidance equals A1111's per-pass
    order. `schedule` is the model's full noise table.
    """

    def __init__(self, denoiser, schedule: DiscreteSchedule):
        self.inner = denoiser
        self.skip = len(schedule) // LCM_ORIGINAL_STEPS
        grid = lcm_schedule(schedule)
        self.grid_sigmas = grid.sigmas
        self.grid_log_sigmas = grid.log_sigmas

    def __call__(self, x, sigma, **kwargs):
        log_grid = self.grid_log_sigmas.to(sigma.device)
        index = (sigma.float().log()[:, None] - log_grid[None, :]).abs().argmin(dim=1)
        sigma_q = self.grid_sigmas.to(sigma.device)[index]  # table values: the UNet gets the integer timestep
        s = sigma.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        s_q = sigma_q.to(x.dtype).view_as(s)
        # same UNet input c_in(σ)·x as A1111, expressed at σ_q where our denoiser picks the timestep
        x_q = x * ((s_q ** 2 + 1) / (s ** 2 + 1)).sqrt()
        eps = (x_q - self.inner(x_q, sigma_q, **kwargs)) / s_q
        denoised = x - s * eps
        t_scaled = ((index * self.skip + self.skip - 1) * 10.0).to(x.dtype).view_as(s)
        c_skip = 0.25 / (t_scaled ** 2 + 0.25)
        c_out = t_scaled / (t_scaled ** 2 + 0.25).sqrt()
        return c_skip * x + c_out * denoised


_CONTROL_KEYS = ("brownian_per_image_seeds",)


def _accepts(solver, name) -> bool:
    return name in inspect.signature(solver).parameters


def run_sampler(sampler: SamplerData, denoiser, x: torch.Tensor, sigmas: torch.Tensor, options: dict,
                noise_sampler, seeds, callback=None, *, schedule: DiscreteSchedule | None = None,
                disable=None) -> torch.Tensor:
    """Run `sampler` from x (at sigmas[0], scaled by `initial_noise_multiplier`) and return the final latent.

    * `denoiser(x, sigma) -> D` in k-diffusion space (sigma of shape [batch]); DDIM CFG++ also needs
      the attributes described in sd_samplers_timesteps.ddim_cfgpp.
    * `sigmas` and `options` from `compute_sampler_sigmas` / `solver_options`.
    * `noise_sampler(sigma, sigma_next)` draws the next noise of each image (rng.ImageRNG.noise_sampler);
      Brownian samplers use a torchsde tree per image seed instead (`seeds`: this batch's seeds),
      or one randomly seeded tree with `no_dpmpp_sde_batch_determinism`.
    * `schedule` (the model's noise table): required for LCM; for DPM fast / adaptive it gives the
      model's σ range as in A1111's txt2img — without it the range of `sigmas` is used (img2img).
    * `callback` receives k_sampling's step dict; `disable` turns the progress bar off.

    Timestep samplers return the DDPM-space latent at their last timestep (what A1111 decodes);
    the others the latent at the last sigma.
    """
    kwargs = {k: v for k, v in options.items() if k not in _CONTROL_KEYS}

    if sampler.kind == TIMESTEPS:
        solver = getattr(sd_samplers_timesteps, sampler.function)
        if _accepts(solver, "noise_sampler"):
            kwargs["noise_sampler"] = noise_sampler
        out = solver(denoiser, x, sigmas, callback=callback, disable=disable, **kwargs)
        return sd_samplers_timesteps.to_ddpm(out, sigmas[-1])

    solver = getattr(k_sampling, sampler.function)
    if sampler.options.get("brownian_noise"):
        per_image = options.get("brownian_per_image_seeds", True)
        positive = sigmas[sigmas > 0]
        noise_sampler = k_sampling.BrownianTreeNoiseSampler(
            x, positive.min(), sigmas.max(), seed=[int(s) for s in seeds] if per_image else None)
    if _accepts(solver, "noise_sampler"):
        kwargs["noise_sampler"] = noise_sampler

    if sampler.kind == SIGMA_RANGE:
        if schedule is not None:
            sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
        else:
            sigma_min, sigma_max = float(sigmas[sigmas > 0].min()), float(sigmas[0])
        if sampler.function == "sample_dpm_fast":
            kwargs["n"] = len(sigmas) - 1
        return solver(denoiser, x, sigma_min, sigma_max, callback=callback, disable=disable, **kwargs)

    if sampler.kind == LCM:
        if schedule is None:
            raise ValueError("LCM needs the model's noise schedule (run_sampler(..., schedule=...))")
        denoiser = LCMDenoiser(denoiser, schedule)
    return solver(denoiser, x, sigmas, callback=callback, disable=disable, **kwargs)
