"""Interrogation: "Interrogate CLIP" (BLIP caption + CLIP ranking) and "Interrogate DeepBooru".
Weights come from local folders only; a missing model is InterrogateUnavailable naming the folder."""
from PIL import Image

from modules.interrogate.files import InterrogateUnavailable  # noqa: F401

MODELS = ("clip", "deepdanbooru")


def interrogate(image: Image.Image, model: str) -> str:
    """The caption for `image` with `model` ("clip" or "deepdanbooru"). Run it on the job queue."""
    if model == "clip":
        from modules.interrogate import clip_interrogator
        return clip_interrogator.interrogate(image)
    if model == "deepdanbooru":
        from modules.interrogate import deepbooru
        return deepbooru.tag(image)
    raise ValueError(f"Model not found: {model}")
