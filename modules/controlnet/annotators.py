"""Model-based ControlNet preprocessors (controlnet.md §4.3): each detector takes the pad-resized RGB
uint8 image (multiples of 64) and returns a gray uint8 map of the same size, transformed as the
extension's detector does; `scribble` then works on the map cropped back, as the extension does."""
import cv2
import numpy as np
import torch

from modules.controlnet import annotator_nets
from modules.controlnet.annotator_nets import AnnotatorError  # noqa: F401  (callers catch it from here)


def _tensor(image: np.ndarray, scale: float, offset: float = 0.0) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image)).float().permute(2, 0, 1)[None]
    return (x * scale + offset).to(annotator_nets.device())


def safe_step(x: np.ndarray, step: int = 2) -> np.ndarray:
    """Quantise 0..1 to step + 1 levels (floor), the extension's "safe" edge maps."""
    return (x.astype(np.float32) * (step + 1)).astype(np.int32).astype(np.float32) / step


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (x * 255.0).clip(0, 255).astype(np.uint8)


def hed(path, image, a, b, safe=False):
    """RGB 0..255 in; the five side outputs resized to the image, averaged, sigmoid."""
    net = annotator_nets.load("hed", path)
    h, w = image.shape[:2]
    with torch.no_grad():
        sides = net(_tensor(image, 1.0))
    sides = [cv2.resize(s[0, 0].float().cpu().numpy(), (w, h), interpolation=cv2.INTER_LINEAR) for s in sides]
    edge = 1 / (1 + np.exp(-np.mean(np.stack(sides, axis=2), axis=2).astype(np.float64)))
    return _to_uint8(safe_step(edge) if safe else edge)


def pidinet(path, image, a, b, safe=False, binary=False):
    """BGR 0..1 in; the last (fused) output. `binary` (the T2I sketch) keeps > 0.5."""
    net = annotator_nets.load("pidinet", path)
    with torch.no_grad():
        edge = net(_tensor(image[:, :, ::-1], 1 / 255))[-1][0, 0].float().cpu().numpy()
    if binary:
        edge = (edge > 0.5).astype(np.float32)
    return _to_uint8(safe_step(edge) if safe else edge)


def lineart(path, image, a, b):
    """RGB 0..1 in; the network draws black lines on white: inverted to white on black."""
    net = annotator_nets.load("lineart", path)
    with torch.no_grad():
        line = net(_tensor(image, 1 / 255))[0, 0].float().cpu().numpy()
    return 255 - _to_uint8(line)


def lineart_anime(path, image, a, b):
    """RGB in −1..1 at multiples of 256 (bicubic there and back); inverted like lineart."""
    net = annotator_nets.load("lineart_anime", path)
    h, w = image.shape[:2]
    hn, wn = 256 * int(np.ceil(h / 256)), 256 * int(np.ceil(w / 256))
    feed = cv2.resize(image, (wn, hn), interpolation=cv2.INTER_CUBIC)
    with torch.no_grad():
        line = net(_tensor(feed, 1 / 127.5, -1.0))[0, 0].float().cpu().numpy() * 127.5 + 127.5
    line = cv2.resize(line, (w, h), interpolation=cv2.INTER_CUBIC)
    return 255 - line.clip(0, 255).astype(np.uint8)


def mlsd(path, image, score_threshold, distance_threshold):
    """Line segments: RGB plus a constant channel in −1..1; the network gives, at half size, a centre
    heat map and per pixel the displacements to both ends. The 200 strongest local maxima (3×3) with a
    score above the first threshold and a length above the second are drawn 1 px wide."""
    net = annotator_nets.load("mlsd", path)
    h, w = image.shape[:2]
    feed = np.concatenate([image.astype(np.float32), np.ones((h, w, 1), np.float32)], axis=2)
    with torch.no_grad():
        out = net(_tensor(feed, 1 / 127.5, -1.0))[0].float()
        heat = torch.sigmoid(out[0])
        peaks = heat * (torch.nn.functional.max_pool2d(heat[None], 3, stride=1, padding=1)[0] == heat)
        scores, indices = torch.topk(peaks.reshape(-1), 200)
    scores, indices = scores.cpu().numpy(), indices.cpu().numpy()
    ends = out[1:5].cpu().numpy().transpose(1, 2, 0)  # x0, y0, x1, y1 relative to the pixel
    canvas = np.zeros((h, w), np.uint8)
    width = ends.shape[1]
    for score, index in zip(scores, indices):
        y, x = divmod(int(index), width)
        dx0, dy0, dx1, dy1 = ends[y, x]
        if score > score_threshold and np.hypot(dx0 - dx1, dy0 - dy1) > distance_threshold:
            # half-size coordinates, doubled to the image's
            x0, y0, x1, y1 = (2 * (c + float(d)) for c, d in ((x, dx0), (y, dy0), (x, dx1), (y, dy1)))
            start, end = (int(x0), int(y0)), (int(x1), int(y1))
            cv2.line(canvas, start, end, 255, 1)
    return canvas


# (dy, dx) of the four lines through a pixel: horizontal, vertical and both diagonals
_LINE_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))


def thin_lines(x: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Non-maximum suppression of a blurred map: a pixel stays where it is not below either
    neighbour along at least one of the four lines through it (outside the image counts as
    lower), then only what is above the threshold is drawn."""
    blurred = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)
    h, w = blurred.shape
    padded = np.pad(blurred, 1, constant_values=-np.inf)

    def neighbour(dy, dx):
        return padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    ridge = np.zeros((h, w), bool)
    for dy, dx in _LINE_STEPS:
        ridge |= (blurred >= neighbour(dy, dx)) & (blurred >= neighbour(-dy, -dx))
    return np.where(ridge & (blurred > threshold), 255, 0).astype(np.uint8)


def scribble(edge: np.ndarray) -> np.ndarray:
    """Soft edges to scribble lines: thinned at 127, blurred σ3, every pixel above 4 drawn."""
    lines = cv2.GaussianBlur(thin_lines(edge, 127, 3.0), (0, 0), 3.0)
    return np.where(lines > 4, 255, 0).astype(np.uint8)


# preprocessor name -> (detector on the padded image, transform of the cropped map or None)
DETECTORS = {
    "hed": (hed, None),
    "hed_safe": (lambda p, x, a, b: hed(p, x, a, b, safe=True), None),
    "scribble_hed": (hed, scribble),
    "pidinet": (pidinet, None),
    "pidinet_safe": (lambda p, x, a, b: pidinet(p, x, a, b, safe=True), None),
    "pidinet_scribble": (pidinet, scribble),
    "pidinet_sketch": (lambda p, x, a, b: pidinet(p, x, a, b, binary=True), None),
    "lineart": (lineart, None),
    "lineart_coarse": (lineart, None),
    "lineart_anime": (lineart_anime, None),
    "mlsd": (mlsd, None),
}
