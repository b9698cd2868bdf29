"""`inpaint_only` (controlnet.md §3.8): outside the unit's mask the image is kept, in two places.

Per UNet evaluation the prediction of x₀ is pulled towards the hint's VAE latent z₀ outside the
latent mask M (the pixel mask max-pooled 10×10, stride 8, padding 1):
x₀′ = x̂₀·M + z₀·(1 − M); ε′ from x₀′; ε ← ε′·w + ε·(1 − w), w = clamp(weight, 0, 1).
Since x̂₀ = x − σ·ε is affine in ε, that blend is the same blend of the denoised prediction D:
D ← w·x₀′ + (1 − w)·D, which is what the k-diffusion denoiser hands us.

After decoding: out = m′·gen + (1 − m′)·hint, m′ = the pixel mask dilated σ×σ then box-blurred
σ×σ (σ = setting control_net_inpaint_blur_sigma)."""
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from modules import devices


@dataclass
class InpaintOnlyTarget:
    """What one pass (first / hires) of one inpaint_only unit needs, on the sampling device."""
    z0: torch.Tensor           # [1, 4, h/8, w/8] VAE latent of the hint colour, scaled
    latent_mask: torch.Tensor  # [1, 1, h/8, w/8] M, 1 = regenerate
    colour: torch.Tensor       # [1, 3, h, w] hint colour in 0..1
    blend_mask: torch.Tensor   # [1, 1, h, w] m′ in 0..1


def latent_mask(pixel_mask: torch.Tensor) -> torch.Tensor:
    """M: [B, 1, H, W] in 0..1 -> [B, 1, H/8, W/8] (max-pool 10×10, stride 8, padding 1)."""
    return torch.nn.functional.max_pool2d(pixel_mask, kernel_size=10, stride=8, padding=1)


def restore_denoised(denoised: torch.Tensor, z0: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """D ← w·(D·M + z₀·(1 − M)) + (1 − w)·D, w = clamp(weight, 0, 1): the ε blend written on D."""
    w = min(max(float(weight), 0.0), 1.0)
    restored = denoised * mask + z0 * (1 - mask)
    return restored * w + denoised * (1 - w)


def blend_mask(mask: np.ndarray, sigma: int) -> np.ndarray:
    """m′: a uint8 mask (255 = regenerate) dilated with a σ×σ square, then box-blurred σ×σ; float32 0..1."""
    sigma = max(1, int(sigma))
    grown = cv2.dilate(mask, np.ones((sigma, sigma), dtype=np.uint8))
    return cv2.blur(grown.astype(np.float32) / 255.0, (sigma, sigma))


def blend_decoded(samples: torch.Tensor, colour: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """out = m′·gen + (1 − m′)·hint for decoded images [B, 3, H, W] in 0..1."""
    mask = mask.to(samples.device, samples.dtype)
    return samples * mask + colour.to(samples.device, samples.dtype) * (1 - mask)


@torch.no_grad()
def prepare_target(sd_model, fitted: np.ndarray, sigma: int) -> InpaintOnlyTarget:
    """From the fitted 4-channel map (RGB + mask, uint8) at the pass's size: z₀ (the VAE's mode of
    the hint colour, times the scaling factor), M, the colour and m′."""
    device = sd_model.device_config.device
    colour = torch.from_numpy(fitted[:, :, :3].astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
    pixel_mask = torch.from_numpy(fitted[:, :, 3].astype(np.float32) / 255.0)[None, None]
    vae = sd_model.vae
    with devices.on_device(vae, sd_model.device_config):
        dtype = next(vae.parameters()).dtype
        z0 = vae.encode((colour * 2 - 1).to(device, dtype)).latent_dist.mode().float()
    z0 = z0 * sd_model.vae_scaling_factor
    m_prime = torch.from_numpy(blend_mask(np.ascontiguousarray(fitted[:, :, 3]), sigma))[None, None]
    return InpaintOnlyTarget(z0=z0, latent_mask=latent_mask(pixel_mask).to(device), colour=colour.to(device),
                             blend_mask=m_prime.to(device))
