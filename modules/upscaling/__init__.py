"""Upscalers: the registry of names and weight files, spandrel loading, tiling and the upscale call.

The plain-function API other parts use (hires fix, SD upscale, the Extras tab):
`upscale(image, scale, name)`, `upscale_to(image, w, h, name)`, `find_upscaler(name)`,
`list_upscalers()`, `upscaler_names()`.
"""
from modules.upscaling.registry import UnknownUpscaler, UpscalerEntry, UpscalerUnavailable  # noqa: F401
from modules.upscaling.core import (UpscaleOutOfMemory, find_upscaler, list_upscalers, load_model,  # noqa: F401
                                       require_available, upscale, upscale_to, upscaler_names)
