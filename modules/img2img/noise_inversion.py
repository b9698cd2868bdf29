"""The noise that turns into the init image (extensions.md §8.8, "img2img alternative test"):
Euler's steps run backwards, from σ = 0 up to σ_max, with the decode prompts and CFG scale, so
that sampling forward from that noise comes back close to the init latent."""
from dataclasses import dataclass

import torch

from modules import devices, shared
from modules.denoiser import CFGDenoiser


@dataclass(frozen=True)
class DecodeSettings:
    prompt: str
    negative_prompt: str
    cfg_scale: float
    steps: int
    sigma_adjustment: bool


def find_noise(p, model, settings: DecodeSettings) -> torch.Tensor:
    """Unit-variance noise for p.init_latent (or, with sigma adjustment, the last x divided by σ_max)."""
    from modules.sampling_pass import PassSpec, _guidance
    device = model.device_config.device
    x = p.init_latent.to(device).float()
    batch = x.shape[0]
    spec = PassSpec(sampler=p.sampler, scheduler="Automatic", steps=settings.steps, width=p.width,
                    height=p.height, prompts=[settings.prompt] * batch,
                    negatives=[settings.negative_prompt] * batch, cond_steps=settings.steps,
                    image_cond=p.image_conditioning, image_cfg_scale=p.image_cfg_scale)
    guidance, _used = _guidance(p, model, spec, device, cfg_scale=settings.cfg_scale)
    guidance.s_min_uncond = 0.0  # every step needs the true guided prediction
    schedule = model.noise_schedule(shared.opts)
    denoiser = CFGDenoiser(model.unet, schedule, model.parameterization, guidance,
                           step_callback=shared.state.check_stop)
    sigmas = schedule.get_sigmas(settings.steps).flip(0).to(device)  # 0, σ_min … σ_max
    state = shared.state
    state.sampling_steps, state.sampling_step = settings.steps, 0
    ones = x.new_ones([batch])
    with torch.no_grad(), devices.on_device(model.unet, model.device_config):
        for i in range(1, len(sigmas)):
            state.sampling_step = i
            if settings.sigma_adjustment:
                # the slope is taken where x is now (σ_{i−1}); at σ = 0 the denoised image is x
                # itself, so the first step does not move
                if i == 1:
                    continue
                sigma = sigmas[i - 1]
            else:
                sigma = sigmas[i]  # A1111's variant: the slope of the level being climbed to
            denoised = denoiser(x, sigma * ones)
            x = x + (x - denoised) / sigma * (sigmas[i] - sigmas[i - 1])
    if settings.sigma_adjustment:
        return x / sigmas[-1]
    return x / x.std()


def combine_with_seed_noise(found: torch.Tensor, seed_noise: torch.Tensor, randomness: float) -> torch.Tensor:
    """Blend the found noise with the seeds' noise, keeping unit variance for independent inputs."""
    if randomness == 0:
        return found
    return ((1 - randomness) * found + randomness * seed_noise) / ((randomness ** 2 + (1 - randomness) ** 2) ** 0.5)
