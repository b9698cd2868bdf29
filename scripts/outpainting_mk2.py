"""Outpainting mk2 (extensions.md §8.5, img2img): one side at a time, enlarge the canvas, fill the
new strip with noise matched to the picture, and inpaint it with masked content "original"."""
import math

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from modules import images, outpainting, processing, scripts, shared
from modules.img2img_script_checks import check_directions, require_init_image


class Script(scripts.Script):
    def title(self):
        return "Outpainting mk2"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Recommended settings: Sampling Steps: 80-100, "
                       "Sampler: Euler a, Denoising strength: 0.8</p>")
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=8,
                              elem_id=self.elem_id("mask_blur"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(outpainting.DIRECTIONS),
                                     value=list(outpainting.DIRECTIONS), elem_id=self.elem_id("direction"))
        noise_q = gr.Slider(label="Fall-off exponent (lower=higher detail)", minimum=0.0, maximum=4.0, step=0.01,
                            value=1.0, elem_id=self.elem_id("noise_q"))
        color_variation = gr.Slider(label="Color variation", minimum=0.0, maximum=1.0, step=0.01, value=0.05,
                                    elem_id=self.elem_id("color_variation"))
        return [info, pixels, mask_blur, direction, noise_q, color_variation]

    def run(self, p, _info, pixels, mask_blur, direction, noise_q, color_variation):
        pixels, mask_blur = int(pixels), int(mask_blur)
        noise_q, color_variation = float(noise_q), float(color_variation)
        check_directions(direction, "Outpainting mk2")
        require_init_image(p, "Outpainting mk2")
        if not 8 <= pixels <= 256:
            raise processing.GenerationError(f"Outpainting mk2: pixels must be between 8 and 256, got {pixels}")
        processing.fix_seed(p)
        state, opts = shared.state, shared.opts
        self.p, self.first = p, None
        self.tile_w, self.tile_h = p.width, p.height
        p.inpaint_full_res = False
        p.inpainting_fill = 1  # "original": the matched noise is what gets denoised
        save_samples = opts.samples_save and not p.do_not_save_samples
        save_grid = opts.grid_save and not p.do_not_save_grid
        p.do_not_save_samples = p.do_not_save_grid = True
        horizontal = mask_blur if {"left", "right"} & set(direction) else 0
        vertical = mask_blur if {"up", "down"} & set(direction) else 0
        self.blur_x, self.blur_y = horizontal, vertical
        self.noise_q, self.color_variation = noise_q, color_variation
        p.mask_blur_x, p.mask_blur_y = horizontal * 4, vertical * 4
        init = p.init_images[0].convert("RGB")
        sides = outpainting.expansion(init.width, init.height, pixels, direction)
        runs, batch_size = p.n_iter, p.batch_size
        p.n_iter = 1
        state.job_count = runs * sum(1 for side in outpainting.DIRECTIONS if sides[side] > 0)
        self.rng = np.random.default_rng(p.seed)
        outputs = []
        base_seed = p.seed
        for run in range(runs):
            p.seed = base_seed + run * batch_size  # every side of a run uses the run's seed
            canvases = [init] * batch_size
            for side in outpainting.DIRECTIONS:
                if sides[side] > 0 and not state.interrupted:
                    canvases = self._expand(canvases, sides[side], side)
            outputs += canvases
            if state.interrupted:
                break
        seed, info = self.first if self.first else (p.seed, "")
        results, texts = list(outputs), [info] * len(outputs)
        grid_wanted = not (len(outputs) < 2 and opts.grid_only_if_multiple)
        grid = images.image_grid(outputs) if outputs and grid_wanted else None
        if grid is not None and opts.return_grid:
            results, texts = [grid] + results, [info] + texts
        for image in outputs if save_samples else ():
            processing._save_one(p, image, info, seed, p.prompt)
        if grid is not None and save_grid:
            images.save_image(grid, images.grid_folder(p), "grid", seed, p.prompt, opts.grid_format, info=info,
                              grid=True, p=p, short_filename=not opts.grid_extended_filename)
        return processing.Processed(p=p, images=results, seed=seed, info=info, infotexts=texts,
                                    all_prompts=[p.prompt], index_of_first_image=len(results) - len(outputs),
                                    interrupted=bool(state.interrupted))

    def _expand(self, canvases: list, amount: int, side: str) -> list:
        """Grow each canvas by `amount` on `side` and inpaint the new strip (with the part of the
        picture next to it, at most one generation size wide)."""
        p = self.p
        left, right, top, bottom = side == "left", side == "right", side == "up", side == "down"
        horizontal = left or right
        extra_w, extra_h = (amount, 0) if horizontal else (0, amount)
        noised, crops, masks = [], [], []
        for canvas in canvases:
            res_w, res_h = canvas.width + extra_w, canvas.height + extra_h
            work_w, work_h = math.ceil(res_w / 64) * 64, math.ceil(res_h / 64) * 64
            grown = Image.new("RGB", (work_w, work_h))
            grown.paste(canvas, (extra_w if left else 0, extra_h if top else 0))
            mask = Image.new("L", (work_w, work_h), "white")
            ImageDraw.Draw(mask).rectangle((
                amount + self.blur_x if left else 0, amount + self.blur_y if top else 0,
                work_w - amount - self.blur_x if right else res_w, work_h - amount - self.blur_y if bottom else res_h),
                fill="black")
            noised.append((grown, mask, res_w, res_h))
        # the work region: the new strip plus the picture beside it, the generation size at most
        p.width = min(self.tile_w, canvases[0].width + extra_w) if horizontal else noised[0][0].width
        p.height = min(self.tile_h, canvases[0].height + extra_h) if not horizontal else noised[0][0].height
        outputs = []
        for grown, mask, res_w, res_h in noised:
            filled = Image.fromarray(np.clip(outpainting.matched_noise(
                np.asarray(grown, dtype=np.float64) / 255.0, np.asarray(mask, dtype=np.float64) / 255.0,
                self.noise_q, self.color_variation, self.rng) * 255.0, 0, 255).astype(np.uint8))
            box = (0 if left else filled.width - p.width, 0 if top else filled.height - p.height,
                   p.width if left else filled.width, p.height if top else filled.height)
            crops.append(filled.crop(box))
            masks.append(mask.crop(box))
            outputs.append((filled, res_w, res_h))
        p.init_images, p.image_mask = crops, masks[0]
        latent = Image.new("L", (p.width, p.height), "white")
        ImageDraw.Draw(latent).rectangle((
            amount + self.blur_x * 2 if left else 0, amount + self.blur_y * 2 if top else 0,
            p.width - amount - self.blur_x * 2 if right else p.width, p.height - amount - self.blur_y * 2 if bottom
            else p.height), fill="black")
        p.latent_mask = latent
        processed = processing.process_images(p)
        if self.first is None:
            self.first = (processed.seed, processed.info)
        results = []
        for (filled, res_w, res_h), image in zip(outputs, processed.images):
            filled.paste(image, (0 if left else filled.width - image.width, 0 if top else filled.height - image.height))
            results.append(filled.crop((0, 0, res_w, res_h)))  # the 64-px rounding is on the far side
        return results
