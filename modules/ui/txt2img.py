"""The txt2img tab: prompts, sampler and schedule, size and batch, seed (with variation and resize
from), hires fix, refiner, tiling; Generate / Interrupt / Skip, gallery with live preview, infotext,
Save / Zip, styles, and reading parameters back from infotext."""
import html
import os
import time

import gradio as gr

from modules import hires, infotext_fields, jobs, processing, sd_models, sd_samplers, sd_schedulers, shared
from modules.models.loader import ModelLoadError
from modules import scripts
from modules.ui import extra_networks_panel, save_outputs, scripts_ui, styles_ui
from modules.ui.jobs_ui import watch_job

# Errors whose message tells the user what to do; anything else is a bug and shows its type too.
USER_ERRORS = (processing.GenerationError, sd_models.NoModelError, sd_models.CheckpointNotFound,
               sd_samplers.SamplerNotFound, ModelLoadError, ValueError)

SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER = "Use same checkpoint", "Use same sampler", "Use same scheduler"

# processing field -> infotext key, for "Read parameters" and PNG Info's "Send to txt2img"
INFOTEXT_KEYS = {
    "prompt": "Prompt", "negative_prompt": "Negative prompt", "sampler_name": "Sampler",
    "scheduler": "Schedule type", "steps": "Steps", "cfg_scale": "CFG scale", "seed": "Seed",
    "width": "Size-1", "height": "Size-2", "batch_size": "Batch size", "subseed": "Variation seed",
    "subseed_strength": "Variation seed strength", "seed_resize_from_w": "Seed resize from-1",
    "seed_resize_from_h": "Seed resize from-2", "denoising_strength": "Denoising strength",
    "hr_scale": "Hires upscale", "hr_upscaler": "Hires upscaler", "hr_second_pass_steps": "Hires steps",
    "hr_resize_x": "Hires resize-1", "hr_resize_y": "Hires resize-2", "hr_checkpoint_name": "Hires checkpoint",
    "hr_sampler_name": "Hires sampler", "hr_scheduler": "Hires schedule type", "hr_prompt": "Hires prompt",
    "hr_negative_prompt": "Hires negative prompt", "refiner_checkpoint": "Refiner",
    "refiner_switch_at": "Refiner switch at", "styles": "Styles array",
    # img2img (ui.md §3.5)
    "mask_blur": "Mask blur", "inpainting_mask_invert": "Mask mode", "inpainting_fill": "Masked content",
    "inpaint_full_res": "Inpaint area", "inpaint_full_res_padding": "Masked area padding",
    "image_cfg_scale": "Image CFG scale",
}
INT_FIELDS = {"steps", "seed", "width", "height", "n_iter", "batch_size", "subseed", "seed_resize_from_w",
              "seed_resize_from_h", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "mask_blur",
              "inpaint_full_res_padding"}


def _job_fields(controls: dict, values: list) -> dict:
    fields = dict(zip(controls, values))
    for name in INT_FIELDS & fields.keys():
        fields[name] = int(fields[name])
    fields["styles"] = list(fields["styles"] or [])
    if not fields.pop("refiner_enabled"):
        fields["refiner_checkpoint"] = None
    if fields["refiner_checkpoint"] == "None":
        fields["refiner_checkpoint"] = None
    if not fields.pop("variation_enabled"):
        fields.update(subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0)
    fields["override_settings"] = infotext_fields.overrides_from_pairs(fields["override_settings"], shared.opts)
    return fields


def make_generate(controls: dict):
    def generate(request: gr.Request, *values, progress=gr.Progress()):
        try:
            fields = _job_fields(controls, values)
        except USER_ERRORS as e:
            yield error_outputs(e)
            return
        p = processing.StableDiffusionProcessingTxt2Img(**fields, user=getattr(request, "username", None))
        scripts_ui.attach(p, "txt2img", values[len(controls):])  # the values after the tab's own controls
        yield from stream_job(p, "txt2img", progress)
    return generate


def error_outputs(e: Exception) -> list:
    """(gallery, infotext, notes, infotexts) showing a user error."""
    return [[], "", f"<div class='error'>{html.escape(str(e))}</div>", []]


def stream_job(p, name: str, progress, started: float | None = None):
    """Run p on the job queue, yielding live previews, then the gallery outputs (txt2img, img2img)."""
    started = time.perf_counter() if started is None else started
    watcher = watch_job(lambda: scripts.process_with_scripts(p), name, progress, task_id=jobs.new_task_id(name))
    while True:
        try:
            preview = next(watcher)
        except StopIteration as done:
            processed = done.value
            break
        except USER_ERRORS as e:
            yield error_outputs(e)
            return
        yield [preview], gr.update(), gr.update(), gr.update()  # live preview while sampling
    for image, text in zip(processed.images, processed.infotexts):
        image.info["parameters"] = text  # Gradio writes it into the PNG it serves
    notes = html.escape(processed.comments).replace("\n", "<br>") if processed.comments else ""
    notes += f"<p class='time-taken'>Time taken: {format_duration(time.perf_counter() - started)}</p>"
    yield processed.images, processed.info, notes, processed.infotexts


def format_duration(seconds: float) -> str:
    """A1111's "Time taken" text: "2.35 sec.", "1 min. 5.2 sec." (the wait in the queue included)."""
    minutes, rest = divmod(seconds, 60)
    if minutes:
        return f"{int(minutes)} min. {rest:.1f} sec."
    return f"{rest:.2f} sec."


def values_from_infotext(text: str, names: list[str]) -> list:
    """Updates for the named controls from an infotext (None/skip where it says nothing), with the
    hires section switched on when the infotext has hires keys (api.md §8.9), and the settings it
    names offered as "Override settings" (replacing those of an earlier paste)."""
    from modules.ui.png_info import fields_from_params, pasted_params
    params = pasted_params(text)
    keys = [INFOTEXT_KEYS.get(name) for name in names]
    known = [key for key in keys if key]
    values = dict(zip(known, fields_from_params(params, known, shared.opts.infotext_skip_pasting)))
    hires_keys = ("Hires upscale", "Hires upscaler", "Hires resize-1")
    updates = []
    for name, key in zip(names, keys):
        if name == "enable_hr":
            hires_on = values.get("Denoising strength") is not None and any(values.get(k) is not None
                                                                             for k in hires_keys)
            updates.append(True if hires_on else gr.skip())
        elif name == "refiner_enabled":
            updates.append(True if values.get("Refiner") else gr.skip())
        elif name == "variation_enabled":
            updates.append(True if values.get("Variation seed strength") else gr.skip())
        elif name == "override_settings":
            pairs = infotext_fields.override_pairs(params, shared.opts, skip=shared.opts.infotext_skip_pasting)
            updates.append(gr.update(choices=pairs, value=pairs, visible=bool(pairs)))
        else:
            value = values.get(key) if key else None
            updates.append(gr.skip() if value is None else value)
    return updates


def paste_parameters(prompt: str, names: list[str]):
    """The "Read parameters" button: infotext typed into the prompt box, or the last generation's
    (params.txt) when the box is empty."""
    text = prompt
    if not text.strip():
        if not os.path.exists(shared.paths.params_file):
            return [gr.skip()] * len(names)
        with open(shared.paths.params_file, encoding="utf8") as file:
            text = file.read()
    return values_from_infotext(text, names)


def count_tokens(text: str, steps, styles=None, is_positive: bool = True) -> str:
    """'N/75' (then N/150 ...) as A1111 shows beside the prompt boxes (prompt-syntax.md §9.3)."""
    from modules import conditioning, script_callbacks
    params = script_callbacks.BeforeTokenCounterParams(text, steps, list(styles or []), is_positive)
    script_callbacks.before_token_counter_callback(params)  # extensions may rewrite what is counted
    text, steps = params.prompt, params.steps
    model = shared.model_holder.sd_model  # None: counts with the plain CLIP tokenizer
    if shared.opts.enable_prompt_comments:
        text = processing.strip_comments(text)
    count, limit = conditioning.token_count(model, text, int(steps or 20))
    return f"<span class='token-counter'>{count}/{limit}</span>"


def token_counter(is_positive: bool):
    """count_tokens for the prompt (True) or the negative prompt box."""
    def count(text, steps, styles):
        return count_tokens(text, steps, styles, is_positive=is_positive)
    return count


# Dropdowns that pasted infotext can fill take values outside their lists (allow_custom_value), so
# that an unknown name (an upscaler or sampler this install lacks) reaches the job's own check and its
# message listing the valid names, instead of Gradio's bare "Error".


def _checkpoint_choices(first: str) -> list[str]:
    return [first, *sd_models.checkpoint_titles()]


def _hires_section(c: dict) -> None:
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
        c["enable_hr"] = gr.Checkbox(label="Enable hires. fix", value=False, elem_id="txt2img_enable_hr")
        with gr.Row():
            c["hr_upscaler"] = gr.Dropdown(label="Upscaler", value="Latent", elem_id="txt2img_hr_upscaler",
                                           choices=hires.upscaler_choices(),
                                           allow_custom_value=True)
            c["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                  elem_id="txt2img_hires_steps")
            c["denoising_strength"] = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength",
                                                elem_id="txt2img_denoising_strength")
        with gr.Row():
            c["hr_scale"] = gr.Slider(1, 4, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            c["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                         elem_id="txt2img_hr_resize_x")
            c["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                         elem_id="txt2img_hr_resize_y")
        with gr.Row():
            c["hr_checkpoint_name"] = gr.Dropdown(label="Hires checkpoint", value=SAME_CHECKPOINT,
                                                  choices=_checkpoint_choices(SAME_CHECKPOINT),
                                                  allow_custom_value=True, elem_id="txt2img_hr_checkpoint")
            c["hr_sampler_name"] = gr.Dropdown(label="Hires sampling method", value=SAME_SAMPLER,
                                               choices=[SAME_SAMPLER, *sd_samplers.visible_sampler_names()],
                                               elem_id="txt2img_hr_sampler", allow_custom_value=True)
            c["hr_scheduler"] = gr.Dropdown(label="Hires schedule type", value=SAME_SCHEDULER,
                                            choices=[SAME_SCHEDULER, *(s.label for s in sd_schedulers.schedulers)],
                                            elem_id="txt2img_hr_scheduler", allow_custom_value=True)
        c["hr_prompt"] = gr.Textbox(label="Hires prompt (empty: same as the prompt)", lines=2,
                                    elem_id="txt2img_hr_prompt")
        c["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt (empty: same)", lines=2,
                                             elem_id="txt2img_hr_neg_prompt")


def _refiner_section(c: dict, tab: str = "txt2img") -> None:
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab}_refiner"):
        with gr.Row():
            c["refiner_enabled"] = gr.Checkbox(label="Enable refiner", value=False, elem_id=f"{tab}_enable_refiner")
            c["refiner_checkpoint"] = gr.Dropdown(label="Checkpoint", value="None",
                                                  choices=_checkpoint_choices("None"),
                                                  allow_custom_value=True, elem_id=f"{tab}_refiner_checkpoint")
            c["refiner_switch_at"] = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label="Switch at",
                                               elem_id=f"{tab}_refiner_switch_at")


def _seed_section(c: dict, tab: str = "txt2img"):
    with gr.Row():
        c["seed"] = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed", scale=4)
        random_seed = gr.Button("🎲", elem_id=f"{tab}_random_seed", scale=0, min_width=40)
        reuse_seed = gr.Button("♻️", elem_id=f"{tab}_reuse_seed", scale=0, min_width=40)
        c["variation_enabled"] = gr.Checkbox(label="Extra", value=False, elem_id=f"{tab}_subseed_show", scale=0)
    with gr.Group(visible=False, elem_id=f"{tab}_seed_extras") as extras:
        with gr.Row():
            c["subseed"] = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{tab}_subseed")
            c["subseed_strength"] = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                              elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            c["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                elem_id=f"{tab}_seed_resize_from_w")
            c["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                                elem_id=f"{tab}_seed_resize_from_h")
    c["variation_enabled"].change(lambda on: gr.Group(visible=on), inputs=[c["variation_enabled"]],
                                  outputs=[extras], queue=False, api_visibility="private")
    return random_seed, reuse_seed


def create() -> dict:
    """Build the tab. Returns {"controls": {field: component}, "paste": fn(text) -> updates}."""
    c: dict = {}
    with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
        with gr.Row():
            with gr.Column(scale=6):
                with gr.Row():
                    c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt", scale=10,
                                             placeholder="Prompt (press Ctrl+Enter to generate)")
                    prompt_tokens = gr.HTML("<span class='token-counter'>0/75</span>",
                                            elem_id="txt2img_token_counter", min_width=60)
                with gr.Row():
                    c["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, scale=10,
                                                      elem_id="txt2img_neg_prompt")
                    negative_tokens = gr.HTML("<span class='token-counter'>0/75</span>",
                                              elem_id="txt2img_negative_token_counter", min_width=60)
            with gr.Column(scale=1, min_width=160):
                generate_button = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
                with gr.Row():
                    interrupt_button = gr.Button("Interrupt", elem_id="txt2img_interrupt")
                    skip_button = gr.Button("Skip", elem_id="txt2img_skip")
                # reads infotext from the prompt box, or the last generation's when the box is empty
                paste_button = gr.Button("Read parameters", elem_id="txt2img_paste")
        c["styles"] = styles_ui.create("txt2img", c["prompt"], c["negative_prompt"])
        networks_panel = extra_networks_panel.create("txt2img", c["prompt"], c["negative_prompt"])
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    c["sampler_name"] = gr.Dropdown(label="Sampling method", value="DPM++ 2M",
                                                    choices=sd_samplers.visible_sampler_names(),
                                                    elem_id="txt2img_sampling", allow_custom_value=True)
                    c["scheduler"] = gr.Dropdown(label="Schedule type", value="Automatic",
                                                 choices=[s.label for s in sd_schedulers.schedulers],
                                                 elem_id="txt2img_scheduler", allow_custom_value=True)
                c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
                _hires_section(c)
                _refiner_section(c)
                with gr.Row():
                    c["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="txt2img_width")
                    c["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id="txt2img_height")
                with gr.Row():
                    c["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                            elem_id="txt2img_batch_count")
                    c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                                elem_id="txt2img_batch_size")
                c["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
                random_seed, reuse_seed = _seed_section(c)
                c["tiling"] = gr.Checkbox(label="Tiling (seamless texture)", value=False, elem_id="txt2img_tiling")
                # filled by "Read parameters" / PNG Info with the settings a pasted infotext names
                c["override_settings"] = gr.Dropdown(label="Override settings", value=[], choices=[],
                                                     multiselect=True, visible=False,
                                                     elem_id="txt2img_override_settings")
                script_inputs = scripts_ui.create("txt2img")
            with gr.Column():
                gallery = gr.Gallery(label="Output", format="png", columns=4, elem_id="txt2img_gallery",
                                     buttons=["download", "fullscreen"], interactive=False)
                infotext = gr.Textbox(label="Generation parameters", interactive=False, lines=4,
                                      elem_id="txt2img_generation_info")
                notes = gr.HTML(elem_id="txt2img_html_log")
                infotexts = gr.State([])
                saving = save_outputs.create_save_buttons(gallery, infotexts, "txt2img")
                extra_networks_panel.connect_gallery(networks_panel, gallery, infotexts, saving["selected_index"])
                with gr.Row():  # wired in app.py, where the img2img tab exists
                    send_buttons = {"img2img": gr.Button("🖼️ Send to img2img", elem_id="txt2img_send_to_img2img",
                                                         size="sm"),
                                    "inpaint": gr.Button("🎨️ Send to inpaint", elem_id="txt2img_send_to_inpaint",
                                                         size="sm")}

        inputs = list(c.values())
        outputs = [gallery, infotext, notes, infotexts]
        job_inputs = inputs + script_inputs
        generate = make_generate(c)
        # our own job queue orders the work, so Gradio need not serialise these events
        generate_button.click(generate, inputs=job_inputs, outputs=outputs, concurrency_limit=None, api_name="txt2img")
        c["prompt"].submit(generate, inputs=job_inputs, outputs=outputs, concurrency_limit=None,
                           api_visibility="private")
        private = {"queue": False, "api_visibility": "private"}
        interrupt_button.click(lambda: shared.state.interrupt(), **private)
        skip_button.click(lambda: shared.state.skip(), **private)
        # counting never waits for the job queue, so it stays live while an image generates
        for box, counter in ((c["prompt"], prompt_tokens), (c["negative_prompt"], negative_tokens)):
            box.change(token_counter(box is c["prompt"]), inputs=[box, c["steps"], c["styles"]], outputs=[counter],
                       show_progress="hidden",
                       trigger_mode="always_last", **private)
        names = list(c)
        # one event for the tab's and the scripts' fields: a second one would read the rewritten prompt box
        paste_button.click(lambda text: [*paste_parameters(text, names), *scripts_ui.paste_values("txt2img", text)],
                           inputs=[c["prompt"]], outputs=inputs + scripts_ui.paste_outputs("txt2img"), **private)
        random_seed.click(lambda: -1, outputs=[c["seed"]], **private)
        reuse_seed.click(_last_seed, inputs=[infotext], outputs=[c["seed"]], **private)
    return {"controls": c, "paste": lambda text: values_from_infotext(text, names), "gallery": gallery,
            "selected_index": saving["selected_index"], "infotexts": infotexts, "send_buttons": send_buttons}


def _last_seed(infotext: str):
    from modules.infotext_utils import parse_generation_parameters
    if not infotext:
        return -1
    return int(parse_generation_parameters(infotext).get("Seed", -1))
