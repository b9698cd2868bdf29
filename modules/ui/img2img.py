"""The img2img tab (ui.md §3): mode sub-tabs img2img, Sketch, Inpaint, Inpaint sketch, Inpaint
upload and Batch; resize mode and size (Resize to / Resize by), the inpaint controls, denoising
strength, sampler, seed, refiner; gallery, infotext, Save / Zip, Send to img2img / inpaint."""
import html
import time

import gradio as gr

from modules import processing, sd_samplers, sd_schedulers, shared
from modules.img2img import batch, editor_inputs
from modules.img2img.prepare import MASKED_CONTENT_NAMES
from modules.img2img.resize import RESIZE_MODE_NAMES
from modules.ui import extra_networks_panel, interrogate_buttons, save_outputs, scripts_ui, styles_ui
from modules.ui.txt2img import (USER_ERRORS, _job_fields, _refiner_section, _seed_section, _last_seed,
                                error_outputs, format_duration, paste_parameters, stream_job, token_counter,
                                values_from_infotext)

MODES = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
MODE_TAB_IDS = ("img2img", "img2img_sketch", "inpaint", "inpaint_sketch", "inpaint_upload", "batch")
INPAINT_MODES = (2, 3, 4)


def _editor_height() -> int:
    """Setting img2img_editor_height (read when the page is built)."""
    return int(shared.opts.img2img_editor_height)


def _mask_brush():
    """The Inpaint brush in the colour of setting img2img_inpaint_mask_brush_color, fixed (a mask)."""
    color = (shared.opts.img2img_inpaint_mask_brush_color, 0.6)
    return gr.Brush(colors=[color], default_color=color, color_mode="fixed")


def _sketch_brush(setting: str):
    """Sketch brushes start with the colour of their setting and let the user pick others."""
    return gr.Brush(default_color=getattr(shared.opts, setting), color_mode="defaults")


def _editor(elem_id: str, brush, label: str):
    return gr.ImageEditor(label=label, type="pil", image_mode="RGBA", format="png", height=_editor_height(),
                          sources=["upload", "clipboard"], brush=brush, eraser=gr.Eraser(), layers=False,
                          transforms=(), fixed_canvas=False, elem_id=elem_id)


def job_inputs(mode: int, sources: dict, mask_alpha: float, mask_blur: int):
    """(init image, mask or None) of the visible mode."""
    if mode == 0:
        return editor_inputs.img2img_image(sources["img2img"]), None
    if mode == 1:
        return editor_inputs.sketch_image(sources["sketch"]), None
    if mode == 2:
        return editor_inputs.inpaint_inputs(sources["inpaint"])
    if mode == 3:
        return editor_inputs.inpaint_sketch_inputs(sources["inpaint_sketch"], mask_alpha, mask_blur)
    return editor_inputs.upload_inputs(sources["upload_image"], sources["upload_mask"])


def _target_size(fields: dict, image, resize_tab: int, scale: float):
    if resize_tab == 1:  # Resize by: the input's size times Scale
        return int(image.width * scale), int(image.height * scale)
    return fields["width"], fields["height"]


def _make_p(fields: dict, image, mask, user, resize_tab: int, scale: float):
    width, height = _target_size(fields, image, resize_tab, scale)
    p = processing.StableDiffusionProcessingImg2Img(**{**fields, "width": width, "height": height},
                                                    init_images=[image], mask=mask, user=user)
    p.inpaint_full_res = bool(p.inpaint_full_res)
    return p


def make_generate(controls: dict, source_names: list[str]):
    extra = ["mode", "resize_tab", "scale", "mask_alpha", *source_names, "batch_input_dir", "batch_output_dir",
             "batch_mask_dir", "batch_files", "use_png_info", "png_info_props", "png_info_dir"]

    def generate(request: gr.Request, *values, progress=gr.Progress()):
        started = time.perf_counter()
        head = dict(zip(extra, values[:len(extra)]))
        try:
            fields = _job_fields(controls, values[len(extra):len(extra) + len(controls)])
            script_values = values[len(extra) + len(controls):]  # the scripts area's controls
            mask_blur = fields.pop("mask_blur")
            fields.update(mask_blur_x=mask_blur, mask_blur_y=mask_blur)
            mode = int(head["mode"])
            user = getattr(request, "username", None)
            if mode == 5:
                yield _run_batch(head, fields, user, int(head["resize_tab"]), float(head["scale"]), started,
                                 script_values)
                return
            if mode not in INPAINT_MODES:
                fields.update(inpaint_full_res=False)
            image, mask = job_inputs(mode, head, float(head["mask_alpha"] or 0), mask_blur)
            p = _make_p(fields, image, mask, user, int(head["resize_tab"]), float(head["scale"]))
            scripts_ui.attach(p, "img2img", script_values)
        except (*USER_ERRORS, editor_inputs.EditorInputError) as e:
            yield error_outputs(e)
            return
        yield from stream_job(p, "img2img", progress, started)
    return generate


def _run_batch(head, fields, user, resize_tab, scale, started, script_values=()):
    from modules import jobs, scripts
    try:
        if head["batch_files"]:
            files = [batch.Path(getattr(f, "name", f)) for f in head["batch_files"]]
        elif head["batch_input_dir"]:
            files = batch.list_images(head["batch_input_dir"])
        else:
            raise ValueError("Batch: choose an input directory or upload files")
    except (FileNotFoundError, ValueError) as e:
        return error_outputs(e)

    def run_job(p):
        scripts_ui.attach(p, "img2img", script_values)  # each file runs with the tab's scripts
        return shared.job_queue.run(lambda: scripts.process_with_scripts(p), name="img2img",
                                    task_id=jobs.new_task_id("img2img"))

    try:
        result = batch.run(files, lambda image, mask: _make_p(fields, image, mask, user, resize_tab, scale),
                           run_job, output_dir=head["batch_output_dir"] or "", mask_dir=head["batch_mask_dir"] or "",
                           png_info_props=(head["png_info_props"] or ()) if head["use_png_info"] else (),
                           png_info_dir=head["png_info_dir"] or head["batch_input_dir"] or "",
                           is_interrupted=lambda: shared.state.interrupted)
    except (*USER_ERRORS, FileNotFoundError) as e:
        return error_outputs(e)
    limit = shared.opts.img2img_batch_show_results_limit
    shown = result.images if limit < 0 else result.images[:limit]
    notes = "".join(f"<div class='error'>{html.escape(e)}</div>" for e in result.errors)
    notes += f"<p>Processed {len(files) - len(result.errors)} of {len(files)} files.</p>"
    notes += f"<p class='time-taken'>Time taken: {format_duration(time.perf_counter() - started)}</p>"
    return shown, result.infotexts[0] if result.infotexts else "", notes, result.infotexts[:len(shown)]


def _mode_tabs(sources: dict, mode: gr.State):
    with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
        with gr.Tab("img2img", id="img2img", elem_id="img2img_img2img_tab") as tab0:
            sources["img2img"] = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA", format="png",
                                          sources=["upload", "clipboard"], height=_editor_height(),
                                          elem_id="img2img_image")
            copy_rows = {"img2img": _copy_row("img2img")}
        with gr.Tab("Sketch", id="img2img_sketch", elem_id="img2img_img2img_sketch_tab") as tab1:
            sources["sketch"] = _editor("img2img_sketch", _sketch_brush("img2img_sketch_default_brush_color"),
                                        "Image for img2img")
            copy_rows["sketch"] = _copy_row("sketch")
        with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as tab2:
            sources["inpaint"] = _editor("img2maskimg", _mask_brush(), "Image for inpainting with mask")
            copy_rows["inpaint"] = _copy_row("inpaint")
        with gr.Tab("Inpaint sketch", id="inpaint_sketch", elem_id="img2img_inpaint_sketch_tab") as tab3:
            sources["inpaint_sketch"] = _editor("inpaint_sketch", _sketch_brush("img2img_inpaint_sketch_default_brush_color"),
                                                "Color sketch inpainting")
            copy_rows["inpaint_sketch"] = _copy_row("inpaint_sketch")
        with gr.Tab("Inpaint upload", id="inpaint_upload", elem_id="img2img_inpaint_upload_tab") as tab4:
            sources["upload_image"] = gr.Image(label="Image for img2img", show_label=False, type="pil",
                                               format="png", sources=["upload", "clipboard"],
                                               elem_id="img_inpaint_base")
            sources["upload_mask"] = gr.Image(label="Mask", type="pil", image_mode="RGBA", format="png",
                                              sources=["upload", "clipboard"], elem_id="img_inpaint_mask")
        with gr.Tab("Batch", id="batch", elem_id="img2img_batch_tab") as tab5:
            batch_controls = _batch_tab()
    batch_controls["mode_tabs"] = mode_tabs
    batch_controls["copy_rows"] = copy_rows
    batch_controls["mode_tab_list"] = (tab0, tab1, tab2, tab3, tab4, tab5)
    return batch_controls


def _batch_tab() -> dict:
    b = {}
    with gr.Tabs():
        with gr.Tab("Upload"):
            b["batch_files"] = gr.File(label="Files", file_count="multiple", elem_id="img2img_image_batch")
        with gr.Tab("From directory"):
            b["batch_input_dir"] = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
            b["batch_output_dir"] = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
            b["batch_mask_dir"] = gr.Textbox(
                label="Inpaint batch mask directory (required for inpaint batch processing only)",
                elem_id="img2img_batch_inpaint_mask_dir")
    with gr.Accordion("PNG info", open=False):
        use_png_info = gr.Checkbox(label="Append png info to prompts", value=False,
                                   elem_id="img2img_batch_use_png_info")
        b["png_info_dir"] = gr.Textbox(label="PNG info directory", elem_id="img2img_batch_png_info_dir",
                                       placeholder="Leave empty to use input directory")
        b["png_info_props"] = gr.CheckboxGroup(label="Parameters to take from png info",
                                               choices=list(batch.PNG_INFO_PROPS),
                                               elem_id="img2img_batch_png_info_props")
    b["use_png_info"] = use_png_info
    return b


def _inpaint_controls(c: dict, extras: dict):
    with gr.Group(visible=False, elem_id="inpaint_controls") as group:
        with gr.Row():
            c["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
            mask_alpha = gr.Slider(0, 100, value=0, step=1, label="Mask transparency", visible=False,
                                   elem_id="img2img_mask_alpha")
        c["inpainting_mask_invert"] = gr.Radio(["Inpaint masked", "Inpaint not masked"], value="Inpaint masked",
                                               type="index", label="Mask mode", elem_id="img2img_mask_mode")
        c["inpainting_fill"] = gr.Radio(list(MASKED_CONTENT_NAMES), value="original", type="index",
                                        label="Masked content", elem_id="img2img_inpainting_fill")
        with gr.Row():
            c["inpaint_full_res"] = gr.Radio(["Whole picture", "Only masked"], value="Whole picture", type="index",
                                             label="Inpaint area", elem_id="img2img_inpaint_full_res")
            c["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                                      elem_id="img2img_inpaint_full_res_padding")
    extras["mask_alpha"] = mask_alpha
    return group


def create() -> dict:
    """Build the tab. Returns {"controls", "paste", "sources", "tab_selector", ...} for app.py."""
    c: dict = {}
    sources: dict = {}
    extras: dict = {}
    scripts_ui.components_seen_by("img2img")  # the img2img scripts' component hooks from here on
    with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
        with gr.Row():
            with gr.Column(scale=6):
                with gr.Row():
                    c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="img2img_prompt", scale=10,
                                             placeholder="Prompt (press Ctrl+Enter to generate)")
                    prompt_tokens = gr.HTML("<span class='token-counter'>0/75</span>",
                                            elem_id="img2img_token_counter", min_width=60)
                with gr.Row():
                    c["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, scale=10,
                                                      elem_id="img2img_neg_prompt")
                    negative_tokens = gr.HTML("<span class='token-counter'>0/75</span>",
                                              elem_id="img2img_negative_token_counter", min_width=60)
            with gr.Column(scale=1, min_width=160):
                generate_button = gr.Button("Generate", variant="primary", elem_id="img2img_generate")
                with gr.Row():
                    interrupt_button = gr.Button("Interrupt", elem_id="img2img_interrupt")
                    skip_button = gr.Button("Skip", elem_id="img2img_skip")
                with gr.Row():
                    paste_button = gr.Button("Read parameters", elem_id="img2img_paste")
                    interrogate_tools = interrogate_buttons.create_buttons()  # 📎 / 📦 (issue 8)
        c["styles"] = styles_ui.create("img2img", c["prompt"], c["negative_prompt"])
        networks_panel = extra_networks_panel.create("img2img", c["prompt"], c["negative_prompt"])
        mode = gr.State(0)
        with gr.Row():
            with gr.Column():
                batch_controls = _mode_tabs(sources, mode)
                c["resize_mode"] = gr.Radio(list(RESIZE_MODE_NAMES), value="Just resize", type="index",
                                            label="Resize mode", elem_id="resize_mode")
                inpaint_group = _inpaint_controls(c, extras)
                scripts_ui.create_section("img2img", "inpaint")  # soft inpainting, right after (ui.md §3.6)
                with gr.Row():
                    c["sampler_name"] = gr.Dropdown(label="Sampling method", value="DPM++ 2M",
                                                    choices=sd_samplers.visible_sampler_names(),
                                                    elem_id="img2img_sampling", allow_custom_value=True)
                    c["scheduler"] = gr.Dropdown(label="Schedule type", value="Automatic",
                                                 choices=[s.label for s in sd_schedulers.schedulers],
                                                 elem_id="img2img_scheduler", allow_custom_value=True)
                c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="img2img_steps")
                _refiner_section(c, "img2img")
                resize_tab = gr.State(0)
                with gr.Tabs(elem_id="img2img_tabs_resize"):
                    with gr.Tab("Resize to", elem_id="img2img_tab_resize_to") as resize_to_tab:
                        with gr.Row():
                            c["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="img2img_width")
                            c["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height",
                                                    elem_id="img2img_height")
                            detect_size = gr.Button("📐", elem_id="img2img_detect_image_size_btn", scale=0,
                                                    min_width=40)
                    with gr.Tab("Resize by", elem_id="img2img_tab_resize_by") as resize_by_tab:
                        scale = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label="Scale", elem_id="img2img_scale")
                with gr.Row():
                    c["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id="img2img_batch_count")
                    c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id="img2img_batch_size")
                c["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="img2img_cfg_scale")
                c["image_cfg_scale"] = gr.Slider(0, 3, value=1.5, step=0.05, label="Image CFG Scale",
                                                 visible=_pix2pix_loaded(),
                                                 elem_id="img2img_image_cfg_scale")
                c["denoising_strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                                    elem_id="img2img_denoising_strength")
                random_seed, reuse_seed = _seed_section(c, "img2img")
                c["tiling"] = gr.Checkbox(label="Tiling (seamless texture)", value=False, elem_id="img2img_tiling")
                c["override_settings"] = gr.Dropdown(label="Override settings", value=[], choices=[],
                                                     multiselect=True, visible=False,
                                                     elem_id="img2img_override_settings")
                script_inputs = scripts_ui.create("img2img")
            with gr.Column():
                gallery = gr.Gallery(label="Output", format="png", columns=4, elem_id="img2img_gallery",
                                     buttons=["download", "fullscreen"], interactive=False)
                infotext = gr.Textbox(label="Generation parameters", interactive=False, lines=4,
                                      elem_id="img2img_generation_info")
                notes = gr.HTML(elem_id="img2img_html_log")
                infotexts = gr.State([])
                saving = save_outputs.create_save_buttons(gallery, infotexts, "img2img")
                extra_networks_panel.connect_gallery(networks_panel, gallery, infotexts, saving["selected_index"])
                with gr.Row():
                    send_buttons = {"img2img": gr.Button("🖼️ Send to img2img", elem_id="img2img_send_to_img2img",
                                                         size="sm"),
                                    "inpaint": gr.Button("🎨️ Send to inpaint", elem_id="img2img_send_to_inpaint",
                                                         size="sm")}

        source_names = list(sources)
        head = [mode, resize_tab, scale, extras["mask_alpha"], *sources.values(),
                batch_controls["batch_input_dir"], batch_controls["batch_output_dir"],
                batch_controls["batch_mask_dir"], batch_controls["batch_files"], batch_controls["use_png_info"],
                batch_controls["png_info_props"], batch_controls["png_info_dir"]]
        inputs = list(c.values())
        outputs = [gallery, infotext, notes, infotexts]
        generate = make_generate(c, source_names)
        generate_button.click(generate, inputs=head + inputs + script_inputs, outputs=outputs,
                              concurrency_limit=None, api_name="img2img")
        c["prompt"].submit(generate, inputs=head + inputs + script_inputs, outputs=outputs, concurrency_limit=None,
                           api_visibility="private")
        private = {"queue": False, "api_visibility": "private"}
        interrupt_button.click(lambda: shared.state.interrupt(), **private)
        skip_button.click(lambda: shared.state.skip(), **private)
        for box, counter in ((c["prompt"], prompt_tokens), (c["negative_prompt"], negative_tokens)):
            box.change(token_counter(box is c["prompt"]), inputs=[box, c["steps"], c["styles"]], outputs=[counter],
                       show_progress="hidden",
                       trigger_mode="always_last", **private)
        names = list(c)
        paste_button.click(lambda text: [*paste_parameters(text, names), *scripts_ui.paste_values("img2img", text)],
                           inputs=[c["prompt"]], outputs=inputs + scripts_ui.paste_outputs("img2img"), **private)
        random_seed.click(lambda: -1, outputs=[c["seed"]], **private)
        reuse_seed.click(_last_seed, inputs=[infotext], outputs=[c["seed"]], **private)
        resize_to_tab.select(lambda: 0, outputs=[resize_tab], **private)
        resize_by_tab.select(lambda: 1, outputs=[resize_tab], **private)
        # each mode tab stores its index and shows the inpaint controls it needs (ui.md §3.10)
        for index, tab in enumerate(batch_controls["mode_tab_list"]):
            tab.select(_mode_selected(index), outputs=[mode, inpaint_group, extras["mask_alpha"]], **private)
            # Image CFG Scale shows while an instruct-pix2pix model is loaded (checked on mode changes)
            tab.select(lambda: gr.Slider(visible=_pix2pix_loaded()),
                       outputs=[c["image_cfg_scale"]], **private)
        _wire_copy_buttons(sources, [mode, inpaint_group, extras["mask_alpha"]], batch_controls)
        interrogate_buttons.wire(interrogate_tools, mode, sources, batch_controls, c["prompt"], notes)
        detect_size.click(_detect_size, inputs=[mode, *sources.values(), c["width"], c["height"]],
                          outputs=[c["width"], c["height"]], **private)
    return {"controls": c, "paste": lambda text: values_from_infotext(text, names),
            "paste_some": values_from_infotext, "sources": sources,
            "mode": mode, "mode_outputs": [mode, inpaint_group, extras["mask_alpha"]], "mode_tabs": batch_controls["mode_tabs"], "gallery": gallery, "infotexts": infotexts, "selected_index": saving["selected_index"],
            "send_buttons": send_buttons}


def _pix2pix_loaded() -> bool:
    holder = shared.model_holder
    return bool(holder is not None and getattr(holder.sd_model, "is_pix2pix", False))


COPY_TARGETS = (("img2img", "img2img", 0), ("sketch", "sketch", 1), ("inpaint", "inpaint", 2),
                ("inpaint sketch", "inpaint_sketch", 3))


def _copy_row(source_key: str) -> dict:
    """"Copy image to:" under an editor: a button per other editing mode (ui.md §3.2)."""
    with gr.Row():
        gr.HTML("<span>Copy image to:</span>", min_width=90)
        return {key: gr.Button(label, size="sm", interactive=key != source_key,
                               elem_id=f"img2img_copy_to_{key}_from_{source_key}")
                for label, key, _ in COPY_TARGETS}


def _wire_copy_buttons(sources: dict, mode_outputs: list, batch_controls: dict) -> None:
    for source_key, buttons in batch_controls["copy_rows"].items():
        for _label, key, index in COPY_TARGETS:
            if key == source_key:
                continue

            def copy(value, index=index, target_id=MODE_TAB_IDS[index]):
                image = value.get("background") if isinstance(value, dict) else value
                if image is None:
                    return [gr.skip()] * 5
                # the destination gets the image only: its old strokes are cleared
                return [image.copy(), *mode_updates(index), gr.Tabs(selected=target_id)]

            buttons[key].click(copy, inputs=[sources[source_key]],
                               outputs=[sources[key], *mode_outputs, batch_controls["mode_tabs"]],
                               show_progress="hidden", queue=False, api_visibility="private")


def _mode_selected(index: int):
    def select():
        return index, gr.Group(visible=index in INPAINT_MODES), gr.Slider(visible=index == 3)
    return select


def mode_updates(index: int) -> list:
    """(mode, inpaint controls, mask transparency) updates for a programmatic switch to a mode."""
    return list(_mode_selected(index)())


def _detect_size(mode, img2img, sketch, inpaint, inpaint_sketch, upload_image, upload_mask, width, height):
    """📐: Width and Height from the visible mode's image (unchanged when there is none)."""
    value = (img2img, sketch, inpaint, inpaint_sketch, upload_image, None)[int(mode)]
    if isinstance(value, dict):
        value = value.get("background")
    if value is None:
        return width, height
    return value.width, value.height
