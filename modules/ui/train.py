"""The Train tab (ui.md §7): Create embedding, Create hypernetwork, Train (embedding /
hypernetwork) and Train LoRA sub-tabs; on the right the result text, a live loss plot, preview
images and the training status. Every action runs as a job on the shared queue."""
from __future__ import annotations

import html
import time

import gradio as gr
import pandas as pd

from modules import jobs, sd_models, shared
from modules.state import Interrupted
from modules.training import embedding as ti
from modules.training import hypernetwork as hn_training
from modules.training import lora, progress, templates
from modules.training.datasets import DatasetError
from modules.training.learn_schedule import ScheduleError

USER_ERRORS = (ti.TrainingError, ScheduleError, DatasetError, sd_models.NoModelError, sd_models.CheckpointNotFound,
               ValueError, Interrupted)
ACTIVATIONS = hn_training.activation_choices()
WEIGHT_INITS = hn_training.WEIGHT_INITS
private = dict(show_progress="hidden", api_visibility="private")


def _error(text: str) -> str:
    return f"<div class='error'>{html.escape(text)}</div>"


def embedding_names() -> list[str]:
    return sorted(shared.embedding_db.word_embeddings) if shared.embedding_db else []


def hypernetwork_names() -> list[str]:
    from modules.networks import hypernetworks
    return list(hypernetworks.list_hypernetworks())


def template_names() -> list[str]:
    return list(templates.list_templates(templates.templates_dir(shared.cmd_opts)))


def loss_frame(run: progress.TrainingRun) -> pd.DataFrame:
    return pd.DataFrame({"step": [s for s, _ in run.losses], "loss": [v for _, v in run.losses]})


def _status_html() -> str:
    state = shared.state
    if not state.job.startswith("train"):
        return ""
    eta = state.eta()
    return (f"<div id='train_status'>{html.escape(state.job)}: step {state.job_no} of {state.job_count}"
            f" — ETA {eta:.0f} s</div>{state.textinfo or ''}")


def run_training(fn, kind: str):
    """Generator for a training button: (output text, loss plot, gallery, progress html, error html),
    updated while the job runs."""
    job = shared.job_queue.submit(fn, name=kind, task_id=jobs.new_task_id(kind))
    seen = -1
    while not job.future.done():
        run = progress.current()
        if shared.state.task_id == job.task_id and len(run.losses) != seen:
            seen = len(run.losses)
            yield "", loss_frame(run), list(run.previews), _status_html(), ""
        elif shared.state.task_id != job.task_id:
            yield "", gr.update(), gr.update(), "Waiting in queue...", ""
        time.sleep(0.1)
    try:
        message, _path = job.future.result()
    except USER_ERRORS as e:
        yield "", gr.update(), gr.update(), "", _error(str(e) or type(e).__name__)
        return
    run = progress.current()
    last = progress.textinfo(run, run.losses[-1][1], "") if run.losses else ""
    yield message, loss_frame(run), list(run.previews), f"<p>{html.escape(run.message)}</p>{last}", ""


def _create_embedding(name, init_text, nvpt, overwrite):
    try:
        path = shared.job_queue.run(lambda: ti.create_embedding(name, int(nvpt), bool(overwrite), init_text),
                                    name="create_embedding")
    except USER_ERRORS as e:
        return gr.update(), "", _error(str(e))
    return gr.Dropdown(choices=embedding_names(), value=ti.sanitize_name(name)), f"Created: {path}", ""


def _train_embedding(*values):
    names = [n for n in _TRAIN_FIELDS]
    fields = dict(zip(names, values))
    for key in ("batch_size", "gradient_step", "training_width", "training_height", "steps", "create_image_every",
                "save_embedding_every", "preview_steps", "preview_seed", "preview_width", "preview_height"):
        if key in fields:
            fields[key] = int(fields[key])
    if not fields["embedding_name"]:
        yield "", gr.update(), gr.update(), "", _error("Choose an embedding to train (create one first)")
        return
    args = ti.TrainEmbeddingArgs.from_dict(fields)
    yield from run_training(lambda: ti.train_embedding(args), "train_embedding")


def _create_hypernetwork(name, sizes, layer_structure, activation, weight_init, layer_norm, use_dropout,
                         dropout_structure, overwrite):
    def job():
        return hn_training.create_hypernetwork(name, sizes, bool(overwrite), layer_structure, activation, weight_init,
                                               bool(layer_norm), bool(use_dropout), dropout_structure)
    try:
        path = shared.job_queue.run(job, name="create_hypernetwork")
    except USER_ERRORS as e:
        return gr.update(), "", _error(str(e))
    return gr.Dropdown(choices=hypernetwork_names(), value=ti.sanitize_name(name)), f"Created: {path}", ""


def _train_hypernetwork(hypernetwork_name, learn_rate, *values):
    """The Train sub-tab's shared fields, with the hypernetwork's name and learning rate."""
    fields = dict(zip(_TRAIN_FIELDS, values))
    for key in ("batch_size", "gradient_step", "training_width", "training_height", "steps", "create_image_every",
                "save_embedding_every", "preview_steps", "preview_seed", "preview_width", "preview_height"):
        if key in fields:
            fields[key] = int(fields[key])
    if not hypernetwork_name:
        yield "", gr.update(), gr.update(), "", _error("Choose a hypernetwork to train (create one first)")
        return
    fields.update(hypernetwork_name=hypernetwork_name, learn_rate=learn_rate,
                  save_hypernetwork_every=fields.pop("save_embedding_every"))
    args = hn_training.TrainHypernetworkArgs.from_dict(fields)
    yield from run_training(lambda: hn_training.train_hypernetwork(args), "train_hypernetwork")


def _train_lora(*values):
    fields = dict(zip(_LORA_FIELDS, values))
    for key in ("network_dim", "train_batch_size", "max_train_steps", "max_train_epochs", "save_every_n_steps",
                "sample_every_n_steps", "num_class_images", "lr_warmup_steps"):
        fields[key] = int(fields[key]) if fields[key] not in (None, "") else None
    for key in ("max_train_steps", "max_train_epochs", "save_every_n_steps", "sample_every_n_steps"):
        if fields[key] == 0:
            fields[key] = None
    fields["seed"] = None if fields["seed"] in (None, -1) else int(fields["seed"])
    fields["num_class_images"] = fields["num_class_images"] or 0
    fields["lr_warmup_steps"] = fields["lr_warmup_steps"] or 0
    for key in ("output_name", "reg_data_dir", "class_prompt", "sample_prompts", "resolution"):
        fields[key] = fields[key] or None
    try:
        args = lora.LoraTrainArgs(**fields)
        run_ = lora.LoraRun(args)
    except USER_ERRORS as e:
        yield "", gr.update(), gr.update(), "", _error(str(e))
        return
    yield from run_training(run_.train, "train_lora")


_TRAIN_FIELDS: list[str] = []
_LORA_FIELDS: list[str] = []


# "Read parameters from txt2img tab when making previews": preview field <- txt2img control
PREVIEW_FROM_TXT2IMG = {"preview_prompt": "prompt", "preview_negative_prompt": "negative_prompt",
                        "preview_steps": "steps", "preview_sampler_name": "sampler_name",
                        "preview_cfg_scale": "cfg_scale", "preview_seed": "seed", "preview_width": "width",
                        "preview_height": "height"}


def create(txt2img_controls: dict | None = None) -> None:
    """The tab; txt2img_controls (the txt2img tab's components) feed the preview parameters."""
    txt2img_controls = txt2img_controls or {}
    with gr.Tab("Train", id="train", elem_id="tab_train"):
        gr.HTML("<p>Train textual-inversion embeddings, hypernetworks and LoRA networks on the loaded checkpoint; see the "
                "README's <b>Training</b> section. Embedding training works best with square images.</p>")
        with gr.Row(equal_height=False):
            with gr.Column(variant="compact"):
                with gr.Tabs(elem_id="train_tabs"):
                    _create_embedding_tab()
                    _create_hypernetwork_tab()
                    train_controls = _train_tab()
                    lora_controls = _lora_tab()
            with gr.Column():
                output = gr.Textbox(label="Output", elem_id="ti_output", interactive=False, lines=2)
                plot = gr.LinePlot(pd.DataFrame({"step": [], "loss": []}), x="step", y="loss", title="Loss",
                                   elem_id="train_loss_plot", height=260)
                gallery = gr.Gallery(label="Previews", columns=4, format="png", elem_id="ti_gallery")
                status = gr.HTML(elem_id="ti_progress")
                error = gr.HTML(elem_id="ti_error")
        outputs = [output, plot, gallery, status, error]
        previews = [key for key, source in PREVIEW_FROM_TXT2IMG.items() if source in txt2img_controls]
        _TRAIN_FIELDS[:] = _TRAIN_FIELDS + previews
        train_inputs = train_controls["inputs"] + [txt2img_controls[PREVIEW_FROM_TXT2IMG[key]] for key in previews]
        train_controls["train_embedding"].click(_train_embedding, inputs=train_inputs, outputs=outputs,
                                                api_visibility="private", show_progress="hidden")
        lora_controls["train"].click(_train_lora, inputs=lora_controls["inputs"], outputs=outputs,
                                     api_visibility="private", show_progress="hidden")
        for button in (train_controls["interrupt"], lora_controls["interrupt"]):
            button.click(lambda: shared.state.interrupt(), **private)
        train_controls["train_hypernetwork"].click(
            _train_hypernetwork, inputs=[train_controls["hypernetwork"], train_controls["hypernetwork_learn_rate"]]
            + train_inputs, outputs=outputs, api_visibility="private", show_progress="hidden")
        _CREATED["button"].click(_create_embedding, inputs=_CREATED["inputs"],
                               outputs=[train_controls["embedding"], output, error], **private)
        _HYPER["button"].click(_create_hypernetwork, inputs=_HYPER["inputs"],
                               outputs=[train_controls["hypernetwork"], output, error], **private)


_CREATED: dict = {}
_HYPER: dict = {}


def _create_embedding_tab():
    with gr.Tab("Create embedding", id="create_embedding"):
        name = gr.Textbox(label="Name", elem_id="train_new_embedding_name")
        init = gr.Textbox(label="Initialization text", value="*", elem_id="train_initialization_text")
        nvpt = gr.Slider(label="Number of vectors per token", minimum=1, maximum=75, step=1, value=1, elem_id="train_nvpt")
        overwrite = gr.Checkbox(label="Overwrite Old Embedding", value=False, elem_id="train_overwrite_old_embedding")
        button = gr.Button("Create embedding", variant="primary", elem_id="train_create_embedding")
    _CREATED.update(button=button, inputs=[name, init, nvpt, overwrite])


def _create_hypernetwork_tab():
    with gr.Tab("Create hypernetwork", id="create_hypernetwork"):
        name = gr.Textbox(label="Name", elem_id="train_new_hypernetwork_name")
        sizes = gr.CheckboxGroup(label="Modules", choices=["768", "1024", "320", "640", "1280"],
                                 value=["768", "320", "640", "1280"], elem_id="train_new_hypernetwork_sizes")
        structure = gr.Textbox(label="Enter hypernetwork layer structure", value="1, 2, 1",
                               placeholder="1st and last digit must be 1. ex:'1, 2, 1'",
                               elem_id="train_new_hypernetwork_layer_structure")
        activation = gr.Dropdown(label="Select activation function of hypernetwork. Recommended : Swish / Linear(none)",
                                 choices=ACTIVATIONS, value="linear", elem_id="train_new_hypernetwork_activation_func")
        init = gr.Dropdown(label="Select Layer weights initialization. Recommended: Kaiming for relu-like, Xavier for "
                           "sigmoid-like, Normal otherwise", choices=WEIGHT_INITS, value="Normal",
                           elem_id="train_new_hypernetwork_initialization_option")
        layer_norm = gr.Checkbox(label="Add layer normalization", elem_id="train_new_hypernetwork_add_layer_norm")
        dropout = gr.Checkbox(label="Use dropout", elem_id="train_new_hypernetwork_use_dropout")
        dropout_structure = gr.Textbox(label="Enter hypernetwork Dropout structure (or empty). Recommended : 0~0.35 "
                                       "incrementing sequence: 0, 0.05, 0.15", value="0, 0, 0",
                                       elem_id="train_new_hypernetwork_dropout_structure")
        overwrite = gr.Checkbox(label="Overwrite Old Hypernetwork", elem_id="train_overwrite_old_hypernetwork")
        button = gr.Button("Create hypernetwork", variant="primary", elem_id="create_hypernetwork")
    _HYPER.update(button=button, inputs=[name, sizes, structure, activation, init, layer_norm, dropout,
                                         dropout_structure, overwrite])


def _refresh(dropdown, choices_fn):
    button = gr.Button("🔄", size="sm", scale=0, min_width=40)
    button.click(lambda: gr.Dropdown(choices=choices_fn()), outputs=[dropdown], **private)


def _train_tab() -> dict:
    fields = {}
    with gr.Tab("Train", id="train_embedding_tab"):
        with gr.Row():
            fields["embedding_name"] = gr.Dropdown(label="Embedding", choices=embedding_names(), elem_id="train_embedding",
                                                   allow_custom_value=True)
            _refresh(fields["embedding_name"], embedding_names)
            hypernetwork = gr.Dropdown(label="Hypernetwork", choices=hypernetwork_names(), elem_id="train_hypernetwork",
                                       allow_custom_value=True)
            _refresh(hypernetwork, hypernetwork_names)
        with gr.Row():
            fields["learn_rate"] = gr.Textbox(label="Embedding Learning rate", value="0.005", elem_id="train_embedding_learn_rate")
            hypernetwork_learn_rate = gr.Textbox(label="Hypernetwork Learning rate", value="0.00001",
                                                 elem_id="train_hypernetwork_learn_rate")
        with gr.Row():
            fields["clip_grad_mode"] = gr.Dropdown(label="Gradient Clipping", choices=["disabled", "value", "norm"],
                                                   value="disabled", elem_id="train_clip_grad_mode")
            fields["clip_grad_value"] = gr.Textbox(label="Gradient clip value", value="0.1", show_label=False,
                                                   elem_id="train_clip_grad_value")
        with gr.Row():
            fields["batch_size"] = gr.Number(label="Batch size", value=1, precision=0, elem_id="train_batch_size")
            fields["gradient_step"] = gr.Number(label="Gradient accumulation steps", value=1, precision=0,
                                                elem_id="train_gradient_step")
        fields["data_root"] = gr.Textbox(label="Dataset directory", placeholder="Path to directory with input images",
                                         elem_id="train_dataset_directory")
        fields["log_directory"] = gr.Textbox(label="Log directory", value="textual_inversion", elem_id="train_log_directory")
        with gr.Row():
            fields["template_filename"] = gr.Dropdown(label="Prompt template", choices=template_names(),
                                                      value="style_filewords.txt", elem_id="train_template_file")
            _refresh(fields["template_filename"], template_names)
        fields["training_width"] = gr.Slider(minimum=64, maximum=2048, step=8, label="Width", value=512, elem_id="train_training_width")
        fields["training_height"] = gr.Slider(minimum=64, maximum=2048, step=8, label="Height", value=512, elem_id="train_training_height")
        fields["varsize"] = gr.Checkbox(label="Do not resize images", value=False, elem_id="train_varsize")
        fields["steps"] = gr.Number(label="Max steps", value=100000, precision=0, elem_id="train_steps")
        with gr.Row():
            fields["create_image_every"] = gr.Number(label="Save an image to log directory every N steps, 0 to disable",
                                                     value=500, precision=0, elem_id="train_create_image_every")
            fields["save_embedding_every"] = gr.Number(label="Save a copy of embedding to log directory every N steps, "
                                                       "0 to disable", value=500, precision=0,
                                                       elem_id="train_save_embedding_every")
        fields["use_weight"] = gr.Checkbox(label="Use PNG alpha channel as loss weight", value=False, elem_id="use_weight")
        fields["save_image_with_stored_embedding"] = gr.Checkbox(label="Save images with embedding in PNG chunks", value=True,
                                                                 elem_id="train_save_image_with_stored_embedding")
        fields["preview_from_txt2img"] = gr.Checkbox(label="Read parameters (prompt, etc...) from txt2img tab when making "
                                                     "previews", value=False, elem_id="train_preview_from_txt2img")
        fields["shuffle_tags"] = gr.Checkbox(label="Shuffle tags by ',' when creating prompts.", value=False,
                                             elem_id="train_shuffle_tags")
        fields["tag_drop_out"] = gr.Slider(minimum=0, maximum=1, step=0.1, label="Drop out tags when creating prompts.",
                                           value=0, elem_id="train_tag_drop_out")
        fields["latent_sampling_method"] = gr.Radio(label="Choose latent sampling method", value="once",
                                                    choices=["once", "deterministic", "random"],
                                                    elem_id="train_latent_sampling_method")
        with gr.Row():
            train_embedding = gr.Button("Train Embedding", variant="primary", elem_id="train_train_embedding")
            interrupt = gr.Button("Interrupt", elem_id="train_interrupt_training")
            train_hypernetwork = gr.Button("Train Hypernetwork", variant="primary", elem_id="train_train_hypernetwork")
    _TRAIN_FIELDS[:] = list(fields)
    return {"inputs": list(fields.values()), "embedding": fields["embedding_name"], "hypernetwork": hypernetwork,
            "train_embedding": train_embedding, "interrupt": interrupt, "train_hypernetwork": train_hypernetwork,
            "hypernetwork_learn_rate": hypernetwork_learn_rate}


def _lora_tab() -> dict:
    f = {}
    with gr.Tab("Train LoRA", id="train_lora"):
        f["train_data_dir"] = gr.Textbox(label="Dataset directory (train_data_dir)", elem_id="lora_train_data_dir",
                                         placeholder="images with .txt/.caption files; N_concept sub-folders repeat N times")
        f["output_name"] = gr.Textbox(label="Output name (empty: the dataset folder's name)", elem_id="lora_output_name")
        with gr.Row():
            f["network_dim"] = gr.Number(label="Rank (network_dim)", value=16, precision=0, elem_id="lora_network_dim")
            f["network_alpha"] = gr.Number(label="Alpha (network_alpha)", value=8, elem_id="lora_network_alpha")
            f["resolution"] = gr.Textbox(label="Resolution (\"512\" or \"w,h\"; empty: the model's)", elem_id="lora_resolution")
            f["enable_bucket"] = gr.Checkbox(label="Aspect-ratio buckets", value=True, elem_id="lora_enable_bucket")
        with gr.Row():
            f["max_train_steps"] = gr.Number(label="Max steps (0: use epochs)", value=0, precision=0, elem_id="lora_max_train_steps")
            f["max_train_epochs"] = gr.Number(label="Epochs (0: default 10)", value=0, precision=0, elem_id="lora_max_train_epochs")
            f["train_batch_size"] = gr.Number(label="Batch size", value=1, precision=0, elem_id="lora_train_batch_size")
        with gr.Row():
            f["unet_lr"] = gr.Number(label="UNet learning rate", value=1e-4, elem_id="lora_unet_lr")
            f["text_encoder_lr"] = gr.Number(label="Text encoder learning rate (0: frozen)", value=5e-5,
                                             elem_id="lora_text_encoder_lr")
        with gr.Row():
            f["lr_scheduler"] = gr.Dropdown(label="LR scheduler", choices=list(lora.SCHEDULERS), value="constant",
                                            elem_id="lora_lr_scheduler")
            f["lr_warmup_steps"] = gr.Number(label="Warm-up steps", value=0, precision=0, elem_id="lora_lr_warmup_steps")
            f["optimizer_type"] = gr.Dropdown(label="Optimizer", choices=list(lora.OPTIMIZERS), value="AdamW",
                                              elem_id="lora_optimizer_type")
        with gr.Row():
            f["network_train_unet_only"] = gr.Checkbox(label="UNet only", value=None, elem_id="lora_unet_only")
            f["network_train_text_encoder_only"] = gr.Checkbox(label="Text encoder only", value=False, elem_id="lora_te_only")
            f["seed"] = gr.Number(label="Seed (-1: random)", value=-1, precision=0, elem_id="lora_seed")
        with gr.Row():
            f["save_every_n_steps"] = gr.Number(label="Save every N steps (0: off)", value=0, precision=0,
                                                elem_id="lora_save_every_n_steps")
            f["sample_every_n_steps"] = gr.Number(label="Sample every N steps (0: off)", value=0, precision=0,
                                                  elem_id="lora_sample_every_n_steps")
        f["sample_prompts"] = gr.Textbox(label="Sample prompts (one per line: prompt --n negative --w --h --d seed --s steps --l cfg)",
                                         lines=2, elem_id="lora_sample_prompts")
        with gr.Accordion("DreamBooth prior preservation", open=False):
            f["reg_data_dir"] = gr.Textbox(label="Class images folder (reg_data_dir)", elem_id="lora_reg_data_dir")
            f["class_prompt"] = gr.Textbox(label="Class prompt", elem_id="lora_class_prompt")
            f["num_class_images"] = gr.Number(label="Class images (generated when the folder holds fewer)", value=0,
                                              precision=0, elem_id="lora_num_class_images")
            f["prior_loss_weight"] = gr.Number(label="Prior loss weight", value=1.0, elem_id="lora_prior_loss_weight")
        with gr.Row():
            train = gr.Button("Train LoRA", variant="primary", elem_id="lora_train")
            interrupt = gr.Button("Interrupt", elem_id="lora_interrupt")
    _LORA_FIELDS[:] = list(f)
    return {"inputs": list(f.values()), "train": train, "interrupt": interrupt}


