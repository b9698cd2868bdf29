"""The img2img editors read their settings when the page is built: editor height, the Inpaint mask
brush colour and the two sketch brush colours."""
import gradio as gr

from modules.ui import img2img


def test_editor_settings_shape_the_editors(webui_session):
    opts = webui_session.opts
    saved = {k: getattr(opts, k) for k in ("img2img_editor_height", "img2img_inpaint_mask_brush_color",
                                           "img2img_sketch_default_brush_color",
                                           "img2img_inpaint_sketch_default_brush_color")}
    try:
        opts.set("img2img_editor_height", 555, run_callbacks=False)
        opts.set("img2img_inpaint_mask_brush_color", "#ff0000", run_callbacks=False)
        opts.set("img2img_sketch_default_brush_color", "#00ff00", run_callbacks=False)
        opts.set("img2img_inpaint_sketch_default_brush_color", "#0000ff", run_callbacks=False)
        with gr.Blocks():
            sources = {}
            img2img._mode_tabs(sources, gr.State(0))
        assert sources["inpaint"].height == 555 and sources["img2img"].height == 555
        assert sources["inpaint"].brush.default_color == ("#ff0000", 0.6)
        assert sources["inpaint"].brush.color_mode == "fixed"
        assert sources["sketch"].brush.default_color == "#00ff00"
        assert sources["inpaint_sketch"].brush.default_color == "#0000ff"
    finally:
        for key, value in saved.items():
            opts.set(key, value, run_callbacks=False)
