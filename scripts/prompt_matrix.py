"""Prompt matrix (extensions.md §8.1): every combination of the `|`-separated optional parts of the
prompt, in one labelled grid."""
import math

import gradio as gr

from modules import images, processing, scripts, shared
from modules.grid_annotations import draw_prompt_matrix


class Script(scripts.Script):
    def title(self):
        return "Prompt matrix"

    def ui(self, is_img2img):
        gr.HTML("<br>")
        with gr.Row():
            put_at_start = gr.Checkbox(label="Put variable parts at start of prompt", value=False,
                                       elem_id=self.elem_id("put_at_start"))
            different_seeds = gr.Checkbox(label="Use different seed for each picture", value=False,
                                          elem_id=self.elem_id("different_seeds"))
        with gr.Row():
            prompt_type = gr.Radio(["positive", "negative"], label="Select prompt", value="positive",
                                   elem_id=self.elem_id("prompt_type"))
            variations_delimiter = gr.Radio(["comma", "space"], label="Select joining char", value="comma",
                                            elem_id=self.elem_id("variations_delimiter"))
        margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size]

    def run(self, p, put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size):
        processing.fix_seed(p)
        if prompt_type not in ("positive", "negative"):
            raise processing.GenerationError(f"Prompt matrix: prompt_type must be 'positive' or 'negative', "
                                             f"got {prompt_type!r}")
        if variations_delimiter not in ("comma", "space"):
            raise processing.GenerationError(f"Prompt matrix: variations_delimiter must be 'comma' or 'space', "
                                             f"got {variations_delimiter!r}")
        original = p.prompt if prompt_type == "positive" else p.negative_prompt
        parts = original.split("|")
        fixed, optional = parts[0], [part.strip().strip(",").strip() for part in parts[1:]]
        delimiter = ", " if variations_delimiter == "comma" else " "
        combinations = []
        for c in range(1 << len(optional)):
            chosen = [part for j, part in enumerate(optional) if c & (1 << j)]
            pieces = chosen + [fixed] if put_at_start else [fixed] + chosen
            combinations.append(delimiter.join(piece for piece in pieces if piece))
        p.n_iter = math.ceil(len(combinations) / p.batch_size)
        p.do_not_save_grid = True  # the labelled grid below replaces the normal one
        print(f"Prompt matrix will create {len(combinations)} images using a total of {p.n_iter} batches.")
        if prompt_type == "positive":
            p.prompt = combinations
        else:
            p.negative_prompt = combinations
        p.seed = [p.seed + (i if different_seeds else 0) for i in range(len(combinations))]
        p.prompt_for_display = original
        processed = processing.process_images(p)
        cells = processed.images[processed.index_of_first_image:]
        grid = images.image_grid(cells, p.batch_size, rows=1 << ((len(optional) + 1) // 2))
        grid = draw_prompt_matrix(grid, processed.images[-1].width, processed.images[-1].height,
                                  [fixed] + optional, int(margin_size or 0))
        processed.images = [grid] + cells
        processed.infotexts = [processed.infotexts[processed.index_of_first_image]] + \
            processed.infotexts[processed.index_of_first_image:]
        processed.index_of_first_image = 1
        if shared.opts.grid_save:
            images.save_image(grid, images.grid_folder(p), "prompt_matrix", processed.seed, original,
                              shared.opts.grid_format, info=processed.infotexts[0], grid=True, p=p,
                              short_filename=not shared.opts.grid_extended_filename)
        return processed
