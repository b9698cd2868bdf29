"""Which image formats this installation can write, one floor below images and the settings
registry (samples_format / grid_format are validated with it when set)."""
from PIL import Image

from modules.options import OptionError

_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF"}
_EXIF_FORMATS = ("JPEG", "WEBP", "AVIF")
_MAX_SIDE = {"JPEG": 65535, "WEBP": 16383}


def _pillow_format(extension: str) -> str | None:
    """Pillow's name for a format it can write with this file extension, else None."""
    Image.init()  # loads every format plugin (once), so Image.SAVE is complete
    fmt = _FORMATS.get(extension) or Image.registered_extensions().get(f".{extension}")
    return fmt if fmt in Image.SAVE else None


def check_format_setting(extension) -> None:
    """Validator of samples_format / grid_format: refuse at setting time what saving could not do."""
    if _pillow_format(str(extension or "").lower().lstrip(".")) is None:
        raise OptionError(f"'{extension}' is not an image format this installation can write "
                          f"(png, jpg, webp, avif, ...)")
