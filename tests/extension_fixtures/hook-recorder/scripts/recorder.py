import gradio as gr
from fastapi import FastAPI

from modules import script_callbacks, scripts, shared

CALLS = []  # (event, detail) in the order they happened
BASEDIR = scripts.basedir()


def record(event, detail=None):
    CALLS.append([event, detail])


class HookRecorder(scripts.Script):
    def title(self):
        return "Hook recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("Hook recorder", open=False):
            enabled = gr.Checkbox(label="Record", value=False, elem_id=self.elem_id("enabled"))
            strength = gr.Slider(0, 1, value=0.5, step=0.05, label="Strength", elem_id=self.elem_id("strength"))
            tag = gr.Textbox(label="Tag", value="", elem_id=self.elem_id("tag"))
        self.infotext_fields = [(enabled, lambda params: "Hook recorder" in params),
                                (strength, "Hook recorder strength"), (tag, "Hook recorder")]
        self.paste_field_names = ["Hook recorder", "Hook recorder strength"]
        return [enabled, strength, tag]

    def setup(self, p, enabled, strength, tag):
        if enabled:
            record("setup")

    def before_process(self, p, enabled, strength, tag):
        if enabled:
            record("before_process", getattr(shared.opts, "hook_recorder_note", None))

    def process(self, p, enabled, strength, tag):
        if enabled:
            record("process", list(p.all_prompts))
            p.extra_generation_params["Hook recorder"] = tag
            p.extra_generation_params["Hook recorder strength"] = strength

    def before_process_batch(self, p, enabled, strength, tag, batch_number, prompts, seeds, subseeds):
        if enabled:
            record("before_process_batch", batch_number)

    def process_batch(self, p, enabled, strength, tag, batch_number, prompts, seeds, subseeds):
        if enabled:
            record("process_batch", batch_number)

    def process_before_every_sampling(self, p, enabled, strength, tag, x, noise, c, uc):
        if enabled:
            record("process_before_every_sampling", list(x.shape))

    def before_hr(self, p, enabled, strength, tag):
        if enabled:
            record("before_hr")

    def postprocess_batch(self, p, enabled, strength, tag, images, batch_number):
        if enabled:
            record("postprocess_batch", list(images.shape))

    def postprocess_batch_list(self, p, pp, enabled, strength, tag, batch_number):
        if enabled:
            record("postprocess_batch_list", len(pp.images))

    def postprocess_image(self, p, pp, enabled, strength, tag):
        if enabled:
            record("postprocess_image", list(pp.image.size))
            if tag == "paint-red":  # replaces the image: every pixel red
                pp.image = pp.image.copy()
                pp.image.paste((255, 0, 0), (0, 0, pp.image.width, pp.image.height))

    def postprocess(self, p, processed, enabled, strength, tag):
        if enabled:
            record("postprocess", len(processed.images))


def _cfg_denoiser(params):
    if CALLS and CALLS[-1][0] == "cfg_denoiser":
        return
    record("cfg_denoiser", [list(params.x.shape), params.sampling_step, params.total_sampling_steps])


def _cfg_denoised(params):
    if not (CALLS and CALLS[-1][0] == "cfg_denoised"):
        record("cfg_denoised", list(params.x.shape))


def _after_cfg(params):
    if not (CALLS and CALLS[-1][0] == "cfg_after_cfg"):
        record("cfg_after_cfg", list(params.x.shape))


def _image_saved(params):
    record("image_saved", params.filename)


def _ui_settings():
    shared.opts.add_option("hook_recorder_note", shared.OptionInfo("default note", "Hook recorder note",
                                                                    section=("hook-recorder", "Hook recorder")))


def _app_started(demo, app: FastAPI):
    @app.get("/hook-recorder/calls")
    def calls():
        return {"calls": CALLS, "label": shared.cmd_opts.hook_recorder_label, "basedir": BASEDIR}

    @app.post("/hook-recorder/clear")
    def clear():
        CALLS.clear()
        return {}


script_callbacks.on_cfg_denoiser(_cfg_denoiser)
script_callbacks.on_cfg_denoised(_cfg_denoised)
script_callbacks.on_cfg_after_cfg(_after_cfg)
script_callbacks.on_image_saved(_image_saved)
script_callbacks.on_ui_settings(_ui_settings)
script_callbacks.on_app_started(_app_started)
script_callbacks.on_model_loaded(lambda sd_model: record("model_loaded"))


def _ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Textbox(label="Recorder notes", value="from on_ui_tabs", elem_id="hook_recorder_notes")
    return [(tab, "Recorder", "hook_recorder")]


script_callbacks.on_ui_tabs(_ui_tabs)
