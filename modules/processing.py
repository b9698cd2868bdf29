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

from modules import (admission, devices, extra_networks, face_restoration, hires, images, infotext_utils, rng,
                     sd_models, sd_samplers, sd_vae, shared, styles)
from modules.job_errors import GenerationError  # noqa: F401 (defined one floor down; A1111 name here)
from modules.vae_decode import VaeNaNError, decode_latents  # noqa: F401 (one floor down, for previews)
from modules import sampling_pass
from modules.controlnet import job as controlnet_job
from modules.img2img import mask_outputs
from modules.sampling_pass import PassSpec, opt_C, opt_f, run_pass  # noqa: F401 (A1111 names)
from modules.state import Interrupted



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
    is_api: bool = False
    main_prompt: str | None = None           # the first prompt (grid infotext); set at job start
    main_negative_prompt: str | None = None
    controlnet_units: list = field(default_factory=list)  # modules.controlnet.units.ControlNetUnit

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

    def record_embeddings(self, used: dict) -> None:
        """Infotext `TI hashes`: "name: hash12, ..." of the embeddings the prompts used."""
        if not used or not shared.opts.textual_inversion_add_hashes_to_infotext:
            return
        known = dict(item.split(": ", 1)
                     for item in self.extra_generation_params.get("TI hashes", "").split(", ") if item)
        for name, embedding in used.items():
            key = name.replace(":", "").replace(",", "")
            bundled_in = getattr(embedding, "bundled_in", None)
            if bundled_in is not None:  # bundled in a LoRA: its name as written, or empty (networks.md §3.11)
                known[key] = bundled_in if shared.opts.lora_bundled_ti_to_infotext else ""
            elif getattr(embedding, "shorthash", None):
                known[key] = embedding.shorthash
        if known:
            self.extra_generation_params["TI hashes"] = ", ".join(f"{k}: {v}" for k, v in known.items())

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
    firstpass_image: Any = None  # PIL image: hires fix starts from it instead of sampling a first pass

    is_txt2img = True


@dataclass
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """img2img and inpainting (generation.md §7); the preparation lives in modules/img2img/."""
    denoising_strength: float | None = 0.75
    init_images: list = field(default_factory=list)   # PIL images
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: Any = None                                  # PIL image, white = repaint
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None                      # sets both when given
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: Any = None
    force_task_id: str | None = None

    # filled while the job runs
    image_mask: Any = None
    input_mask: Any = None  # the mask as given (init replaces image_mask and mask); ControlNet reads it
    init_latent: Any = None
    nmask: Any = None
    image_conditioning: Any = None
    overlay_images: list = field(default_factory=list)
    overlay_sources: list = field(default_factory=list)  # init pixels behind each overlay (soft inpainting)
    mask_for_overlay: Any = None
    mask_sources: Any = None  # this image's mask and pre-overlay picture (img2img.mask_outputs)
    paste_to: tuple | None = None
    color_corrections: list | None = None

    is_txt2img = False
    outdir_setting = "outdir_img2img_samples"

    def __post_init__(self):
        if self.mask_blur is not None:
            self.mask_blur_x = self.mask_blur_y = self.mask_blur
        self.image_mask = self.mask

    def fit_batch_size(self) -> None:
        """One init image serves the whole batch; k ≤ batch_size images make a batch of k
        (api.md §8.2)."""
        if not self.init_images:
            raise GenerationError("img2img needs an init image")
        if len(self.init_images) > 1:
            if len(self.init_images) > self.batch_size:
                raise GenerationError(f"bad number of images passed: {len(self.init_images)} init images "
                                      f"for a batch size of {self.batch_size}")
            self.batch_size = len(self.init_images)

    def init(self, all_prompts, all_seeds, all_subseeds) -> None:
        """Prepare init latent, masks and conditioning once for the job (A1111's order)."""
        from modules.img2img import job
        job.init(self, all_seeds)

    def sample(self, model, prompts, negatives, seeds, subseeds):
        """One batch: the img2img pass from the init latent."""
        from modules.img2img import job
        return job.sample(self, model, prompts, negatives, seeds, subseeds)

    def finish_image(self, image, index: int):
        """Colour correction and the overlay, after decoding (and after face restoration)."""
        from modules.img2img import job
        return job.finish_image(self, image, index)


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
            "face_restoration_model": getattr(p, "face_restorer", None),
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
        "Image CFG scale": getattr(p, "image_cfg_scale", None) if getattr(model, "is_pix2pix", False) else None,
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
        "Denoising strength": p.denoising_strength if (not p.is_txt2img or getattr(p, "enable_hr", False)) else None,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "RNG": opts.randn_source if opts.randn_source != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
        **p.extra_generation_params,
        "Version": infotext_utils.version_string() if opts.add_version_to_infotext else None,
        "User": p.user if opts.add_user_name_to_info and p.user else None,
    }
    prompt = (p.main_prompt if p.main_prompt is not None else p.prompt) if use_main_prompt else all_prompts[index]
    negative = (p.main_negative_prompt if p.main_negative_prompt is not None else p.negative_prompt) \
        if use_main_prompt else all_negative_prompts[index]
    return infotext_utils.build_infotext(prompt, negative, params)


def _validate(p: StableDiffusionProcessing) -> None:
    problems = []
    if p.steps < 1:
        problems.append("steps must be at least 1")
    if p.batch_size < 1 or p.n_iter < 1:
        problems.append("batch size and batch count must be at least 1")
    if p.width < 8 or p.height < 8:
        problems.append("width and height must be at least 8")
    if not p.is_txt2img and not p.init_images:
        problems.append("img2img needs an init image")
    if not 0 <= (p.subseed_strength or 0) <= 1:
        problems.append(f"variation strength must be between 0 and 1, got {p.subseed_strength}")
    uses_denoising = not p.is_txt2img or getattr(p, "enable_hr", False)
    if uses_denoising and not 0 <= (p.denoising_strength or 0) <= 1:
        problems.append(f"denoising strength must be between 0 and 1, got {p.denoising_strength}")
    if getattr(p, "enable_hr", False) and (p.hr_second_pass_steps or 0) < 0:
        problems.append(f"hires steps cannot be negative, got {p.hr_second_pass_steps}")
    restorer = _face_restorer(p)
    if restorer:
        problem = face_restoration.generation_problem(restorer)
        if problem:  # a job that silently skipped it would look like a failed restoration
            problems.append(f"{problem}; or turn off restore_faces / the 'Face restoration' setting (in the UI: "
                            "remove it from Override settings)")
    if problems:
        raise GenerationError("; ".join(problems))


def _face_restorer(p) -> str | None:
    """The face restorer this job runs (restore_faces, else the face_restoration setting), or None."""
    wanted = shared.opts.face_restoration if p.restore_faces is None else p.restore_faces
    return shared.opts.face_restoration_model if wanted else None


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


def schedule_steps(steps: int, sampler: sd_samplers.SamplerData) -> int:
    """Steps the prompt schedules are built for: doubled for second-order samplers (§7)."""
    return steps * 2 if sampler.second_order else steps


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run a whole job: settings overrides for this job only, then every batch."""
    if p.scripts is not None:  # extension hook: before the overrides apply
        p.scripts.before_process(p)
    overrides = {k: v for k, v in (p.override_settings or {}).items()}
    with shared.opts.override(overrides):
        return _process_images_inner(p)


def _process_images_inner(p: StableDiffusionProcessing) -> Processed:
    _validate(p)
    state = shared.state
    opts = shared.opts
    p.face_restorer = _face_restorer(p)
    if p.face_restorer:
        p.extra_generation_params["Face restoration"] = p.face_restorer
    p.width, p.height = p.width - p.width % 8, p.height - p.height % 8
    p.sd_model = shared.model_holder.ensure_for_job()
    base = p.sd_model
    p.sampler = sd_samplers.find_sampler(p.sampler_name)
    p.sampler_name = p.sampler.name
    p.refiner = _optional_checkpoint(p.refiner_checkpoint, "Use same checkpoint")
    p.job_timestamp = state.job_timestamp if state.job else time.strftime("%Y%m%d%H%M%S")
    if p.tiling is None:
        p.tiling = opts.tiling
    if getattr(p, "enable_hr", False):
        _setup_hires(p)
    admission.check(p, p.sd_model)  # issue 14: refuse a job that cannot fit, before it allocates
    try:
        with admission.out_of_memory_guard(), seamless_tiling(p.sd_model, p.tiling):
            return _generate(p)
    finally:
        if shared.model_holder.sd_model is not base:  # hires checkpoint / refiner: back to the main one
            shared.model_holder.switch_to(base.sd_checkpoint_info)


def _optional_checkpoint(name, same_label) -> "sd_models.CheckpointInfo | None":
    if not name or name in ("None", same_label):
        return None
    return sd_models.find_checkpoint(name)


def _per_image(value, count: int) -> list:
    """A value for every image: a list (scripts may give one per image) is cycled to `count`."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise GenerationError("an empty list of prompts or seeds was given")
        return [value[i % len(value)] for i in range(count)]
    return None


def _fill_job_lists(p, count: int) -> None:
    """all_prompts / all_negative_prompts / all_seeds / all_subseeds; p.prompt, p.negative_prompt
    and p.seed may be lists with one entry per image (extensions.md §4)."""
    seeds = _per_image(p.seed, count)
    if seeds is not None:
        p.all_seeds = [rng.get_fixed_seed(s) for s in seeds]
        subseed = rng.get_fixed_seed(p.subseed if not isinstance(p.subseed, list) else p.subseed[0])
        p.all_subseeds = [subseed + i for i in range(count)]
        seed = p.all_seeds[0]
    else:
        seed, subseed = rng.get_fixed_seed(p.seed), rng.get_fixed_seed(p.subseed)
        p.all_seeds, p.all_subseeds = rng.get_image_seeds(seed, subseed, p.subseed_strength, count)
    prompts = _per_image(p.prompt, count) or [p.prompt] * count
    negatives = _per_image(p.negative_prompt, count) or [p.negative_prompt] * count
    if len(set(prompts)) == 1 and len(set(negatives)) == 1:
        prompt, negative = _prepare_prompts(p, prompts[0], negatives[0])
        p.all_prompts, p.all_negative_prompts = [prompt] * count, [negative] * count
    else:
        pairs = [_prepare_prompts(p, a, b) for a, b in zip(prompts, negatives)]
        p.all_prompts, p.all_negative_prompts = [a for a, _ in pairs], [b for _, b in pairs]
    p.main_prompt, p.main_negative_prompt = p.all_prompts[0], p.all_negative_prompts[0]
    p.seed, p.subseed = seed, subseed


def _prepare_prompts(p, prompt: str, negative: str) -> tuple[str, str]:
    """Styles, then comments (prompt-syntax.md §1 stages 1-2)."""
    if p.styles:
        database = styles.get_database()
        unknown = [name for name in p.styles if name not in database.styles]
        if unknown:
            raise GenerationError(f"Style not found: {', '.join(unknown)}")
        prompt = database.apply_styles_to_prompt(prompt, p.styles)
        negative = database.apply_negative_styles_to_prompt(negative, p.styles)
    if shared.opts.enable_prompt_comments:
        prompt, negative = strip_comments(prompt), strip_comments(negative)
    return prompt, negative


MAX_HIRES_SIDE = 8192  # the API's limit for the first pass too


def _setup_hires(p) -> None:
    """Hires fix settings resolved at job start, and their infotext keys in A1111's order."""
    if p.firstphase_width or p.firstphase_height:  # pre-2023 API: width/height are the final size
        p.hr_resize_x, p.hr_resize_y = p.width, p.height
        p.width = p.firstphase_width or p.width
        p.height = p.firstphase_height or p.height
    if p.denoising_strength is None:
        p.denoising_strength = 0.7  # the UI default; A1111 fails on null here (api.md §8.7)
    try:
        p.hr_upscaler = hires.check_upscaler(p.hr_upscaler)
    except (hires.UnknownUpscaler, hires.UpscalerUnavailable) as e:
        raise GenerationError(str(e)) from None
    p.hr_target = hires.hires_target(p.width, p.height, p.hr_scale, p.hr_resize_x, p.hr_resize_y)
    if not 8 <= min(p.hr_target.width, p.hr_target.height) <= max(p.hr_target.width, p.hr_target.height) \
            <= MAX_HIRES_SIDE:
        raise GenerationError(f"Hires fix would sample at {p.hr_target.width}x{p.hr_target.height}; each side "
                              f"must be between 8 and {MAX_HIRES_SIDE} (lower the upscale factor or resize size)")
    p.hr_checkpoint = _optional_checkpoint(p.hr_checkpoint_name, "Use same checkpoint")
    p.hr_sampler = sd_samplers.find_sampler(p.hr_sampler_name) \
        if p.hr_sampler_name and p.hr_sampler_name != "Use same sampler" else p.sampler
    p.hr_scheduler_label = p.hr_scheduler if p.hr_scheduler and p.hr_scheduler != "Use same scheduler" \
        else p.scheduler
    first = (lambda v: v[0] if isinstance(v, (list, tuple)) and v else v)  # scripts may give lists
    hr_prompt = p.hr_prompt or first(p.prompt)
    hr_negative = p.hr_negative_prompt or first(p.negative_prompt)
    p.hr_prompt_text, p.hr_negative_text = _prepare_prompts(p, hr_prompt, hr_negative)

    params = p.extra_generation_params
    if p.hr_checkpoint is not None:
        params["Hires checkpoint"] = p.hr_checkpoint.short_title
    if p.hr_sampler is not p.sampler:
        params["Hires sampler"] = p.hr_sampler.name
    if p.hr_prompt and p.hr_prompt != p.prompt:
        params["Hires prompt"] = p.hr_prompt_text
    if p.hr_negative_prompt and p.hr_negative_prompt != p.negative_prompt:
        params["Hires negative prompt"] = p.hr_negative_text
    schedule = p.sd_model.noise_schedule(shared.opts)
    labels = [sd_samplers.compute_sampler_sigmas(sampler, label or "Automatic", 1, schedule, shared.opts,
                                                 p.sd_model.is_sdxl)[1]["Schedule type"]
              for sampler, label in ((p.sampler, p.scheduler), (p.hr_sampler, p.hr_scheduler_label))]
    if labels[0] != labels[1]:
        params["Hires schedule type"] = labels[1]
    params.update(p.hr_target.infotext)
    if p.hr_second_pass_steps:
        params["Hires steps"] = p.hr_second_pass_steps
    if p.hr_upscaler:
        params["Hires upscaler"] = p.hr_upscaler


def _refiner_for(p, hires_pass: bool):
    """The refiner for this pass (setting hires_fix_refiner_pass decides with hires fix on)."""
    if p.refiner is None:
        return None
    if not getattr(p, "enable_hr", False):
        return p.refiner
    where = shared.opts.hires_fix_refiner_pass
    if where != "second pass":
        p.extra_generation_params["Hires refiner"] = where
    wanted = ("second pass", "both passes") if hires_pass else ("first pass", "both passes")
    return p.refiner if where in wanted else None


def _first_pass(p, prompts, negatives) -> PassSpec:
    return PassSpec(sampler=p.sampler, scheduler=p.scheduler, steps=p.steps, width=p.width, height=p.height,
                    prompts=prompts, negatives=negatives, cond_steps=schedule_steps(p.steps, p.sampler),
                    refiner=_refiner_for(p, False), refiner_switch_at=p.refiner_switch_at or 1.0)


@torch.no_grad()
def encode_images(model, pil_images, seeds) -> torch.Tensor:
    """Images -> latents: a sample of the VAE's Gaussian, drawn from the image's seed (§3.8)."""
    device = model.device_config.device
    vae = model.vae
    latents = []
    with devices.on_device(vae, model.device_config):
        dtype = next(vae.parameters()).dtype
        for image, seed in zip(pil_images, seeds):
            pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1)
            dist = vae.encode(pixels.permute(2, 0, 1)[None].to(device, dtype)).latent_dist
            noise = torch.randn(dist.mean.shape, generator=torch.Generator("cpu").manual_seed(int(seed)))
            latents.append((dist.mean + dist.std * noise.to(device, dist.mean.dtype)).float())
    return torch.cat(latents) * model.vae_scaling_factor


def _hires_pass(p, latents, prompts, negatives, seeds, subseeds, model):
    """Upscale the first pass and sample it again at the hires size (generation.md §5)."""
    target = p.hr_target
    opts = shared.opts
    if p.hr_upscaler in hires.LATENT_UPSCALE_MODES:
        z = hires.upscale_latents(latents, p.hr_upscaler, target.width, target.height)
    else:  # pixel upscalers work on the given first-pass image itself, when there is one
        firsts = [p.firstpass_image.convert("RGB")] * len(seeds) if p.firstpass_image is not None \
            else to_pil(decode_latents(model, latents))
        upscaled = [hires.upscale_image(image, p.hr_upscaler, target.width, target.height) for image in firsts]
        z = encode_images(model, upscaled, seeds)
    z = hires.truncate(z, target)
    if p.hr_checkpoint is not None:
        model = shared.model_holder.switch_to(p.hr_checkpoint)
    if p.denoising_strength == 0:
        return z, model  # a pure upscale (api.md §8.7)
    image_cond = None
    weight = opts.inpainting_mask_weight
    if model.is_inpainting and weight < 1 and p.hr_upscaler in hires.LATENT_UPSCALE_MODES:
        # generation.md §5 step 3: the inpainting UNet sees the upscaled image, partly masked (at
        # weight 1 it would see only grey: the txt2img dummy, which the pass builds by itself)
        image_cond = sampling_pass.masked_image_cond(model, decode_latents(model, z, p) * 2 - 1, weight)
        p.extra_generation_params["Conditional mask weight"] = weight
    if opts.hires_fix_use_firstpass_conds:
        hr_prompts, hr_negatives = prompts, negatives
    else:
        hr_prompts, data = extra_networks.parse_prompts([p.hr_prompt_text] * len(prompts))
        hr_negatives = [p.hr_negative_text] * len(prompts)  # tags in negatives stay text (networks.md §5.1)
        if not p.disable_extra_networks:
            extra_networks.activate(p, data)
    steps = p.hr_second_pass_steps or p.steps
    spec = PassSpec(sampler=p.hr_sampler, scheduler=p.hr_scheduler_label, steps=steps,
                    width=target.final_width, height=target.final_height, prompts=hr_prompts,
                    negatives=hr_negatives, cond_steps=schedule_steps(p.steps, p.sampler),
                    hires_steps=schedule_steps(steps, p.hr_sampler), init_latent=z,
                    denoising_strength=p.denoising_strength, refiner=_refiner_for(p, True),
                    refiner_switch_at=p.refiner_switch_at or 1.0, image_cond=image_cond)
    x = run_pass(p, model, spec, seeds, subseeds)
    return x, shared.model_holder.sd_model


def _save_one(p, image, text, seed, prompt, suffix="") -> None:
    opts = shared.opts
    folder = p.outpath_samples or opts.outdir_samples or getattr(opts, p.outdir_setting)
    images.save_image(image, folder, "", seed, prompt, opts.samples_format, info=text, p=p, suffix=suffix)


def _save_batch(p, pil_images, iteration, batch, suffix) -> None:
    for i, image in enumerate(pil_images):
        p.batch_index = i
        text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, iteration=iteration,
                               position_in_batch=i)
        _save_one(p, image, text, p.all_seeds[batch][i], p.all_prompts[batch][i], suffix)


def _generate(p: StableDiffusionProcessing) -> Processed:
    state = shared.state
    opts = shared.opts

    if not p.is_txt2img:
        p.fit_batch_size()
    count = p.batch_size * p.n_iter
    _fill_job_lists(p, count)
    seed, subseed = p.seed, p.subseed
    if p.scripts is not None:  # extension hook: may rewrite p.all_prompts (wildcards)
        p.scripts.process(p)
    enable_hr = getattr(p, "enable_hr", False)
    if not p.is_txt2img:
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    p.controlnet_hook = controlnet_job.prepare(p, p.controlnet_units) if p.controlnet_units else None

    output_images, infotexts = [], []
    generated_images = []  # the grid shows these, not the inpainting masks
    state.job_count = p.n_iter * (2 if enable_hr else 1)  # the hires pass counts as a job of its own
    interrupted = False
    for n in range(p.n_iter):
        p.iteration = n
        if state.interrupted:
            interrupted = True
            break
        state.job = f"Batch {n + 1} out of {p.n_iter}"
        batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
        p.prompts, p.negative_prompts = p.all_prompts[batch], p.all_negative_prompts[batch]
        shared.model_holder.take_back(p.sd_model)  # issue 11: the refiner may hold it since the last batch
        p.seeds, p.subseeds = p.all_seeds[batch], p.all_subseeds[batch]
        if p.scripts is not None:  # extension hook: the batch's prompts may still change
            p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        prompts, network_data = extra_networks.parse_prompts(p.prompts)
        negatives = p.negative_prompts  # tags in negatives stay text (networks.md §5.1)
        if not p.disable_extra_networks:
            extra_networks.activate(p, network_data)
        seeds, subseeds = p.seeds, p.subseeds
        if p.scripts is not None:  # extension hooks: after extra networks, before conditioning
            p.scripts.after_extra_networks_activate(p, batch_number=n, prompts=p.prompts, seeds=seeds,
                                                    subseeds=subseeds, extra_network_data=network_data)
            p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=seeds, subseeds=subseeds)
        try:
            model = p.sd_model
            if not p.is_txt2img:
                latents = p.sample(model, prompts, negatives, seeds, subseeds)
            elif enable_hr and p.firstpass_image is not None:  # no first pass: start from the given image
                first = p.firstpass_image.convert("RGB").resize((p.width, p.height), Image.Resampling.LANCZOS)
                latents = encode_images(model, [first] * len(seeds), seeds)
            else:
                latents = run_pass(p, model, _first_pass(p, prompts, negatives), seeds, subseeds)
            model = shared.model_holder.sd_model  # the refiner may have taken over
            if enable_hr:
                if opts.save_images_before_highres_fix and not p.do_not_save_samples:
                    _save_batch(p, to_pil(decode_latents(model, latents)), n, batch, "-before-highres-fix")
                state.nextjob()
                if p.scripts is not None:  # extension hook
                    p.scripts.before_hr(p)
                latents, model = _hires_pass(p, latents, prompts, negatives, seeds, subseeds, model)
        except Interrupted:
            if state.interrupted:
                interrupted = True
                break
            state.nextjob()  # skip: abandon this batch, go on with the next
            continue
        finally:
            if not p.disable_extra_networks:
                extra_networks.deactivate(p, network_data)
        if p.scripts is not None:  # extension hook: post_sample, before the VAE decode
            latents = p.scripts.samples_after_sampling(p, latents)
        if model.device_config.nan_check and torch.isnan(latents).any():
            raise GenerationError("The model produced NaN values. Try --no-half or --precision full, "
                                  "or another checkpoint.")
        samples = decode_latents(model, latents, p)
        if p.controlnet_hook is not None:  # inpaint_only units paste their hint back (controlnet.md §3.8)
            samples = p.controlnet_hook.after_decode(samples)
        if p.scripts is not None:  # extension hooks: postprocess_batch, postprocess_batch_list
            kept = p.scripts.images_after_batch(p, samples, n)
            samples = torch.stack(kept) if kept else samples[:0]
        for i, image in enumerate(to_pil(samples)):
            p.batch_index = i
            where = dict(iteration=n, position_in_batch=i)
            if p.face_restorer:  # per image, before saving (extras.md §3.4)
                if opts.save_images_before_face_restoration and not p.do_not_save_samples:
                    _save_one(p, image, create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, **where),
                              p.all_seeds[batch][i], p.all_prompts[batch][i],
                              "-before-face-restoration")
                image = face_restoration.restore_faces(image, p.face_restorer, opts.code_former_weight)
            if p.scripts is not None:  # extension hook: postprocess_image (after face restoration)
                image = p.scripts.image_after_postprocess(p, image)
            if not p.is_txt2img:  # colour correction and the overlay, after face restoration (A1111's order)
                image = p.finish_image(image, i)
            if p.scripts is not None:  # extension hook: after the inpainting composite, before saving
                image = p.scripts.image_after_composite(p, image)
            # after the hooks: postprocessing steps (postprocessing_enable_in_main_ui) add their keys
            text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, **where)
            saves = not p.do_not_save_samples and opts.samples_save
            if saves:
                _save_one(p, image, text, p.all_seeds[batch][i], p.all_prompts[batch][i])
            output_images.append(image)
            infotexts.append(text)
            generated_images.append(image)
            if not p.is_txt2img:  # return_mask / save_mask and composites, after their image (api.md §8.4)
                extras = mask_outputs.extra_images(p.mask_sources, opts, (lambda im, suffix, i=i, text=text: _save_one(
                    p, im, text, p.all_seeds[batch][i], p.all_prompts[batch][i], suffix)) if saves else None)
                output_images += extras
                infotexts += [text] * len(extras)  # so gallery indices keep matching their infotext
        state.nextjob()

    if infotexts and not shared.cmd_opts.no_prompt_history:
        images.write_params_txt(infotexts[0])
    index_of_first_image = 0
    if output_images:
        grid_text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, use_main_prompt=True)
        grid, plan = images.make_job_grid(p, generated_images, grid_text)
        if plan.show:
            output_images.insert(0, grid)
            infotexts.insert(0, grid_text)
            index_of_first_image = 1
    output_images += controlnet_job.detected_maps(p)  # after the generated images (controlnet.md §5)
    processed = Processed(
        p=p, images=output_images, seed=p.all_seeds[0], subseed=p.all_subseeds[0],
        info=infotexts[0] if infotexts else "", index_of_first_image=index_of_first_image,
        all_prompts=p.all_prompts,
        all_negative_prompts=p.all_negative_prompts, all_seeds=p.all_seeds,
        all_subseeds=p.all_subseeds, infotexts=infotexts, interrupted=interrupted,
        comments="\n".join(list(p.comments) + (["Interrupted: only finished images are returned"]
                                                 if interrupted else [])))
    if p.scripts is not None:  # extension hook: may edit the result
        p.scripts.postprocess(p, processed)
    return processed


def get_fixed_seed(seed) -> int:
    """A1111's name: -1 (or None, '') becomes a random seed."""
    return rng.get_fixed_seed(seed)


def fix_seed(p) -> None:
    """Replace -1 seeds of `p` with random ones (scripts do this before copying p)."""
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)
