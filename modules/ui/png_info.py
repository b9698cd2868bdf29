"""The PNG Info tab: drop an image, see its generation parameters and other metadata, send the
parameters to another tab. `pasted_params` and `fields_from_params` are the pure part the "Send to"
buttons use."""
from __future__ import annotations

import html
import logging

import gradio as gr

from modules import infotext_utils, shared
from modules.api.outputs_routes import parse_infotext_with_settings

log = logging.getLogger(__name__)

SEND_TARGETS = ("txt2img", "img2img", "inpaint", "extras")
SEED_KEYS = ("Seed",)
SIZE_KEYS = ("Size-1", "Size-2")

# Infotext values are strings; the UI controls want numbers for these keys.
_INT_KEYS = {"Steps", "Seed", "Size-1", "Size-2", "Variation seed", "Seed resize from-1", "Seed resize from-2",
             "Clip skip", "Hires steps", "Hires resize-1", "Hires resize-2", "Batch size", "Batch count",
             "Masked area padding", "Mask blur"}
_FLOAT_KEYS = {"CFG scale", "Image CFG scale", "Denoising strength", "Variation seed strength", "Hires upscale",
               "Refiner switch at", "Distilled CFG Scale"}


def _convert(key: str, value):
    try:
        if key in _INT_KEYS:
            return int(float(value))
        if key in _FLOAT_KEYS:
            return float(value)
    except (TypeError, ValueError):
        log.warning("Infotext value %r for %s is not a number; field left unchanged", value, key)
        return None
    return value


def _split_combined_sampler(params: dict) -> None:
    """Old infotexts name sampler and schedule together (`DPM++ 2M Karras`); split them."""
    sampler = params.get("Sampler")
    if not isinstance(sampler, str):
        return
    from modules import sd_samplers
    base, schedule = sd_samplers.split_schedule_suffix(sampler)
    if schedule is None or schedule.name == "automatic":
        return
    params["Sampler"] = base
    if params.get("Schedule type", "Automatic") == "Automatic":
        params["Schedule type"] = schedule.label


def pasted_params(text: str) -> dict:
    """The parsed infotext as pasting uses it (user settings, styles, extension callbacks run once;
    a combined sampler name split); {} for empty text."""
    if not text or not text.strip():
        return {}
    params = parse_infotext_with_settings(text)
    _split_combined_sampler(params)
    return params


def fields_from_params(params: dict, field_keys: list[str], skip=None) -> list:
    """Values for `field_keys` (infotext keys such as "Prompt", "Steps", "Size-1") from
    `pasted_params`. None means "leave that field unchanged": the key
    is missing, listed in `skip`, in the setting `infotext_skip_pasting`, or turned off by
    `send_seed` / `send_size`.
    """
    if not params:
        return [None] * len(field_keys)
    skipped = set(skip or [])
    if not shared.opts.send_seed:
        skipped.update(SEED_KEYS)
    if not shared.opts.send_size:
        skipped.update(SIZE_KEYS)
    return [None if key in skipped or key not in params else _convert(key, params[key]) for key in field_keys]


def pnginfo_html(items: dict) -> str:
    """Metadata entries other than the parameters, as HTML."""
    if not items:
        return "<div><p>Nothing else found in the image.</p></div>"
    blocks = [f"<div><p><b>{html.escape(str(key))}</b></p><p>{html.escape(str(value))}</p></div>"
              for key, value in items.items()]
    return "\n".join(blocks)


def run_pnginfo(image):
    """(parameters text, HTML of the other metadata) of a dropped image."""
    if image is None:
        return "", ""
    geninfo, items = infotext_utils.read_info_from_image(image)
    if geninfo is None and not items:
        return "", "<div><p>Nothing found in the image.</p></div>"
    return geninfo or "", pnginfo_html(items)


def create_tab(targets=SEND_TARGETS) -> dict:
    """Build the tab (call inside a gr.Tabs) with a "Send to" button for each existing target tab.
    Returns its components: image, generation_info (the parameters text), html_info,
    send_buttons {target: Button}."""
    with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
        with gr.Row(equal_height=False):
            with gr.Column(variant="panel"):
                # image_mode=None: converting to RGB would be a needless copy of the upload
                image = gr.Image(label="Source", type="pil", sources=["upload", "clipboard"], format="png",
                                 image_mode=None, interactive=True, elem_id="pnginfo_image")
            with gr.Column(variant="panel"):
                generation_info = gr.Textbox(label="Parameters", lines=6, interactive=False, buttons=["copy"],
                                             elem_id="pnginfo_generation_info")
                html_info = gr.HTML(elem_id="pnginfo_html_info")
                with gr.Row():
                    send_buttons = {target: gr.Button(f"Send to {target}", elem_id=f"pnginfo_send_to_{target}")
                                    for target in targets}
        image.change(run_pnginfo, inputs=[image], outputs=[generation_info, html_info],
                     show_progress="hidden", api_visibility="private")
    return {"image": image, "generation_info": generation_info, "html_info": html_info,
            "send_buttons": send_buttons}

