"""Loopback (extensions.md §8.4, img2img): each output becomes the next loop's init image, the
denoising strength moving from the UI's value to the final one along a curve."""
import math

import gradio as gr

from modules import images, processing, scripts, shared

CURVES = {
    "Aggressive": lambda x: math.sin(x * math.pi / 2),
    "Linear": lambda x: x,
    "Lazy": lambda x: 1 - math.cos(x * math.pi / 2),
}
INTERROGATORS = {"None": None, "CLIP": "clip", "DeepBooru": "deepdanbooru"}


def denoising_strength(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    """Strength for loop `loop` (0 = the first, which uses the UI's strength)."""
    if loops <= 1:
        return initial
    return initial + (final - initial) * CURVES[curve](loop / (loops - 1))


class Script(scripts.Script):
    def title(self):
        return "Loopback"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        loops = gr.Slider(minimum=1, maximum=32, step=1, label="Loops", value=4, elem_id=self.elem_id("loops"))
        final_denoising_strength = gr.Slider(minimum=0, maximum=1, step=0.01, label="Final denoising strength",
                                             value=0.5, elem_id=self.elem_id("final_denoising_strength"))
        denoising_curve = gr.Dropdown(label="Denoising strength curve", choices=list(CURVES), value="Linear",
                                      elem_id=self.elem_id("denoising_curve"))
        append_interrogation = gr.Dropdown(label="Append interrogated prompt at each iteration",
                                           choices=list(INTERROGATORS), value="None",
                                           elem_id=self.elem_id("append_interrogation"))
        return [loops, final_denoising_strength, denoising_curve, append_interrogation]

    def run(self, p, loops, final_denoising_strength, denoising_curve, append_interrogation):
        loops = int(loops)
        if not 1 <= loops <= 32:
            raise processing.GenerationError(f"Loopback: loops must be between 1 and 32, got {loops}")
        if denoising_curve not in CURVES:
            raise processing.GenerationError(f"Loopback: denoising_curve must be one of {', '.join(CURVES)}, "
                                             f"got {denoising_curve!r}")
        if append_interrogation not in INTERROGATORS:
            raise processing.GenerationError(f"Loopback: append_interrogation must be one of "
                                             f"{', '.join(INTERROGATORS)}, got {append_interrogation!r}")
        processing.fix_seed(p)
        state = shared.state
        runs = p.n_iter
        p.extra_generation_params.update({"Final denoising strength": final_denoising_strength,
                                          "Denoising curve": denoising_curve})
        p.batch_size = p.n_iter = 1
        save_grid = shared.opts.grid_save and not p.do_not_save_grid  # API jobs save only when asked
        p.do_not_save_grid = True
        original_images, original_prompt, original_fill = p.init_images, p.prompt, p.inpainting_fill
        initial_strength = p.denoising_strength
        first_seed = first_info = None
        history, results, texts = [], [], []
        state.job_count = loops * runs
        for _run in range(runs):
            p.init_images, p.denoising_strength = original_images, initial_strength
            last_image = last_text = None
            for loop in range(loops):
                p.n_iter = p.batch_size = 1
                if INTERROGATORS[append_interrogation]:
                    from modules import interrogate
                    caption = interrogate.interrogate(p.init_images[0], INTERROGATORS[append_interrogation])
                    p.prompt = f"{original_prompt}, {caption}" if original_prompt else caption
                processed = processing.process_images(p)
                if state.interrupted or state.skipped:
                    break
                if first_seed is None:
                    first_seed, first_info = processed.seed, processed.info
                p.seed = processed.seed + 1
                p.denoising_strength = denoising_strength(loop + 1, loops, initial_strength,
                                                          final_denoising_strength, denoising_curve)
                last_image, last_text = processed.images[0], processed.infotexts[0]
                p.init_images = [last_image]
                p.inpainting_fill = 1  # later loops keep the masked area's content ("original")
                if runs == 1:  # one run: every loop's image; several runs: each run's last image
                    history.append(last_image)
                    results.append(last_image)
                    texts.append(last_text)
            if runs > 1 and last_image is not None and not (state.skipped or state.interrupted):
                history.append(last_image)
                results.append(last_image)
                texts.append(last_text)
            p.inpainting_fill = original_fill
            if state.interrupted:
                break
        grids = []
        if len(history) > 1:
            grid = images.image_grid(history, rows=1)
            if save_grid:
                images.save_image(grid, images.grid_folder(p), "grid", first_seed, p.prompt, shared.opts.grid_format,
                                  info=first_info, grid=True, p=p,
                                  short_filename=not shared.opts.grid_extended_filename)
            if shared.opts.return_grid:
                grids.append(grid)
        return processing.Processed(p=p, images=grids + results, seed=first_seed if first_seed is not None else p.seed,
                                    info=first_info or "", infotexts=[first_info or ""] * len(grids) + texts,
                                    all_prompts=[p.prompt], index_of_first_image=len(grids),
                                    interrupted=bool(state.interrupted))
