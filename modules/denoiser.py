"""The model as a denoiser D(x, σ) with classifier-free guidance, for the k-diffusion solvers.

generation.md §0.3: ε models give `x − σ·ε(c_in·x, t(σ))`, v models `c_skip·x + c_out·v(...)`.
Each evaluation picks the active conditioning of every prompt schedule (prompt-syntax.md §7) and
combines `AND` sub-prompts with their weights (§13):
`D̂ᵢ = D(xᵢ; uncondᵢ) + Σⱼ wᵢⱼ · s · (D(xᵢ; condᵢⱼ) − D(xᵢ; uncondᵢ))`.
"""
import bisect
from dataclasses import dataclass

import torch

from modules import prompt_parser, script_callbacks, sd_unet
from modules.noise_schedule import DiscreteSchedule


@dataclass
class Guidance:
    cond: prompt_parser.MulticondLearnedConditioning   # positive prompts, AND sub-prompts, schedules
    uncond: list                                       # negative prompts' schedules
    cfg_scale: float
    time_ids: torch.Tensor | None = None       # SDXL size/crop conditioning, [B, 6] (refiner: [B, 5])
    uncond_time_ids: torch.Tensor | None = None  # the refiner's negative side has its own aesthetic score
    image_cond: torch.Tensor | None = None     # inpainting UNets: [B, 5, h, w] mask + masked latent
    s_min_uncond: float = 0.0                  # NGMS: below this sigma skip the unconditional pass
    s_min_uncond_all: bool = False             # ... on every evaluation, not every second one
    batch_cond_uncond: bool = True             # off: separate UNet calls, less memory
    # instruct-pix2pix: image guidance i (prompt-syntax.md §13); None or 1 = ordinary CFG
    image_cfg_scale: float | None = None
    # ControlNet (modules.controlnet.residuals.ControlHook): control(x_in, t, context, added, n_cond) ->
    # extra UNet kwargs (the residuals) per call, and control.restore_denoised(D) -> D (inpaint_only)
    control: object = None


def _split(c):
    """(cross-attention tensor, pooled vector or None) of a cond batch."""
    if isinstance(c, dict):
        return c["crossattn"], c.get("vector")
    return c, None


class _ActiveConds:
    """The conditioning of one stretch of steps between prompt-schedule boundaries, with the tensors
    every evaluation in that stretch needs built once (they are the same at each step)."""

    def __init__(self, guidance: Guidance, conds_list, cond, uncond):
        self.conds_list = conds_list
        # one row per sub-prompt of each image; None when that is simply every image once, in order
        rows = [i for i, conds in enumerate(conds_list) for _ in conds]
        self.rows = None if rows == list(range(len(conds_list))) else rows
        self.n_rows = len(rows)
        self.cond_ctx, self.cond_vec = _split(cond)
        self.uncond_ctx, self.uncond_vec = _split(uncond)
        self.cond_time_ids = self.per_row(guidance.time_ids)
        self.cond_image = self.per_row(guidance.image_cond)
        self.uncond_time_ids = guidance.time_ids if guidance.uncond_time_ids is None else guidance.uncond_time_ids
        # plain CFG: one sub-prompt of weight 1 per image (the common case: one tensor expression)
        self.plain = self.rows is None and all(conds[0][1] == 1.0 for conds in conds_list)
        self._joint = None

    def per_row(self, t):
        return t if t is None or self.rows is None else t[self.rows]

    def joint(self, guidance: Guidance):
        """Prompt rows then negative rows in one batch: context, pooled vector, time ids, image cond."""
        if self._joint is None:
            def both(a, b):
                return None if a is None else torch.cat([a, b])
            self._joint = (both(self.cond_ctx, self.uncond_ctx), both(self.cond_vec, self.uncond_vec),
                           both(self.cond_time_ids, self.uncond_time_ids),
                           both(self.cond_image, guidance.image_cond))
        return self._joint


class CFGDenoiser:
    def __init__(self, unet, schedule: DiscreteSchedule, parameterization: str, guidance: Guidance,
                 step_callback=None):
        self.unet = unet
        self.schedule = schedule
        self.parameterization = parameterization
        self.guidance = guidance
        self.step_callback = step_callback  # called before each model evaluation (interrupts)
        self.step = 0  # the schedule counter: one per evaluation (prompt-syntax.md §7)
        self.cond_scale_multiplier = 1.0  # DDIM CFG++ runs with a reduced guidance scale
        self.last_denoised_uncond = None  # DDIM CFG++ reads the unconditional prediction
        self.skipped_uncond = False  # NGMS happened (infotext)
        # inpainting (generation.md §7.4 step 6): a callable (prediction, denoiser, sigma) -> blended
        # prediction that keeps z0 where the mask is 1 (modules.img2img.mask_blend.LatentBlend)
        self.mask_blend = None
        # A1111's name: timestep samplers (DDIM/PLMS/UniPC) blend the model's input instead (§7.4 step 6)
        self.mask_before_denoising = False
        # the active conds only change when the counter passes a schedule boundary: reuse them till then
        ends = {entry.end_at_step for composable in guidance.cond.batch for c in composable for entry in c.schedules}
        ends |= {entry.end_at_step for schedule in guidance.uncond for entry in schedule}
        self._boundaries = sorted(ends)
        self._cached = (None, None)
        self.dtype = next(unet.parameters()).dtype
        # the `sd_unet` setting's SdUnet (an extension's engine) when it stands in for this UNet
        self.sd_unet = sd_unet.replacement_for(unet)
        self.total_steps = 0  # the pass's step count, for the cfg_denoiser callbacks

    def _unet(self, x_in, t, context, vector, time_ids, image_cond, n_cond):
        added = None
        if vector is not None:
            added = {"text_embeds": vector.to(self.dtype), "time_ids": time_ids.to(self.dtype)}
        extra = {}
        if self.guidance.control is not None:  # rows [:n_cond] are prompt rows, the rest negative
            extra = self.guidance.control(x_in, t, context, added, n_cond)
        if image_cond is not None:
            x_in = torch.cat([x_in, image_cond], dim=1)
        if self.sd_unet is not None:
            return self._replaced_unet(x_in, t, context, added, extra)
        out = self.unet(x_in.to(self.dtype), t, encoder_hidden_states=context.to(self.dtype),
                        added_cond_kwargs=added, return_dict=False, **extra)[0]
        return out.float()

    def _replaced_unet(self, x_in, t, context, added, extra):
        """A1111's call of an SdUnet: forward(x, timesteps, context, y=...) with ldm's `y` for SDXL
        (the pooled text embedding then the time ids' sinusoidal embeddings, as the UNet itself
        builds it) and ControlNet's residuals as the diffusers keyword arguments."""
        kwargs = dict(extra)
        if added is not None:
            time_embeds = self.unet.add_time_proj(added["time_ids"].flatten())
            kwargs["y"] = torch.cat([added["text_embeds"], time_embeds.reshape(x_in.shape[0], -1).to(self.dtype)],
                                    dim=-1)
        out = self.sd_unet.forward(x_in.to(self.dtype), t, context.to(self.dtype), **kwargs)
        return out.float()

    def _denoise(self, x, sigma, context, vector, time_ids, image_cond, n_cond):
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        t = self.schedule.sigma_to_t(sigma)
        out = self._unet(x * c_in[:, None, None, None], t, context, vector, time_ids, image_cond, n_cond)
        s = sigma[:, None, None, None]
        if self.parameterization == "v":
            denoised = x / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5
        else:
            denoised = x - out * s
        if self.guidance.control is not None:
            denoised = self.guidance.control.restore_denoised(denoised)
        return denoised

    def _conds_at(self, step: int) -> _ActiveConds:
        bucket = bisect.bisect_left(self._boundaries, step)
        key, active = self._cached
        if key != bucket:
            conds_list, cond = prompt_parser.reconstruct_multicond_batch(self.guidance.cond, step)
            uncond = prompt_parser.reconstruct_cond_batch(self.guidance.uncond, step)
            active = _ActiveConds(self.guidance, conds_list, cond, uncond)
            self._cached = (bucket, active)
        return active

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.step_callback is not None:
            self.step_callback()
        if self.mask_before_denoising and self.mask_blend is not None:
            x = self.mask_blend.into_model_input(x, self, sigma)
        g = self.guidance
        a = self._conds_at(self.step)
        # NGMS (prompt-syntax.md §13): at small sigma, on every second evaluation, no negative pass
        skip_uncond = (g.s_min_uncond > 0 and float(sigma[0]) < g.s_min_uncond
                       and (self.step % 2 == 0 or g.s_min_uncond_all))
        self.step += 1
        if not skip_uncond and _any_cfg_callbacks():
            return self._call_with_callbacks(x, sigma, a)

        x_rows, sigma_rows = a.per_row(x), a.per_row(sigma)
        if skip_uncond:
            self.skipped_uncond = True
            d_cond = self._denoise(x_rows, sigma_rows, a.cond_ctx, a.cond_vec, a.cond_time_ids, a.cond_image,
                                   a.n_rows)
            # each image's first sub-prompt stands in for its unconditional prediction
            d_uncond = torch.stack([d_cond[conds[0][0]] for conds in a.conds_list])
        elif a.cond_ctx.shape[1] == a.uncond_ctx.shape[1] and g.batch_cond_uncond:
            denoised = self._denoise(torch.cat([x_rows, x]), torch.cat([sigma_rows, sigma]), *a.joint(g), a.n_rows)
            d_cond, d_uncond = denoised[:a.n_rows], denoised[a.n_rows:]
        else:
            # prompt and negative in different chunk counts (or batching is off): two UNet calls
            d_cond = self._denoise(x_rows, sigma_rows, a.cond_ctx, a.cond_vec, a.cond_time_ids, a.cond_image,
                                   a.n_rows)
            d_uncond = self._denoise(x, sigma, a.uncond_ctx, a.uncond_vec, a.uncond_time_ids, g.image_cond, 0)

        return self._combine(a, d_cond, d_uncond, x, sigma, skip_uncond)

    def _combine(self, a: _ActiveConds, d_cond, d_uncond, x, sigma, skip_uncond=False):
        g = self.guidance
        self.last_denoised_uncond = d_uncond
        scale = g.cfg_scale * self.cond_scale_multiplier
        if g.image_cfg_scale is not None and g.image_cfg_scale != 1 and not skip_uncond:
            # a third pass without the image: D_u + s·(D_c − D_img) + i·(D_img − D_u)
            d_plain = self._denoise(x, sigma, a.uncond_ctx, a.uncond_vec, a.uncond_time_ids,
                                    torch.zeros_like(g.image_cond), 0)
            result = d_plain + (d_cond - d_uncond) * scale + (d_uncond - d_plain) * g.image_cfg_scale
        elif a.plain:
            result = d_uncond + (d_cond - d_uncond) * scale
        else:
            result = d_uncond.clone()
            for i, conds in enumerate(a.conds_list):
                for row, weight in conds:
                    result[i] += (d_cond[row] - d_uncond[i]) * (weight * scale)
        if self.mask_blend is not None and not self.mask_before_denoising:
            result = self.mask_blend(result, self, sigma)
        return result

    def _call_with_callbacks(self, x, sigma, a: _ActiveConds):
        """The evaluation with extensions' cfg_denoiser / cfg_denoised / cfg_after_cfg callbacks
        (extensions.md §6.2 layout: prompt rows, then negative rows)."""
        g = self.guidance
        step, total = self.step - 1, self.total_steps
        n = a.n_rows

        def both(c, u):
            return None if c is None else torch.cat([c, u])

        def text(ctx, vec):
            return ctx if vec is None else {"crossattn": ctx, "vector": vec}

        params = script_callbacks.CFGDenoiserParams(
            torch.cat([a.per_row(x), x]), both(a.cond_image, g.image_cond), torch.cat([a.per_row(sigma), sigma]),
            step, total, text(a.cond_ctx, a.cond_vec), text(a.uncond_ctx, a.uncond_vec), self)
        script_callbacks.cfg_denoiser_callback(params)
        x_in, sigma_in, image_in = params.x, params.sigma, params.image_cond
        cond_ctx, cond_vec = _split(params.text_cond)
        uncond_ctx, uncond_vec = _split(params.text_uncond)
        if cond_ctx.shape[1] == uncond_ctx.shape[1]:
            denoised = self._denoise(x_in, sigma_in, torch.cat([cond_ctx, uncond_ctx]), both(cond_vec, uncond_vec),
                                     both(a.cond_time_ids, a.uncond_time_ids), image_in, n)
        else:
            part = (lambda t, lo, hi: None if t is None else t[lo:hi])
            denoised = torch.cat([
                self._denoise(x_in[:n], sigma_in[:n], cond_ctx, cond_vec, a.cond_time_ids, part(image_in, 0, n), n),
                self._denoise(x_in[n:], sigma_in[n:], uncond_ctx, uncond_vec, a.uncond_time_ids,
                              part(image_in, n, None), 0)])
        after_unet = script_callbacks.CFGDenoisedParams(denoised, step, total, self.unet)
        script_callbacks.cfg_denoised_callback(after_unet)
        denoised = after_unet.x
        result = self._combine(a, denoised[:n], denoised[n:], x, sigma)
        after_cfg = script_callbacks.AfterCFGCallbackParams(result, step, total)
        script_callbacks.cfg_after_cfg_callback(after_cfg)
        return after_cfg.x


def _any_cfg_callbacks() -> bool:
    m = script_callbacks.callback_map
    return bool(m["callbacks_cfg_denoiser"] or m["callbacks_cfg_denoised"] or m["callbacks_cfg_after_cfg"])
