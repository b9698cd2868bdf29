"""Builds the Gradio UI: quicksettings bar on top, then the tabs."""
import gradio as gr

from modules.ui import quicksettings, txt2img

CSS = """
#quicksettings { gap: 0.4em; align-items: end; }
.error { color: #c00; font-weight: bold; }
"""


def create_ui() -> gr.Blocks:
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        quicksettings.create(demo)
        with gr.Tabs(elem_id="tabs"):
            txt2img.create()
    return demo
