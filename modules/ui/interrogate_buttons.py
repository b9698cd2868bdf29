"""📎 Interrogate CLIP and 📦 Interrogate DeepBooru beside the img2img prompt (ui.md §2, §3.9;
extras.md §6.3): caption the visible mode's image and replace the prompt; in Batch mode caption every
file of the input directory, appending a line to `<stem>.txt` in the output directory (the input
directory when that is empty). Captioning runs as a job on the queue."""
import html
import os

import gradio as gr
from PIL import Image

from modules import interrogate, shared
from modules.img2img import batch, editor_inputs

BATCH_MODE = 5
LABELS = {"clip": "Interrogate CLIP", "deepdanbooru": "Interrogate DeepBooru"}


def create_buttons() -> dict:
    """The two tool buttons (A1111's elem ids); place them inside the caller's toolbar row."""
    return {model: gr.Button(icon, elem_id=elem_id, elem_classes=["tool"], scale=0, min_width=40)
            for model, icon, elem_id in (("clip", "📎", "interrogate"), ("deepdanbooru", "📦", "deepbooru"))}


def mode_image(mode: int, sources: dict) -> Image.Image:
    """The visible mode's picture (Inpaint / Inpaint sketch: the background; Inpaint upload: the base)."""
    if mode == 0:
        return editor_inputs.img2img_image(sources["img2img"])
    if mode == 1:
        return editor_inputs.sketch_image(sources["sketch"])
    if mode in (2, 3):
        name = "Inpaint" if mode == 2 else "Inpaint sketch"
        return editor_inputs.background_image(sources["inpaint" if mode == 2 else "inpaint_sketch"], name)
    image = sources.get("upload_image")
    if image is None:
        raise editor_inputs.EditorInputError("Inpaint upload: upload an image first")
    return image if isinstance(image, Image.Image) else editor_inputs.background_image(image, "Inpaint upload")


def caption(image: Image.Image, model: str) -> str:
    return shared.job_queue.run(lambda: interrogate.interrogate(image.convert("RGB"), model), name="interrogate")


def caption_folder(model: str, input_dir: str, output_dir: str) -> str:
    """Batch mode: append each file's caption to <stem>.txt; returns a log line."""
    if shared.cmd_opts.hide_ui_dir_config:
        raise editor_inputs.EditorInputError("Batch from directory is disabled by --hide-ui-dir-config")
    if not input_dir or not os.path.isdir(input_dir):
        raise editor_inputs.EditorInputError(f"Input directory not found: {input_dir or '(empty)'}")
    target = output_dir or input_dir
    os.makedirs(target, exist_ok=True)
    done, failed = 0, []
    for path in batch.list_images(input_dir):
        try:
            image = batch.open_image(path)
        except (OSError, ValueError) as e:
            failed.append(f"{path.name}: {e}")
            continue
        text = caption(image, model)
        with open(os.path.join(target, f"{path.stem}.txt"), "a", encoding="utf8") as file:
            file.write(text + "\n")
        done += 1
    message = f"{LABELS[model]}: captioned {done} file(s) into {target}"
    return message + ("; skipped " + "; ".join(failed) if failed else "")


def run(model: str, source_names: list[str], mode, *values):
    """(prompt, log html) for a button click; values = source values, then input/output folders."""
    sources = dict(zip(source_names, values[:len(source_names)]))
    input_dir, output_dir = values[len(source_names):len(source_names) + 2]
    try:
        if int(mode or 0) == BATCH_MODE:
            return gr.skip(), f"<p>{html.escape(caption_folder(model, input_dir, output_dir))}</p>"
        return caption(mode_image(int(mode or 0), sources), model), ""
    except (interrogate.InterrogateUnavailable, editor_inputs.EditorInputError) as e:
        return gr.skip(), f"<div class='error'>{html.escape(str(e))}</div>"


def wire(buttons: dict, mode, sources: dict, batch_controls: dict, prompt, log) -> None:
    names = list(sources)
    inputs = [mode, *sources.values(), batch_controls["batch_input_dir"], batch_controls["batch_output_dir"]]
    for model, button in buttons.items():
        button.click(lambda *values, model=model: run(model, names, *values), inputs=inputs, outputs=[prompt, log],
                     api_visibility="private")
