"""POST /sdapi/v1/interrogate (api.md §10.4): {image, model} -> {caption}, as a queued job."""
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from modules import interrogate, shared


class InterrogateRequest(BaseModel):
    image: str | None = Field(default="", title="Image", description="Image to work on, base64 or a data: URI")
    model: str = Field(default="clip", title="Model", description="clip or deepdanbooru")


class InterrogateResponse(BaseModel):
    caption: str | None = Field(default=None, title="Caption")


def interrogate_api(req: InterrogateRequest):
    from modules.api.outputs_routes import decode_base64_to_image
    if req.image is None:
        raise HTTPException(404, "Image not found")
    if req.model not in interrogate.MODELS:
        raise HTTPException(404, "Model not found")
    if not req.image:
        raise HTTPException(422, "Invalid encoded image")
    image = decode_base64_to_image(req.image).convert("RGB")
    try:
        caption = shared.job_queue.run(lambda: interrogate.interrogate(image, req.model), name="interrogate")
    except interrogate.InterrogateUnavailable as e:
        raise HTTPException(503, str(e)) from None
    return InterrogateResponse(caption=caption)


def register(router: APIRouter) -> None:
    router.add_api_route("/interrogate", interrogate_api, methods=["POST"], response_model=InterrogateResponse)
