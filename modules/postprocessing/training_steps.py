"""Postprocessing steps for preparing training images (extras.md §4.4): split oversized images,
auto focal point crop, auto-sized crop, flipped copies, caption."""
import math

import numpy as np
from PIL import Image, ImageDraw

from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessing


def _target(pp: PostprocessedImage):
    width, height = pp.shared.target_width, pp.shared.target_height
    return (width, height) if width and height else None


# -- split oversized ------------------------------------------------------------------------------

def split_pieces(image: Image.Image, width: int, height: int, threshold: float, overlap: float) -> list[Image.Image]:
    """Pieces of the target size along the long axis, or [] when the aspect is close enough."""
    portrait = image.height > image.width
    across, along = (image.width * height, image.height * width)
    ratio = across / along if portrait else along / across
    if ratio >= 1 or ratio > threshold:
        return []
    if portrait:
        length, target = image.height * width // image.width, height
        image = image.resize((width, length), Image.Resampling.BICUBIC)
    else:
        length, target = image.width * height // image.height, width
        image = image.resize((length, height), Image.Resampling.BICUBIC)
    count = max(1, math.ceil((length - target * overlap) / (target * (1 - overlap))))
    starts = [int(i * (length - target) / (count - 1)) for i in range(count)] if count > 1 else [0]
    if portrait:
        return [image.crop((0, y, width, y + target)) for y in starts]
    return [image.crop((x, 0, x + target, height)) for x in starts]


class ScriptPostprocessingSplitOversized(ScriptPostprocessing):
    name = "Split oversized images"
    order = 4000

    def ui(self):
        import gradio as gr
        with gr.Accordion("Split oversized images", open=False, elem_id="extras_split"):
            enable = gr.Checkbox(label="Enable", value=False, elem_id="extras_split_enable")
            threshold = gr.Slider(0.0, 1.0, step=0.05, value=0.5, label="Threshold", elem_id="extras_split_threshold")
            overlap = gr.Slider(0.0, 0.9, step=0.05, value=0.2, label="Overlap ratio", elem_id="extras_split_overlap")
        return {"enable": enable, "split_threshold": threshold, "overlap_ratio": overlap}

    def process(self, pp, enable=False, split_threshold=0.5, overlap_ratio=0.2, **args):
        target = _target(pp)
        if not enable or target is None:
            return
        pieces = split_pieces(pp.image, *target, float(split_threshold), float(overlap_ratio))
        if not pieces:
            return
        pp.image = pieces[0]
        pp.extra_images += [pp.create_copy(piece) for piece in pieces[1:]]


# -- auto focal point crop ------------------------------------------------------------------------

def _edge_points(gray: np.ndarray) -> list[tuple[float, float]]:
    import cv2
    gray = gray.copy()
    height = gray.shape[0]
    gray[int(height * 0.9):, :] = 128  # grey the bottom 10 %: watermarks and signatures
    corners = cv2.goodFeaturesToTrack(gray, maxCorners=100, qualityLevel=0.04,
                                      minDistance=max(1, min(gray.shape) * 0.06))
    return [] if corners is None else [(float(x), float(y)) for x, y in corners.reshape(-1, 2)]


def _entropy_point(image: Image.Image, width: int, height: int) -> list[tuple[float, float]]:
    """Centre of the target-sized window (slid 4 px along the long axis) with the most entropy."""
    if image.width == image.height:
        return []
    bits = np.asarray(image.convert("1"), np.float32)
    best, best_xy = -1.0, None
    horizontal = image.width > image.height
    length = image.width - width if horizontal else image.height - height
    for offset in range(0, max(length, 0) + 1, 4):
        window = bits[:, offset:offset + width] if horizontal else bits[offset:offset + height, :]
        p = float(window.mean()) if window.size else 0.0
        entropy = 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
        if entropy > best:
            best = entropy
            best_xy = (offset + width / 2, height / 2) if horizontal else (width / 2, offset + height / 2)
    return [best_xy] if best_xy else []


YUNET_FILE = "face_detection_yunet_2023mar.onnx"


def yunet_path() -> str:
    import os

    from modules import shared
    return os.path.join(shared.paths.models, "opencv", YUNET_FILE)


def _face_points(rgb: np.ndarray) -> list[tuple[float, float]]:
    """Faces from OpenCV's YuNet (models/opencv/face_detection_yunet_2023mar.onnx): a point at the
    centre x, a third of the height. Without the file (never downloaded) no face points; OpenCV 5
    has no bundled Haar cascades to fall back on."""
    import os

    import cv2
    path = yunet_path()
    if not os.path.isfile(path):
        print(f"Auto focal point crop: no face detection ({YUNET_FILE} not in {os.path.dirname(path)})")
        return []
    height, width = rgb.shape[:2]
    detector = cv2.FaceDetectorYN.create(path, "", (width, height), score_threshold=0.9, nms_threshold=0.3)
    _, faces = detector.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return [] if faces is None else [(x + w / 2, y + h / 3) for x, y, w, h in faces[:, :4]]


def _centroid(points):
    return (sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points)) if points else None


def focal_point(image: Image.Image, width: int, height: int, weights: dict[str, float]) -> tuple[float, float]:
    rgb = np.asarray(image.convert("RGB"))
    import cv2
    kinds = {"face": _face_points(rgb) if weights.get("face") else [],
             "entropy": _entropy_point(image, width, height) if weights.get("entropy") else [],
             "edges": _edge_points(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)) if weights.get("edges") else []}
    found = {k: _centroid(v) for k, v in kinds.items() if v}
    total = sum(weights[k] for k in found)
    if not found or total <= 0:
        return image.width / 2, image.height / 2
    return (sum(found[k][0] * weights[k] for k in found) / total, sum(found[k][1] * weights[k] for k in found) / total)


def focal_crop(image: Image.Image, width: int, height: int, weights: dict[str, float]):
    """(crop of exactly width×height, the resized image, the focal point)."""
    if image.width / image.height > width / height:  # cover: fit the height
        size = (max(width, round(image.width * height / image.height)), height)
        resized = image.resize(size, Image.Resampling.LANCZOS)
    else:
        size = (width, max(height, round(image.height * width / image.width)))
        resized = image.resize(size, Image.Resampling.LANCZOS)
    x, y = focal_point(resized, width, height, weights)
    left = int(min(max(x - width / 2, 0), resized.width - width))
    top = int(min(max(y - height / 2, 0), resized.height - height))
    return resized.crop((left, top, left + width, top + height)), resized, (x, y)


class ScriptPostprocessingFocalCrop(ScriptPostprocessing):
    name = "Auto focal point crop"
    order = 4010

    def ui(self):
        import gradio as gr
        with gr.Accordion("Auto focal point crop", open=False, elem_id="extras_focal"):
            enable = gr.Checkbox(label="Enable", value=False, elem_id="extras_focal_enable")
            face = gr.Slider(0.0, 1.0, step=0.05, value=0.9, label="Focal point face weight")
            entropy = gr.Slider(0.0, 1.0, step=0.05, value=0.15, label="Focal point entropy weight")
            edges = gr.Slider(0.0, 1.0, step=0.05, value=0.5, label="Focal point edges weight")
            debug = gr.Checkbox(label="Create debug image", value=False)
        return {"enable": enable, "face_weight": face, "entropy_weight": entropy, "edges_weight": edges,
                "debug": debug}

    def process(self, pp, enable=False, face_weight=0.9, entropy_weight=0.15, edges_weight=0.5, debug=False, **args):
        target = _target(pp)
        if not enable or target is None:
            return
        weights = {"face": float(face_weight), "entropy": float(entropy_weight), "edges": float(edges_weight)}
        crop, resized, (x, y) = focal_crop(pp.image, *target, weights)
        pp.image = crop
        if debug:
            marked = resized.convert("RGB")
            ImageDraw.Draw(marked).ellipse([x - 6, y - 6, x + 6, y + 6], outline=(255, 0, 0), width=3)
            pp.extra_images.append(pp.create_copy(marked, nametags=["focal-crop-debug"], disable_processing=True))


# -- auto-sized crop ------------------------------------------------------------------------------

def auto_size(width: int, height: int, min_dim: int, max_dim: int, min_area: int, max_area: int,
              objective: str, threshold: float) -> tuple[int, int] | None:
    best = None
    for w in range(min_dim, max_dim + 1, 64):
        for h in range(min_dim, max_dim + 1, 64):
            if not min_area <= w * h <= max_area:
                continue
            q = (width / height) / (w / h)
            error = 1 - min(q, 1 / q)
            if error > threshold:
                continue
            key = (-w * h, error) if objective == "Maximize area" else (error, -w * h)
            if best is None or key < best[0]:
                best = (key, (w, h))
    return best[1] if best else None


def centre_crop_to_aspect(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.width / image.height > width / height:
        new_width = round(image.height * width / height)
        left = (image.width - new_width) // 2
        return image.crop((left, 0, left + new_width, image.height))
    new_height = round(image.width * height / width)
    top = (image.height - new_height) // 2
    return image.crop((0, top, image.width, top + new_height))


class ScriptPostprocessingAutosizedCrop(ScriptPostprocessing):
    name = "Auto-sized crop"
    order = 4020

    def ui(self):
        import gradio as gr
        with gr.Accordion("Auto-sized crop", open=False, elem_id="extras_autosized"):
            enable = gr.Checkbox(label="Enable", value=False, elem_id="extras_autosized_enable")
            with gr.Row():
                min_dim = gr.Slider(64, 2048, step=8, value=384, label="Dimension lower bound")
                max_dim = gr.Slider(64, 2048, step=8, value=768, label="Dimension upper bound")
            with gr.Row():
                min_area = gr.Slider(4096, 4194304, step=1, value=4096, label="Area lower bound")
                max_area = gr.Slider(4096, 4194304, step=1, value=409600, label="Area upper bound")
            objective = gr.Radio(["Maximize area", "Minimize error"], value="Maximize area", label="Resizing objective")
            threshold = gr.Slider(0, 1, step=0.01, value=0.1, label="Error threshold")
        return {"enable": enable, "mindim": min_dim, "maxdim": max_dim, "minarea": min_area, "maxarea": max_area,
                "objective": objective, "threshold": threshold}

    def process(self, pp, enable=False, mindim=384, maxdim=768, minarea=4096, maxarea=409600,
                objective="Maximize area", threshold=0.1, **args):
        if not enable:
            return
        size = auto_size(pp.image.width, pp.image.height, int(mindim), int(maxdim), int(minarea), int(maxarea),
                         objective, float(threshold))
        if size is None:
            print(f"Auto-sized crop: no size fits {pp.image.width}x{pp.image.height}; image unchanged")
            return
        pp.image = centre_crop_to_aspect(pp.image, *size).resize(size, Image.Resampling.LANCZOS)


# -- flipped copies -------------------------------------------------------------------------------

FLIPS = {"Horizontal": (["flipped"], [Image.Transpose.FLIP_LEFT_RIGHT]),
         "Vertical": (["flipped-vertical"], [Image.Transpose.FLIP_TOP_BOTTOM]),
         "Both": (["flipped-both"], [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM])}


class ScriptPostprocessingCreateFlippedCopies(ScriptPostprocessing):
    name = "Create flipped copies"
    order = 4030

    def ui(self):
        import gradio as gr
        with gr.Accordion("Create flipped copies", open=False, elem_id="extras_flip"):
            enable = gr.Checkbox(label="Enable", value=False, elem_id="extras_flip_enable")
            option = gr.CheckboxGroup(list(FLIPS), value=["Horizontal"], label="Flip")
        return {"enable": enable, "option": option}

    def process(self, pp, enable=False, option=("Horizontal",), **args):
        if not enable:
            return
        for name in option or []:
            tags, operations = FLIPS[name]
            image = pp.image
            for operation in operations:
                image = image.transpose(operation)
            pp.extra_images.append(pp.create_copy(image, nametags=tags))


# -- caption --------------------------------------------------------------------------------------

class ScriptPostprocessingCaption(ScriptPostprocessing):
    name = "Caption"
    order = 4040

    def ui(self):
        import gradio as gr
        with gr.Accordion("Caption", open=False, elem_id="extras_caption"):
            enable = gr.Checkbox(label="Enable", value=False, elem_id="extras_caption_enable")
            option = gr.CheckboxGroup(["Deepbooru", "BLIP"], value=["Deepbooru"], label="Caption")
        return {"enable": enable, "option": option}

    def process(self, pp, enable=False, option=("Deepbooru",), **args):
        if not enable:
            return
        from modules import interrogate
        parts = [pp.caption or ""]
        if "Deepbooru" in (option or []):
            parts.append(interrogate.interrogate(pp.image, "deepdanbooru"))
        if "BLIP" in (option or []):
            parts.append(interrogate.interrogate(pp.image, "clip"))
        pp.caption = ", ".join(part for part in parts if part)


def combine_caption(existing: str, new: str, action: str) -> str:
    """postprocessing_existing_caption_action: Ignore / Keep / Prepend / Append."""
    existing = (existing or "").strip()
    if action == "Keep" and existing:
        return existing
    if action == "Prepend" and existing:
        return f"{existing} {new}".strip()
    if action == "Append" and existing:
        return f"{new} {existing}".strip()
    return (new or "").strip()


TRAINING_STEPS = [ScriptPostprocessingSplitOversized, ScriptPostprocessingFocalCrop, ScriptPostprocessingAutosizedCrop,
                  ScriptPostprocessingCreateFlippedCopies, ScriptPostprocessingCaption]
