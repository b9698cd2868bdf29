"""Where interrogation weights live (extras.md §6.3); nothing is downloaded."""
import os

from modules import shared

DEEPBOORU_FILE = "model-resnet_custom_v3.pt"


class InterrogateUnavailable(RuntimeError):
    """Interrogation weights missing (API: 503)."""


def deepbooru_folder() -> str:
    return os.path.join(shared.paths.models, "torch_deepdanbooru")


def blip_folder() -> str:
    return os.path.join(shared.paths.models, "BLIP")


def clip_folder() -> str:
    return shared.cmd_opts.clip_models_path or os.path.join(shared.paths.models, "CLIP")


def categories_folder() -> str:
    return os.path.join(shared.paths.data, "interrogate")


def deepbooru_file() -> str:
    folder = deepbooru_folder()
    found = sorted(f for f in os.listdir(folder) if f.endswith(".pt")) if os.path.isdir(folder) else []
    if not found:
        raise InterrogateUnavailable(f"Interrogation model not installed: {folder} "
                                     f"(put {DEEPBOORU_FILE} there; nothing is downloaded)")
    return os.path.join(folder, found[0])


def hf_folder(folder: str, what: str, example: str) -> str:
    """A transformers model folder: `folder` itself or its first sub-folder with a config.json."""
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if os.path.isfile(os.path.join(folder, name, "config.json")):
                return os.path.join(folder, name)
    raise InterrogateUnavailable(f"Interrogation model not installed: {folder} (put a {what} model folder in "
                                 f"transformers layout there, e.g. {example}: config.json, model.safetensors "
                                 f"and its tokenizer/processor files; nothing is downloaded)")
