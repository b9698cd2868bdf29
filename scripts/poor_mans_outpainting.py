"""Poor man's outpainting (extensions.md §8.6, img2img): enlarge the canvas and inpaint the new
border tile by tile at the generation size."""
import gradio as gr
from PIL import Image, ImageDraw

from modules import devices, images, outpainting, processing, scripts, shared
from modules.img2img_script_checks import check_directions, require_init_image

FILLS = ("fill", "original", "latent noise", "latent nothing")


def _inside(x, w, y, h, canvas, sides) -> bool:
    """A tile that lies wholly inside the original picture needs no work."""
    return x >= sides["left"] and x + w <= canvas.width - sides["right"] and y >= sides["up"] and \
        y + h <= canvas.height - sides["down"]


class Script(scripts.Script):
    def title(self):
        return "Poor man's outpainting"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4,
                              elem_id=self.elem_id("mask_blur"))
        inpainting_fill = gr.Radio(label="Masked content", choices=list(FILLS), value="fill", type="index",
                                   elem_id=self.elem_id("inpainting_fill"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(outpainting.DIRECTIONS),
                                     value=list(outpainting.DIRECTIONS), elem_id=self.elem_id("direction"))
        return [pixels, mask_blur, inpainting_fill, direction]

    def run(self, p, pixels, mask_blur, inpainting_fill, direction):
        pixels, mask_blur = int(pixels), int(mask_blur)
        fill = FILLS.index(inpainting_fill) if isinstance(inpainting_fill, str) and inpainting_fill in FILLS \
            else inpainting_fill
        if not isinstance(fill, int) or not 0 <= fill < len(FILLS):
            raise processing.GenerationError(f"Poor man's outpainting: inpainting_fill must be 0-3 or one of "
                                             f"{', '.join(FILLS)}, got {inpainting_fill!r}")
        check_directions(direction, "Poor man's outpainting")
        require_init_image(p, "Poor man's outpainting")
        if not 0 < pixels < min(p.width, p.height):
            raise processing.GenerationError(f"Poor man's outpainting: pixels ({pixels}) must be smaller than the "
                                             f"tile size {p.width}x{p.height}")
        state = shared.state
        p.mask_blur_x = p.mask_blur_y = mask_blur * 2
        p.inpainting_fill = fill
        p.inpaint_full_res = False
        init = p.init_images[0]
        sides = outpainting.expansion(init.width, init.height, pixels, direction)
        canvas = Image.new("RGB", (init.width + sides["left"] + sides["right"],
                                   init.height + sides["up"] + sides["down"]))
        canvas.paste(init, (sides["left"], sides["up"]))
        mask, latent_mask = self._masks(canvas.size, sides, mask_blur)
        devices.torch_gc()
        grid = images.split_grid(canvas, tile_w=p.width, tile_h=p.height, overlap=pixels)
        grid_mask = images.split_grid(mask, tile_w=p.width, tile_h=p.height, overlap=pixels)
        grid_latent = images.split_grid(latent_mask, tile_w=p.width, tile_h=p.height, overlap=pixels)
        save_samples = shared.opts.samples_save and not p.do_not_save_samples
        p.n_iter = p.batch_size = 1
        p.do_not_save_grid = p.do_not_save_samples = True
        work = []
        for (y, h, row), (_, _, row_mask), (_, _, row_latent) in zip(grid.tiles, grid_mask.tiles, grid_latent.tiles):
            for tile, tile_mask, tile_latent in zip(row, row_mask, row_latent):
                if not _inside(tile[0], tile[1], y, h, canvas, sides):
                    work.append((tile[2], tile_mask[2], tile_latent[2]))
        state.job_count = len(work)
        print(f"Poor man's outpainting will process a total of {len(work)} images tiled as "
              f"{len(grid.tiles[0][2])}x{len(grid.tiles)}.")
        results, first_seed, first_info = [], None, None
        for i, (tile, tile_mask, tile_latent) in enumerate(work):
            p.init_images, p.image_mask, p.latent_mask = [tile], tile_mask, tile_latent
            state.job = f"Batch {i + 1} out of {len(work)}"
            processed = processing.process_images(p)
            if first_seed is None:
                first_seed, first_info = processed.seed, processed.info
            p.seed = processed.seed + 1
            results += processed.images
            if state.interrupted:
                break
        index = 0
        for y, h, row in grid.tiles:
            for tile in row:
                if _inside(tile[0], tile[1], y, h, canvas, sides):
                    continue
                tile[2] = results[index] if index < len(results) else Image.new("RGB", (p.width, p.height))
                index += 1
        combined = images.combine_grid(grid)
        if save_samples and not state.interrupted:
            processing._save_one(p, combined, first_info, first_seed, p.prompt)
        return processing.Processed(p=p, images=[combined], seed=first_seed if first_seed is not None else p.seed,
                                    info=first_info or "", infotexts=[first_info or ""], all_prompts=[p.prompt],
                                    interrupted=bool(state.interrupted))

    @staticmethod
    def _masks(size, sides, mask_blur):
        """(mask, latent mask): white = repaint; the picture's edge is pulled inwards by the blur
        (twice the blur for the pixel mask, half of it for the latent one) on expanded sides."""
        def inset(amount):
            image = Image.new("L", size, "white")
            ImageDraw.Draw(image).rectangle((
                sides["left"] + (amount if sides["left"] else 0), sides["up"] + (amount if sides["up"] else 0),
                size[0] - sides["right"] - (amount if sides["right"] else 0),
                size[1] - sides["down"] - (amount if sides["down"] else 0)), fill="black")
            return image
        return inset(mask_blur * 2), inset(mask_blur // 2)
