"""API routes of the extra networks (networks.md §9, api.md §12): `GET /sdapi/v1/loras`,
`POST /sdapi/v1/refresh-loras`, `GET /sdapi/v1/hypernetworks`."""
from __future__ import annotations

from fastapi import APIRouter


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
