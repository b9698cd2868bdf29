"""A1111's postprocessing script API (extensions.md §7.2): the steps of the Extras tab.

Extensions subclass `ScriptPostprocessing` and register it with `register_step` (or put a subclass
in a script file that the extension loader imports); the built-in steps (Upscale, GFPGAN,
CodeFormer, ...) are written on the same API in `modules/postprocessing/`.
"""
import dataclasses
from typing import Any

from PIL import Image


@dataclasses.dataclass
class PostprocessedImageSharedInfo:
    target_width: int | None = None
    target_height: int | None = None


class PostprocessedImage:
    def __init__(self, image: Image.Image):
        self.image = image
        self.info: dict[str, Any] = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images: list["PostprocessedImage"] = []
        self.nametags: list[str] = []
        self.disable_processing = False
        self.caption: str | None = None

    def get_suffix(self, used_suffixes: dict | None = None) -> str:
        """File-name suffix from the name tags; a repeated suffix gets -1, -2 ... (extras.md §4.5)."""
        used_suffixes = {} if used_suffixes is None else used_suffixes
        suffix = "-".join(self.nametags)
        if suffix:
            suffix = "-" + suffix
        if suffix not in used_suffixes:
            used_suffixes[suffix] = 1
            return suffix
        used_suffixes[suffix] += 1
        return f"{suffix}-{used_suffixes[suffix] - 1}" if suffix else f"-{used_suffixes[suffix] - 1}"

    def create_copy(self, new_image: Image.Image, *, nametags=None, disable_processing=False) -> "PostprocessedImage":
        copy = PostprocessedImage(new_image)
        copy.shared = self.shared
        copy.nametags = [*self.nametags, *(nametags or [])]
        copy.info = dict(self.info)
        copy.disable_processing = disable_processing
        copy.caption = self.caption
        return copy


class ScriptPostprocessing:
    """One postprocessing step. `ui()` returns name -> Gradio component; the component values
    arrive in `process` as keyword arguments with those names."""
    filename: str | None = None
    controls: dict | None = None
    args_from: int | None = None
    args_to: int | None = None
    order = 1000
    name: str | None = None
    group = None

    def ui(self) -> dict:
        return {}

    def process_firstpass(self, pp: PostprocessedImage, **args) -> None:
        """Runs for every step before any `process` (publishes pp.shared.target_width/height)."""

    def process(self, pp: PostprocessedImage, **args) -> None:
        """Changes pp.image, adds pp.info entries, appends pp.extra_images."""

    def image_changed(self) -> None:
        """The input image changed: drop caches."""


_registered: list[type] = []


def register_step(cls: type) -> type:
    """Adds a ScriptPostprocessing subclass to the Extras steps (usable as a decorator)."""
    if cls not in _registered:
        _registered.append(cls)
    return cls


def registered_steps() -> list[type]:
    return list(_registered)


# the subclasses found in extensions' scripts/*.py, replaced on every (re)load of the scripts
_from_script_files: list[type] = []


def set_script_file_steps(classes: list[type]) -> None:
    _from_script_files[:] = classes


def script_file_steps() -> list[type]:
    return list(_from_script_files)
