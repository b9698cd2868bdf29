"""The Extras tab (extras.md §4): Single Image, Batch Process, Batch from Directory, then the
postprocessing steps (Upscale, GFPGAN, CodeFormer and extension steps) built from their ui()."""
import html
import os

import gradio as gr
from PIL import Image

from modules import face_restoration, shared, upscaling
from modules.postprocessing import extras_job, runner
from modules.postprocessing.errors import PostprocessingError

USER_ERRORS = (PostprocessingError, ValueError, upscaling.UpscalerUnavailable,
               face_restoration.FaceRestorationUnavailable, upscaling.UpscaleOutOfMemory)
TAB_NAMES = ("single_image", "batch_process", "batch_from_directory")


def _inputs(tab: int, single, files, input_dir) -> list[extras_job.ExtrasInput]:
    if tab == 0:
        if single is None:
            raise ValueError("image not selected")
        image = Image.open(single)  # from the file, so its PNG text (parameters) is carried along
        image.load()
        return [extras_job.ExtrasInput(image)]
    if tab == 1:
        inputs = []
        for item in files or []:
            path = getattr(item, "name", item)
            image = Image.open(path)
            image.load()
            inputs.append(extras_job.ExtrasInput(image, os.path.splitext(os.path.basename(path))[0]))
        if not inputs:
            raise ValueError("no images uploaded")
        return inputs
    if shared.cmd_opts.hide_ui_dir_config:
        raise ValueError("Batch from directory is disabled (--hide-ui-dir-config)")
    return extras_job.directory_inputs(input_dir or "")


def make_run(steps, step_controls: list[tuple[str, list[str]]]):
    def run(tab, single, files, input_dir, output_dir, show_results, *values):
        args, index = {}, 0
        for step_name, names in step_controls:
            args[step_name] = dict(zip(names, values[index:index + len(names)]))
            index += len(names)
        try:
            inputs = _inputs(int(tab), single, files, input_dir)
            out_dir = (output_dir or None) if int(tab) == 2 else None
            result = shared.job_queue.run(
                lambda: extras_job.run(inputs, args, save=True, output_dir=out_dir, steps=steps), name="extras")
        except USER_ERRORS as e:
            return [], "", f"<div class='error'>{html.escape(str(e))}</div>"
        shown = [] if int(tab) == 2 and not show_results else [out.image for out in result.outputs]
        for out in result.outputs:
            out.image.info["postprocessing"] = out.infotext
        return shown, result.outputs[-1].infotext if result.outputs else "", result.html_info
    return run


def _selected_index(evt: gr.SelectData):
    return evt.index


def create() -> dict:
    steps = runner.ordered_steps()
    with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
        with gr.Row(equal_height=False):
            with gr.Column(variant="compact"):
                tab_index = gr.State(value=0)
                with gr.Tabs(elem_id="mode_extras") as mode_tabs:
                    with gr.Tab("Single Image", id="single_image", elem_id="extras_single_tab") as tab_single:
                        single = gr.Image(label="Source", type="filepath", image_mode="RGBA", elem_id="extras_image",
                                          format="png", sources=["upload", "clipboard"])
                    with gr.Tab("Batch Process", id="batch_process", elem_id="extras_batch_process_tab") as tab_batch:
                        files = gr.File(label="Batch Process", file_count="multiple", elem_id="extras_image_batch")
                    with gr.Tab("Batch from Directory", id="batch_from_directory",
                                elem_id="extras_batch_directory_tab") as tab_dir:
                        input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir")
                        output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                                placeholder="Leave blank to save images to the default path.")
                        show_results = gr.Checkbox(label="Show result images", value=True,
                                                   elem_id="extras_show_extras_results")
                for index, tab in enumerate((tab_single, tab_batch, tab_dir)):
                    tab.select(fn=lambda i=index: i, outputs=[tab_index], api_visibility="private")
                submit = gr.Button("Generate", elem_id="extras_generate", variant="primary")
                step_controls, components = [], []
                for step in steps:
                    controls = step.ui() or {}
                    step_controls.append((step.name, list(controls)))
                    components += list(controls.values())
            with gr.Column():
                gallery = gr.Gallery(label="Output", elem_id="extras_gallery", columns=2, format="png")
                generation_info = gr.Textbox(visible=False, elem_id="extras_generation_info")
                html_info = gr.HTML(elem_id="html_info_extras")
                selected_index = gr.State(-1)  # the gallery image the Send to buttons take
                with gr.Row(elem_id="image_buttons_extras"):
                    send_buttons = {target: gr.Button(f"{icon} Send to {target}", elem_id=f"extras_send_to_{target}",
                                                      size="sm")
                                    for icon, target in (("🖼️", "img2img"), ("🎨️", "inpaint"), ("📐", "extras"))}
                gallery.select(_selected_index, inputs=None, outputs=[selected_index], show_progress="hidden",
                               api_visibility="private")
        single.change(fn=lambda: [s.image_changed() for s in steps] and None, api_visibility="private")
        submit.click(fn=make_run(steps, step_controls),
                     inputs=[tab_index, single, files, input_dir, output_dir, show_results, *components],
                     outputs=[gallery, generation_info, html_info], api_visibility="private")
    return {"gallery": gallery, "image": single, "selected_index": selected_index, "send_buttons": send_buttons,
            "mode_tabs": mode_tabs, "tab_index": tab_index}
