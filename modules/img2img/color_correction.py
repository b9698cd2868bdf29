"""Colour correction (setting img2img_color_correction, generation.md §7.7): the result's colours
are matched to the init image's histogram in LAB space, keeping the result's own lightness."""
import numpy as np
from PIL import Image

_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])


def _to_lab(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _RGB_TO_XYZ.T / _D65
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _from_lab(lab: np.ndarray) -> Image.Image:
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f > 0.206893, f ** 3, (f - 16 / 116) / 7.787) * _D65
    linear = np.clip(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, 0, 1)
    rgb = np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, linear * 12.92)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))


def _match_channel(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map source values so that their distribution follows the reference's (quantile matching)."""
    values, positions, counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    ref_values, ref_counts = np.unique(reference.ravel(), return_counts=True)
    quantiles = np.cumsum(counts) / source.size
    ref_quantiles = np.cumsum(ref_counts) / reference.size
    return np.interp(quantiles, ref_quantiles, ref_values)[positions].reshape(source.shape)


def reference(image: Image.Image) -> np.ndarray:
    """What correction needs of the init image (computed once per job)."""
    return _to_lab(image)


def apply(reference_lab: np.ndarray, image: Image.Image) -> Image.Image:
    lab = _to_lab(image)
    corrected = np.stack([_match_channel(lab[..., c], reference_lab[..., c]) for c in range(3)], -1)
    corrected[..., 0] = lab[..., 0]  # luminosity blend: the result's lightness, the matched colour
    return _from_lab(corrected)
