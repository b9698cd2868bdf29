"""The bar above the tabs: the settings of `quicksettings_list` in list order (default: only the
checkpoint selector, setting sd_model_checkpoint); a change applies and saves at once (ui.md §9.3)."""
import concurrent.futures

import gradio as gr

from modules import sd_models, sd_vae, shared
from modules.models.loader import ModelLoadError
from modules.options import OptionError
from modules.settings import apply
from modules.ui import settings_components


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


def apply_one(key: str, value):
    """A quicksettings change: applied and saved at once; on failure the control shows the old value."""
    try:
        result = apply.apply_settings(shared.opts, {key: value}, shared.paths.settings_file)
    except (OptionError, ModelLoadError) as e:
        return gr.update(value=getattr(shared.opts, key)), f"<span class='error'>{e}</span>"
    # a repeated event with the same value leaves the last message standing
    return gr.update(value=getattr(shared.opts, key)), result.message() if result.changed else gr.update()


def _refresh_choices(key: str, info):
    def handler():
        info.refresh()
        args = settings_components.component_args(info)
        return gr.update(choices=args.get("choices"), value=getattr(shared.opts, key))
    return handler


def _create_setting(key: str):
    """The control (and refresh button) of one listed setting; None for an unknown key."""
    info = shared.opts.data_labels.get(key)
    if info is None:
        print(f"quicksettings_list: no setting named '{key}'")
        return None
    component = settings_components.create(key, info, getattr(shared.opts, key), scale=2, min_width=180)
    button = gr.Button("🔄", elem_id=f"refresh_{key}", scale=0, min_width=40) if info.refresh else None
    return key, info, component, button


def _wire_setting(demo: gr.Blocks, key, info, component, button, notice) -> None:
    if button is not None:
        button.click(_refresh_choices(key, info), outputs=[component], api_visibility="private")
    # text on Enter/blur, sliders on release, others on change (ui.md §9.3)
    if isinstance(component, gr.Slider):
        events = [component.release]
    elif isinstance(component, (gr.Textbox, gr.Number)):
        events = [component.submit, component.blur]
    else:
        events = [component.input]
    for event in events:
        event(lambda value, key=key: apply_one(key, value), inputs=[component], outputs=[component, notice],
              api_visibility="private")
    demo.load(lambda key=key: getattr(shared.opts, key), outputs=[component], api_visibility="private")


checkpoint_dropdown = None  # the last built checkpoint selector; the extra-networks panel updates it


def create(demo: gr.Blocks):
    global checkpoint_dropdown
    # with --freeze-settings there is no bar, but a model can still be chosen
    keys = ["sd_model_checkpoint"] if shared.cmd_opts.freeze_settings else \
        list(dict.fromkeys(shared.opts.quicksettings_list))
    checkpoint = refresh_button = None
    others = []
    with gr.Row(elem_id="quicksettings"):
        for key in keys:
            if key == "sd_model_checkpoint":
                checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint", choices=_choices(),
                                         value=shared.opts.sd_model_checkpoint,
                                         elem_id="setting_sd_model_checkpoint", allow_custom_value=False,
                                         scale=4)
                refresh_button = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=40)
            else:
                created = _create_setting(key)
                if created is not None:
                    others.append(created)
    notice = gr.Markdown(_notice(_choices()), elem_id="model_notice")
    if others:
        applied = gr.HTML(elem_id="quicksettings_result")
        for key, info, component, button in others:
            _wire_setting(demo, key, info, component, button, applied)
    if checkpoint is not None:
        checkpoint.change(switch_checkpoint, inputs=[checkpoint], outputs=[checkpoint, notice],
                          api_visibility="private")
        refresh_button.click(refresh, outputs=[checkpoint, notice], api_visibility="private")
        demo.load(current, outputs=[checkpoint, notice], api_visibility="private")
    checkpoint_dropdown = checkpoint
    return checkpoint
