"""Face restoration (GFPGAN, CodeFormer) for the Extras tab, the API and generation.

`restore_faces(image, name, codeformer_weight)` returns the image with its faces restored at full
strength; blending with a visibility is the caller's business.
"""
import numpy as np
from PIL import Image

from modules.face_restoration import models, pipeline
from modules.face_restoration.files import FaceRestorationUnavailable, check_available  # noqa: F401

RESTORER_NAMES = ("CodeFormer", "GFPGAN")  # A1111 registers CodeFormer first


def restorer_names() -> list[str]:
    return list(RESTORER_NAMES)


def restore_faces(image: Image.Image, name: str, codeformer_weight: float = 0.5) -> Image.Image:
    if name not in RESTORER_NAMES:
        raise ValueError(f"Face restorer '{name}' not found; valid names: {', '.join(RESTORER_NAMES)}")
    check_available(name)
    device = models.device_for(name)
    detector, parser = models.facexlib_models(device)
    net = models.network(name, device).model
    restore = models.restore_fn(name, net, device, float(codeformer_weight))
    return restore_with(image, models.detector_fn(detector), restore, models.mask_fn(parser, device))


def restore_with(image: Image.Image, detect, restore, face_mask) -> Image.Image:
    """The pipeline on a PIL image with the given models; alpha is kept."""
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    bgr = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()
    out, count = pipeline.restore_faces_bgr(bgr, detect, restore, face_mask)
    if count == 0:
        return image
    result = Image.fromarray(out[:, :, ::-1].copy())
    if alpha is not None:
        result.putalpha(alpha)
    return result


def generation_problem(name: str) -> str | None:
    """Why a txt2img/img2img job cannot restore faces with `name` (unknown or missing weights)."""
    if name not in RESTORER_NAMES:
        return f"Face restorer '{name}' not found (setting face_restoration_model); valid names: " \
               f"{', '.join(RESTORER_NAMES)}"
    try:
        check_available(name)
    except FaceRestorationUnavailable as e:
        return str(e)
    return None
