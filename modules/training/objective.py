"""The diffusion training objective shared by every trainer (merge-train.md §4.6, §6.4).

t uniform in [0, 1000); x_t = √ᾱ·x0 + √(1−ᾱ)·ε; the target is ε, or v = √ᾱ·ε − √(1−ᾱ)·x0 for
v-prediction models; MSE averaged per sample (optionally weighted per element, Min-SNR weighted).
"""
from __future__ import annotations

import torch

from modules.sampling_pass import inpainting_image_cond

NUM_TIMESTEPS = 1000


def sample_noise(latents: torch.Tensor, generator: torch.Generator, noise_offset: float = 0.0):
    """(timesteps [B] long, noise like latents), drawn on the CPU from generator for reproducibility."""
    batch = latents.shape[0]
    t = torch.randint(0, NUM_TIMESTEPS, (batch,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((batch, latents.shape[1], 1, 1), generator=generator)
    return t.to(latents.device), noise.to(latents.device)


def noisy_latents_and_target(x0, noise, t, alphas_cumprod, parameterization: str):
    a = alphas_cumprod.to(x0.device, torch.float32)[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = noise if parameterization == "eps" else a.sqrt() * noise - (1 - a).sqrt() * x0
    return x_t, target


def min_snr_weights(t, alphas_cumprod, gamma: float, parameterization: str) -> torch.Tensor:
    a = alphas_cumprod.to(torch.float32)[t.cpu()]
    snr = a / (1 - a)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / (snr + 1) if parameterization == "v" else clipped / snr


def unet_prediction(model, unet, x_t, t, context, vector=None, time_ids=None) -> torch.Tensor:
    """The UNet's output in float32; SDXL gets its pooled vector and size ids, inpainting UNets the
    fully-masked grey image txt2img uses."""
    dtype = next(unet.parameters()).dtype
    if getattr(model, "is_inpainting", False):
        cond = inpainting_image_cond(model, x_t.shape[0], x_t.shape[2] * 8, x_t.shape[3] * 8)
        x_t = torch.cat([x_t, cond.to(x_t.device, x_t.dtype)], dim=1)
    added = None
    if vector is not None:
        added = {"text_embeds": vector.to(dtype), "time_ids": time_ids.to(x_t.device, dtype)}
    out = unet(x_t.to(dtype), t, encoder_hidden_states=context.to(dtype), added_cond_kwargs=added,
               return_dict=False)[0]
    return out.float()


def per_sample_mse(pred, target, weight=None) -> torch.Tensor:
    err = (pred - target.float()) ** 2
    if weight is not None:
        err = err * weight
    return err.mean(dim=(1, 2, 3))


def parameterization_of(model) -> str:
    return getattr(model, "parameterization", "eps")
