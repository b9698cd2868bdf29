"""One upscale call (extras.md §2.1): passes of the model until the target is covered, then an exact
Lanczos resize. Hires fix, SD upscale, img2img resizing and the Extras tab all come through here."""
import numpy as np
import torch
from PIL import Image

from modules import shared
from modules.upscaling import model_cache, registry, tiling
from modules.upscaling.registry import UnknownUpscaler, UpscalerEntry, UpscalerUnavailable  # noqa: F401

MAX_PASSES = 3
PIXEL_FILTERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}

# family -> (tile setting, overlap setting)
TILE_SETTINGS = {
    "ESRGAN": ("ESRGAN_tile", "ESRGAN_tile_overlap"),
    "RealESRGAN": ("ESRGAN_tile", "ESRGAN_tile_overlap"),
    "HAT": ("ESRGAN_tile", "ESRGAN_tile_overlap"),
    "DAT": ("DAT_tile", "DAT_tile_overlap"),
    "SwinIR": ("SWIN_tile", "SWIN_tile_overlap"),
    "ScuNET": ("SCUNET_tile", "SCUNET_tile_overlap"),
}
# --use-cpu names for each family (extras.md §1.5)
CPU_FLAG_NAMES = {"ESRGAN": "esrgan", "HAT": "esrgan", "SwinIR": "swinir", "ScuNET": "scunet"}


class UpscaleOutOfMemory(RuntimeError):
    """Even 64 px tiles do not fit (API: 507)."""


def list_upscalers() -> list[UpscalerEntry]:
    return registry.list_upscalers(shared.paths.models, shared.cmd_opts, shared.opts)


def upscaler_names() -> list[str]:
    return [entry.name for entry in list_upscalers()]


def find_upscaler(name: str | None) -> UpscalerEntry:
    """The entry named `name` (None/"" = "None"); UnknownUpscaler lists the valid names."""
    return registry.find_in(list_upscalers(), name)


def require_available(entry: UpscalerEntry) -> UpscalerEntry:
    if not entry.available:
        raise UpscalerUnavailable(entry.missing_message())
    return entry


def tile_settings(entry: UpscalerEntry) -> tuple[int, int]:
    tile_key, overlap_key = TILE_SETTINGS[entry.family]
    return int(getattr(shared.opts, tile_key)), int(getattr(shared.opts, overlap_key))


def _device_and_half(entry: UpscalerEntry) -> tuple[torch.device, bool]:
    use_cpu = {name.lower() for name in shared.cmd_opts.use_cpu}
    device = shared.device_config.device
    if "all" in use_cpu or CPU_FLAG_NAMES.get(entry.family) in use_cpu:
        device = torch.device("cpu")
    half = device.type == "cuda" and shared.device_config.dtype == torch.float16
    return device, half


def load_model(entry: UpscalerEntry):
    require_available(entry)
    device, half = _device_and_half(entry)
    return model_cache.load_descriptor(entry.path, device, half)


def _to_tensor(image: Image.Image, device, dtype) -> torch.Tensor:
    """RGB PIL -> (1,3,H,W) BGR in [0,1]: A1111 feeds every upscaler BGR (extras.md §1.5)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)[:, :, ::-1] / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].to(device, dtype)


def _to_image(tensor: torch.Tensor) -> Image.Image:
    array = tensor[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()[:, :, ::-1]
    return Image.fromarray((array * 255.0).round().astype(np.uint8))


def run_model(descriptor, image: Image.Image, tile: int, overlap: int) -> Image.Image | None:
    """One model pass over the whole image (tiled). None when the job was interrupted."""
    device = next(descriptor.model.parameters()).device
    dtype = next(descriptor.model.parameters()).dtype
    batch = 4 if device.type == "cuda" else 1
    minimum = max(descriptor.size_requirements.minimum, 1)
    pixels = _to_tensor(image, device, dtype)
    while True:
        try:
            with torch.inference_mode():
                out = tiling.run_tiled(descriptor, pixels, tile, overlap, batch=batch, minimum=minimum,
                                       should_stop=lambda: shared.state.interrupted)
            break
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            smaller = (tile or max(image.size)) // 2
            if smaller < 64:
                raise UpscaleOutOfMemory(f"Out of memory upscaling {image.width}x{image.height} even with "
                                         f"64 px tiles; lower the upscale factor") from None
            print(f"Upscaler ran out of memory with {tile or 'no'} tiles; retrying with {smaller} px tiles")
            tile, batch = smaller, 1
    if out is None:
        return None
    result = _to_image(out)
    if image.mode == "RGBA":  # alpha is kept: resized alongside (extras.md §8 target 5)
        result.putalpha(image.getchannel("A").resize(result.size, Image.Resampling.LANCZOS))
    return result


def destination(image: Image.Image, scale: float) -> tuple[int, int]:
    """⌊W·s⌋₈ × ⌊H·s⌋₈ (extras.md §2.1 step 1)."""
    width, height = int(image.width * scale) // 8 * 8, int(image.height * scale) // 8 * 8
    if width < 8 or height < 8:
        raise ValueError(f"Upscaling {image.width}x{image.height} by {scale} gives an image smaller than 8 px")
    return width, height


def upscale(image: Image.Image, scale: float, name: str | None) -> Image.Image:
    """A1111's `Upscaler.upscale(img, scale)`: model passes (at most 3) until the image covers
    ⌊W·s⌋₈ × ⌊H·s⌋₈, then Lanczos to exactly that size. `None` returns the image itself."""
    entry = find_upscaler(name)
    if entry.name == "None" and entry.is_builtin:
        return image
    dest = destination(image, scale)
    if entry.is_builtin:
        resized = image.resize((int(image.width * scale), int(image.height * scale)), PIXEL_FILTERS[entry.name])
        return resized if resized.size == dest else resized.resize(dest, Image.Resampling.LANCZOS)
    descriptor = load_model(entry)
    tile, overlap = tile_settings(entry)
    current = image
    for index in range(MAX_PASSES):
        if (index > 0 or scale != 1) and current.width >= dest[0] and current.height >= dest[1]:
            break
        if shared.state.interrupted:
            break
        result = run_model(descriptor, current, tile, overlap)
        if result is None:  # interrupted: the last finished pass stands
            break
        unchanged = result.size == current.size
        current = result  # a 1× model (ScuNET denoiser) keeps its output, then no more passes
        if unchanged:
            break
    return current if current.size == dest else current.resize(dest, Image.Resampling.LANCZOS)


def upscale_to(image: Image.Image, width: int, height: int, name: str | None) -> Image.Image:
    """Enlarge to exactly width×height: the upscaler by max(w/W, h/H) when that is above 1, then
    Lanczos (A1111's resize_image mode 0 with an upscaler; hires fix and img2img use it)."""
    entry = find_upscaler(name)
    scale = max(width / image.width, height / image.height)
    if scale > 1 and not (entry.name == "None" and entry.is_builtin):
        image = upscale(image, scale, entry.name)
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.LANCZOS)
