"""API routes of the extra networks (networks.md §9, api.md §12): `GET /sdapi/v1/loras`,
`POST /sdapi/v1/refresh-loras`, `GET /sdapi/v1/hypernetworks`; and the UI-only routes of the
cards (networks.md §8.6): `/sd_extra_networks/{thumb,metadata,cover-images,get-single-card}`."""
from __future__ import annotations

import os

from fastapi import APIRouter, Request


def list_loras() -> list[dict]:
    from modules.networks import lora
    return [{"name": n.name, "alias": n.alias, "path": n.filename, "metadata": n.metadata}
            for n in lora.registry.available_networks.values()]


def refresh_loras() -> None:
    from modules.networks import lora
    lora.list_available_networks()
    return None


def list_hypernetworks() -> list[dict]:
    from modules.networks import hypernetworks
    return [{"name": name, "path": path} for name, path in hypernetworks.hypernetworks.items()]


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")
    router.add_api_route("/loras", list_loras, methods=["GET"])
    router.add_api_route("/refresh-loras", refresh_loras, methods=["POST"])
    router.add_api_route("/hypernetworks", list_hypernetworks, methods=["GET"])
    return router


THUMB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif")


def thumb(request: Request, filename: str = ""):
    """`GET /sd_extra_networks/thumb?filename=…`: a preview image, only from the pages' folders,
    and with --gradio-auth only for a logged-in UI session (like every other page resource)."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    from modules.networks import cards
    _require_ui_session(request)
    real = os.path.realpath(filename)
    folders = [os.path.realpath(f) for page in cards.PAGES for f in cards.page_folders(page) if f]
    inside = any(os.path.commonpath([real, f]) == f for f in folders if os.path.isdir(f))
    if not inside or not real.lower().endswith(THUMB_EXTENSIONS) or not os.path.isfile(real):
        raise HTTPException(404, "File not allowed")
    return FileResponse(real, headers={"Cache-Control": "max-age=31536000"})


CARD_TABS = ("txt2img", "img2img")


def _require_ui_session(request: Request) -> None:
    from fastapi import HTTPException

    from modules import auth
    if not auth.gradio_session_ok(request):
        raise HTTPException(401, "Not authenticated")


def _card(page: str, name: str):
    """The card `name` of `page` as the panel lists it now; 404 naming what is missing."""
    from fastapi import HTTPException

    from modules import shared
    from modules.networks import cards
    if page not in cards.PAGES:
        raise HTTPException(404, f"No extra networks page {page!r}; the pages are {', '.join(cards.PAGES)}")
    model = shared.model_holder.sd_model if shared.model_holder is not None else None
    card = cards.find_card(page, name, shared.opts, model)
    if card is None:
        raise HTTPException(404, f"The {page} page lists no item {name!r} (press Refresh after adding files)")
    return card


def card_metadata_text(request: Request, page: str = "", item: str = "") -> dict:
    """`GET /sd_extra_networks/metadata?page=&item=`: {"metadata": indented JSON text of the file's
    metadata, without the cover images} or {} when the file has none."""
    from modules.networks import card_metadata, cards
    _require_ui_session(request)
    text = card_metadata.metadata_text(cards.file_metadata(_card(page, item)))
    return {"metadata": text} if text is not None else {}


def cover_image(request: Request, page: str = "", item: str = "", index: int = 0):
    """`GET /sd_extra_networks/cover-images?page=&item=&index=`: cover `index` of the file's
    `ssmd_cover_images` metadata, as the image it holds."""
    from fastapi import HTTPException
    from fastapi.responses import Response

    from modules.networks import card_metadata, cards
    _require_ui_session(request)
    card = _card(page, item)
    try:
        data = card_metadata.decode_cover(cards.file_metadata(card), index)
    except LookupError as e:
        raise HTTPException(404, f"{item}: {e}") from None
    return Response(data, media_type=card_metadata.image_media_type(data))


def single_card(request: Request, page: str = "", tabname: str = "", name: str = "") -> dict:
    """`GET /sd_extra_networks/get-single-card?page=&tabname=&name=`: {"html": the card as the panel
    renders it now} (the page refreshes one card after its edit dialog saved)."""
    from fastapi import HTTPException

    from modules import shared
    from modules.networks import card_html
    _require_ui_session(request)
    if tabname not in CARD_TABS:  # it becomes part of the card's element ids and scripts
        raise HTTPException(422, f"tabname must be one of {', '.join(CARD_TABS)}, not {tabname!r}")
    return {"html": card_html.render_card(tabname, _card(page, name), shared.opts)}


def create_ui_router() -> APIRouter:
    """UI-only support routes of the cards (networks.md §8.6)."""
    router = APIRouter()
    router.add_api_route("/sd_extra_networks/thumb", thumb, methods=["GET"])
    router.add_api_route("/sd_extra_networks/metadata", card_metadata_text, methods=["GET"])
    router.add_api_route("/sd_extra_networks/cover-images", cover_image, methods=["GET"])
    router.add_api_route("/sd_extra_networks/get-single-card", single_card, methods=["GET"])
    return router
