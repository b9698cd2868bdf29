"""img2img alternative test (extensions.md §8.8, img2img): find the noise that becomes the init image
by running Euler backwards with the "original" prompt, then sample forward from it with the prompt."""
import weakref

import gradio as gr
import torch

from modules import processing, rng, scripts, shared
from modules.img2img import job, noise_inversion
from modules.img2img_script_checks import require_init_image


def _latents_equal(a, b) -> bool:
    return a.shape == b.shape and torch.equal(a.cpu(), b.cpu())


class Script(scripts.Script):
    def __init__(self):
        super().__init__()
        # the last found noise: rerunning on the same image and decode settings skips the search
        self.cache = None  # (weak ref to the model, DecodeSettings, init latent, noise)

    def title(self):
        return "img2img alternative test"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.Markdown("* Works best with `CFG Scale` at 2 or lower.")
        override_sampler = gr.Checkbox(label="Override `Sampling method` to Euler?(this method is built for it)",
                                       value=True, elem_id=self.elem_id("override_sampler"))
        override_prompt = gr.Checkbox(label="Override `prompt` to the same value as `original prompt`?"
                                            "(and `negative prompt`)", value=True,
                                      elem_id=self.elem_id("override_prompt"))
        original_prompt = gr.Textbox(label="Original prompt", value="", lines=1,
                                     elem_id=self.elem_id("original_prompt"))
        original_negative_prompt = gr.Textbox(label="Original negative prompt", value="", lines=1,
                                              elem_id=self.elem_id("original_negative_prompt"))
        override_steps = gr.Checkbox(label="Override `Sampling Steps` to the same value as `Decode steps`?",
                                     value=True, elem_id=self.elem_id("override_steps"))
        st = gr.Slider(label="Decode steps", minimum=1, maximum=150, step=1, value=50, elem_id=self.elem_id("st"))
        override_strength = gr.Checkbox(label="Override `Denoising strength` to 1?", value=True,
                                        elem_id=self.elem_id("override_strength"))
        cfg = gr.Slider(label="Decode CFG scale", minimum=0.0, maximum=15.0, step=0.1, value=1.0,
                        elem_id=self.elem_id("cfg"))
        randomness = gr.Slider(label="Randomness", minimum=0.0, maximum=1.0, step=0.01, value=0.0,
                               elem_id=self.elem_id("randomness"))
        sigma_adjustment = gr.Checkbox(label="Sigma adjustment for finding noise for image", value=False,
                                       elem_id=self.elem_id("sigma_adjustment"))
        return [info, override_sampler, override_prompt, original_prompt, original_negative_prompt,
                override_steps, st, override_strength, cfg, randomness, sigma_adjustment]

    def run(self, p, _info, override_sampler, override_prompt, original_prompt, original_negative_prompt,
            override_steps, st, override_strength, cfg, randomness, sigma_adjustment):
        name = self.title()
        try:
            st, cfg, randomness = int(st), float(cfg), float(randomness)
        except (TypeError, ValueError):
            raise processing.GenerationError(f"{name}: decode steps, decode CFG scale and randomness must be "
                                             f"numbers, got {st!r}, {cfg!r}, {randomness!r}") from None
        if not 1 <= st <= 150:
            raise processing.GenerationError(f"{name}: decode steps must be between 1 and 150, got {st}")
        if not 0.0 <= randomness <= 1.0:
            raise processing.GenerationError(f"{name}: randomness must be between 0 and 1, got {randomness}")
        require_init_image(p, name)
        original_prompt, original_negative_prompt = str(original_prompt or ""), str(original_negative_prompt or "")
        if override_sampler:
            p.sampler_name = "Euler"
        if override_prompt:
            p.prompt, p.negative_prompt = original_prompt, original_negative_prompt
        if override_steps:
            p.steps = st
        if override_strength:
            p.denoising_strength = 1.0
        settings = noise_inversion.DecodeSettings(original_prompt, original_negative_prompt, cfg, st,
                                                  bool(sigma_adjustment))
        p.extra_generation_params.update({
            "Decode prompt": original_prompt, "Decode negative prompt": original_negative_prompt,
            "Decode CFG scale": cfg, "Decode steps": st, "Randomness": randomness,
            "Sigma Adjustment": bool(sigma_adjustment)})

        def sample(model, prompts, negatives, seeds, subseeds):
            found = self._found_noise(p, model, settings)
            seed_noise = None
            if randomness > 0:
                opts = shared.opts
                seed_noise = rng.ImageRNG(found.shape[1:], seeds, subseeds, p.subseed_strength,
                                          p.seed_resize_from_h, p.seed_resize_from_w, source=opts.randn_source,
                                          device=found.device, eta_noise_seed_delta=opts.eta_noise_seed_delta).first()
            combined = noise_inversion.combine_with_seed_noise(found, seed_noise, randomness)
            # the pass starts at init + noise·σ₀: the init latent is taken out again at the schedule's
            # top (σ_max), so that a full-strength pass starts exactly at combined·σ_max
            sigma_max = model.noise_schedule(shared.opts).sigma_max.to(found.device)
            start = combined - p.init_latent.to(found.device) / sigma_max
            return job.sample(p, model, prompts, negatives, seeds, subseeds, start_noise=start, noise_multiplier=1.0)

        p.sample = sample  # A1111's way: the script replaces the job's sampling step
        return processing.process_images(p)

    def _found_noise(self, p, model, settings):
        if self.cache is not None:
            cached_model, cached_settings, latent, noise = self.cache
            if cached_model() is model and cached_settings == settings and _latents_equal(latent, p.init_latent):
                return noise
        noise = noise_inversion.find_noise(p, model, settings)
        self.cache = (weakref.ref(model), settings, p.init_latent.detach().cpu(), noise)
        return noise
