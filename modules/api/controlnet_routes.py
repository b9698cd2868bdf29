"""The ControlNet extension's routes, built in (controlnet.md §5): version, model and module lists,
control types, settings, detect. They exist with or without --api, behind the same auth as /sdapi."""
from fastapi import APIRouter, HTTPException
from PIL import Image
from pydantic import BaseModel, Field

from modules import shared
from modules.api.api import encode_image
from modules.controlnet import hint as hints
from modules.controlnet import model_files, preprocessors
from modules.controlnet.control_types import control_types

API_VERSION = 3

_UNSUPPORTED_DETECT = ("clip_vision", "revision_clipvision", "revision_ignore_prompt", "ip-adapter-auto")


class DetectRequest(BaseModel):
    controlnet_module: str = Field(default="none")
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_processor_res: float = -1
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: list[str] | None = None
    low_vram: bool = False


def _module_detail(pre: preprocessors.Preprocessor) -> dict:
    sliders = [s.as_dict() for s in pre.sliders if s is not None]
    detail = {"model_free": pre.model_free, "sliders": sliders}
    if not preprocessors.available(pre):
        detail["available"] = False
    return detail


def create_router() -> APIRouter:
    router = APIRouter(prefix="/controlnet", tags=["ControlNet"])

    @router.get("/version")
    def version():
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = True):
        return {"model_list": [m.title for m in model_files.list_models()]}

    @router.get("/module_list")
    def module_list(alias_names: bool = False):
        ordered = preprocessors.ordered()
        key = (lambda p: p.label) if alias_names else (lambda p: p.name)
        return {"module_list": [key(p) for p in ordered], "module_detail": {key(p): _module_detail(p) for p in ordered}}

    @router.get("/control_types")
    def get_control_types():
        return {"control_types": control_types()}

    @router.get("/settings")
    def settings():
        return {"control_net_unit_count": shared.opts.control_net_unit_count}

    @router.post("/detect")
    def detect(req: DetectRequest):
        return run_detect(req)

    return router


def run_detect(req: DetectRequest) -> dict:
    try:
        pre = preprocessors.find(req.controlnet_module)
    except preprocessors.PreprocessorError:
        raise HTTPException(422, "Module not available") from None
    if pre.name in _UNSUPPORTED_DETECT or pre.label in _UNSUPPORTED_DETECT:
        raise HTTPException(422, "Module not supported")
    if not req.controlnet_input_images:
        raise HTTPException(422, "No image selected")
    masks = req.controlnet_masks or []
    if pre.needs_mask and len(masks) != len(req.controlnet_input_images):
        raise HTTPException(422, f"Module '{pre.name}' needs one mask per input image")
    try:
        preprocessors.check_usable(pre)
    except preprocessors.PreprocessorError as e:
        raise HTTPException(422, str(e)) from None
    maps = []
    for index, data in enumerate(req.controlnet_input_images):
        try:
            image = hints.to_rgb_array(hints.decode_image(data, f"controlnet_input_images[{index}]"))
            if index < len(masks):
                image = hints.with_mask(image, hints.decode_image(masks[index], f"controlnet_masks[{index}]"),
                                        f"controlnet_input_images[{index}]")
        except hints.HintError as e:
            raise HTTPException(422, str(e)) from None
        detected = _detect_one(pre, image, req.controlnet_processor_res, req.controlnet_threshold_a,
                               req.controlnet_threshold_b)
        maps.append(encode_image(Image.fromarray(detected[:, :, :3]), None))
    return {"info": "Success", "images": maps}


def _detect_one(pre, image, res, a, b):
    """Image operations run here; a network runs as a job on the queue (the device is the job's)."""
    if pre.weights is None:
        return preprocessors.run(pre, image, res, a, b)
    try:
        return shared.job_queue.run(lambda: preprocessors.run(pre, image, res, a, b), name="controlnet_detect")
    except preprocessors.PreprocessorError as e:
        raise HTTPException(422, str(e)) from None
