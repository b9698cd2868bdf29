"""SD upscale (extensions.md §8.7, img2img): upscale the init image with an upscaler from the
registry, then img2img every overlapping tile at the width×height of the sliders and blend the
tiles back together."""
import math

import gradio as gr
from PIL import Image

from modules import devices, images, processing, scripts, shared, upscaling
from modules.img2img_script_checks import require_init_image


def resolve_upscaler(value) -> str:
    """An index into the upscaler list (the UI's Radio) or a name, case-insensitive (the API)."""
    names = upscaling.upscaler_names()
    if isinstance(value, bool):
        raise processing.GenerationError(f"SD upscale: upscaler must be an index or a name, got {value!r}")
    if isinstance(value, (int, float)) and float(value).is_integer():
        index = int(value)
        if not 0 <= index < len(names):
            raise processing.GenerationError(f"SD upscale: upscaler index {index} is out of range 0-{len(names) - 1}")
        return names[index]
    if isinstance(value, str):
        for name in names:
            if name.lower() == value.strip().lower():
                return name
    raise processing.GenerationError(f"SD upscale: unknown upscaler {value!r}; choose one of {', '.join(names)}")


def tile_layout(width: int, height: int, tile_w: int, tile_h: int, overlap: int) -> tuple[int, int]:
    """(columns, rows) of tiles split_grid makes for an image of width×height."""
    grid = images.split_grid(Image.new("L", (width, height)), tile_w, tile_h, overlap)
    return len(grid.tiles[0][2]), len(grid.tiles)


class Script(scripts.Script):
    def title(self):
        return "SD upscale"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Will upscale the image by the selected scale factor; "
                       "use width and height sliders to set tile size</p>")
        overlap = gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64,
                            elem_id=self.elem_id("overlap"))
        scale_factor = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor", value=2.0,
                                 elem_id=self.elem_id("scale_factor"))
        names = upscaling.upscaler_names()
        upscaler_index = gr.Radio(label="Upscaler", choices=names, value=names[0], type="index",
                                  elem_id=self.elem_id("upscaler_index"))
        return [info, overlap, upscaler_index, scale_factor]

    def run(self, p, _info, overlap, upscaler_index, scale_factor):
        overlap, scale_factor = int(overlap), float(scale_factor)
        require_init_image(p, "SD upscale")
        if not 1.0 <= scale_factor <= 4.0:
            raise processing.GenerationError(f"SD upscale: scale factor must be between 1 and 4, got {scale_factor}")
        if not 0 <= overlap < min(p.width, p.height):
            raise processing.GenerationError(f"SD upscale: tile overlap ({overlap}) must be at least 0 and smaller "
                                             f"than the tile size {p.width}x{p.height}")
        upscaler = resolve_upscaler(upscaler_index)
        processing.fix_seed(p)
        state, opts = shared.state, shared.opts
        p.extra_generation_params["SD upscale overlap"] = overlap
        p.extra_generation_params["SD upscale upscaler"] = upscaler
        seed = p.seed
        init = images.flatten(p.init_images[0], opts.img2img_background_color)
        try:  # the registry's path, as hires fix uses it
            upscaled = upscaling.upscale(init, scale_factor, upscaler)
        except (upscaling.UnknownUpscaler, upscaling.UpscalerUnavailable) as e:
            raise processing.GenerationError(f"SD upscale: {e}") from e
        devices.torch_gc()
        grid = images.split_grid(upscaled, tile_w=p.width, tile_h=p.height, overlap=overlap)
        batch_size, repeats = p.batch_size, p.n_iter
        save_samples = opts.samples_save and not p.do_not_save_samples
        p.n_iter = 1
        p.do_not_save_grid = p.do_not_save_samples = True
        work = [tile[2] for _y, _h, row in grid.tiles for tile in row]
        batches = math.ceil(len(work) / batch_size)
        state.job_count = batches * repeats
        print(f"SD upscaling will process a total of {len(work)} images tiled as {len(grid.tiles[0][2])}x"
              f"{len(grid.tiles)} per upscale in a total of {state.job_count} batches.")
        results, first_info = [], None
        for n in range(repeats):
            p.seed = seed + n
            start_seed = p.seed
            done = []
            for i in range(batches):
                p.batch_size = batch_size
                p.init_images = work[i * batch_size:(i + 1) * batch_size]
                state.job = f"Batch {i + 1 + n * batches} out of {state.job_count}"
                processed = processing.process_images(p)
                if first_info is None:
                    first_info = processed.info
                p.seed = processed.seed + 1
                done += processed.images
                if state.interrupted:
                    break
            index = 0
            for _y, _h, row in grid.tiles:
                for tile in row:
                    tile[2] = done[index] if index < len(done) else Image.new("RGB", (p.width, p.height))
                    index += 1
            combined = images.combine_grid(grid)
            results.append(combined)
            if save_samples:
                processing._save_one(p, combined, first_info, start_seed, p.prompt)
            if state.interrupted:
                break
        return processing.Processed(p=p, images=results, seed=seed, info=first_info or "",
                                    infotexts=[first_info or ""] * len(results), all_prompts=[p.prompt],
                                    interrupted=bool(state.interrupted))
