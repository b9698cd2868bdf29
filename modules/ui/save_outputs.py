"""The gallery's Save and Zip buttons: copy results to `outdir_save` (log/images), log them in
log.csv (generation.md §10), and offer the files (or a zip of the batch) for download."""
from __future__ import annotations

import csv
import html
import io
import os
import threading
import zipfile
from types import SimpleNamespace

import gradio as gr

from modules import images, infotext_utils, shared
from modules.ui.gallery_values import infotext_list, open_image

LOG_FIELDS = ["prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename", "negative_prompt",
              "sd_model_name", "sd_model_hash"]
DEFAULT_ZIP_PATTERN = "[datetime]_[[model_name]]_[seed]-[seed_last]"
_log_lock = threading.Lock()


def _int_or(value, default=None):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _float_or(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _job_from_params(params: list[dict]):
    """A stand-in for the processing object, so file-name tags see the saved images' parameters."""
    first = params[0]
    seeds = [_int_or(p.get("Seed"), p.get("Seed")) for p in params]
    return SimpleNamespace(
        prompt=first.get("Prompt", ""), negative_prompt=first.get("Negative prompt", ""),
        all_prompts=[p.get("Prompt", "") for p in params], all_seeds=seeds, seed=seeds[0],
        steps=_int_or(first.get("Steps")), cfg_scale=_float_or(first.get("CFG scale")),
        width=_int_or(first.get("Size-1")), height=_int_or(first.get("Size-2")),
        sampler_name=first.get("Sampler"), scheduler=first.get("Schedule type"),
        denoising_strength=_float_or(first.get("Denoising strength")), styles=first.get("Styles array") or [],
        sd_model_name=first.get("Model"), sd_model_hash=first.get("Model hash"), user=first.get("User"),
        batch_size=len(params), n_iter=1, iteration=0, batch_index=0, job_timestamp="")


def _log_rows(log_path: str, rows: list[list]) -> None:
    """Append rows to log.csv; an older file with other columns gets the current header first."""
    with _log_lock:
        if os.path.exists(log_path):
            with open(log_path, encoding="utf8", newline="") as file:
                existing = list(csv.reader(file))
            if existing and existing[0] != LOG_FIELDS:
                padded = [row + [""] * (len(LOG_FIELDS) - len(row)) for row in existing[1:]]
                images.write_file_atomically(log_path, lambda f: f.write(_csv_bytes([LOG_FIELDS, *padded])))
        new_file = not os.path.exists(log_path) or os.path.getsize(log_path) == 0
        with open(log_path, "a", encoding="utf8", newline="") as file:
            writer = csv.writer(file)
            if new_file:
                writer.writerow(LOG_FIELDS)
            writer.writerows(rows)


def _csv_bytes(rows: list[list]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf8")


def save_files(images_list, infotexts, selected_index, do_make_zip, index_of_first_image: int = 0):
    """Save gallery images to `outdir_save`. Returns (paths offered for download, message HTML).

    Save keeps only the selected image when `save_selected_only` is on and a (non-grid) image is
    selected; Zip always takes the whole batch. Images before `index_of_first_image` are grids.
    """
    opts = shared.opts
    items = list(images_list or [])
    texts = infotext_list(infotexts)
    if not items:
        return [], "<p>Nothing to save.</p>"
    folder = opts.outdir_save
    if not os.path.isabs(folder):
        folder = os.path.join(shared.paths.data, folder)
    os.makedirs(folder, exist_ok=True)

    start = 0
    selected = _int_or(selected_index, -1)
    if not do_make_zip and opts.save_selected_only and index_of_first_image <= selected < len(items):
        items, start = [items[selected]], selected

    saved, names, params_list, rows = [], [], [], []
    for index, item in enumerate(items, start):
        image = open_image(item)
        text = texts[index] if index < len(texts) else ""
        if not text:  # the gallery's PNG carries the infotext when the caller had none
            text = infotext_utils.read_info_from_image(image)[0] or ""
        params = infotext_utils.parse_generation_parameters(text) if text else {}
        params_list.append(params)
        job = _job_from_params([params])
        job.batch_index = index - index_of_first_image
        fullfn, txt_fullfn = images.save_image(
            image, folder, "", seed=_int_or(params.get("Seed"), params.get("Seed")), prompt=params.get("Prompt"),
            extension=opts.samples_format, info=text or None, grid=index < index_of_first_image, p=job,
            save_to_dirs=opts.use_save_to_dirs_for_ui)
        relative = os.path.relpath(fullfn, folder)
        saved.append(fullfn)
        names.append(relative)
        rows.append([params.get("Prompt", ""), params.get("Seed", ""), params.get("Size-1", ""),
                     params.get("Size-2", ""), params.get("Sampler", ""), params.get("CFG scale", ""),
                     params.get("Steps", ""), relative, params.get("Negative prompt", ""),
                     params.get("Model", ""), params.get("Model hash", "")])
        if txt_fullfn:
            saved.append(txt_fullfn)
            names.append(os.path.relpath(txt_fullfn, folder))

    if opts.save_write_log_csv:
        _log_rows(os.path.join(folder, "log.csv"), rows)

    files = list(saved)
    if do_make_zip:
        job = _job_from_params(params_list)
        first_image = open_image(items[0])
        namegen = images.FilenameGenerator(job, job.seed, job.prompt, first_image, zip=True)
        zip_stem = namegen.apply(opts.grid_zip_filename_pattern or DEFAULT_ZIP_PATTERN)

        def write_zip(file):
            with zipfile.ZipFile(file, "w") as archive:
                for path, name in zip(saved, names):
                    archive.write(path, arcname=name)

        files.insert(0, images.write_new_file(folder, zip_stem, "zip", write_zip))
    return files, f"<p>Saved: {html.escape(names[0])}</p>"


def _on_select(evt: gr.SelectData):
    return evt.index


def create_save_buttons(gallery, infotexts_state, tabname: str = "txt2img", index_of_first_image=None) -> dict:
    """Save / Zip buttons for a result gallery (call inside the tab's Blocks context).

    `infotexts_state` holds the infotexts of the gallery's images (a gr.State with a list, or a
    Textbox with one text); `index_of_first_image` an optional gr.State/Number (grids before it).
    Returns {save, save_zip, download_files, html_log, selected_index}.
    """
    selected_index = gr.State(-1)
    with gr.Row(elem_id=f"image_buttons_{tabname}"):
        save = gr.Button("💾 Save", elem_id=f"save_{tabname}", size="sm")
        save_zip = gr.Button("🗃️ Zip", elem_id=f"save_zip_{tabname}", size="sm")
    download_files = gr.File(None, file_count="multiple", interactive=False, show_label=False, visible=False,
                             elem_id=f"download_files_{tabname}")
    html_log = gr.HTML(elem_id=f"html_log_save_{tabname}")

    gallery.select(_on_select, inputs=None, outputs=[selected_index], show_progress="hidden",
                   api_visibility="private")
    gallery.change(lambda: -1, inputs=None, outputs=[selected_index], show_progress="hidden",
                   api_visibility="private")

    inputs = [gallery, infotexts_state, selected_index]
    if index_of_first_image is not None:
        inputs.append(index_of_first_image)

    def handler(do_make_zip: bool):
        def run(gallery_value, infotexts, selected, first_index=0):
            files, message = save_files(gallery_value, infotexts, selected, do_make_zip,
                                        index_of_first_image=_int_or(first_index, 0))
            return gr.File(value=files or None, visible=bool(files)), message
        return run

    for button, zipped in ((save, False), (save_zip, True)):
        button.click(handler(zipped), inputs=inputs, outputs=[download_files, html_log],
                     show_progress="hidden", api_visibility="private")
    return {"save": save, "save_zip": save_zip, "download_files": download_files, "html_log": html_log,
            "selected_index": selected_index}
