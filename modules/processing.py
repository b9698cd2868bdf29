"""Processing objects and the generation loop, under A1111's names (extensions use them).

`process_images(p)` runs one whole job; it must be called on the job queue's worker (the UI and the
API submit it there). Settings overridden by `p.override_settings` apply to this job only.
"""
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules import (conditioning, devices, extra_networks, images, infotext_utils,
                     previews, prompt_parser, rng, sd_samplers, sd_vae, shared, styles)
from modules.denoiser import CFGDenoiser, Guidance
from modules.noise_schedule import DiscreteSchedule
from modules.state import Interrupted

opt_C = 4  # latent channels (A1111's name)
opt_f = 8  # VAE down-scaling factor (A1111's name)


class GenerationError(RuntimeError):
    """A job that cannot run or went wrong; the message is meant for the user."""


@dataclass
class StableDiffusionProcessing:
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict = field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict = field(default_factory=dict)
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    extra_generation_params: dict = field(default_factory=dict)
    scripts: Any = None
    script_args: list = field(default_factory=list)
    user: str | None = None

    # filled while the job runs
    all_prompts: list[str] = field(default_factory=list)
    all_negative_prompts: list[str] = field(default_factory=list)
    all_seeds: list[int] = field(default_factory=list)
    all_subseeds: list[int] = field(default_factory=list)
    iteration: int = 0
    batch_index: int = 0
    sd_model: Any = None
    job_timestamp: str = ""

    is_txt2img = False
    outdir_setting = "outdir_txt2img_samples"

    def comment(self, text: str) -> None:
        """A note for the user about this job (shown under the result, API info.comments)."""
        self.comments[text] = 1

    @property
    def sd_model_name(self):
        return self.sd_model.sd_checkpoint_info.name_for_extra if self.sd_model else None

    @property
    def sd_model_hash(self):
        return self.sd_model.sd_model_hash if self.sd_model else None


@dataclass
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstphase_width: int = 0
    firstphase_height: int = 0

    is_txt2img = True


@dataclass
class Processed:
    p: StableDiffusionProcessing
    images: list
    seed: int
    info: str
    subseed: int | None = None
    all_prompts: list = field(default_factory=list)
    all_negative_prompts: list = field(default_factory=list)
    all_seeds: list = field(default_factory=list)
    all_subseeds: list = field(default_factory=list)
    infotexts: list = field(default_factory=list)
    comments: str = ""
    index_of_first_image: int = 0
    interrupted: bool = False

    @property
    def prompt(self):
        return self.all_prompts[0] if self.all_prompts else self.p.prompt

    @property
    def negative_prompt(self):
        return self.all_negative_prompts[0] if self.all_negative_prompts else self.p.negative_prompt

    def js(self) -> str:
        p = self.p
        vae_name, vae_hash = sd_vae.vae_name_and_hash(p.sd_model) if p.sd_model else (None, None)
        data = {
            "prompt": self.prompt,
            "all_prompts": self.all_prompts,
            "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed,
            "all_seeds": self.all_seeds,
            "subseed": self.subseed,
            "all_subseeds": self.all_subseeds,
            "subseed_strength": p.subseed_strength,
            "width": p.width,
            "height": p.height,
            "sampler_name": p.sampler_name,
            "cfg_scale": p.cfg_scale,
            "steps": p.steps,
            "batch_size": p.batch_size,
            "restore_faces": bool(p.restore_faces),
            "face_restoration_model": None,
            "sd_model_name": p.sd_model_name,
            "sd_model_hash": p.sd_model_hash,
            "sd_vae_name": vae_name,
            "sd_vae_hash": vae_hash,
            "seed_resize_from_w": p.seed_resize_from_w,
            "seed_resize_from_h": p.seed_resize_from_h,
            "denoising_strength": p.denoising_strength,
            "extra_generation_params": p.extra_generation_params,
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": p.styles,
            "job_timestamp": p.job_timestamp,
            "clip_skip": shared.opts.CLIP_stop_at_last_layers,
            "is_using_inpainting_conditioning": bool(p.sd_model and p.sd_model.is_inpainting),
            "version": infotext_utils.version_string(),
            "comments": self.comments,
        }
        return json.dumps(data, default=lambda _: None, ensure_ascii=False)


def create_infotext(p: StableDiffusionProcessing, all_prompts, all_seeds, all_subseeds, comments=None,
                    iteration=0, position_in_batch=0, use_main_prompt=False, index=None,
                    all_negative_prompts=None) -> str:
    """The infotext of one image (infotext.md §3), under A1111's name and signature."""
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts
    opts = shared.opts
    model = p.sd_model
    vae_name, vae_hash = sd_vae.vae_name_and_hash(model) if model else (None, None)
    clip_skip = opts.CLIP_stop_at_last_layers
    params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": p.scheduler or "Automatic",  # the resolved label comes in extra params
        "CFG scale": p.cfg_scale,
        "Seed": all_seeds[index] if all_seeds else p.seed,
        "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if opts.add_model_hash_to_info else None,
        "Model": p.sd_model_name if opts.add_model_name_to_info else None,
        "VAE hash": vae_hash if opts.add_vae_hash_to_info else None,
        "VAE": vae_name if opts.add_vae_name_to_info else None,
        "Variation seed": all_subseeds[index] if p.subseed_strength else None,
        "Variation seed strength": p.subseed_strength or None,
        "Seed resize from": (f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
                             if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else None),
        "Denoising strength": p.denoising_strength if not p.is_txt2img else None,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "RNG": opts.randn_source if opts.randn_source != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
        **p.extra_generation_params,
        "Version": infotext_utils.version_string() if opts.add_version_to_infotext else None,
        "User": p.user if opts.add_user_name_to_info and p.user else None,
    }
    prompt = p.prompt if use_main_prompt else all_prompts[index]
    negative = p.negative_prompt if use_main_prompt else all_negative_prompts[index]
    return infotext_utils.build_infotext(prompt, negative, params)


def _validate(p: StableDiffusionProcessing) -> None:
    problems = []
    if p.steps < 1:
        problems.append("steps must be at least 1")
    if p.batch_size < 1 or p.n_iter < 1:
        problems.append("batch size and batch count must be at least 1")
    if p.width < 8 or p.height < 8:
        problems.append("width and height must be at least 8")
    if problems:
        raise GenerationError("; ".join(problems))


def _time_ids(p, batch: int) -> torch.Tensor:
    """SDXL size conditioning: original size, crop top-left, target size (h, w order)."""
    opts = shared.opts
    ids = [p.height, p.width, opts.sdxl_crop_top, opts.sdxl_crop_left, p.height, p.width]
    return torch.tensor([ids] * batch, dtype=torch.float32)


def _inpainting_image_cond(model, batch: int, height: int, width: int) -> torch.Tensor:
    """txt2img on an inpainting UNet: everything is 'masked' (mask 1) over a neutral grey image."""
    device = model.device_config.device
    vae = model.vae
    with torch.no_grad(), devices.on_device(vae, model.device_config):
        grey = torch.zeros(1, 3, height, width, device=device, dtype=next(vae.parameters()).dtype)
        latent = vae.encode(grey).latent_dist.mode().float() * model.vae_scaling_factor
    mask = torch.ones(1, 1, latent.shape[2], latent.shape[3], device=device)
    return torch.cat([mask, latent], dim=1).expand(batch, -1, -1, -1)


@torch.no_grad()
def decode_latents(model, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images in [0, 1], [B, 3, H, W] float32."""
    vae = model.vae
    with devices.on_device(vae, model.device_config):
        dtype = next(vae.parameters()).dtype
        decoded = vae.decode((latents / model.vae_scaling_factor).to(dtype), return_dict=False)[0].float()
    if model.device_config.nan_check and torch.isnan(decoded).any():
        raise GenerationError("The VAE produced NaN values (a black image). Try --no-half-vae, "
                              "or select another VAE in the settings.")
    return ((decoded + 1) / 2).clamp(0, 1)


def to_pil(samples: torch.Tensor) -> list[Image.Image]:
    arrays = (samples.cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arrays]


@contextlib.contextmanager
def seamless_tiling(model, enabled: bool):
    """Tiling: every convolution of the UNet and VAE wraps around the image edges for this job."""
    if not enabled:
        yield
        return
    convs = [m for root in (model.unet, model.vae) for m in root.modules() if isinstance(m, torch.nn.Conv2d)]
    previous = [m.padding_mode for m in convs]
    for conv in convs:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in zip(convs, previous):
            conv.padding_mode = mode


def strip_comments(text: str) -> str:
    """prompt-syntax.md §3: a line starting with # goes, else everything from # to the line end."""
    return "\n".join("" if line.startswith("#") else line.split("#", 1)[0] for line in text.split("\n"))


class _JobEncoder:
    """What prompt_parser calls to encode texts: our encoder, collecting the embeddings used."""

    def __init__(self, model, used_embeddings: dict):
        self.model = model
        self.used_embeddings = used_embeddings

    def get_learned_conditioning(self, texts):
        return conditioning.encode(self.model, list(texts),
                                   is_negative=getattr(texts, "is_negative_prompt", False),
                                   used_embeddings=self.used_embeddings)


def schedule_steps(p, sampler: sd_samplers.SamplerData) -> int:
    """Steps the prompt schedules are built for: doubled for second-order samplers (§7)."""
    return p.steps * 2 if sampler.second_order else p.steps


def _cond_cache_key(p, prompts, steps, is_negative: bool) -> tuple:
    opts = shared.opts
    db = getattr(p.sd_model, "embedding_db", None)
    # which embeddings exist (and which files they came from) changes what a prompt encodes to
    embeddings = tuple((name, e.hash) for name, e in db.word_embeddings.items()) if db else ()
    return (is_negative, tuple(prompts), steps, opts.CLIP_stop_at_last_layers, opts.emphasis,
            opts.comma_padding_backtrack, opts.sdxl_clip_l_skip, embeddings, p.width, p.height)


def get_conds(p, model, prompts, negatives, steps):
    """(multicond for the prompts, schedules for the negatives), reusing the last job's conds
    when nothing that shapes them changed (setting persistent_cond_cache)."""
    used = {}
    encoder = _JobEncoder(model, used)
    cache = model.cond_cache if shared.opts.persistent_cond_cache else {}
    key_c = _cond_cache_key(p, prompts, steps, False)
    key_uc = _cond_cache_key(p, negatives, steps, True)
    with contextlib.ExitStack() as stack:  # --medvram: text encoders on the device only meanwhile
        if key_c not in cache or key_uc not in cache:
            for encoder_module in model.text_encoders:
                stack.enter_context(devices.on_device(encoder_module, model.device_config))
        if key_c not in cache:
            cache[key_c] = (prompt_parser.get_multicond_learned_conditioning(encoder, prompts, steps), used.copy())
        if key_uc not in cache:
            negative = prompt_parser.SdConditioning(negatives, is_negative_prompt=True)
            cache[key_uc] = (prompt_parser.get_learned_conditioning(encoder, negative, steps), dict(used))
    for key in list(cache):  # A1111 keeps only the last conds
        if key not in (key_c, key_uc):
            del cache[key]
    (cond, used_c), (uncond, used_uc) = cache[key_c], cache[key_uc]
    return cond, uncond, {**used_c, **used_uc}


def _sample_batch(p, model, prompts, negatives, seeds, subseeds) -> torch.Tensor:
    """Run the sampler for one batch; returns the final latents."""
    state = shared.state
    opts = shared.opts
    device = model.device_config.device
    sampler = sd_samplers.find_sampler(p.sampler_name)
    cond, uncond, used_embeddings = get_conds(p, model, prompts, negatives, schedule_steps(p, sampler))
    _record_embeddings(p, used_embeddings)
    schedule = DiscreteSchedule(model.alphas_cumprod)
    sigmas, sigma_keys = sd_samplers.compute_sampler_sigmas(sampler, p.scheduler or "Automatic", p.steps,
                                                            schedule, opts, model.is_sdxl)
    factor, noise_keys = sd_samplers.initial_noise_multiplier(sampler, sigmas, opts)
    options = sd_samplers.solver_options(sampler, p, opts)
    p.extra_generation_params.update({**sigma_keys, **noise_keys,
                                      **sd_samplers.infotext_options(sampler, options, opts)})
    sigmas = sigmas.to(device)

    latent_shape = (opt_C, p.height // opt_f, p.width // opt_f)
    noise = rng.ImageRNG(latent_shape, seeds, subseeds, p.subseed_strength,
                         p.seed_resize_from_h, p.seed_resize_from_w,
                         source=opts.randn_source, device=device,
                         eta_noise_seed_delta=opts.eta_noise_seed_delta)
    x = noise.first().to(device) * factor

    guidance = Guidance(
        cond=cond, uncond=uncond, cfg_scale=p.cfg_scale,
        time_ids=_time_ids(p, len(prompts)).to(device) if model.is_sdxl else None,
        image_cond=(_inpainting_image_cond(model, len(prompts), p.height, p.width)
                    if model.is_inpainting else None))
    denoiser = CFGDenoiser(model.unet, schedule, model.parameterization, guidance,
                           step_callback=state.check_stop)
    state.sampling_steps = p.steps

    every = opts.show_progress_every_n_steps

    def on_step(info):
        state.sampling_step = info["i"] + 1
        state.current_latent = info["denoised"]
        if opts.live_previews_enable and every > 0 and state.sampling_step % every == 0:
            state.set_current_image(previews.preview(model, info["denoised"], opts.show_progress_type,
                                                     opts.show_progress_grid))

    with devices.on_device(model.unet, model.device_config):
        return sd_samplers.run_sampler(sampler, denoiser, x, sigmas, options, noise.noise_sampler, seeds,
                                       callback=on_step, schedule=schedule,
                                       disable=shared.cmd_opts.disable_console_progressbars or None)


def _record_embeddings(p, used: dict) -> None:
    """Infotext `TI hashes`: "name: hash12, ..." of the embeddings the prompts used."""
    if not used or not shared.opts.textual_inversion_add_hashes_to_infotext:
        return
    known = dict(item.split(": ", 1) for item in p.extra_generation_params.get("TI hashes", "").split(", ") if item)
    for name, embedding in used.items():
        shorthash = getattr(embedding, "shorthash", None)
        if shorthash:
            known[name.replace(":", "").replace(",", "")] = shorthash
    if known:
        p.extra_generation_params["TI hashes"] = ", ".join(f"{k}: {v}" for k, v in known.items())


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run a whole job: settings overrides for this job only, then every batch."""
    overrides = {k: v for k, v in (p.override_settings or {}).items()}
    with shared.opts.override(overrides):
        return _process_images_inner(p)


def _process_images_inner(p: StableDiffusionProcessing) -> Processed:
    _validate(p)
    state = shared.state
    opts = shared.opts
    p.width, p.height = p.width - p.width % 8, p.height - p.height % 8
    p.sd_model = shared.model_holder.ensure_for_job()
    sampler = sd_samplers.find_sampler(p.sampler_name)
    p.sampler_name = sampler.name
    p.job_timestamp = state.job_timestamp if state.job else time.strftime("%Y%m%d%H%M%S")
    if p.tiling is None:
        p.tiling = opts.tiling
    with seamless_tiling(p.sd_model, p.tiling):
        return _generate(p)


def _generate(p: StableDiffusionProcessing) -> Processed:
    state = shared.state
    opts = shared.opts

    count = p.batch_size * p.n_iter
    seed = rng.get_fixed_seed(p.seed)
    subseed = rng.get_fixed_seed(p.subseed)
    p.all_seeds, p.all_subseeds = rng.get_image_seeds(seed, subseed, p.subseed_strength, count)
    prompt, negative = p.prompt, p.negative_prompt
    if p.styles:
        database = styles.get_database()
        unknown = [name for name in p.styles if name not in database.styles]
        if unknown:
            raise GenerationError(f"Style not found: {', '.join(unknown)}")
        prompt = database.apply_styles_to_prompt(prompt, p.styles)
        negative = database.apply_negative_styles_to_prompt(negative, p.styles)
    if opts.enable_prompt_comments:
        prompt, negative = strip_comments(prompt), strip_comments(negative)
    p.all_prompts = [prompt] * count
    p.all_negative_prompts = [negative] * count
    p.seed, p.subseed = seed, subseed

    output_images, infotexts = [], []
    state.job_count = p.n_iter
    interrupted = False
    for n in range(p.n_iter):
        p.iteration = n
        if state.interrupted:
            interrupted = True
            break
        state.job = f"Batch {n + 1} out of {p.n_iter}"
        batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
        prompts, network_data = extra_networks.parse_prompts(p.all_prompts[batch])
        negatives, _ = extra_networks.parse_prompts(p.all_negative_prompts[batch])
        if not p.disable_extra_networks:
            extra_networks.activate(p, network_data)
        try:
            latents = _sample_batch(p, p.sd_model, prompts, negatives,
                                    p.all_seeds[batch], p.all_subseeds[batch])
        except Interrupted:
            if state.interrupted:
                interrupted = True
                break
            state.nextjob()  # skip: abandon this batch, go on with the next
            continue
        if p.sd_model.device_config.nan_check and torch.isnan(latents).any():
            raise GenerationError("The model produced NaN values. Try --no-half or --precision full, "
                                  "or another checkpoint.")
        for i, image in enumerate(to_pil(decode_latents(p.sd_model, latents))):
            p.batch_index = i
            text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds,
                                   iteration=n, position_in_batch=i)
            if not p.do_not_save_samples and opts.samples_save:
                images.save_image(image, p.outpath_samples or opts.outdir_samples or getattr(opts, p.outdir_setting),
                                  "", p.all_seeds[batch][i], p.all_prompts[batch][i],
                                  opts.samples_format, info=text, p=p)
            output_images.append(image)
            infotexts.append(text)
        state.nextjob()

    if infotexts and not shared.cmd_opts.no_prompt_history:
        images.write_params_txt(infotexts[0])
    index_of_first_image = 0
    if output_images:
        grid_text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, use_main_prompt=True)
        grid, plan = images.make_job_grid(p, output_images, grid_text)
        if plan.show:
            output_images.insert(0, grid)
            infotexts.insert(0, grid_text)
            index_of_first_image = 1
    return Processed(
        p=p, images=output_images, seed=p.all_seeds[0], subseed=p.all_subseeds[0],
        info=infotexts[0] if infotexts else "", index_of_first_image=index_of_first_image,
        all_prompts=p.all_prompts,
        all_negative_prompts=p.all_negative_prompts, all_seeds=p.all_seeds,
        all_subseeds=p.all_subseeds, infotexts=infotexts, interrupted=interrupted,
        comments="\n".join(list(p.comments) + (["Interrupted: only finished images are returned"]
                                                 if interrupted else [])))
