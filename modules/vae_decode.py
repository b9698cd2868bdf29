"""Latents -> images through the VAE, with the half-precision NaN fallback (generation.md §4.1).

One floor below processing, so that live previews ("Full") can decode without importing it.
"""
import torch

from modules import devices, shared
from modules.job_errors import GenerationError


class VaeNaNError(GenerationError):
    pass


@torch.no_grad()
def _vae_decode(model, latents: torch.Tensor) -> torch.Tensor:
    vae = model.vae
    with devices.on_device(vae, model.device_config):
        dtype = next(vae.parameters()).dtype
        return vae.decode((latents / model.vae_scaling_factor).to(dtype), return_dict=False)[0].float()


def decode_latents(model, latents: torch.Tensor, p=None) -> torch.Tensor:
    """Latents -> images in [0, 1], [B, 3, H, W] float32.

    A half-precision VAE that gives NaN is moved to float32 (bfloat16 with that setting) for the
    rest of the session and the decode retried (generation.md §4.1); the job notes it.
    """
    decoded = _vae_decode(model, latents)
    if model.device_config.nan_check and torch.isnan(decoded).any():
        vae_dtype = next(model.vae.parameters()).dtype
        if not shared.opts.auto_vae_precision or vae_dtype == torch.float32:
            raise VaeNaNError("The VAE produced NaN values (a black image). Try --no-half-vae, "
                              "or select another VAE in the settings.")
        upcast = torch.bfloat16 if shared.opts.auto_vae_precision_bfloat16 else torch.float32
        model.vae.to(upcast)
        message = f"The VAE produced NaN in {str(vae_dtype).removeprefix('torch.')}; " \
                  f"decoded in {str(upcast).removeprefix('torch.')} (kept for this session)"
        print(message)
        if p is not None:
            p.comment(message)
            p.extra_generation_params["VAE precision"] = str(upcast).removeprefix("torch.")
        decoded = _vae_decode(model, latents)
        if torch.isnan(decoded).any():
            raise VaeNaNError("The VAE produced NaN values even in full precision: the latents are "
                              "broken. Try another VAE or checkpoint.")
    return ((decoded + 1) / 2).clamp(0, 1)
