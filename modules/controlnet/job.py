"""ControlNet for one job: check the units before sampling, load their models (cached), run the
preprocessors, fit the maps to the first-pass and hires sizes, and hand the sampler a ControlHook
(controlnet.md §3). Runs on the job queue's worker."""
import collections
import dataclasses
import os

import cv2
import numpy as np
import torch
from PIL import Image

from modules import shared
from modules.controlnet import hint as hints
from modules.controlnet import inpaint_only, lama, model_files, model_loading, preprocessors
from modules.controlnet.residuals import ControlHook, PreparedUnit
from modules.controlnet.units import ControlNetUnit, UnitError, units_from_args


class ControlNetError(ValueError):
    """A unit that cannot run; raised before sampling, the message names the unit."""


_models: "collections.OrderedDict[tuple, torch.nn.Module]" = collections.OrderedDict()


def load_model(entry: model_files.ControlNetFile, sd_model) -> torch.nn.Module:
    """The ControlNetModel for this checkpoint, from a small LRU cache (control_net_model_cache_size)."""
    stamp = os.path.getmtime(entry.path)
    key = (entry.path, stamp, sd_model.sd_checkpoint_info.filename)
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    for old in [k for k in _models if k[2] != key[2]]:  # another checkpoint: its nets are stale
        del _models[old]
    net = model_loading.load_controlnet(entry, dict(sd_model.unet.config), sd_model.family)
    unet_param = next(sd_model.unet.parameters())
    dtype = torch.float32 if shared.cmd_opts.no_half_controlnet else unet_param.dtype
    net.to(unet_param.device, dtype)
    _models[key] = net
    while len(_models) > max(1, int(shared.opts.control_net_model_cache_size)):
        _models.popitem(last=False)
    return net


def clear_cache() -> None:
    _models.clear()


def enabled_units(units: list[ControlNetUnit]) -> list[ControlNetUnit]:
    return [u for u in units if u.enabled]


def check_units(units: list[ControlNetUnit], init_image_available: bool = False) -> None:
    """Everything that can be known before the job: names, weights present, an image (§9 target 2)."""
    models = model_files.list_models()
    for index, unit in enumerate(units):
        if not unit.enabled:
            continue
        try:
            pre = preprocessors.find(unit.module)
            preprocessors.check_usable(pre)
        except preprocessors.PreprocessorError as e:
            raise ControlNetError(f"ControlNet unit {index}: {e}") from None
        if unit.model in ("None", "", None):
            if not pre.model_free:
                raise ControlNetError(f"ControlNet unit {index}: choose a model (module '{pre.name}' needs one)")
        else:
            try:
                model_files.find_model(unit.model, models)
            except model_files.ControlNetModelNotFound as e:
                raise ControlNetError(f"ControlNet unit {index}: {e}") from None
        if unit.image is None and not init_image_available:
            raise ControlNetError(f"ControlNet unit {index}: no image (set the unit's image)")


def a1111_mask(p, size: tuple[int, int]):
    """The img2img job's mask as an inpaint unit sees it (§3.1): grayscale, inverted with
    inpainting_mask_invert, Gaussian-blurred per axis with mask_blur_x/_y; None without a mask."""
    mask = getattr(p, "input_mask", None)  # as given: p.mask and p.image_mask are replaced by init
    if mask is None:
        return None
    gray = np.asarray(mask.convert("L").resize(size), dtype=np.uint8)
    if getattr(p, "inpainting_mask_invert", 0):
        gray = 255 - gray
    for axis, sigma in ((1, getattr(p, "mask_blur_x", 0)), (0, getattr(p, "mask_blur_y", 0))):
        if sigma and sigma > 0:
            kernel = 2 * int(2.5 * sigma + 0.5) + 1
            ksize = (kernel, 1) if axis == 1 else (1, kernel)
            gray = cv2.GaussianBlur(gray, ksize, sigmaX=sigma if axis == 1 else 0, sigmaY=sigma if axis == 0 else 0)
    return Image.fromarray(gray)


def _input_array(unit: ControlNetUnit, index: int, p) -> np.ndarray:
    image, mask = unit.image, unit.mask
    if image is None:
        init = getattr(p, "init_images", None)
        if not init:
            raise ControlNetError(f"ControlNet unit {index}: no image (set the unit's image)")
        image = init[0]
        mask = a1111_mask(p, image.size) if mask is None else mask
    rgb = hints.to_rgb_array(image)
    pre = preprocessors.find(unit.module)
    if pre.needs_mask:
        try:
            return hints.with_mask(rgb, mask, f"ControlNet unit {index}")
        except hints.HintError as e:
            raise ControlNetError(str(e)) from None
    if unit.mask is not None and not shared.opts.controlnet_ignore_noninpaint_mask:
        mask = np.asarray(unit.mask.convert("RGB"), dtype=np.uint8)
        if mask.shape[:2] == rgb.shape[:2] and not ((mask <= 5).all() or (mask >= 250).all()):
            rgb = mask  # a scribble drawn as a mask replaces the image (§2.2)
    return rgb


def _targets(p) -> dict:
    """Sizes (w, h) the hints must have: the first pass and, with hires fix, the hires pass (§3.1)."""
    targets = {"first": (p.width // 8 * 8, p.height // 8 * 8)}
    if getattr(p, "enable_hr", False):
        if p.hr_resize_x or p.hr_resize_y:
            w, h = p.hr_resize_x, p.hr_resize_y
        else:
            w, h = int(p.width * p.hr_scale), int(p.height * p.hr_scale)
        targets["hires"] = (w // 8 * 8, h // 8 * 8)
    return targets


def _only_masked_box(p, unit: ControlNetUnit, pre):
    """((x1, y1, x2, y2), mask size) of A1111's "Only masked" crop when this unit's control image
    follows it (§3.8: inpaint_crop_input_image, not reference*), else None. The region is the one
    img2img sampled (p.paste_to, set by its init)."""
    paste_to = getattr(p, "paste_to", None)
    mask = getattr(p, "input_mask", None)
    if paste_to is None or mask is None or not getattr(p, "inpaint_full_res", False):
        return None
    if not unit.inpaint_crop_input_image or pre.name.startswith("reference"):
        return None
    x, y, w, h = paste_to
    return (x, y, x + w, y + h), mask.size


def _lama_filled(maps_at: dict, pre, sd_model, number: int) -> dict:
    """Each pass's fitted RGBA map with its hole (Resize and Fill's padding included) filled by LaMa."""
    path = preprocessors.weight_path(pre)
    if path is None:  # removed since the units were checked
        try:
            preprocessors.check_usable(pre)
        except preprocessors.PreprocessorError as e:
            raise ControlNetError(f"ControlNet unit {number}: {e}") from None
    try:
        net = lama.load(path, sd_model.device_config.device)
    except preprocessors.PreprocessorError as e:
        raise ControlNetError(f"ControlNet unit {number}: {e}") from None
    return {name: lama.fill(net, m) for name, m in maps_at.items()}


def unit_count() -> int:
    """How many unit slots a job has (control_net_unit_count, 1 to 10 as the extension allows)."""
    return max(1, min(10, int(shared.opts.control_net_unit_count)))


def prepare(p, units: list[ControlNetUnit]) -> ControlHook | None:
    """Build the job's hook from its enabled units and record their infotext; detected maps are kept
    in p.controlnet_detected_maps. Returns None when no unit is enabled."""
    try:  # API dicts (from the script's slots) or ControlNetUnits
        units = units_from_args(list(units), unit_count())
    except UnitError as e:
        raise ControlNetError(str(e)) from None
    active = enabled_units(units)
    if not active:
        return None
    models = model_files.list_models()
    prepared, maps = [], []
    targets = _targets(p)
    seeds, subseeds = getattr(p, "all_seeds", None) or [p.seed], getattr(p, "all_subseeds", None) or [0]
    for number, unit in enumerate(active):
        if unit.image is None and getattr(p, "init_images", None):
            # the img2img image stands in: A1111's resize mode replaces the unit's (§3.1; 3 -> 0)
            mode = int(getattr(p, "resize_mode", 0) or 0)
            unit = dataclasses.replace(unit, resize_mode=hints.RESIZE_MODES[mode if mode in (0, 1, 2) else 0])
        if unit.module.strip().lower() == "inpaint_only" and getattr(p, "input_mask", None) is not None:
            unit = dataclasses.replace(unit, module="inpaint")  # §3.8: global harmonious while A1111 inpaints
        try:
            entry = model_files.find_model(unit.model, models)
            pre = preprocessors.find(unit.module)
            net = load_model(entry, p.sd_model)
        except (model_files.ControlNetModelNotFound, preprocessors.PreprocessorError,
                model_loading.ControlNetLoadError) as e:
            raise ControlNetError(f"ControlNet unit {number}: {e}") from None
        source = _input_array(unit, number, p)
        crop = _only_masked_box(p, unit, pre)
        if crop is not None:
            box, mask_size = crop
            try:
                source = hints.only_masked_crop(source, mask_size, box, p.width, p.height, unit.resize_mode)
            except hints.HintError as e:
                raise ControlNetError(f"ControlNet unit {number}: {e}") from None
        res = unit.processor_res
        if unit.pixel_perfect:
            w, h = targets["first"]
            res = hints.pixel_perfect_resolution(source.shape[0], source.shape[1], h, w, unit.resize_mode)
        np.random.seed((int(seeds[0]) + int(subseeds[0])) & 0xFFFFFFFF)  # for random preprocessors (§3.3)
        try:
            detected = preprocessors.run(pre, source, res, unit.threshold_a, unit.threshold_b)
        except preprocessors.PreprocessorError as e:
            raise ControlNetError(f"ControlNet unit {number}: {e}") from None
        param = next(net.parameters())  # hints are made once on the net's device, not at every step
        maps_at = {name: hints.fit(detected, w, h, unit.resize_mode) for name, (w, h) in targets.items()}
        if pre.name == "inpaint_only+lama":  # §3.8: the hole filled by LaMa at each pass's size
            maps_at = _lama_filled(maps_at, pre, p.sd_model, number)
        fitted = {name: hints.to_tensor(m).to(param.device, param.dtype) for name, m in maps_at.items()}
        keep = {}
        if pre.name in preprocessors.INPAINT_ONLY_NAMES:  # §3.8: the hint is kept outside the mask
            sigma = int(shared.opts.control_net_inpaint_blur_sigma)
            keep = {name: inpaint_only.prepare_target(p.sd_model, m, sigma) for name, m in maps_at.items()}
        prepared.append(PreparedUnit(number, net, unit.weight, unit.guidance_start, unit.guidance_end,
                                     unit.control_mode, unit.hr_option, fitted, keep,
                                     start_from_hint=pre.name == "inpaint_only+lama"))
        p.extra_generation_params[f"ControlNet {number}"] = unit.infotext(entry.title)
        if unit.save_detected_map and pre.name != "none":
            maps.append((pre.name, Image.fromarray(detected[:, :, :3])))
    p.controlnet_detected_maps = maps
    return ControlHook(prepared, hires_enabled="hires" in targets)



def detected_maps(p) -> list:
    """The detected maps to show after a job's images, unless the settings or units say no (§5)."""
    maps = getattr(p, "controlnet_detected_maps", [])
    if shared.opts.control_net_detectmap_autosaving and not p.do_not_save_samples:
        from modules import images
        opts = shared.opts
        root = p.outpath_samples or opts.outdir_samples or getattr(opts, p.outdir_setting)
        for module, image in maps:
            folder = os.path.join(root, opts.control_net_detectedmap_dir, module)
            images.save_image(image, folder, "", p.all_seeds[0] if p.all_seeds else p.seed, p.prompt, "png", p=p)
    if shared.opts.control_net_no_detectmap:
        return []
    return [image for _, image in maps]
