"""The scripts area of a generation tab: always-on script sections, then the Script dropdown with
the selected script's controls (extensions.md §5.5). Returns the flat list of inputs whose values
become p.script_args."""
import gradio as gr

from modules import scripts


def create(tabname: str) -> list:
    runner = scripts.runner_for(tabname == "img2img")
    with gr.Column(elem_id=f"{tabname}_script_container"):
        runner.setup_ui()
    return runner.inputs


def attach(p, tabname: str, script_values) -> None:
    """Give the job its runner and the values of the scripts' controls."""
    p.scripts = scripts.runner_for(tabname == "img2img")
    p.script_args = list(script_values)
