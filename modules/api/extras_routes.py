"""Extras API (api.md §10.1, §12; extras.md §5): extra-single-image, extra-batch-images,
upscalers, realesrgan-models, face-restorers."""
import base64
import io

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from modules import face_restoration, infotext_utils, shared, upscaling
from modules.postprocessing import extras_job, runner
from modules.postprocessing.errors import PostprocessingError
from modules.upscaling import registry


class ExtrasBaseRequest(BaseModel):
    resize_mode: int = Field(default=0, ge=0, le=1, title="Resize Mode")
    show_extras_results: bool = Field(default=True, title="Show results")
    gfpgan_visibility: float = Field(default=0, ge=0, le=1, title="GFPGAN Visibility")
    codeformer_visibility: float = Field(default=0, ge=0, le=1, title="CodeFormer Visibility")
    codeformer_weight: float = Field(default=0, ge=0, le=1, title="CodeFormer Weight")
    upscaling_resize: float = Field(default=2.0, gt=0, title="Upscaling Factor")
    upscaling_resize_w: int = Field(default=512, ge=1, title="Target Width")
    upscaling_resize_h: int = Field(default=512, ge=1, title="Target Height")
    upscaling_crop: bool = Field(default=True, title="Crop to fit")
    upscaler_1: str | None = Field(default="None", title="Main upscaler")
    upscaler_2: str | None = Field(default="None", title="Secondary upscaler")
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1, title="Secondary upscaler visibility")
    upscale_first: bool = Field(default=False, title="Upscale first (ignored, as in A1111 v1.10.1)")


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str | None = Field(default="", title="Image", description="Image as base64 or a data: URI")


class FileData(BaseModel):
    data: str = Field(title="File data", description="Base64 representation of the file")
    name: str = Field(default="", title="File name")


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(title="Images", description="List of images to work on")


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


def step_args(req: ExtrasBaseRequest) -> dict[str, dict]:
    """The request fields as arguments of the built-in steps; other steps get none (they do nothing)."""
    return {
        "Upscale": {"upscale_enabled": True, "upscale_mode": req.resize_mode, "upscale_by": req.upscaling_resize,
                    "max_side_length": 0, "upscale_to_width": req.upscaling_resize_w,
                    "upscale_to_height": req.upscaling_resize_h, "upscale_crop": req.upscaling_crop,
                    "upscaler_1_name": req.upscaler_1, "upscaler_2_name": req.upscaler_2,
                    "upscaler_2_visibility": req.extras_upscaler_2_visibility},
        "GFPGAN": {"enable": True, "gfpgan_visibility": req.gfpgan_visibility},
        "CodeFormer": {"enable": True, "codeformer_visibility": req.codeformer_visibility,
                       "codeformer_weight": req.codeformer_weight},
    }


def _check_names(req: ExtrasBaseRequest) -> None:
    """Unknown names are a 422 listing the valid ones; known ones without weights a 503 — before the
    job is queued."""
    for field, name in (("upscaler_1", req.upscaler_1), ("upscaler_2", req.upscaler_2)):
        if name in (None, "", "None"):
            continue
        try:
            entry = upscaling.find_upscaler(name)
            if field == "upscaler_1" or req.extras_upscaler_2_visibility:
                upscaling.require_available(entry)
        except upscaling.UnknownUpscaler as e:
            raise HTTPException(422, f"{field}: {e}") from None
        except upscaling.UpscalerUnavailable as e:
            raise HTTPException(503, str(e)) from None
    for name, visibility in (("GFPGAN", req.gfpgan_visibility), ("CodeFormer", req.codeformer_visibility)):
        if visibility:
            try:
                face_restoration.check_available(name)
            except face_restoration.FaceRestorationUnavailable as e:
                raise HTTPException(503, str(e)) from None


def encode_output(out: extras_job.ExtrasOutput) -> str:
    """samples_format; PNG text chunks `parameters` (if the source had one) and `postprocessing`,
    JPEG/WebP the infotext in EXIF (extras.md §4.5)."""
    fmt = shared.opts.samples_format.lower()
    buffer = io.BytesIO()
    image = out.image
    if fmt in ("jpg", "jpeg", "webp"):
        image = image.convert("RGB") if image.mode in ("RGBA", "P") else image
        exif = infotext_utils.exif_bytes_for(out.infotext) if out.infotext else None
        image.save(buffer, format="JPEG" if fmt != "webp" else "WEBP", quality=shared.opts.jpeg_quality,
                   **({"exif": exif} if exif else {}))
    else:
        existing = {"parameters": out.parameters} if out.parameters else {}
        image.save(buffer, format="PNG", pnginfo=infotext_utils.pnginfo_for(out.infotext or None, "postprocessing",
                                                                             existing))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _run(req: ExtrasBaseRequest, encoded: list[str]) -> extras_job.ExtrasResult:
    from modules.api.outputs_routes import decode_base64_to_image
    _check_names(req)
    inputs = []
    for data in encoded:
        if not data:
            raise HTTPException(422, "Invalid encoded image")
        inputs.append(extras_job.ExtrasInput(decode_base64_to_image(data)))
    steps = runner.ordered_steps()
    args = runner.with_extension_defaults(steps, step_args(req))  # extensions' steps: their UI defaults
    try:
        return shared.job_queue.run(lambda: extras_job.run(inputs, args, save=False, steps=steps), name="extras")
    except (PostprocessingError, ValueError) as e:
        raise HTTPException(422, str(e)) from None
    except (upscaling.UpscalerUnavailable, face_restoration.FaceRestorationUnavailable) as e:
        raise HTTPException(503, str(e)) from None
    except upscaling.UpscaleOutOfMemory as e:
        raise HTTPException(507, str(e)) from None


def extras_single_image(req: ExtrasSingleImageRequest):
    if req.image is None:
        raise HTTPException(404, "Image not found")
    result = _run(req, [req.image])
    return ExtrasSingleImageResponse(html_info=result.html_info,
                                     image=encode_output(result.outputs[0]) if result.outputs else None)


def extras_batch_images(req: ExtrasBatchImagesRequest):
    result = _run(req, [item.data for item in req.imageList])
    return ExtrasBatchImagesResponse(html_info=result.html_info,
                                     images=[encode_output(out) for out in result.outputs])


def upscaler_items() -> list[dict]:
    """Built-ins, then the model upscalers whose files are present (extras.md §1.4)."""
    return [{"name": e.name, "model_name": e.model_name, "model_path": e.path, "model_url": None,
             "scale": e.scale} for e in upscaling.list_upscalers() if e.available]


def realesrgan_models() -> list[dict]:
    entries = {e.name: e for e in upscaling.list_upscalers() if e.family == "RealESRGAN"}
    folders = registry.family_folders("RealESRGAN", shared.paths.models, shared.cmd_opts)
    files = [p for f in folders for p in registry.scan_folder(f, (".pth",), True)]
    items = []
    for name, (file_name, scale) in registry.REALESRGAN_MODELS.items():
        path = entries[name].path if name in entries else next((p for p in files if p.endswith(file_name)), None)
        items.append({"name": name, "path": path, "scale": scale})
    return items


def face_restorers() -> list[dict]:
    return [{"name": name, "cmd_dir": None} for name in face_restoration.restorer_names()]


def register(router: APIRouter) -> None:
    router.add_api_route("/extra-single-image", extras_single_image, methods=["POST"],
                         response_model=ExtrasSingleImageResponse)
    router.add_api_route("/extra-batch-images", extras_batch_images, methods=["POST"],
                         response_model=ExtrasBatchImagesResponse)
    router.add_api_route("/realesrgan-models", realesrgan_models, methods=["GET"])
    router.add_api_route("/face-restorers", face_restorers, methods=["GET"])
    from modules.api import interrogate_routes
    interrogate_routes.register(router)
