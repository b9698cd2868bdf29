"""The model as a denoiser D(x, σ) with classifier-free guidance, for the k-diffusion solvers.

generation.md §0.3: ε models give `x − σ·ε(c_in·x, t(σ))`, v models `c_skip·x + c_out·v(...)`.
Conditional and unconditional passes go through the UNet as one batch.
"""
from dataclasses import dataclass

import torch

from modules.noise_schedule import DiscreteSchedule


@dataclass
class Guidance:
    cond: object                # tensor [B, T, D] or SDXL dict {"crossattn", "vector"}
    uncond: object
    cfg_scale: float
    time_ids: torch.Tensor | None = None       # SDXL size/crop conditioning, [B, 6]
    image_cond: torch.Tensor | None = None     # inpainting UNets: [B, 5, h, w] mask + masked latent


def _crossattn(c):
    return c["crossattn"] if isinstance(c, dict) else c


class CFGDenoiser:
    def __init__(self, unet, schedule: DiscreteSchedule, parameterization: str, guidance: Guidance,
                 step_callback=None):
        self.unet = unet
        self.schedule = schedule
        self.parameterization = parameterization
        self.guidance = guidance
        self.step_callback = step_callback  # called before each model evaluation (interrupts)
        self.dtype = next(unet.parameters()).dtype

    def _unet(self, x_in, t, context, vector, time_ids, image_cond):
        if image_cond is not None:
            x_in = torch.cat([x_in, image_cond], dim=1)
        added = None
        if vector is not None:
            added = {"text_embeds": vector.to(self.dtype), "time_ids": time_ids.to(self.dtype)}
        out = self.unet(x_in.to(self.dtype), t, encoder_hidden_states=context.to(self.dtype),
                        added_cond_kwargs=added, return_dict=False)[0]
        return out.float()

    def _denoise(self, x, sigma, context, vector, time_ids, image_cond):
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        t = self.schedule.sigma_to_t(sigma)
        out = self._unet(x * c_in[:, None, None, None], t, context, vector, time_ids, image_cond)
        s = sigma[:, None, None, None]
        if self.parameterization == "v":
            return x / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5
        return x - out * s

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.step_callback is not None:
            self.step_callback()
        g = self.guidance
        cond, uncond = _crossattn(g.cond), _crossattn(g.uncond)
        vectors = (g.cond["vector"], g.uncond["vector"]) if isinstance(g.cond, dict) else (None, None)
        if cond.shape[1] == uncond.shape[1]:
            # one UNet call for both halves
            double = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
            vector = None if vectors[0] is None else torch.cat(vectors)
            denoised = self._denoise(double(x), double(sigma), torch.cat([cond, uncond]), vector,
                                     double(g.time_ids), double(g.image_cond))
            d_cond, d_uncond = denoised.chunk(2)
        else:
            # different token lengths (prompt and negative in different chunk counts): two calls
            d_cond = self._denoise(x, sigma, cond, vectors[0], g.time_ids, g.image_cond)
            d_uncond = self._denoise(x, sigma, uncond, vectors[1], g.time_ids, g.image_cond)
        return d_uncond + (d_cond - d_uncond) * g.cfg_scale
