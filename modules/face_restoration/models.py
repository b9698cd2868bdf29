"""The networks behind face restoration: facexlib's RetinaFace and ParseNet read from local files
(never through facexlib's downloading helpers), GFPGAN and CodeFormer through spandrel."""
import threading

import cv2
import numpy as np
import torch

from modules import shared
from modules.face_restoration import files, pipeline
from modules.face_restoration.files import FaceRestorationUnavailable

DETECT_SHORT_SIDE = 640
DETECT_SCORE = 0.97
DETECT_NMS = 0.4
GFPGAN_NOISE_SEED = 0  # GFPGAN's decoder draws noise each call; seeded so results repeat

_lock = threading.Lock()
_facexlib: dict = {}


def device_for(name: str) -> torch.device:
    use_cpu = {flag.lower() for flag in shared.cmd_opts.use_cpu}
    if use_cpu & {"all", name.lower()}:
        return torch.device("cpu")
    return shared.device_config.device


def _load_state(path: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same message
        raise FaceRestorationUnavailable(f"Cannot read {path}: {type(e).__name__}: {e}") from None
    return {k.removeprefix("module."): v for k, v in state.items()}


def facexlib_models(device: torch.device):
    """(RetinaFace, ParseNet) on device, built once per file identity."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    detection_path, parsing_path = files.facexlib_files()
    key = (detection_path, parsing_path, str(device))
    with _lock:
        if key not in _facexlib:
            detector = RetinaFace(network_name="resnet50", half=False, device=device)
            try:
                detector.load_state_dict(_load_state(detection_path), strict=True)
            except RuntimeError as e:
                raise FaceRestorationUnavailable(f"{detection_path} is not RetinaFace-R50 weights: {e}") from None
            parser = ParseNet(in_size=512, out_size=512, parsing_ch=19)
            try:
                parser.load_state_dict(_load_state(parsing_path), strict=True)
            except RuntimeError as e:
                raise FaceRestorationUnavailable(f"{parsing_path} is not ParseNet weights: {e}") from None
            _facexlib.clear()
            _facexlib[key] = (detector.eval().to(device), parser.eval().to(device))
        return _facexlib[key]


def detector_fn(detector):
    def detect(bgr: np.ndarray) -> list[np.ndarray]:
        height, width = bgr.shape[:2]
        factor = DETECT_SHORT_SIDE / min(height, width)
        resized = cv2.resize(bgr, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_LANCZOS4)
        with torch.inference_mode():
            found = detector.detect_faces(resized, conf_threshold=DETECT_SCORE, nms_threshold=DETECT_NMS)
        return [row[5:15].reshape(5, 2) / factor for row in found]
    return detect


def _to_net(bgr: np.ndarray, device) -> torch.Tensor:
    rgb = bgr[:, :, ::-1].astype(np.float32) / 255.0
    return (torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None] * 2 - 1).to(device)


def _from_net(tensor: torch.Tensor) -> np.ndarray:
    rgb = ((tensor[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
    return (rgb * 255).round().astype(np.uint8)[:, :, ::-1].copy()


def mask_fn(parser, device):
    def face_mask(bgr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            parsing = parser(_to_net(bgr, device))[0].argmax(dim=1)[0].cpu().numpy()
        return pipeline.soft_mask(parsing)
    return face_mask


def network(name: str, device: torch.device):
    """The spandrel descriptor of the restorer's weight file (shared LRU with the upscalers)."""
    from modules.upscaling import model_cache
    from modules.upscaling.registry import UpscalerUnavailable
    path = files.network_file(name)
    try:
        return model_cache.load_descriptor(path, device, half=False)
    except UpscalerUnavailable as e:
        raise FaceRestorationUnavailable(str(e)) from None


def restore_fn(name: str, net, device, codeformer_weight: float):
    def restore(bgr: np.ndarray) -> np.ndarray:
        x = _to_net(bgr, device)
        with torch.inference_mode():
            if name == "CodeFormer":
                out = net(x, weight=codeformer_weight, adain=True)[0]
            else:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(GFPGAN_NOISE_SEED)
                    out = net(x, return_rgb=False)[0]
        return _from_net(out)
    return restore
