"""The Extras "Upscale" step (extras.md §2.4): scale by / scale to (crop to fit), Upscaler 1,
Upscaler 2 blended with its visibility, the result cache."""
import math

from PIL import Image

from modules import shared, upscaling
from modules.postprocessing.errors import PostprocessingError
from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessing
from modules.upscaling import core as upscale_module, result_cache


def limit_side(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) so the longer side is max_side (the other side floored)."""
    if width >= height:
        return max_side, math.floor(max_side * height / width)
    return math.floor(max_side * width / height), max_side


def _check_megapixels(width: int, height: int) -> None:
    limit = float(shared.opts.img_max_size_mp)
    if limit > 0 and width * height > limit * 1_000_000:
        raise PostprocessingError(f"The upscaled image would be {width}x{height} "
                                  f"({width * height / 1e6:.0f} megapixels), above the limit of {limit:g} "
                                  f"(setting img_max_size_mp)")


def cached_upscale(image: Image.Image, scale: float, name: str) -> Image.Image:
    entry = upscaling.require_available(upscaling.find_upscaler(name))
    tiles = upscale_module.tile_settings(entry) if not entry.is_builtin else ()
    key = (result_cache.image_key(image), entry.name, result_cache.file_key(entry.path), tiles, scale)
    cached = result_cache.get(key)
    if cached is not None:
        return cached
    width, height = upscale_module.destination(image, scale)
    _check_megapixels(width, height)
    result = upscaling.upscale(image, scale, entry.name)
    result_cache.put(key, result, int(shared.opts.upscaling_max_images_in_cache))
    return result


def crop_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """Exactly width×height: enlarged to cover first when rounding left it short (no black bars,
    extras.md §8 target 4), then centre-cropped."""
    if image.width < width or image.height < height:
        factor = max(width / image.width, height / image.height)
        size = (max(width, math.ceil(image.width * factor)), max(height, math.ceil(image.height * factor)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def native_scale(name: str | None) -> int | None:
    """The single digit next to an x/X in an upscaler name (`4x-UltraSharp`, `DAT x2`), else None."""
    import re
    match = re.search(r"(?<!\d)(\d)[xX]|[xX](\d)(?!\d)", name or "")
    return int(match.group(1) or match.group(2)) if match else None


def scale_from_name(name):
    """set_scale_by_when_changing_upscaler: choosing Upscaler 1 sets Resize to its native scale."""
    import gradio as gr
    scale = native_scale(name) if shared.opts.set_scale_by_when_changing_upscaler else None
    return gr.update(value=scale) if scale else gr.update()


class ScriptPostprocessingUpscale(ScriptPostprocessing):
    name = "Upscale"
    order = 1000

    def ui(self):
        import gradio as gr

        from modules import upscaling as registry
        names = registry.upscaler_names()
        with gr.Group(elem_id="extras_upscale"):
            enabled = gr.Checkbox(label="Upscale", value=True, elem_id="extras_upscale_enabled")
            with gr.Tabs(elem_id="extras_resize_mode"):
                with gr.Tab("Scale by", id="extras_scale_by_tab") as tab_scale_by:
                    upscale_by = gr.Slider(1.0, 8.0, step=0.05, label="Resize", value=4,
                                           elem_id="extras_upscaling_resize")
                    max_side = gr.Slider(0, 8192, step=8, label="Max side length", value=0,
                                         elem_id="extras_upscale_max_side_length")
                with gr.Tab("Scale to", id="extras_scale_to_tab") as tab_scale_to:
                    with gr.Row():
                        width = gr.Slider(64, 8192, step=8, label="Width", value=512,
                                          elem_id="extras_upscaling_resize_w")
                        height = gr.Slider(64, 8192, step=8, label="Height", value=512,
                                           elem_id="extras_upscaling_resize_h")
                        crop = gr.Checkbox(label="Crop to fit", value=True, elem_id="extras_upscaling_crop")
            mode = gr.State(value=0)
            with gr.Row():
                upscaler_1 = gr.Dropdown(label="Upscaler 1", choices=names, value="None", elem_id="extras_upscaler_1")
            with gr.Row():
                upscaler_2 = gr.Dropdown(label="Upscaler 2", choices=names, value="None", elem_id="extras_upscaler_2")
                visibility = gr.Slider(0.0, 1.0, step=0.001, label="Upscaler 2 visibility", value=0.0,
                                       elem_id="extras_upscaler_2_visibility")
        upscaler_1.change(fn=scale_from_name, inputs=[upscaler_1], outputs=[upscale_by], api_visibility="private")
        tab_scale_by.select(fn=lambda: 0, outputs=[mode], api_visibility="private")
        tab_scale_to.select(fn=lambda: 1, outputs=[mode], api_visibility="private")
        return {"upscale_enabled": enabled, "upscale_mode": mode, "upscale_by": upscale_by,
                "max_side_length": max_side, "upscale_to_width": width, "upscale_to_height": height,
                "upscale_crop": crop, "upscaler_1_name": upscaler_1, "upscaler_2_name": upscaler_2,
                "upscaler_2_visibility": visibility}

    def plan(self, pp: PostprocessedImage, upscale_mode=0, upscale_by=2.0, max_side_length=0,
             upscale_to_width=None, upscale_to_height=None, upscale_crop=False):
        """(mode, scale, target width, target height, crop, info) for this image."""
        image = pp.image
        info = {}
        if upscale_mode == 1:
            if not upscale_to_width or not upscale_to_height or upscale_to_width < 1 or upscale_to_height < 1:
                raise PostprocessingError("Scale to needs a width and a height of at least 1")
            width, height = int(upscale_to_width), int(upscale_to_height)
            scale = max(width / image.width, height / image.height)
            info["Postprocess upscale to"] = f"{width}x{height}"
            return 1, scale, width, height, bool(upscale_crop), info
        if not upscale_by or upscale_by <= 0:
            raise PostprocessingError(f"Upscale by must be above 0, got {upscale_by}")
        info["Postprocess upscale by"] = upscale_by
        width, height = int(image.width * upscale_by), int(image.height * upscale_by)
        if max_side_length and max(image.width, image.height) * upscale_by > max_side_length:
            width, height = limit_side(image.width, image.height, int(max_side_length))
            info["Max side length"] = max_side_length
            return 1, max(width / image.width, height / image.height), width, height, False, info
        return 0, upscale_by, width, height, False, info

    def process_firstpass(self, pp: PostprocessedImage, upscale_enabled=True, upscale_mode=0, upscale_by=2.0,
                          max_side_length=0, upscale_to_width=None, upscale_to_height=None, **args):
        # the target later steps (split, focal crop) work towards; published even when disabled.
        # max side 0 means no limit (A1111 publishes 0x0 there, which silently disables those steps)
        _, _, width, height, _, _ = self.plan(pp, upscale_mode, upscale_by, max_side_length,
                                              upscale_to_width, upscale_to_height)
        pp.shared.target_width, pp.shared.target_height = width, height

    def check(self, upscale_enabled=True, upscale_mode=0, upscale_by=2.0, upscale_to_width=None,
              upscale_to_height=None, upscaler_1_name=None, upscaler_2_name=None, upscaler_2_visibility=0.0,
              **args):
        """The choices `process` would refuse, checked before there is an image (main UI jobs)."""
        if not upscale_enabled or upscaler_1_name in (None, "", "None"):
            return
        if not 0 <= (upscaler_2_visibility or 0) <= 1:
            raise PostprocessingError(f"Upscaler 2 visibility must be between 0 and 1, got {upscaler_2_visibility}")
        if upscale_mode == 1:
            if not upscale_to_width or not upscale_to_height or upscale_to_width < 1 or upscale_to_height < 1:
                raise PostprocessingError("Scale to needs a width and a height of at least 1")
        elif not upscale_by or upscale_by <= 0:
            raise PostprocessingError(f"Upscale by must be above 0, got {upscale_by}")
        upscaling.require_available(upscaling.find_upscaler(upscaler_1_name))
        if upscaler_2_name not in (None, "", "None"):  # an unknown name is an error even at visibility 0
            entry = upscaling.find_upscaler(upscaler_2_name)
            if (upscaler_2_visibility or 0) > 0:
                upscaling.require_available(entry)

    def process(self, pp: PostprocessedImage, upscale_enabled=True, upscale_mode=0, upscale_by=2.0,
                max_side_length=0, upscale_to_width=None, upscale_to_height=None, upscale_crop=False,
                upscaler_1_name=None, upscaler_2_name=None, upscaler_2_visibility=0.0, **args):
        self.check(upscale_enabled, upscale_mode, upscale_by, upscale_to_width, upscale_to_height,
                   upscaler_1_name, upscaler_2_name, upscaler_2_visibility)
        if not upscale_enabled or upscaler_1_name in (None, "", "None"):
            return
        mode, scale, width, height, crop, info = self.plan(pp, upscale_mode, upscale_by, max_side_length,
                                                           upscale_to_width, upscale_to_height, upscale_crop)
        source = pp.image
        second = upscaler_2_name not in (None, "", "None") and (upscaler_2_visibility or 0) > 0

        def one(name):
            result = cached_upscale(source, scale, name)
            return crop_to(result, width, height) if mode == 1 and crop else result

        image = one(upscaler_1_name)
        if mode == 1 and crop:
            info["Postprocess crop to"] = f"{width}x{height}"
        info["Postprocess upscaler"] = upscaling.find_upscaler(upscaler_1_name).name
        if second:
            other = one(upscaler_2_name)
            if other.mode != image.mode:
                other = other.convert(image.mode)
            image = Image.blend(image, other, float(upscaler_2_visibility))
            info["Postprocess upscaler 2"] = upscaling.find_upscaler(upscaler_2_name).name
        pp.image = image
        pp.info.update(info)

    def image_changed(self):
        result_cache.clear()
