"""Builds the Gradio UI: quicksettings bar on top, then the tabs."""
import gradio as gr

from modules.ui import png_info, quicksettings, txt2img

CSS = """
#quicksettings { gap: 0.4em; align-items: end; }
.error { color: #c00; font-weight: bold; }
"""


def create_ui() -> gr.Blocks:
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        quicksettings.create(demo)
        with gr.Tabs(elem_id="tabs") as tabs:
            txt2img_fields = txt2img.create()
            pnginfo = png_info.create_tab(targets=["txt2img"])  # the other tabs do not exist yet
        png_info.bind_send_button(pnginfo["send_buttons"]["txt2img"], pnginfo["generation_info"],
                                  [(component, key) for key, component in txt2img_fields.items()],
                                  tabs=tabs, tab_id="txt2img")
    return demo
