"""Builds the Gradio UI: quicksettings bar on top, then the tabs."""
import os

import gradio as gr

from modules.ui import (checkpoint_merger, extensions_tab, extras, img2img, png_info, quicksettings, scripts_ui,
                        send_to, settings, train, txt2img, ui_config)

CSS = """
#quicksettings { gap: 0.4em; align-items: end; }
.error { color: #c00; font-weight: bold; }
""" + settings.CSS

with open(os.path.join(os.path.dirname(__file__), "shortcuts.js"), encoding="utf8") as _file:
    JS = _file.read()  # runs once on page load


def create_ui() -> gr.Blocks:
    extension_tabs = extensions_tab.collect_extension_tabs()  # on_ui_tabs, before the main Blocks
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        checkpoint_selector = quicksettings.create(demo)
        with gr.Tabs(elem_id="tabs") as tabs:
            txt2img_tab = txt2img.create()
            img2img_tab = img2img.create()
            extras_tab = extras.create()
            pnginfo = png_info.create_tab(targets=["txt2img", "img2img", "inpaint", "extras"])
            checkpoint_merger.create_tab(checkpoint_selector)
            train.create(txt2img_tab["controls"])
            extensions_tab.render_extension_tabs(extension_tabs)  # A1111: extension tabs before Settings
            settings.create_tab(demo)
            extensions_tab.create_tab()
        pnginfo["send_buttons"]["txt2img"].click(
            lambda text: [*txt2img_tab["paste"](text), gr.Tabs(selected="txt2img")],
            inputs=[pnginfo["generation_info"]], outputs=[*txt2img_tab["controls"].values(), tabs],
            show_progress="hidden", api_visibility="private")
        send_to.wire_gallery(txt2img_tab, img2img_tab, tabs, with_parameters=True)
        send_to.wire_gallery(img2img_tab, img2img_tab, tabs, with_parameters=False)
        send_to.wire_png_info(pnginfo, img2img_tab, tabs)
        send_to.wire_extras(extras_tab, img2img_tab, tabs)  # Extras gallery -> img2img / inpaint / extras
        pnginfo["send_buttons"]["extras"].click(
            lambda image: [image, gr.Tabs(selected="extras")], inputs=[pnginfo["image"]],
            outputs=[extras_tab["image"], tabs], show_progress="hidden", api_visibility="private")
        scripts_ui.connect_paste(pnginfo["send_buttons"]["txt2img"], pnginfo["generation_info"], "txt2img")
        ui_config.apply_to_ui(demo)  # ui-config.json: saved control defaults (last: every tab exists)
    return demo
