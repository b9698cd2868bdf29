"""The ControlNet accordion of txt2img and img2img (controlnet.md §6): one tab per unit with the
extension's controls, labels and defaults. Each unit's controls feed one gr.State holding its
ControlNetUnit: that state is the script argument of the unit's slot (the API sends a dict there).
Pasted infotext fills the controls, whose change events rebuild the state."""
import gradio as gr

from modules import shared
from modules.controlnet import control_types, hint, infotext, model_files, preprocessors
from modules.controlnet import job as controlnet_job
from modules.controlnet.units import CONTROL_MODES, HR_OPTIONS, ControlNetUnit
from modules.img2img import editor_inputs

VERSION = "v1.1.455"
MASK_BRUSH = gr.Brush(colors=[("#ffffff", 0.6)], default_color=("#ffffff", 0.6), color_mode="fixed")
PRIVATE = {"queue": False, "api_visibility": "private"}


class PreprocessorSlider(gr.Slider):
    """Resolution / Threshold A / B, whose range the preprocessor reconfigures: an event sent with a
    value of the old range gets it clamped into the new one instead of Gradio's out-of-bounds error."""
    is_template = True  # rendered by Gradio's own slider

    def preprocess(self, payload):
        if isinstance(payload, (int, float)):
            payload = min(max(payload, self.minimum), self.maximum)
        return super().preprocess(payload)


def _model_choices() -> list[str]:
    return ["None", *(m.title for m in model_files.list_models())]


def _module_choices() -> list[str]:
    return [p.label for p in preprocessors.ordered()]


def _slider_updates(module: str, pixel_perfect: bool, *current) -> list:
    """Resolution, Threshold A, Threshold B reconfigured for the preprocessor (hidden when it has none);
    a current value inside the new range stays (pasted infotext sets module and values together)."""
    try:
        pre = preprocessors.find(module)
    except preprocessors.PreprocessorError:
        return [gr.update(visible=False)] * 3
    updates = []
    for index, slider in enumerate(pre.sliders):
        if slider is None:
            updates.append(gr.update(visible=False))
            continue
        label = "Preprocessor resolution" if index == 0 else slider.name
        visible = not (index == 0 and pixel_perfect)
        value = current[index] if index < len(current) else None
        keep = isinstance(value, (int, float)) and slider.min <= value <= slider.max
        updates.append(gr.update(label=label, minimum=slider.min, maximum=slider.max, step=slider.step,
                                 value=value if keep else slider.value, visible=visible))
    return updates


def _editor_image(value):
    """(image, mask or None) from the ImageEditor's value: the background and the painted strokes."""
    if not value or (isinstance(value, dict) and value.get("background") is None):
        return None, None
    if not isinstance(value, dict):
        return value, None
    image = value["background"]
    mask = editor_inputs.strokes_mask(value)
    has_strokes = mask.getbbox() is not None
    return image, (mask if has_strokes else None)


def build_unit(independent, editor, enabled, low_vram, pixel_perfect, module, model, weight, start, end,
               res, threshold_a, threshold_b, control_mode, resize_mode, hr_option):
    """The unit the current controls describe (what the job receives for this slot)."""
    image, mask = _editor_image(editor) if independent else (None, None)
    return ControlNetUnit(enabled=bool(enabled), module=module or "none", model=model or "None",
                          weight=float(weight), image=image, mask=mask, resize_mode=resize_mode,
                          low_vram=bool(low_vram), processor_res=res, threshold_a=threshold_a,
                          threshold_b=threshold_b, guidance_start=float(min(start, end)), guidance_end=float(end),
                          pixel_perfect=bool(pixel_perfect), control_mode=control_mode, hr_option=hr_option)


def run_preview(editor, module, res, threshold_a, threshold_b, pixel_perfect):
    """💥: the preprocessor's map of the unit's image, run as a job on the queue."""
    image, mask = _editor_image(editor)
    if image is None:
        raise gr.Error("ControlNet: upload an image first")
    try:
        pre = preprocessors.find(module)
        rgb = hint.to_rgb_array(image)
        if pre.needs_mask:
            rgb = hint.with_mask(rgb, mask, "ControlNet")
        detected = shared.job_queue.run(lambda: preprocessors.run(pre, rgb, res, threshold_a, threshold_b),
                                        name="controlnet_preview")
    except (preprocessors.PreprocessorError, hint.HintError) as e:
        raise gr.Error(str(e)) from None
    from PIL import Image
    return gr.update(value=Image.fromarray(detected[:, :, :3]), visible=True)


def _filter_for_type(tag: str):
    """Control Type: the preprocessor and model lists of the tag, reset to its defaults (§5)."""
    entry = control_types.control_types().get(tag) or control_types.control_types()["All"]
    return (gr.update(choices=entry["module_list"], value=entry["default_option"]),
            gr.update(choices=entry["model_list"], value=entry["default_model"]))


def _send_dimensions(editor):
    image, _ = _editor_image(editor)
    if image is None:
        return gr.skip(), gr.skip()
    return image.width // 8 * 8, image.height // 8 * 8


def _paste_field(index: int, key: str, convert=None):
    def read(params):
        fields = infotext.unit_fields(params, index)
        if fields is None or key not in fields:
            return None
        return convert(fields[key]) if convert else fields[key]
    return read


def _module_label(name) -> str:
    try:
        return preprocessors.find(str(name)).label
    except preprocessors.PreprocessorError:
        return str(name)


def _unit_ui(script, tab: str, index: int, is_img2img: bool):
    prefix = f"{tab}_controlnet_ControlNet-{index}"
    c = {}
    with gr.Group(elem_id=f"{prefix}_unit"):
        c["independent"] = gr.Checkbox(label="Upload independent control image", value=not is_img2img,
                                       visible=is_img2img, elem_id=f"{prefix}_controlnet_same_img2img_checkbox")
        with gr.Row(visible=not is_img2img) as image_row:
            c["editor"] = gr.ImageEditor(label="Image", type="pil", image_mode="RGBA", format="png", height=360,
                                         sources=["upload", "clipboard"], brush=MASK_BRUSH, eraser=gr.Eraser(),
                                         layers=False, transforms=(), fixed_canvas=False,
                                         elem_id=f"{prefix}_input_image")
            preview = gr.Image(label="Preprocessor Preview", type="pil", interactive=False, visible=False,
                               elem_id=f"{prefix}_preview_image")
        size = script.size_components()  # the tab's Width/Height, when they were seen
        send_dimensions = gr.Button("⤴", size="sm", elem_id=f"{prefix}_controlnet_send_dimension", min_width=40,
                                    scale=0, visible=bool(size))
        with gr.Row():
            c["enabled"] = gr.Checkbox(label="Enable", value=False, elem_id=f"{prefix}_controlnet_enable_checkbox")
            c["low_vram"] = gr.Checkbox(label="Low VRAM", value=False, elem_id=f"{prefix}_controlnet_low_vram_checkbox")
            c["pixel_perfect"] = gr.Checkbox(label="Pixel Perfect", value=False,
                                             elem_id=f"{prefix}_controlnet_pixel_perfect_checkbox")
            allow_preview = gr.Checkbox(label="Allow Preview", value=False,
                                        elem_id=f"{prefix}_controlnet_preprocessor_preview_checkbox")
        control_type = gr.Radio(list(preprocessors.control_type_tags()), value="All", label="Control Type",
                                elem_id=f"{prefix}_controlnet_type_filter_radio")
        with gr.Row():
            c["module"] = gr.Dropdown(_module_choices(), value="none", label="Preprocessor", allow_custom_value=True,
                                      elem_id=f"{prefix}_controlnet_preprocessor_dropdown")
            trigger = gr.Button("💥", size="sm", min_width=40, scale=0, elem_id=f"{prefix}_controlnet_trigger_preprocessor")
            c["model"] = gr.Dropdown(_model_choices(), value="None", label="Model", allow_custom_value=True,
                                     elem_id=f"{prefix}_controlnet_model_dropdown")
            refresh = gr.Button("🔄", size="sm", min_width=40, scale=0, elem_id=f"{prefix}_controlnet_refresh_models")
        with gr.Row():
            c["weight"] = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Control Weight",
                                    elem_id=f"{prefix}_controlnet_control_weight_slider")
            c["start"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Starting Control Step",
                                   elem_id=f"{prefix}_controlnet_start_control_step_slider")
            c["end"] = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Ending Control Step",
                                 elem_id=f"{prefix}_controlnet_ending_control_step_slider")
        with gr.Row():
            c["res"] = PreprocessorSlider(64, 2048, value=512, step=8, label="Preprocessor resolution", visible=False,
                                 elem_id=f"{prefix}_controlnet_preprocessor_resolution_slider")
            # wide until a preprocessor sets their range, so that pasted values are not clamped first
            c["threshold_a"] = PreprocessorSlider(0, 2048, value=0.5, step=0.001, label="Threshold A", visible=False,
                                         elem_id=f"{prefix}_controlnet_threshold_A_slider")
            c["threshold_b"] = PreprocessorSlider(0, 2048, value=0.5, step=0.001, label="Threshold B", visible=False,
                                         elem_id=f"{prefix}_controlnet_threshold_B_slider")
        c["control_mode"] = gr.Radio(list(CONTROL_MODES), value="Balanced", label="Control Mode",
                                     elem_id=f"{prefix}_controlnet_control_mode_radio")
        c["resize_mode"] = gr.Radio(list(hint.RESIZE_MODES), value="Crop and Resize", label="Resize Mode",
                                    visible=not is_img2img, elem_id=f"{prefix}_controlnet_resize_mode_radio")
        c["hr_option"] = gr.Radio(list(HR_OPTIONS), value="Both", label="Hires-Fix Option",
                                  elem_id=f"{prefix}_controlnet_hr_option_radio")
    state = gr.State(None)
    controls = list(c.values())
    gr.on([control.change for control in controls], build_unit, inputs=controls, outputs=[state],
          show_progress="hidden", trigger_mode="always_last", **PRIVATE)
    c["editor"].upload(lambda: True, outputs=[c["enabled"]], **PRIVATE)  # uploading ticks Enable
    c["independent"].change(lambda on: (gr.update(visible=on), gr.update(visible=on)), inputs=[c["independent"]],
                            outputs=[image_row, c["resize_mode"]], **PRIVATE)
    sliders = [c["res"], c["threshold_a"], c["threshold_b"]]
    c["module"].change(_slider_updates, inputs=[c["module"], c["pixel_perfect"], *sliders], outputs=sliders,
                       **PRIVATE)
    c["pixel_perfect"].change(lambda on: gr.update(visible=not on), inputs=[c["pixel_perfect"]],
                              outputs=[c["res"]], **PRIVATE)
    allow_preview.change(lambda on: gr.update(visible=on), inputs=[allow_preview], outputs=[preview], **PRIVATE)
    control_type.change(_filter_for_type, inputs=[control_type], outputs=[c["module"], c["model"]], **PRIVATE)
    refresh.click(lambda: gr.update(choices=_model_choices()), outputs=[c["model"]], **PRIVATE)
    trigger.click(run_preview, inputs=[c["editor"], c["module"], c["res"], c["threshold_a"], c["threshold_b"],
                                       c["pixel_perfect"]], outputs=[preview], api_visibility="private")
    if size:
        send_dimensions.click(_send_dimensions, inputs=[c["editor"]], outputs=size, **PRIVATE)

    paste = [(c["enabled"], lambda params, n=index: True if infotext.unit_fields(params, n) is not None else None),
             (c["module"], _paste_field(index, "module", _module_label)),
             (c["model"], _paste_field(index, "model", str))]
    for key, name in (("weight", "weight"), ("resize_mode", "resize_mode"), ("res", "processor_res"),
                      ("threshold_a", "threshold_a"), ("threshold_b", "threshold_b"), ("start", "guidance_start"),
                      ("end", "guidance_end"), ("pixel_perfect", "pixel_perfect"),
                      ("control_mode", "control_mode"), ("hr_option", "hr_option")):
        paste.append((c[key], _paste_field(index, name)))
    script.infotext_fields.extend(paste)
    script.paste_field_names.extend(f"ControlNet {index} {name}" for name in
                                    ("enabled", "module", "model", "weight", "resize_mode", "processor_res",
                                     "threshold_a", "threshold_b", "guidance_start", "guidance_end",
                                     "pixel_perfect", "control_mode", "hr_option"))
    return state


def create_accordion(script, is_img2img: bool) -> list:
    """The accordion; returns one gr.State per unit (the script's arguments)."""
    tab = "img2img" if is_img2img else "txt2img"
    script.infotext_fields, script.paste_field_names = [], []
    states = []
    count = controlnet_job.unit_count()
    with gr.Accordion(f"ControlNet {VERSION}", open=False, elem_id=f"{tab}_controlnet"):
        if count == 1:
            states.append(_unit_ui(script, tab, 0, is_img2img))
        else:
            with gr.Tabs(elem_id=f"{tab}_controlnet_tabs"):
                for index in range(count):
                    with gr.Tab(f"ControlNet Unit {index}", elem_id=f"{tab}_controlnet_ControlNet-{index}_tab"):
                        states.append(_unit_ui(script, tab, index, is_img2img))
    return states
