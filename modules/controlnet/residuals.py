"""The ControlNet residuals of one UNet call (controlnet.md §3.5-3.7): which units are active at this
step, their control modes, and the sum over units that goes into the UNet's down and middle blocks.

The denoiser calls a `ControlHook` with the UNet's own input, timestep and context, and tells it how
many of the rows are prompt (cond) rows; the rest are negative (uncond) rows. `inpaint_only` units
also pull the denoised prediction towards their hint outside the mask (`restore_denoised`) and
paste the hint back after decoding (`after_decode`), modules.controlnet.inpaint_only.
"""
from dataclasses import dataclass, field

import torch

from modules.controlnet import inpaint_only

SOFT_BASE = 0.825


@dataclass
class PreparedUnit:
    index: int                  # among the enabled units (infotext numbering)
    net: torch.nn.Module        # diffusers ControlNetModel
    weight: float
    guidance_start: float
    guidance_end: float
    control_mode: str
    hr_option: str
    hints: dict = field(default_factory=dict)  # "first" / "hires" -> [1, 3, h, w] float in the net's dtype
    inpaint_only: dict = field(default_factory=dict)  # "first" / "hires" -> InpaintOnlyTarget (§3.8)
    start_from_hint: bool = False  # inpaint_only+lama: the first pass starts from the filled hint's latent


def soft_scales(weight: float, count: int) -> list[float]:
    """weight·0.825^(12−i) for residual i = 0 … count−1 (the middle one last)."""
    return [weight * SOFT_BASE ** (12 - i) for i in range(count)]


class ControlHook:
    def __init__(self, units: list[PreparedUnit], hires_enabled: bool):
        self.units = units
        self.hires_enabled = hires_enabled
        self.pass_name = "first"
        self.total_steps = 1
        self.completed_step = 0
        self.calls_with_control = []  # (pass, completed step, unit index) per UNet call, for tests

    def begin_pass(self, total_steps: int, hires: bool) -> None:
        self.pass_name = "hires" if hires else "first"
        self.total_steps = max(1, total_steps)
        self.completed_step = 0

    def step_done(self, i: int) -> None:
        """The sampler finished step i (A1111's sampling_step: i−1 while step i runs)."""
        self.completed_step = i

    def _in_this_pass(self, unit: PreparedUnit) -> bool:
        """Weight and hr_option allow the unit in the current pass (§3.7)."""
        if unit.weight == 0:
            return False
        if self.hires_enabled:
            if self.pass_name == "hires" and unit.hr_option == "Low res only":
                return False
            if self.pass_name == "first" and unit.hr_option == "High res only":
                return False
        return True

    def _active(self, unit: PreparedUnit) -> bool:
        if not self._in_this_pass(unit):
            return False
        fraction = self.completed_step / self.total_steps
        return unit.guidance_start <= fraction <= unit.guidance_end and self.pass_name in unit.hints

    def __call__(self, x: torch.Tensor, t, context: torch.Tensor, added_cond_kwargs, n_cond: int) -> dict:
        """Extra UNet keyword arguments (the summed residuals), or {} when no unit is active."""
        down, mid = None, None
        x = x[:, :4]  # a 9-channel inpainting UNet's ControlNet sees the latent only
        for unit in self.units:
            if not self._active(unit):
                continue
            self.calls_with_control.append((self.pass_name, self.completed_step, unit.index))
            result = self._run(unit, x, t, context, added_cond_kwargs, n_cond)
            if result is None:
                continue
            unit_down, unit_mid = result
            down = unit_down if down is None else [a + b for a, b in zip(down, unit_down)]
            mid = unit_mid if mid is None else mid + unit_mid
        if down is None:
            return {}
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}

    def initial_latent(self, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor | None:
        """The first pass's starting x for an inpaint_only+lama unit (§3.8), else None (plain noise).

        q_sample(z_lama, 999, ε) = √ᾱ·z_lama + √(1 − ᾱ)·ε is the UNet's input at t = 999; the sampler
        holds x in k-diffusion scale (the UNet sees x·√ᾱ), so x = q_sample / √ᾱ. z_lama is the unit's
        z₀: the VAE latent of the LaMa-filled hint. The first such unit in this pass decides."""
        if self.pass_name != "first":
            return None
        for unit in self.units:
            target = unit.inpaint_only.get("first")
            if unit.start_from_hint and target is not None and self._in_this_pass(unit):
                a = alphas_cumprod[999].to(noise.device, torch.float32)
                z = target.z0.to(noise.device, noise.dtype)
                q = a.sqrt() * z + (1 - a).sqrt() * noise
                return q / a.sqrt()
        return None

    def restore_denoised(self, denoised: torch.Tensor) -> torch.Tensor:
        """The denoiser's prediction D of every row, with each active inpaint_only unit's hint kept
        outside its mask (§3.8); D unchanged without such units."""
        for unit in self.units:
            target = unit.inpaint_only.get(self.pass_name)
            if target is not None and self._active(unit):
                denoised = inpaint_only.restore_denoised(denoised, target.z0.to(denoised.device),
                                                         target.latent_mask.to(denoised.device), unit.weight)
        return denoised

    def after_decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Decoded images of the last pass [B, 3, H, W] in 0..1, with each inpaint_only unit's hint
        pasted back outside its blurred, dilated mask (§3.8)."""
        for unit in self.units:
            target = unit.inpaint_only.get(self.pass_name)
            if target is None or not self._in_this_pass(unit):
                continue
            if tuple(target.colour.shape[-2:]) != tuple(samples.shape[-2:]):
                raise ValueError(f"ControlNet unit {unit.index}: the inpaint_only hint is "
                                 f"{tuple(target.colour.shape[-2:])}, the image {tuple(samples.shape[-2:])}")
            samples = inpaint_only.blend_decoded(samples, target.colour, target.blend_mask)
        return samples

    def _run(self, unit: PreparedUnit, x, t, context, added, n_cond):
        rows = x.shape[0]
        only_cond = unit.control_mode == "ControlNet is more important"
        if only_cond:  # uncond rows get zero residuals: run the net on the prompt rows only
            if n_cond == 0:
                return None  # zero residuals: the same as adding nothing
            x, context = x[:n_cond], context[:n_cond]
            added = None if added is None else {k: v[:n_cond] for k, v in added.items()}
            t = t[:n_cond] if torch.is_tensor(t) and t.ndim else t
        hint = unit.hints[self.pass_name]
        dtype = next(unit.net.parameters()).dtype
        down, mid = unit.net(x.to(dtype), t, encoder_hidden_states=context.to(dtype),
                             controlnet_cond=hint.to(x.device, dtype).expand(x.shape[0], -1, -1, -1),
                             conditioning_scale=1.0, added_cond_kwargs=added, return_dict=False)
        residuals = [*down, mid]
        if unit.control_mode == "Balanced":
            scales = [unit.weight] * len(residuals)
        else:
            scales = soft_scales(unit.weight, len(residuals))
        residuals = [r * s for r, s in zip(residuals, scales)]
        if only_cond and n_cond < rows:
            residuals = [torch.cat([r, r.new_zeros((rows - n_cond, *r.shape[1:]))]) for r in residuals]
        return residuals[:-1], residuals[-1]

