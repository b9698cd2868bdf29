"""The Checkpoint Merger tab (ui.md §6): A1111's controls plus per-block weights.

Thin caller of modules.merge: the merge runs as a job on the queue; this tab shows its stage and
per-tensor progress, then the saved file's name and hash, and refreshes every checkpoint list.
"""
from __future__ import annotations

import html
import json
import time

import gradio as gr

from modules import sd_models, sd_vae, shared
from modules.merge import MergeError, MergeInterrupted, MergeRequest
from modules.merge import jobs as merge_jobs
from modules.merge.block_weights import parse_list
from modules.merge.presets import format_values
from modules.models.loader import ModelLoadError, read_metadata

METHODS = ["No interpolation", "Weighted sum", "Add difference"]
DESCRIPTIONS = {
    "No interpolation": "No interpolation: the result is model A only (format conversion, float16, VAE baking, discarding weights).",
    "Weighted sum": "Weighted sum: A · (1 − M) + B · M",
    "Add difference": "Add difference: A + (B − C) · M",
}
BLOCK_LABELS = ["BASE"] + [f"IN{i:02d}" for i in range(12)] + ["M00"] + [f"OUT{i:02d}" for i in range(12)]
BLOCK_HELP = ("26 values: BASE (text encoder, VAE and other keys), IN00–IN11, M00, OUT00–OUT11; or 25 without "
              "BASE (then BASE is M); SDXL also takes 19/20 and uses IN00–08, M00, OUT00–08 of a 25/26 list; "
              "time_embed follows IN00 and out follows the last OUT block. Values are the share of B.")


def _titles():
    return sd_models.checkpoint_titles()


def _vae_choices():
    return ["None", *sd_vae.vae_dict]


def _error(text: str) -> str:
    return f"<p class='error'>{html.escape(text)}</p>"


def read_metadata_of(primary, secondary, tertiary) -> str:
    merged = {}
    for name in (primary, secondary, tertiary):
        info = sd_models.get_closet_checkpoint_match(name) if name else None
        if info is None or info.is_folder:
            continue
        try:
            merged.update(read_metadata(info.filename))
        except ModelLoadError as e:
            return json.dumps({"error": str(e)}, indent=4)
    for key, value in merged.items():
        if isinstance(value, str) and value.startswith("{"):
            try:
                merged[key] = json.loads(value)
            except json.JSONDecodeError:
                pass  # not JSON after all: shown as the text it is
    return json.dumps(merged, indent=4, ensure_ascii=False)


def sliders_to_text(*values) -> str:
    return format_values(values)


def text_to_sliders(text: str, multiplier: float):
    """The block text -> the 26 sliders (25 values: BASE shows M). Unparsable text leaves them."""
    try:
        values = parse_list(text, merge_jobs.user_presets())
    except MergeError:
        return [gr.update() for _ in BLOCK_LABELS]
    if len(values) == 25:
        values = [multiplier, *values]
    if len(values) != 26:
        return [gr.update() for _ in BLOCK_LABELS]
    return [gr.update(value=v) for v in values]


def apply_preset(name: str, base: float):
    values = merge_jobs.user_presets().get(name)
    if values is None or len(values) not in (25, 26):
        return gr.update(), *[gr.update() for _ in BLOCK_LABELS]
    full = values if len(values) == 26 else [base, *values]
    return format_values(full), *[gr.update(value=v) for v in full]


def _build_request(primary, secondary, tertiary, method, multiplier, save_as_half, custom_name, checkpoint_format,
                   config_source, bake_in_vae, discard_weights, save_metadata, add_recipe, copy_metadata,
                   metadata_json, use_blocks, block_text) -> MergeRequest:
    infos = {}
    for label, value, field in (("A", primary, "Primary model (A)"), ("B", secondary, "Secondary model (B)"),
                                ("C", tertiary, "Tertiary model (C)")):
        infos[label] = merge_jobs.resolve_checkpoint(value, field, exact=False)
    vae_path, vae_name = merge_jobs.resolve_vae(bake_in_vae)
    return MergeRequest(
        primary=infos["A"].filename if infos["A"] else "",
        secondary=infos["B"].filename if infos["B"] else None,
        tertiary=infos["C"].filename if infos["C"] else None,
        interp_method=method, multiplier=float(multiplier), save_as_half=bool(save_as_half),
        block_weights=block_text if use_blocks else None, output_dir=shared.paths.checkpoints,
        custom_name=custom_name or "", checkpoint_format=checkpoint_format, bake_in_vae=vae_path,
        bake_in_vae_name=vae_name, discard_weights=discard_weights or "", save_metadata=bool(save_metadata),
        add_recipe=bool(add_recipe), copy_metadata=bool(copy_metadata), metadata_json=metadata_json or "{}",
        config_source=int(config_source or 0), presets=merge_jobs.user_presets(),
        names={label: info.model_name for label, info in infos.items() if info is not None})


def run_merge(*args, progress=gr.Progress()):
    """Queue the merge, show its progress, then the result; refresh A/B/C and the quicksettings list."""
    unchanged = [gr.update()] * 4
    try:
        req = _build_request(*args)
    except MergeError as e:
        return _error(str(e)), *unchanged
    job = shared.job_queue.submit(lambda: merge_jobs.run_merge(req), name=merge_jobs.JOB_NAME)
    state = shared.state
    while not job.future.done():
        if state.task_id == job.task_id and state.textinfo:
            if state.sampling_steps:
                progress((state.sampling_step, state.sampling_steps), desc=state.textinfo, unit="tensors")
            else:
                progress(0, desc=state.textinfo)
        else:
            progress(0, desc="Waiting in queue")
        time.sleep(0.1)
    try:
        saved = job.future.result()
    except MergeError as e:
        sd_models.list_models()
        return _error(f"Error merging checkpoints: {e}"), *unchanged
    except MergeInterrupted:
        return _error("The merge was interrupted; no file was written."), *unchanged
    choices = _titles()
    result = (f"<p>{html.escape(saved.info)}</p><p id='modelmerger_result_title'>"
              f"{html.escape(saved.title)}</p><p>sha256: <code>{saved.sha256}</code></p>")
    return result, *[gr.update(choices=choices) for _ in range(4)]


def create_tab(checkpoint_selector=None) -> dict:
    """Build the tab inside a gr.Tabs; `checkpoint_selector` (quicksettings) is refreshed after a merge."""
    with gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"):
        with gr.Row(equal_height=False):
            with gr.Column(variant="compact"):
                description = gr.Markdown(DESCRIPTIONS["Weighted sum"], elem_id="modelmerger_interp_description")
                models = []
                with gr.Row():
                    for label, field, key in (("Primary model (A)", "primary_model_name", "A"),
                                              ("Secondary model (B)", "secondary_model_name", "B"),
                                              ("Tertiary model (C)", "tertiary_model_name", "C")):
                        dropdown = gr.Dropdown(label=label, choices=_titles(), value=None, elem_id=f"modelmerger_{field}")
                        refresh = gr.Button("🔄", elem_id=f"refresh_checkpoint_{key}", scale=0, min_width=40)
                        refresh.click(lambda: (sd_models.list_models(), gr.update(choices=_titles()))[1],
                                      outputs=[dropdown], api_visibility="private")
                        models.append(dropdown)
                custom_name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
                multiplier = gr.Slider(minimum=0.0, maximum=1.0, step=0.05, value=0.3,
                                       label="Multiplier (M) - set to 0 to get model A", elem_id="modelmerger_interp_amount")
                method = gr.Radio(choices=METHODS, value="Weighted sum", label="Interpolation Method",
                                  elem_id="modelmerger_interp_method")
                with gr.Row():
                    checkpoint_format = gr.Radio(choices=["ckpt", "safetensors"], value="safetensors",
                                                 label="Checkpoint format", elem_id="modelmerger_checkpoint_format")
                    save_as_half = gr.Checkbox(value=False, label="Save as float16", elem_id="modelmerger_save_as_half")
                config_source = gr.Radio(choices=["A, B or C", "B", "C", "Don't"], value="A, B or C", type="index",
                                         label="Copy config from", elem_id="modelmerger_config_method")
                with gr.Row():
                    bake_in_vae = gr.Dropdown(choices=_vae_choices(), value="None", label="Bake in VAE",
                                              elem_id="modelmerger_bake_in_vae")
                    refresh_vae = gr.Button("🔄", elem_id="modelmerger_refresh_bake_in_vae", scale=0, min_width=40)
                discard_weights = gr.Textbox(label="Discard weights with matching name", elem_id="modelmerger_discard_weights")
                with gr.Accordion("Block weights", open=False, elem_id="modelmerger_block_weights_accordion"):
                    use_blocks = gr.Checkbox(value=False, label="Merge with a weight per block",
                                             elem_id="modelmerger_use_block_weights")
                    preset = gr.Dropdown(choices=list(merge_jobs.user_presets()), value=None, label="Preset",
                                         elem_id="modelmerger_block_preset")
                    block_text = gr.Textbox(label="Block weights", info=BLOCK_HELP,
                                            value=format_values([0.3] * 26), elem_id="modelmerger_block_weights")
                    sliders = []
                    for row_start in range(0, len(BLOCK_LABELS), 7):
                        with gr.Row():
                            for name in BLOCK_LABELS[row_start:row_start + 7]:
                                sliders.append(gr.Slider(minimum=0.0, maximum=1.0, step=0.01, value=0.3, label=name,
                                                         elem_id=f"modelmerger_block_{name}", min_width=120))
                with gr.Accordion("Metadata", open=False, elem_id="modelmerger_metadata_accordion") as metadata_box:
                    with gr.Row():
                        save_metadata = gr.Checkbox(value=True, label="Save metadata", elem_id="modelmerger_save_metadata")
                        add_recipe = gr.Checkbox(value=True, label="Add merge recipe metadata", elem_id="modelmerger_add_recipe")
                        copy_metadata = gr.Checkbox(value=True, label="Copy metadata from merged models",
                                                    elem_id="modelmerger_copy_metadata")
                    metadata_json = gr.TextArea(value="{}", label="Metadata in JSON format", elem_id="modelmerger_metadata_json")
                    read_button = gr.Button("Read metadata from selected checkpoints", elem_id="modelmerger_view_metadata")
                merge_button = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
            with gr.Column(variant="compact", elem_id="modelmerger_results_container"):
                result = gr.HTML(elem_id="modelmerger_result")

        method.change(lambda m: DESCRIPTIONS[m], inputs=[method], outputs=[description], api_visibility="private")
        checkpoint_format.change(lambda f: gr.update(visible=f == "safetensors"), inputs=[checkpoint_format],
                                 outputs=[metadata_box], api_visibility="private")
        refresh_vae.click(lambda: (sd_vae.refresh_vae_list(), gr.update(choices=_vae_choices()))[1],
                          outputs=[bake_in_vae], api_visibility="private")
        read_button.click(read_metadata_of, inputs=models, outputs=[metadata_json], api_visibility="private")
        for slider in sliders:
            slider.input(sliders_to_text, inputs=sliders, outputs=[block_text], show_progress="hidden",
                         api_visibility="private")
        block_text.blur(text_to_sliders, inputs=[block_text, multiplier], outputs=sliders, show_progress="hidden",
                        api_visibility="private")
        block_text.submit(text_to_sliders, inputs=[block_text, multiplier], outputs=sliders, show_progress="hidden",
                          api_visibility="private")
        preset.input(apply_preset, inputs=[preset, sliders[0]], outputs=[block_text, *sliders],
                     show_progress="hidden", api_visibility="private")
        selector_output = [checkpoint_selector] if checkpoint_selector is not None else []
        outputs = [result, *models, *(selector_output or [gr.State()])]
        merge_button.click(run_merge, inputs=[*models, method, multiplier, save_as_half, custom_name, checkpoint_format,
                                              config_source, bake_in_vae, discard_weights, save_metadata, add_recipe,
                                              copy_metadata, metadata_json, use_blocks, block_text],
                           outputs=outputs, api_visibility="private")
    return {"result": result, "models": models, "merge": merge_button, "block_text": block_text, "sliders": sliders}
