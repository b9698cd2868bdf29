"""POST /sdapi/v1/img2img (api.md §8.2): the txt2img route's request handling plus init images
and masks, decoded here so that a bad one is a 422 naming its field."""
from fastapi import APIRouter, HTTPException

from modules import processing
from modules.api import models
from modules.api.api import build_processing, run_generation
from modules.api.outputs_routes import decode_base64_to_image


def _decode(value: str, field: str):
    try:
        return decode_base64_to_image(value)
    except HTTPException as e:
        raise HTTPException(422, f"{field}: {e.detail} (expected a base64 or data: URL PNG/JPEG/WebP image)") from None


def img2imgapi(req: models.StableDiffusionProcessingImg2Img):
    if req.init_images is None:
        raise HTTPException(404, "Init image not found")
    if not req.init_images:
        raise HTTPException(422, "init_images: give at least one image")
    decoded = {"init_images": [_decode(image, f"init_images[{i}]") for i, image in enumerate(req.init_images)]}
    if req.mask:
        decoded["mask"] = _decode(req.mask, "mask")
    if req.latent_mask:
        decoded["latent_mask"] = _decode(req.latent_mask, "latent_mask")
    req, args, p = build_processing(req, processing.StableDiffusionProcessingImg2Img, **decoded)
    if args["mask_blur"] is None:  # with_defaults leaves it None: the x/y values apply
        p.mask_blur_x, p.mask_blur_y = args["mask_blur_x"], args["mask_blur_y"]
    p.inpainting_mask_invert = int(bool(args["inpainting_mask_invert"]))
    processed, images = run_generation(p, args, "img2img")
    parameters = req.model_dump()
    if not args["include_init_images"]:
        parameters["init_images"] = parameters["mask"] = None
    return models.ImageToImageResponse(images=images, parameters=parameters, info=processed.js())


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")
    router.add_api_route("/img2img", img2imgapi, methods=["POST"], response_model=models.ImageToImageResponse)
    return router
