"""Argument checks the built-in img2img scripts share (outpainting mk2, poor man's outpainting, img2img alt,
SD upscale); each message starts with the script's title, so the user sees which script refused."""
from modules import outpainting, processing


def require_init_image(p, title: str) -> None:
    if not p.init_images:
        raise processing.GenerationError(f"{title} needs an init image")


def check_directions(direction, title: str) -> None:
    """A non-empty list of outpainting.DIRECTIONS."""
    unknown = [d for d in direction if d not in outpainting.DIRECTIONS]
    if unknown or not direction:
        raise processing.GenerationError(f"{title}: direction must be a non-empty list of "
                                         f"{', '.join(outpainting.DIRECTIONS)}, got {direction!r}")
