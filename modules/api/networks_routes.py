"""API routes of the extra networks (networks.md §9, api.md §12): `GET /sdapi/v1/loras`,
`POST /sdapi/v1/refresh-loras`, `GET /sdapi/v1/hypernetworks`."""
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

    from modules import auth
    from modules.networks import cards
    if not auth.gradio_session_ok(request):
        raise HTTPException(401, "Not authenticated")
    real = os.path.realpath(filename)
    folders = [os.path.realpath(f) for page in cards.PAGES for f in cards.page_folders(page) if f]
    inside = any(os.path.commonpath([real, f]) == f for f in folders if os.path.isdir(f))
    if not inside or not real.lower().endswith(THUMB_EXTENSIONS) or not os.path.isfile(real):
        raise HTTPException(404, "File not allowed")
    return FileResponse(real, headers={"Cache-Control": "max-age=31536000"})


def create_ui_router() -> APIRouter:
    """UI-only support routes of the cards (networks.md §8.6)."""
    router = APIRouter()
    router.add_api_route("/sd_extra_networks/thumb", thumb, methods=["GET"])
    return router
