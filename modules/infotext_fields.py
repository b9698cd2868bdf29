"""From a parsed infotext to request fields and settings overrides (api.md §8.9, infotext.md §7)."""

# infotext key -> txt2img request field (api.md §8.9)
TXT2IMG_FIELDS = {
    "Prompt": "prompt", "Negative prompt": "negative_prompt", "Steps": "steps", "CFG scale": "cfg_scale",
    "Seed": "seed", "Size-1": "width", "Size-2": "height", "Batch size": "batch_size",
    "Denoising strength": "denoising_strength", "Hires upscale": "hr_scale", "Hires upscaler": "hr_upscaler",
    "Hires steps": "hr_second_pass_steps", "Hires resize-1": "hr_resize_x", "Hires resize-2": "hr_resize_y",
    "Hires checkpoint": "hr_checkpoint_name", "Hires sampler": "hr_sampler_name",
    "Hires schedule type": "hr_scheduler", "Hires prompt": "hr_prompt", "Hires negative prompt": "hr_negative_prompt",
    "Variation seed": "subseed", "Variation seed strength": "subseed_strength",
    "Seed resize from-1": "seed_resize_from_w", "Seed resize from-2": "seed_resize_from_h",
    "Refiner": "refiner_checkpoint", "Refiner switch at": "refiner_switch_at", "Styles array": "styles",
}

# infotext key -> setting (infotext.md §7); both spellings of the Beta keys
SETTINGS = {
    "Face restoration": "face_restoration", "Emphasis": "emphasis", "Clip skip": "CLIP_stop_at_last_layers",
    "RNG": "randn_source", "Tiling": "tiling", "Hires refiner": "hires_fix_refiner_pass", "VAE": "sd_vae",
    "VAE Encoder": "sd_vae_encode_method", "VAE Decoder": "sd_vae_decode_method",
    "Conditional mask weight": "inpainting_mask_weight", "Noise multiplier": "initial_noise_multiplier",
    "Extra noise": "img2img_extra_noise", "NGMS": "s_min_uncond", "NGMS all steps": "s_min_uncond_all",
    "Token merging ratio": "token_merging_ratio", "Token merging ratio hr": "token_merging_ratio_hr",
    "Pad conds": "pad_cond_uncond", "Pad conds v0": "pad_cond_uncond_v0",
    "Old prompt editing timelines": "use_old_scheduling", "Downcast alphas_cumprod": "use_downcasted_alpha_bar",
    "Refiner switch by sampling steps": "refiner_switch_by_sample_steps", "Eta DDIM": "eta_ddim",
    "Eta": "eta_ancestral", "Sigma churn": "s_churn", "Sigma tmin": "s_tmin", "Sigma tmax": "s_tmax",
    "Sigma noise": "s_noise", "Schedule min sigma": "sigma_min", "Schedule max sigma": "sigma_max",
    "Schedule rho": "rho", "ENSD": "eta_noise_seed_delta", "Discard penultimate sigma": "always_discard_next_to_last_sigma",
    "SGM noise multiplier": "sgm_noise_multiplier", "UniPC variant": "uni_pc_variant",
    "UniPC skip type": "uni_pc_skip_type", "UniPC order": "uni_pc_order",
    "UniPC lower order final": "uni_pc_lower_order_final", "Noise Schedule": "sd_noise_schedule",
    "Skip Early CFG": "skip_early_cond", "Beta schedule alpha": "beta_dist_alpha",
    "Beta schedule beta": "beta_dist_beta", "Beta scheduler alpha": "beta_dist_alpha",
    "Beta scheduler beta": "beta_dist_beta",
    "Hypertile U-Net": "hypertile_enable_unet", "Hypertile U-Net second pass": "hypertile_enable_unet_secondpass",
    "Hypertile U-Net max depth": "hypertile_max_depth_unet", "Hypertile U-Net max tile size": "hypertile_max_tile_unet",
    "Hypertile U-Net swap size": "hypertile_swap_size_unet", "Hypertile VAE": "hypertile_enable_vae",
    "Hypertile VAE max depth": "hypertile_max_depth_vae", "Hypertile VAE max tile size": "hypertile_max_tile_vae",
    "Hypertile VAE swap size": "hypertile_swap_size_vae",
}


def _as_setting(opts, key: str, value):
    """Convert to the setting's type; booleans: the text "False" is false, other text as bool()."""
    default = opts.data_labels[key].default
    if isinstance(default, bool) and isinstance(value, str):
        return value != "False" and bool(value)
    return opts.validate({key: value})[key]


def _setting_keys(opts) -> dict:
    keys = dict(SETTINGS)
    if not opts.disable_weights_auto_swap:
        keys["Model hash"] = "sd_model_checkpoint"
    return keys


def settings_overrides(params: dict, opts, already: dict) -> dict:
    """Settings named in the infotext that differ from the current ones and are not overridden yet."""
    overrides = {}
    keys = _setting_keys(opts)
    for info_key, setting in keys.items():
        if info_key not in params or setting in already or setting not in opts.data_labels:
            continue
        value = _as_setting(opts, setting, params[info_key])
        if value != getattr(opts, setting):
            overrides[setting] = value
    return overrides


def fill_request(args: dict, explicitly_set: set, params: dict) -> dict:
    """Fill request fields the client did not set from the parsed infotext (api.md §8.9)."""
    filled = dict(args)
    for info_key, field in TXT2IMG_FIELDS.items():
        if field not in explicitly_set and info_key in params:
            filled[field] = params[info_key]
    if "sampler_name" not in explicitly_set and "Sampler" in params:
        filled["sampler_name"] = params["Sampler"]
        if "scheduler" not in explicitly_set and "Schedule type" in params:
            filled["scheduler"] = params["Schedule type"]
    if "enable_hr" not in explicitly_set and "Denoising strength" in params and any(
            key in params for key in ("Hires upscale", "Hires upscaler", "Hires resize-1")):
        filled["enable_hr"] = True
    return filled


def override_pairs(params: dict, opts, skip=()) -> list[str]:
    """The UI's "Override settings" entries ("Clip skip: 2") for the settings an infotext names that
    differ from the current ones. A model hash counts only when it names a local checkpoint other
    than the loaded one: an unknown model is not something the user can switch to."""
    from modules import sd_models, sd_vae
    overrides = settings_overrides(params, opts, {})
    pairs = []
    for info_key, setting in _setting_keys(opts).items():
        if info_key not in params or setting not in overrides or info_key in skip:
            continue
        if setting == "sd_model_checkpoint":
            try:
                if sd_models.find_checkpoint(str(params[info_key])).title == opts.sd_model_checkpoint:
                    continue
            except sd_models.CheckpointNotFound:
                continue
        if setting == "sd_vae" and not sd_vae.is_known_choice(str(params[info_key])):
            continue  # likewise a VAE this installation does not have
        pairs.append(f"{info_key}: {params[info_key]}")
    return pairs


def overrides_from_pairs(pairs: list[str], opts) -> dict:
    """{setting: value} from "Override settings" entries; a malformed entry or an unknown checkpoint
    raises ValueError / sd_models.CheckpointNotFound with a message for the user."""
    from modules import sd_models, sd_vae
    keys = _setting_keys(opts)
    overrides = {}
    for pair in pairs or []:
        info_key, sep, text = pair.partition(": ")
        if not sep or info_key not in keys:
            raise ValueError(f"Cannot override a setting from '{pair}': expected 'Name: value' with a "
                             f"name that infotext uses for a setting")
        setting = keys[info_key]
        value = _as_setting(opts, setting, text)
        if setting == "sd_model_checkpoint":
            value = sd_models.find_checkpoint(value).title
        if setting == "sd_vae" and not sd_vae.is_known_choice(value):
            raise ValueError(f"VAE '{value}' not found")
        overrides[setting] = value
    return overrides
