"""ControlNet preprocessors (controlnet.md §4): names, labels, sliders, tags, and the pure image
operations, ours on OpenCV/NumPy. Preprocessors that need a network are listed with the weight file
they need; choosing one says where to put it (nothing is downloaded)."""
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from modules import shared
from modules.controlnet import annotators


class PreprocessorError(ValueError):
    pass


@dataclass(frozen=True)
class Slider:
    name: str
    value: float
    min: float
    max: float
    step: float = 1

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "min": self.min, "max": self.max, "step": self.step}


RESOLUTION = Slider("Resolution", 512, 64, 2048, 8)


@dataclass(frozen=True)
class Preprocessor:
    name: str
    label: str
    tags: tuple[str, ...]
    run: Callable | None                 # (image HxWxC uint8 RGB, res, a, b) -> map; None: needs a network
    sliders: tuple[Slider | None, ...] = (RESOLUTION, None, None)  # resolution, threshold a, threshold b
    weights: tuple[str, str] | None = None  # (sub-folder, file) of a network's weights
    model_free: bool = False
    priority: int = 0
    needs_mask: bool = False

    def slider_values(self, res, a, b) -> tuple:
        """Out-of-range values (-1 included) become the defaults (§4.4)."""
        out = []
        for slider, value in zip(self.sliders, (res, a, b)):
            if slider is None:
                out.append(value)
            elif value is None or not slider.min <= value <= slider.max:
                out.append(slider.value)
            else:
                out.append(value)
        return tuple(out)


def _short_side_resize(image: np.ndarray, res: int) -> np.ndarray:
    h, w = image.shape[:2]
    k = res / min(h, w)
    size = (int(round(w * k)), int(round(h * k)))
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)


def pad_resize(op):
    """Short side -> res, edge-pad right/bottom to multiples of 64, run op, crop back (§4.2)."""
    def wrapped(image, res, a, b):
        image = _short_side_resize(image, int(res))
        h, w = image.shape[:2]
        ph, pw = -h % 64, -w % 64
        padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else image
        return op(padded, a, b)[:h, :w]
    return wrapped


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _canny(image, a, b):
    return _rgb(cv2.Canny(image, int(a), int(b)))


def _threshold(image, a, b):
    return _rgb(np.where(image.min(axis=2) > a, 255, 0).astype(np.uint8))


def _blur(image, a, b):
    return cv2.GaussianBlur(image, (0, 0), float(a))


def _xdog(image, a, b):
    x = image.astype(np.float32)
    difference = cv2.GaussianBlur(x, (0, 0), 5.0) - cv2.GaussianBlur(x, (0, 0), 0.5)
    d = np.clip(255 - difference.min(axis=2), 0, 255)
    return _rgb(np.where(2 * (255 - d) > a, 255, 0).astype(np.uint8))


def _lineart_standard(image, a, b):
    x = image.astype(np.float32)
    v = (cv2.GaussianBlur(x, (0, 0), 6.0) - x).min(axis=2).clip(0, None)
    strong = v[v > 8]
    scale = max(16.0, float(np.median(strong)) if strong.size else 16.0)
    return _rgb((v / scale * 127).clip(0, 255).astype(np.uint8))


def _color_grid(image, res, a, b):
    image = _short_side_resize(image, int(res))
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // 64), max(1, h // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _tile_resample(image, res, a, b):
    if a < 1.1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (int(w / a), int(h / a)), interpolation=cv2.INTER_AREA)


def _binary(image, a, b):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if a in (0, 255):
        _, out = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    else:
        _, out = cv2.threshold(gray, int(a), 255, cv2.THRESH_BINARY_INV)
    return _rgb(out)


def _recolor(conversion, channel):
    def op(image, res, a, b):
        converted = cv2.cvtColor(image, conversion)
        value = converted[:, :, channel].astype(np.float32) / 255.0
        value = (value ** float(a) * 255).clip(0, 255).astype(np.uint8)
        return _rgb(value)
    return op


def _smooth_noise(h: int, w: int, cell: int = 256) -> np.ndarray:
    """Uniform noise on a coarse grid (one value per `cell` pixels), enlarged bicubically over a
    margin of one cell and cropped to h x w, then stretched to 0..1."""
    coarse = np.random.uniform(0, 1, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    big = cv2.resize(coarse, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[cell:cell + h, cell:cell + w]
    low, high = float(big.min()), float(big.max())
    return (big - low) / max(high - low, 1e-6)


def _shuffle(image, a, b):
    """A random smooth remap of the image (content shuffled, colours kept); NumPy's seed decides it."""
    h, w = image.shape[:2]
    map_x = _smooth_noise(h, w) * float(w - 1)
    map_y = _smooth_noise(h, w) * float(h - 1)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)


def _full_size(op):
    return lambda image, res, a, b: op(image)


PREPROCESSORS: list[Preprocessor] = [
    Preprocessor("none", "none", ("All", "InstructP2P"), _full_size(lambda x: x), (None, None, None), priority=100),
    Preprocessor("canny", "canny", ("Canny",), lambda x, r, a, b: pad_resize(_canny)(x, r, a, b),
                 (RESOLUTION, Slider("Low Threshold", 100, 1, 255), Slider("High Threshold", 200, 1, 255)),
                 priority=100),
    Preprocessor("invert", "invert (from white bg & black line)", ("Canny", "Lineart", "Scribble", "MLSD"),
                 _full_size(lambda x: 255 - x), (None, None, None), priority=20),
    Preprocessor("threshold", "threshold", ("All",), lambda x, r, a, b: pad_resize(_threshold)(x, r, a, b),
                 (RESOLUTION, Slider("Binarization Threshold", 127, 0, 255), None)),
    Preprocessor("blur_gaussian", "blur_gaussian", ("Tile",), lambda x, r, a, b: pad_resize(_blur)(x, r, a, b),
                 (RESOLUTION, Slider("Sigma", 9.0, 0.01, 64.0, 0.01), None)),
    Preprocessor("scribble_xdog", "scribble_xdog", ("Scribble",), lambda x, r, a, b: pad_resize(_xdog)(x, r, a, b),
                 (RESOLUTION, Slider("XDoG Threshold", 32, 1, 64), None)),
    Preprocessor("lineart_standard", "lineart_standard (from white bg & black line)", ("Lineart",),
                 lambda x, r, a, b: pad_resize(_lineart_standard)(x, r, a, b), priority=50),
    Preprocessor("tile_resample", "tile_resample", ("Tile",), _tile_resample,
                 (None, Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01), None), priority=100),
    Preprocessor("color", "t2ia_color_grid", ("T2I-Adapter",), _color_grid),
    Preprocessor("binary", "binary", ("Scribble",), lambda x, r, a, b: pad_resize(_binary)(x, r, a, b),
                 (RESOLUTION, Slider("Binary threshold", 0, 0, 255), None)),
    Preprocessor("recolor_luminance", "recolor_luminance", ("Recolor",), _recolor(cv2.COLOR_BGR2LAB, 0),
                 (None, Slider("Gamma Correction", 1.0, 0.1, 2.0, 0.001), None), priority=50),
    Preprocessor("recolor_intensity", "recolor_intensity", ("Recolor",), _recolor(cv2.COLOR_BGR2HSV, 2),
                 (None, Slider("Gamma Correction", 1.0, 0.1, 2.0, 0.001), None)),
    # resolution fixed at 512 (§4.2): no slider
    Preprocessor("shuffle", "shuffle", ("Shuffle",), lambda x, r, a, b: pad_resize(_shuffle)(x, 512, a, b),
                 (None, None, None)),
    Preprocessor("inpaint", "inpaint_global_harmonious", ("Inpaint",), _full_size(lambda x: x), (None, None, None),
                 needs_mask=True),
    Preprocessor("inpaint_only", "inpaint_only", ("Inpaint",), _full_size(lambda x: x), (None, None, None),
                 priority=50, needs_mask=True),
    # the RGBA map passes through here; LaMa fills the hole once the map has the pass's size (job.py)
    Preprocessor("inpaint_only+lama", "inpaint_only+lama", ("Inpaint",), _full_size(lambda x: x),
                 (None, None, None), weights=("lama", "ControlNetLama.pth"), needs_mask=True),
]

INPAINT_ONLY_NAMES = ("inpaint_only", "inpaint_only+lama")  # keep the hint outside the mask (§3.8)

# network preprocessors: (name, label, tags, (sub-folder, file), priority)
_NETWORK_PREPROCESSORS = [
    ("depth", "depth_midas", ("Depth",), ("midas", "dpt_hybrid-midas-501f0c75.pt"), 50),
    ("normal_map", "normal_midas", ("NormalMap",), ("midas", "dpt_hybrid-midas-501f0c75.pt"), 0),
    ("depth_leres", "depth_leres", ("Depth",), ("leres", "res101.pth"), 0),
    ("depth_leres++", "depth_leres++", ("Depth",), ("leres", "res101.pth"), 0),
    ("depth_zoe", "depth_zoe", ("Depth",), ("zoedepth", "ZoeD_M12_N.pt"), 0),
    ("depth_anything", "depth_anything", ("Depth",), ("depth_anything", "depth_anything_vitl14.pth"), 0),
    ("depth_anything_v2", "depth_anything_v2", ("Depth",),
     ("depth_anything_v2", "depth_anything_v2_vitl.safetensors"), 0),
    ("hed", "softedge_hed", ("SoftEdge",), ("hed", "ControlNetHED.pth"), 0),
    ("hed_safe", "softedge_hedsafe", ("SoftEdge",), ("hed", "ControlNetHED.pth"), 0),
    ("scribble_hed", "scribble_hed", ("Scribble",), ("hed", "ControlNetHED.pth"), 0),
    ("pidinet", "softedge_pidinet", ("SoftEdge",), ("pidinet", "table5_pidinet.pth"), 100),
    ("pidinet_safe", "softedge_pidisafe", ("SoftEdge",), ("pidinet", "table5_pidinet.pth"), 0),
    ("pidinet_scribble", "scribble_pidinet", ("Scribble",), ("pidinet", "table5_pidinet.pth"), 100),
    ("pidinet_sketch", "t2ia_sketch_pidi", ("T2I-Adapter",), ("pidinet", "table5_pidinet.pth"), 0),
    ("softedge_teed", "softedge_teed", ("SoftEdge",), ("TEED", "7_model.pth"), 0),
    ("softedge_anyline", "softedge_anyline", ("SoftEdge",), ("TEED", "MTEED.pth"), 0),
    ("mlsd", "mlsd", ("MLSD",), ("mlsd", "mlsd_large_512_fp32.pth"), 100),
    ("lineart", "lineart_realistic", ("Lineart",), ("lineart", "sk_model.pth"), 0),
    ("lineart_coarse", "lineart_coarse", ("Lineart",), ("lineart", "sk_model2.pth"), 0),
    ("lineart_anime", "lineart_anime", ("Lineart",), ("lineart_anime", "netG.pth"), 0),
    ("lineart_anime_denoise", "lineart_anime_denoise", ("Lineart",), ("manga_line", "erika.pth"), 0),
    ("normal_bae", "normal_bae", ("NormalMap",), ("normal_bae", "scannet.pt"), 100),
    ("normal_dsine", "normal_dsine", ("NormalMap",), ("normal_dsine", "dsine.pt"), 0),
    ("openpose", "openpose", ("OpenPose",), ("openpose", "body_pose_model.pth"), 0),
    ("openpose_face", "openpose_face", ("OpenPose",), ("openpose", "body_pose_model.pth"), 0),
    ("openpose_faceonly", "openpose_faceonly", ("OpenPose",), ("openpose", "facenet.pth"), 0),
    ("openpose_full", "openpose_full", ("OpenPose",), ("openpose", "body_pose_model.pth"), 100),
    ("openpose_hand", "openpose_hand", ("OpenPose",), ("openpose", "hand_pose_model.pth"), 0),
    ("dw_openpose_full", "dw_openpose_full", ("OpenPose",), ("openpose", "dw-ll_ucoco_384.onnx"), 0),
    ("oneformer_ade20k", "seg_ofade20k", ("Segmentation",),
     ("oneformer", "250_16_swin_l_oneformer_ade20k_160k.pth"), 100),
    ("oneformer_coco", "seg_ofcoco", ("Segmentation",), ("oneformer", "150_16_swin_l_oneformer_coco_100ep.pth"), 0),
    ("segmentation", "seg_ufade20k", ("Segmentation",), ("uniformer", "upernet_global_small.pth"), 0),
    ("anime_face_segment", "seg_anime_face", ("Segmentation",), ("anime_face_segment", "UNet.pth"), 0),
]


def annotator_folders() -> list[str]:
    folders = [os.path.join(shared.paths.models, "ControlNetPreprocessor")]
    for extra in (shared.cmd_opts.controlnet_annotator_models_path, shared.opts.control_net_modules_path):
        if extra:
            folders.append(extra)
    return folders


def _network_run(name: str) -> Callable | None:
    """The run function of a network preprocessor (annotators.py): pad-resize around its detector, the
    detector's own transform of the cropped map after; None while this version has no detector for it."""
    if name not in annotators.DETECTORS:
        return None
    detect, after = annotators.DETECTORS[name]

    def run(image, res, a, b):
        path = weight_path(_BY_KEY[name])  # check_usable has made sure it exists
        try:
            out = pad_resize(lambda x, a, b: detect(path, x, a, b))(image, res, a, b)
        except annotators.AnnotatorError as e:
            raise PreprocessorError(str(e)) from None
        return _rgb(after(out) if after else out)
    return run


# network preprocessors with more sliders than the resolution
_NETWORK_SLIDERS = {
    "mlsd": (RESOLUTION, Slider("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
             Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01)),
}

for _name, _label, _tags, _weights, _priority in _NETWORK_PREPROCESSORS:
    PREPROCESSORS.append(Preprocessor(_name, _label, _tags, _network_run(_name),
                                      _NETWORK_SLIDERS.get(_name, (RESOLUTION, None, None)), weights=_weights,
                                      priority=_priority))

_BY_KEY = {}
for _p in PREPROCESSORS:
    _BY_KEY.setdefault(_p.name.lower(), _p)
    _BY_KEY.setdefault(_p.label.lower(), _p)
_BY_KEY.setdefault("t2ia_color_grid", _BY_KEY["color"])


def weight_path(pre: Preprocessor) -> str | None:
    """The weight file's path if it is present in one of the folders, else None."""
    if pre.weights is None:
        return None
    for folder in annotator_folders():
        path = os.path.join(folder, *pre.weights)
        if os.path.exists(path):
            return path
    return None


def available(pre: Preprocessor) -> bool:
    return pre.weights is None or weight_path(pre) is not None


def ordered() -> list[Preprocessor]:
    """`none` first, then by (priority, label) descending (§4.1)."""
    rest = sorted((p for p in PREPROCESSORS if p.name != "none"), key=lambda p: (p.priority, p.label), reverse=True)
    return [_BY_KEY["none"], *rest]


def find(name: str) -> Preprocessor:
    """By name or label, case-insensitive; unknown names list the valid ones."""
    pre = _BY_KEY.get((name or "none").strip().lower())
    if pre is None:
        raise PreprocessorError(f"ControlNet preprocessor '{name}' not found; valid names: "
                                f"{', '.join(p.name for p in ordered())}")
    return pre


def check_usable(pre: Preprocessor) -> None:
    if pre.weights is not None and weight_path(pre) is None:
        sub, file = pre.weights
        raise PreprocessorError(f"Preprocessor '{pre.label}' needs {file} in "
                                f"{os.path.join(annotator_folders()[0], sub)}; downloads are disabled")
    if pre.run is None:
        raise PreprocessorError(f"Preprocessor '{pre.label}' needs a network that this version does not run yet; "
                                f"choose one of the image-operation preprocessors (canny, threshold, ...)")


def run(pre: Preprocessor, image: np.ndarray, res=-1, a=-1, b=-1) -> np.ndarray:
    """The detected map of an RGB uint8 image (a 4th channel, the mask, passes through unchanged)."""
    check_usable(pre)
    res, a, b = pre.slider_values(res, a, b)
    if image.ndim == 3 and image.shape[2] == 4:
        if pre.needs_mask:
            return image
        image = image[:, :, :3]
    return np.ascontiguousarray(pre.run(np.ascontiguousarray(image), res, a, b))


_TAGS = ("All", "Canny", "Depth", "IP-Adapter", "Inpaint", "Instant-ID", "InstructP2P", "Lineart", "MLSD",
         "NormalMap", "OpenPose", "Recolor", "Reference", "Revision", "Scribble", "Segmentation", "Shuffle",
         "SoftEdge", "SparseCtrl", "T2I-Adapter", "Tile")


def control_type_tags() -> tuple[str, ...]:
    return _TAGS

