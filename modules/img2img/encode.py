"""Init images -> latents and the inpainting models' image conditioning (generation.md §3.8, §7.6)."""
import numpy as np
import torch
from PIL import Image

from modules import devices


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> [B, 3, H, W] float32 in [−1, 1]."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.no_grad()
def encode(model, pixels: torch.Tensor, seeds) -> torch.Tensor:
    """A sample of the VAE encoder's Gaussian per image, ε drawn from a CPU generator seeded with
    that image's seed, times the model's scaling factor."""
    vae = model.vae
    device = model.device_config.device
    latents = []
    with devices.on_device(vae, model.device_config):
        dtype = next(vae.parameters()).dtype
        for row, seed in zip(pixels, seeds):
            dist = vae.encode(row[None].to(device, dtype)).latent_dist
            noise = torch.randn(dist.mean.shape, generator=torch.Generator("cpu").manual_seed(int(seed)))
            latents.append((dist.mean + dist.std * noise.to(device, dist.mean.dtype)).float())
    return torch.cat(latents) * model.vae_scaling_factor


@torch.no_grad()
def inpainting_conditioning(model, pixels: torch.Tensor, mask: torch.Tensor, weight: float,
                            latent_size: tuple[int, int]) -> torch.Tensor:
    """[m, E(x_masked)] for a 9-channel UNet: x_masked = lerp(x, x·(1 − m), weight) in pixel space,
    E = the encoder's mode times the scaling factor, m (pixel mask, [1, 1, H, W]) resized to the
    latent size (nearest)."""
    vae = model.vae
    device = model.device_config.device
    masked = torch.lerp(pixels, pixels * (1.0 - mask), weight)
    with devices.on_device(vae, model.device_config):
        dtype = next(vae.parameters()).dtype
        latent = vae.encode(masked.to(device, dtype)).latent_dist.mode().float() * model.vae_scaling_factor
    small = torch.nn.functional.interpolate(mask.to(device), size=latent_size)
    return torch.cat([small.expand(latent.shape[0], -1, -1, -1), latent], dim=1)


@torch.no_grad()
def pix2pix_conditioning(model, pixels: torch.Tensor) -> torch.Tensor:
    """instruct-pix2pix: the encoder's mean of the init image, not scaled (generation.md §7.6)."""
    vae = model.vae
    device = model.device_config.device
    with devices.on_device(vae, model.device_config):
        dtype = next(vae.parameters()).dtype
        return vae.encode(pixels.to(device, dtype)).latent_dist.mode().float()
