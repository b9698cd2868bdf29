"""The bar above the tabs: the checkpoint selector (setting sd_model_checkpoint)."""
import concurrent.futures

import gradio as gr

from modules import sd_models, sd_vae, shared
from modules.models.loader import ModelLoadError


def _choices():
    return sd_models.checkpoint_titles()


def _notice(choices) -> str:
    """The standing notice under the selector: where to put a checkpoint when there is none."""
    return "" if choices else sd_models.no_model_message()


def switch_checkpoint(title: str):
    """Load the chosen checkpoint on the queue; on failure keep the old one and say why."""
    previous = shared.opts.sd_model_checkpoint
    if not title or title == previous:
        # also fired when page load normalizes an empty value; keep the standing notice
        return gr.update(), _notice(_choices())
    info = sd_models.get_closet_checkpoint_match(title)
    if info is None:
        return gr.update(value=previous), f"Checkpoint '{title}' not found"
    try:
        model = shared.job_queue.run(lambda: shared.model_holder.switch_to(info), name="load-checkpoint")
    except ModelLoadError as e:
        return gr.update(value=previous), f"Could not load the checkpoint: {e}"
    shared.opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title)
    shared.opts.save(shared.paths.settings_file)
    return gr.update(choices=_choices(), value=model.sd_checkpoint_info.title), \
        f"Loaded {model.sd_checkpoint_info.title}"


def refresh():
    shared.job_queue.run(lambda: (sd_models.list_models(), sd_vae.refresh_vae_list()), name="refresh")
    choices = _choices()
    return gr.update(choices=choices, value=shared.opts.sd_model_checkpoint), _notice(choices)


def current():
    """Page load: show the checkpoint that is (or is being) loaded, even if the page was built first."""
    startup = shared.model_holder.startup_job
    if startup is not None:
        concurrent.futures.wait([startup.future])  # its failure was already reported in the log
    choices = _choices()
    return gr.update(choices=choices, value=shared.opts.sd_model_checkpoint), _notice(choices)


def create(demo: gr.Blocks):
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint", choices=_choices(),
                                 value=shared.opts.sd_model_checkpoint, elem_id="setting_sd_model_checkpoint",
                                 allow_custom_value=False, scale=4)
        refresh_button = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=40)
    notice = gr.Markdown(_notice(_choices()), elem_id="model_notice")
    checkpoint.change(switch_checkpoint, inputs=[checkpoint], outputs=[checkpoint, notice],
                      api_visibility="private")
    refresh_button.click(refresh, outputs=[checkpoint, notice], api_visibility="private")
    demo.load(current, outputs=[checkpoint, notice], api_visibility="private")
    return checkpoint
