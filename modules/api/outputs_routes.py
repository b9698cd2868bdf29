"""API routes about saved outputs: `POST /png-info` (api.md §10.2) and `GET /prompt-styles` (§12).

`create_router()` returns a router to include in the app; it needs no server state beyond
`shared.opts` and the style database.
"""
from __future__ import annotations

import base64
import binascii
import io

from fastapi import APIRouter, HTTPException
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from modules import infotext_utils, shared, styles


class PNGInfoRequest(BaseModel):
    image: str = Field(default="", title="Image", description="Image as base64 or a data: URI")


class PNGInfoResponse(BaseModel):
    info: str = Field(title="Image info", description="The generation parameters text")
    items: dict = Field(title="Items", description="Other metadata of the image")
    parameters: dict = Field(title="Parameters", description="The parameters text parsed")


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


def decode_base64_to_image(encoding: str) -> Image.Image:
    """Raw base64 or a data: URI -> an opened image (api.md §4.1); 422 when it is not an image."""
    payload = encoding.strip()
    if payload.startswith("data:"):
        # A1111 splits on ';' then ','; keeping everything after the first comma is the same
        payload = payload.split(";", 1)[-1].split(",", 1)[-1]
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        image.load()  # fail here, not later, on a truncated file
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise HTTPException(status_code=422, detail="Invalid encoded image") from e
    return image


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def parse_infotext_with_settings(text: str) -> dict:
    """The infotext parser with the user's settings and saved styles (infotext.md §5)."""
    opts = shared.opts
    params = infotext_utils.parse_generation_parameters(
        text, list(opts.infotext_skip_pasting or []),
        styles=styles.get_database().styles, infotext_styles=opts.infotext_styles,
        auto_backcompat=opts.auto_backcompat,
        use_old_hires_fix_width_height=opts.use_old_hires_fix_width_height)
    from modules.networks import paste
    paste.on_infotext_pasted(params)  # LoRA names re-resolved by `Lora hashes` (networks.md §6.2)
    run_infotext_pasted_callbacks(text, params)
    return params


def run_infotext_pasted_callbacks(text: str, params: dict) -> None:
    """Extensions' on_infotext_pasted callbacks, when this build has modules.script_callbacks."""
    from modules.images import script_callbacks_module
    module = script_callbacks_module()
    callback = getattr(module, "infotext_pasted_callback", None) if module is not None else None
    if callback is not None:
        callback(text, params)


def png_info(req: PNGInfoRequest) -> PNGInfoResponse:
    geninfo, items = "", {}
    if req.image and req.image.strip():  # A1111 answers an empty image with empty info, not an error
        geninfo, items = infotext_utils.read_info_from_image(decode_base64_to_image(req.image))
    geninfo = geninfo or ""
    return PNGInfoResponse(info=geninfo, items=_jsonable(items), parameters=_jsonable(parse_infotext_with_settings(geninfo)))


def prompt_styles() -> list[PromptStyleItem]:
    return [PromptStyleItem(name=s.name, prompt=s.prompt, negative_prompt=s.negative_prompt)
            for s in styles.get_database().styles.values()]


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")
    router.add_api_route("/png-info", png_info, methods=["POST"], response_model=PNGInfoResponse)
    router.add_api_route("/prompt-styles", prompt_styles, methods=["GET"], response_model=list[PromptStyleItem])
    return router
