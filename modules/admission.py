"""Admission control: refuse a job whose peak memory cannot fit, before it allocates anything.

A job's peak is the larger of its stages (each runs alone and frees its activations), plus the
images the job keeps in RAM:

    unet stage   = rows * K_UNET * c_unet * h * w * bytes(dtype)     rows = 2 * batch_size (CFG)
    vae stage    = batch_size * K_VAE * c_vae * H * W * bytes(dtype_vae)
    kept images  = n_iter * batch_size * H * W * K_HOST

where H x W is a pass's sampling size, h x w = H/8 x W/8 its latent size, c_unet the UNet's first
block width (its full-resolution level) and c_vae the VAE's first block width (the decoder's
full-resolution level). A hires-fix job adds its second pass at the hires size; a pixel upscaler
also decodes the first pass and encodes the upscaled image (same K_VAE). The constants were
measured on the tiny models (bench/bench_admission.py prints estimate and measured peak side by
side): attention is not quadratic in memory here, because torch's scaled-dot-product attention
uses a fused kernel on CPU and GPU.

The limit is the free RAM (on CPU) or free VRAM (on a GPU, with RAM for the kept images)
when the first job starts, after the model is loaded; `--job-memory-limit GiB` sets it instead.
"""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

import torch

from modules.job_errors import GenerationError

K_UNET = 50     # live activations of the UNet per row, in units of its full-resolution feature map
K_VAE = 10      # live activations of the VAE decoder per image, in units of its full-resolution map
K_HOST = 3 + 12  # a kept uint8 RGB image, plus the float copies made while converting it
GIB = 1024 ** 3


class JobTooLarge(GenerationError):
    """The job's estimated peak memory exceeds the limit; the message says what to lower."""


class JobOutOfMemory(GenerationError):
    """The device ran out of memory inside a job; the cache was freed and the server serves on."""


@dataclass(frozen=True)
class Estimate:
    device_bytes: int   # on the compute device (the whole estimate when that is the CPU)
    host_bytes: int     # in RAM besides (kept images)
    per_image_bytes: float  # how much one more image in the batch adds (for the advice)
    stage: str          # which stage is the peak


@dataclass(frozen=True)
class Limit:
    device_bytes: int | None  # None: no limit
    host_bytes: int | None
    source: str


def _bytes_of(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _passes(p) -> list[tuple[int, int, bool]]:
    """(width, height, decodes_here) of every sampling pass of the job."""
    passes = [(p.width, p.height, False)]
    target = getattr(p, "hr_target", None)
    if getattr(p, "enable_hr", False) and target is not None:
        pixel_upscaler = getattr(p, "hr_upscaler", None) not in _latent_modes()
        passes[0] = (p.width, p.height, pixel_upscaler)
        passes.append((target.width, target.height, False))
    return passes


def _latent_modes():
    from modules import hires  # hires is a floor below processing; imported late to stay light
    return hires.LATENT_UPSCALE_MODES


def estimate(p, model) -> Estimate:
    """The peak memory of job `p` on `model` (an sd_models.SdModel), by the formula above."""
    config = model.device_config
    c_unet = model.unet.config.block_out_channels[0]
    c_vae = model.vae.config.block_out_channels[0]
    unet_bytes, vae_bytes = _bytes_of(config.dtype), _bytes_of(config.dtype_vae)
    batch = max(1, int(p.batch_size))
    stages = {}
    for index, (width, height, decodes) in enumerate(_passes(p)):
        pixels = width * height
        name = "first pass" if index == 0 else "hires pass"
        stages[f"UNet, {name} at {width}x{height}"] = 2 * K_UNET * c_unet * pixels / 64 * unet_bytes
        stages[f"VAE, {name} at {width}x{height}"] = K_VAE * c_vae * pixels * vae_bytes * (2 if decodes else 1)
    final_w, final_h = _passes(p)[-1][:2]
    host_per_image = K_HOST * final_w * final_h * max(1, int(p.n_iter))
    stage = max(stages, key=stages.get)
    per_image = stages[stage]
    on_cpu = config.device.type == "cpu"
    device = batch * per_image + (batch * host_per_image if on_cpu else 0)
    return Estimate(device_bytes=int(device), host_bytes=0 if on_cpu else int(batch * host_per_image),
                    per_image_bytes=per_image + (host_per_image if on_cpu else 0), stage=stage)


_limit: Limit | None = None


def measure_limit(config, flag_gib: float | None) -> Limit:
    """Free memory now (or the flag's value): what a job may use at its peak."""
    import psutil
    if flag_gib is not None:
        if flag_gib <= 0:
            return Limit(None, None, "--job-memory-limit 0 (no limit)")
        limit = int(flag_gib * GIB)
        return Limit(limit, limit, f"--job-memory-limit {flag_gib:g}")
    free_ram = psutil.virtual_memory().available
    if config.device.type == "cuda":
        free_vram, _total = torch.cuda.mem_get_info(config.device)
        return Limit(int(free_vram), int(free_ram), "free VRAM and RAM when the first job started")
    return Limit(int(free_ram), int(free_ram), "free RAM when the first job started")


def current_limit(config) -> Limit:
    global _limit
    if _limit is None:
        from modules import shared
        _limit = measure_limit(config, getattr(shared.cmd_opts, "job_memory_limit", None))
    return _limit


def reset_limit() -> None:
    """Measure again at the next job (tests; a changed --job-memory-limit)."""
    global _limit
    _limit = None


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def check(p, model, limit: Limit | None = None) -> Estimate:
    """Raise JobTooLarge when job `p` cannot fit; returns the estimate otherwise."""
    from modules import shared, value_limits
    problems = value_limits.seed_problems(p, shared.opts.eta_noise_seed_delta)
    if problems:
        raise GenerationError("; ".join(problems))
    limit = limit or current_limit(model.device_config)
    found = estimate(p, model)
    over_device = limit.device_bytes is not None and found.device_bytes > limit.device_bytes
    over_host = limit.host_bytes is not None and found.host_bytes > limit.host_bytes
    if not (over_device or over_host):
        return found
    where = "VRAM" if model.device_config.device.type == "cuda" and over_device else "RAM"
    needed = found.device_bytes if over_device else found.host_bytes
    available = limit.device_bytes if over_device else limit.host_bytes
    fits = int(available // max(found.per_image_bytes, 1))
    advice = f"lower batch_size (about {fits} fit at this size)" if fits >= 1 else \
        "lower width/height"
    if getattr(p, "enable_hr", False):
        advice += ", or lower the hires upscale (hr_scale / hr_resize_x, hr_resize_y)"
    else:
        advice += " or width/height"
    if over_host and not over_device:
        advice += ", or lower n_iter (every image is kept in RAM until the job ends)"
    raise JobTooLarge(f"This job needs about {_gib(needed)} of {where} at its peak ({found.stage}, "
                      f"batch_size {p.batch_size}) but only {_gib(available)} are available "
                      f"({limit.source}): {advice}.")


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    # the CPU allocator reports a failed allocation as a plain RuntimeError
    return isinstance(error, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(error)


def free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def out_of_memory_guard():
    """An out-of-memory error inside a job frees the cache and becomes JobOutOfMemory, so that only
    this job fails and the worker goes on with the next one."""
    message = None
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not _is_out_of_memory(e):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if message is None:
        return
    # outside the except block: the traceback and the frames holding the job's tensors are gone
    free_device_memory()
    raise JobOutOfMemory(f"Out of memory: {message}. Lower batch_size or width/height, or start with "
                         f"--medvram / --lowvram; the memory was freed and the server keeps serving.")
