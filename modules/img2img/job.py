"""The img2img job's steps that `StableDiffusionProcessingImg2Img` delegates to: init (once per
job), sample (per batch), finish_image (per image)."""
from modules import shared
from modules.img2img import color_correction, overlay, prepare
from modules.img2img.mask_outputs import MaskSources
from modules.img2img.prepare import MASKED_CONTENT_NAMES, ORIGINAL


def _record_mask_keys(p) -> None:
    """Infotext keys of an inpainting job, in A1111's order (infotext.md §3)."""
    params = p.extra_generation_params
    if p.mask_blur_x == p.mask_blur_y and p.mask_blur_x > 0:
        params["Mask blur"] = p.mask_blur_x
    if p.inpainting_mask_invert:
        params["Mask mode"] = "Inpaint not masked"
    if p.inpainting_fill != ORIGINAL:
        params["Masked content"] = MASKED_CONTENT_NAMES[p.inpainting_fill]
    if p.inpaint_full_res:
        params["Inpaint area"] = "Only masked"
        params["Masked area padding"] = p.inpaint_full_res_padding


def _check(p) -> None:
    from modules.job_errors import GenerationError
    if p.resize_mode not in (0, 1, 2, 3):
        raise GenerationError(f"resize_mode must be 0, 1, 2 or 3, got {p.resize_mode}")
    if p.inpainting_fill not in (0, 1, 2, 3):
        raise GenerationError(f"inpainting_fill must be 0 (fill), 1 (original), 2 (latent noise) or "
                              f"3 (latent nothing), got {p.inpainting_fill}")
    if min(p.mask_blur_x, p.mask_blur_y, p.inpaint_full_res_padding) < 0:
        raise GenerationError("mask blur and masked area padding cannot be negative")


def _save_init_images(p) -> None:
    """Setting save_init_img: each init image saved once under its md5 (infotext `Init image hash`)."""
    import hashlib
    from modules import images
    for image in p.init_images:
        digest = hashlib.md5(image.tobytes()).hexdigest()
        p.extra_generation_params["Init image hash"] = digest
        images.save_image(image, shared.opts.outdir_init_images, None, forced_filename=digest, save_to_dirs=False,
                          extension="png")


def init(p, all_seeds) -> None:
    from modules.job_errors import GenerationError
    opts = shared.opts
    _check(p)
    if opts.save_init_img and not p.do_not_save_samples:
        _save_init_images(p)
    p.input_mask = p.image_mask  # before the processed masks replace it (ControlNet, controlnet.md §3.1)
    if p.image_mask is not None:
        _record_mask_keys(p)
    try:
        prepared = prepare.prepare(p, p.sd_model, all_seeds[:p.batch_size], opts.img2img_background_color,
                                   opts.overlay_inpaint, opts.inpainting_mask_weight, opts.upscaler_for_img2img)
    except prepare.Img2ImgInputError as e:
        raise GenerationError(str(e)) from None
    if p.image_mask is not None and p.inpaint_full_res and prepared.paste_to is None:
        p.extra_generation_params.pop("Inpaint area", None)  # blank mask: whole picture after all
        p.extra_generation_params.pop("Masked area padding", None)
    p.init_latent = prepared.init_latent
    p.mask, p.nmask = prepared.mask, prepared.nmask  # A1111: latent masks replace the input mask here
    p.image_mask = prepared.image_mask
    p.paste_to = prepared.paste_to
    p.overlay_images = prepared.overlay_images
    p.overlay_sources = prepared.overlay_sources
    p.mask_for_overlay = prepared.mask_for_overlay
    p.image_conditioning = prepared.image_conditioning
    if p.sd_model.is_inpainting:
        p.extra_generation_params["Conditional mask weight"] = opts.inpainting_mask_weight
    if getattr(p.sd_model, "is_pix2pix", False) and p.image_cfg_scale is not None:
        if p.image_cfg_scale != 1 and any(" AND " in prompt for prompt in p.all_prompts):
            raise GenerationError("AND cannot be used with Image CFG scale on an instruct-pix2pix model "
                                  "(set Image CFG scale to 1, or remove AND from the prompt)")

    multiplier = opts.initial_noise_multiplier if p.initial_noise_multiplier is None else p.initial_noise_multiplier
    p.initial_noise_multiplier = multiplier
    if multiplier != 1.0:
        p.extra_generation_params["Noise multiplier"] = multiplier
    p.color_corrections = [color_correction.reference(image) for image in prepared.color_references] \
        if opts.img2img_color_correction else None


def sample(p, model, prompts, negatives, seeds, subseeds, start_noise=None, noise_multiplier=None):
    """start_noise / noise_multiplier: given by scripts that bring their own starting noise."""
    from modules.processing import _refiner_for, schedule_steps
    from modules.sampling_pass import PassSpec, run_pass
    opts = shared.opts
    if p.denoising_strength == 0 and opts.img2img_fix_steps:
        return p.init_latent  # a schedule of 0 steps (§7.3)
    spec = PassSpec(sampler=p.sampler, scheduler=p.scheduler, steps=p.steps, width=p.width, height=p.height,
                    prompts=prompts, negatives=negatives, cond_steps=schedule_steps(p.steps, p.sampler),
                    init_latent=p.init_latent, denoising_strength=p.denoising_strength,
                    refiner=_refiner_for(p, False), refiner_switch_at=p.refiner_switch_at or 1.0,
                    image_cond=p.image_conditioning, fix_steps=opts.img2img_fix_steps,
                    noise_multiplier=p.initial_noise_multiplier if noise_multiplier is None else noise_multiplier,
                    mask=p.mask, nmask=p.nmask, image_cfg_scale=p.image_cfg_scale, start_noise=start_noise)
    return run_pass(p, model, spec, seeds, subseeds)


def finish_image(p, image, index: int):
    opts = shared.opts
    overlay_layer = _overlay(p, index)
    mask_for_overlay = p.mask_for_overlay
    if p.scripts is not None:  # extension hook: may replace this image's overlay (soft inpainting)
        mask_for_overlay, overlay_layer = p.scripts.mask_overlay(p, index, mask_for_overlay, overlay_layer)
    if p.color_corrections is not None and index < len(p.color_corrections):
        if opts.save_images_before_color_correction and not p.do_not_save_samples:
            from modules.processing import _save_one, create_infotext
            text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, iteration=p.iteration,
                                   position_in_batch=index)
            at = p.iteration * p.batch_size + index
            _save_one(p, overlay.apply_overlay(image, p.paste_to, overlay_layer), text,
                      p.all_seeds[at], p.all_prompts[at], "-before-color-correction")
        image = color_correction.apply(p.color_corrections[index], image)
    # read by processing for return_mask / save_mask and their composites (mask_outputs)
    p.mask_sources = None if mask_for_overlay is None else \
        MaskSources(mask_for_overlay, overlay.pasted_back(image, p.paste_to, overlay_layer))
    return overlay.apply_overlay(image, p.paste_to, overlay_layer)


def _overlay(p, index):
    return p.overlay_images[index] if index < len(p.overlay_images) else None
