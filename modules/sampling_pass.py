"""One sampling pass of a job: conditioning, sigmas, starting noise, the sampler run, and the
refiner taking over part-way (generation.md §3, §4, §5 step 5, §6).

txt2img's first pass starts from pure noise; the hires pass (and later img2img) starts from an
init latent noised to the first sigma of the part of the schedule it runs.
"""
import contextlib
from dataclasses import dataclass

import torch

from modules import conditioning, devices, previews, prompt_parser, rng, sd_samplers, shared
from modules.denoiser import CFGDenoiser, Guidance
from modules.img2img.mask_blend import LatentBlend
from modules.noise_schedule import DiscreteSchedule, schedule_settings_keys

opt_C = 4  # latent channels (A1111's name, also exported by modules.processing)
opt_f = 8  # VAE down-scaling factor (A1111's name)
COND_CACHE_SIZE = 4  # first-pass and hires-pass conds, positive and negative


@dataclass
class PassSpec:
    sampler: sd_samplers.SamplerData
    scheduler: str                  # schedule label or name ("Automatic")
    steps: int                      # sampling steps that run in this pass
    width: int
    height: int
    prompts: list[str]
    negatives: list[str]
    cond_steps: int                 # step total the prompt schedules are built for (§7)
    hires_steps: int | None = None  # second pass: its own step total (base is cond_steps)
    init_latent: torch.Tensor | None = None   # start from this latent (hires / img2img)
    denoising_strength: float = 1.0
    refiner: object = None          # CheckpointInfo of the refiner, or None
    refiner_switch_at: float = 1.0
    image_cond: torch.Tensor | None = None  # inpainting UNets: instead of the txt2img dummy (§7.6)
    # img2img (generation.md §7.3, §7.4): the step rule (hires always runs exactly `steps`), the
    # noise multiplier (None: the setting), the latent masks (1 = keep the init latent / regenerate)
    fix_steps: bool = True
    noise_multiplier: float | None = None
    mask: torch.Tensor | None = None
    nmask: torch.Tensor | None = None
    image_cfg_scale: float | None = None  # instruct-pix2pix models
    # img2img alternative test: this noise instead of the seeds' first draw (init + noise·σ₀)
    start_noise: torch.Tensor | None = None


class _JobEncoder:
    """What prompt_parser calls to encode texts: our encoder, collecting the embeddings used."""

    def __init__(self, model, used_embeddings: dict):
        self.model = model
        self.used_embeddings = used_embeddings

    def get_learned_conditioning(self, texts):
        return conditioning.encode(self.model, list(texts),
                                   is_negative=getattr(texts, "is_negative_prompt", False),
                                   used_embeddings=self.used_embeddings)


def _cond_cache_key(model, prompts, steps, hires_steps, is_negative: bool, width, height) -> tuple:
    opts = shared.opts
    db = getattr(model, "embedding_db", None)
    # which embeddings exist (and which files they came from) changes what a prompt encodes to
    embeddings = tuple((name, e.hash) for name, e in db.word_embeddings.items()) if db else ()
    # LoRA patches on the text encoders change every encoding (modules.networks sets this key)
    networks = getattr(model, "network_cond_key", ())
    return (is_negative, tuple(prompts), steps, hires_steps, opts.CLIP_stop_at_last_layers, opts.emphasis,
            opts.comma_padding_backtrack, opts.sdxl_clip_l_skip, embeddings, width, height, networks)


def get_conds(model, prompts, negatives, steps, hires_steps=None, width=0, height=0):
    """(multicond for the prompts, schedules for the negatives, embeddings used), reusing recent
    conds when nothing that shapes them changed (setting persistent_cond_cache)."""
    used = {}
    encoder = _JobEncoder(model, used)
    cache = model.cond_cache if shared.opts.persistent_cond_cache else {}
    key_c = _cond_cache_key(model, prompts, steps, hires_steps, False, width, height)
    key_uc = _cond_cache_key(model, negatives, steps, hires_steps, True, width, height)
    with contextlib.ExitStack() as stack:  # --medvram: text encoders on the device only meanwhile
        if key_c not in cache or key_uc not in cache:
            for encoder_module in model.text_encoders:
                stack.enter_context(devices.on_device(encoder_module, model.device_config))
        if key_c not in cache:
            cache[key_c] = (prompt_parser.get_multicond_learned_conditioning(
                encoder, prompts, steps, hires_steps), used.copy())
        if key_uc not in cache:
            negative = prompt_parser.SdConditioning(negatives, is_negative_prompt=True)
            cache[key_uc] = (prompt_parser.get_learned_conditioning(encoder, negative, steps, hires_steps),
                             dict(used))
    for key in list(cache)[:-COND_CACHE_SIZE]:  # dicts keep insertion order: drop the oldest
        if key not in (key_c, key_uc):
            del cache[key]
    (cond, used_c), (uncond, used_uc) = cache[key_c], cache[key_uc]
    return cond, uncond, {**used_c, **used_uc}


def time_ids(model, width: int, height: int, batch: int, aesthetic_score: float | None = None) -> torch.Tensor:
    """SDXL size conditioning: original size, crop top-left, then target size (base) or the
    aesthetic score (refiner), in (h, w) order."""
    opts = shared.opts
    ids = [height, width, opts.sdxl_crop_top, opts.sdxl_crop_left]
    ids += [aesthetic_score] if model.family == "sdxl-refiner" else [height, width]
    return torch.tensor([ids] * batch, dtype=torch.float32)


def inpainting_image_cond(model, batch: int, height: int, width: int) -> torch.Tensor:
    """txt2img on an inpainting UNet: everything is 'masked' (mask 1) over a neutral grey image."""
    grey = torch.zeros(1, 3, height, width)
    return masked_image_cond(model, grey, 1.0).expand(batch, -1, -1, -1)


def masked_image_cond(model, images: torch.Tensor, mask_weight: float) -> torch.Tensor:
    """[mask, E(x_masked)] for an inpainting UNet with the whole image masked (generation.md §7.6):
    `x_masked = lerp(x, x·(1 − 1), w)` = x·(1 − w), images in [−1, 1], [B, 3, H, W]."""
    device = model.device_config.device
    vae = model.vae
    with torch.no_grad(), devices.on_device(vae, model.device_config):
        masked = torch.lerp(images, torch.zeros_like(images), mask_weight)
        latent = vae.encode(masked.to(device, next(vae.parameters()).dtype)).latent_dist.mode().float()
    latent = latent * model.vae_scaling_factor
    mask = torch.ones(latent.shape[0], 1, latent.shape[2], latent.shape[3], device=device)
    return torch.cat([mask, latent], dim=1)


def _image_cond(model, spec: PassSpec, batch: int, device):
    pix2pix = getattr(model, "is_pix2pix", False)
    if not model.is_inpainting and not pix2pix:
        return None
    if spec.image_cond is not None:
        return spec.image_cond.to(device)
    if pix2pix:  # txt2img on an instruct-pix2pix model: no image to follow
        return torch.zeros(batch, opt_C, spec.height // opt_f, spec.width // opt_f, device=device)
    return inpainting_image_cond(model, batch, spec.height, spec.width)


def _guidance(p, model, spec: PassSpec, device, control=None, cfg_scale=None):
    cond, uncond, used = get_conds(model, spec.prompts, spec.negatives, spec.cond_steps, spec.hires_steps,
                                   spec.width, spec.height)
    batch = len(spec.prompts)
    opts = shared.opts
    ids = uncond_ids = None
    if model.is_sdxl:
        ids = time_ids(model, spec.width, spec.height, batch, opts.sdxl_refiner_high_aesthetic_score)
        uncond_ids = time_ids(model, spec.width, spec.height, batch, opts.sdxl_refiner_low_aesthetic_score)
    guidance = Guidance(
        cond=cond, uncond=uncond, cfg_scale=p.cfg_scale if cfg_scale is None else cfg_scale,
        time_ids=None if ids is None else ids.to(device),
        uncond_time_ids=None if uncond_ids is None else uncond_ids.to(device),
        image_cond=_image_cond(model, spec, batch, device),
        s_min_uncond=p.s_min_uncond if p.s_min_uncond is not None else opts.s_min_uncond,
        s_min_uncond_all=opts.s_min_uncond_all, batch_cond_uncond=opts.batch_cond_uncond,
        image_cfg_scale=spec.image_cfg_scale if getattr(model, "is_pix2pix", False) else None,
        control=control)
    return guidance, used


def pass_sigmas(spec: PassSpec, schedule: DiscreteSchedule, model, p) -> torch.Tensor:
    """The sigmas this pass runs, recording the schedule's infotext keys on p."""
    opts = shared.opts
    total = spec.steps
    if spec.init_latent is not None and spec.fix_steps:  # run exactly `steps` of a longer schedule (§5 step 5)
        total = int(spec.steps / min(spec.denoising_strength, 0.999))
    sigmas, keys = sd_samplers.compute_sampler_sigmas(spec.sampler, spec.scheduler or "Automatic", total,
                                                      schedule, opts, model.is_sdxl)
    if spec.hires_steps is None:  # the hires pass writes its keys under Hires ... names
        p.extra_generation_params.update(keys)
    elif keys.get("Schedule type") != p.extra_generation_params.get("Schedule type"):
        p.extra_generation_params["Hires schedule type"] = keys.get("Schedule type")
    if spec.init_latent is not None and spec.fix_steps:
        sigmas = sigmas[-(spec.steps + 1):]
    elif spec.init_latent is not None:  # img2img: the last t_enc + 1 steps of `steps` (§7.3)
        t_enc = int(min(spec.denoising_strength, 0.999) * spec.steps)
        sigmas = sigmas[spec.steps - t_enc - 1:]
    return sigmas


def refiner_switch_index(sigmas: torch.Tensor, schedule: DiscreteSchedule, switch_at: float) -> int | None:
    """First index whose completed ratio (999 − t*)/1000 reaches switch_at (§6), or None."""
    if switch_at >= 1.0:
        return None
    table = schedule.sigmas.to(sigmas.device)
    for i, sigma in enumerate(sigmas[:-1]):
        t_star = int(torch.argmin((table - sigma).abs()))
        if (999 - t_star) / 1000 >= switch_at:
            return i if i > 0 else None
    return None


def run_pass(p, model, spec: PassSpec, seeds, subseeds) -> torch.Tensor:
    """Sample one batch through this pass; returns the final latents."""
    state = shared.state
    opts = shared.opts
    device = model.device_config.device
    schedule = model.noise_schedule(opts)
    p.extra_generation_params.update(schedule_settings_keys(opts))
    sigmas = pass_sigmas(spec, schedule, model, p)
    options = sd_samplers.solver_options(spec.sampler, p, opts)
    p.extra_generation_params.update(sd_samplers.infotext_options(spec.sampler, options, opts))

    latent_shape = (opt_C, spec.height // opt_f, spec.width // opt_f)
    noise = rng.ImageRNG(latent_shape, seeds, subseeds, p.subseed_strength,
                         p.seed_resize_from_h, p.seed_resize_from_w, source=opts.randn_source,
                         device=device, eta_noise_seed_delta=opts.eta_noise_seed_delta)
    control = getattr(p, "controlnet_hook", None)  # ControlNet units of this job (modules.controlnet)
    if control is not None:
        control.begin_pass(len(sigmas) - 1, hires=spec.hires_steps is not None)
    if spec.init_latent is None:
        factor, noise_keys = sd_samplers.initial_noise_multiplier(spec.sampler, sigmas, opts)
        p.extra_generation_params.update(noise_keys)
        first_noise = noise.first().to(device)
        x = first_noise * factor
        start = None if control is None else control.initial_latent(first_noise, schedule.alphas_cumprod)
        if start is not None:  # inpaint_only+lama (controlnet.md §3.8)
            x = start
    else:
        multiplier = opts.initial_noise_multiplier if spec.noise_multiplier is None else spec.noise_multiplier
        start_noise = noise.first().to(device) if spec.start_noise is None else spec.start_noise.to(device)
        x = spec.init_latent.to(device) + start_noise * sigmas[0] * multiplier
        if opts.img2img_extra_noise > 0:  # §7.3: not scaled by σ
            p.extra_generation_params["Extra noise"] = opts.img2img_extra_noise
            from modules import script_callbacks  # extensions may replace the extra noise (on_extra_noise)
            params = script_callbacks.ExtraNoiseParams(start_noise, spec.init_latent.to(device), x)
            script_callbacks.extra_noise_callback(params)
            x = x + params.noise * multiplier * opts.img2img_extra_noise
        first_noise = start_noise
    sigmas = sigmas.to(device)
    blend = None
    if spec.mask is not None:
        blend = LatentBlend(p, spec.init_latent.to(device), spec.mask.to(device), spec.nmask.to(device))

    guidance, used = _guidance(p, model, spec, device, control)
    p.record_embeddings(used)
    if getattr(p, "scripts", None) is not None:  # extension hook, before every sampling pass
        p.scripts.process_before_every_sampling(p, x=x, noise=first_noise, c=guidance.cond, uc=guidance.uncond)
    state.sampling_steps = len(sigmas) - 1
    segments = [(model, sigmas, guidance)]
    switch = refiner_switch_index(sigmas, schedule, spec.refiner_switch_at) if spec.refiner else None
    if switch is not None:
        segments = [(model, sigmas[:switch + 1], guidance), (None, sigmas[switch:], None)]

    step_offset, counter = 0, 0
    for segment_model, segment_sigmas, segment_guidance in segments:
        if segment_model is None:  # the refiner takes over with the same x (§6)
            segment_model = shared.model_holder.switch_to(spec.refiner)
            segment_guidance, used = _guidance(p, segment_model, spec, device)
            p.record_embeddings(used)
            p.extra_generation_params["Refiner"] = spec.refiner.short_title
            p.extra_generation_params["Refiner switch at"] = spec.refiner_switch_at
            schedule = segment_model.noise_schedule(opts)
        denoiser = CFGDenoiser(segment_model.unet, schedule, segment_model.parameterization, segment_guidance,
                               step_callback=state.check_stop)
        denoiser.step = counter  # the prompt-schedule counter is not reset by the refiner
        denoiser.mask_blend = blend
        denoiser.mask_before_denoising = spec.sampler.kind == sd_samplers.TIMESTEPS
        on_step = _progress_callback(segment_model, step_offset, control)
        denoiser.total_steps = state.sampling_steps  # for the cfg_denoiser callbacks
        with devices.on_device(segment_model.unet, segment_model.device_config):
            x = sd_samplers.run_sampler(spec.sampler, denoiser, x, segment_sigmas, options, noise.noise_sampler,
                                        seeds, callback=on_step, schedule=schedule,
                                        disable=shared.cmd_opts.disable_console_progressbars or None)
        if denoiser.skipped_uncond:
            p.extra_generation_params["NGMS"] = guidance.s_min_uncond
            if guidance.s_min_uncond_all:
                p.extra_generation_params["NGMS all steps"] = "True"
        step_offset += len(segment_sigmas) - 1
        counter = denoiser.step
    if blend is not None:  # the final latent once more (§7.4 step 6)
        x = blend(x)
    return x


def _progress_callback(model, offset: int, control=None):
    state = shared.state
    opts = shared.opts
    every = opts.show_progress_every_n_steps

    def on_step(info):
        if control is not None:
            control.step_done(offset + info["i"])
        state.sampling_step = offset + info["i"] + 1
        state.current_latent = info["denoised"]
        # rendered here, on the worker, not by the reader: torch work on a second thread slows every
        # later step (a second OpenMP team; see bench/bench_utils.py)
        if opts.live_previews_enable and every > 0 and state.sampling_step % every == 0 and state.preview_wanted():
            state.set_current_image(previews.preview(model, info["denoised"], opts.show_progress_type,
                                                     opts.show_progress_grid))
    return on_step
