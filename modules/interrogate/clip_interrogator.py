"""Interrogate CLIP (extras.md §6.1): a BLIP caption, then CLIP picks the best terms of each
category file in `interrogate/`. Both models are transformers folders read locally."""
import logging
import os
import re
import threading

import torch
from PIL import Image

from modules import paths, shared
from modules.interrogate import files

log = logging.getLogger(__name__)
BLIP_PROMPT = "a picture of"
_lock = threading.Lock()
_models: dict = {}


def categories_folder() -> str:
    return os.path.join(paths.script_path, "interrogate")


def load_categories(folder: str, skip: list[str], dict_limit: int) -> list[tuple[str, int, list[str]]]:
    """(name, top count, terms) per `*.txt`, alphabetical; stem suffix `.topN` asks for N terms."""
    if not os.path.isdir(folder):
        log.info("No interrogate category folder at %s: the CLIP interrogation is the caption only", folder)
        return []
    found = []
    for file_name in sorted(os.listdir(folder)):
        if not file_name.endswith(".txt"):
            continue
        stem = file_name[:-4]
        match = re.match(r"^(.*)\.top(\d+)$", stem)
        name, top = (match.group(1), int(match.group(2))) if match else (stem, 1)
        if stem in skip or name in skip:
            continue
        with open(os.path.join(folder, file_name), encoding="utf8") as file:
            lines = [line.strip() for line in file.read().splitlines()]
        if dict_limit > 0:
            lines = lines[:dict_limit]
        found.append((name, top, lines))
    return found


def rank(image_features: torch.Tensor, text_features: torch.Tensor, terms: list[str], top: int):
    """Top min(top, count) (term, probability) by softmax(100 · image · textᵀ), features normalised."""
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    probs = (100.0 * image_features @ text_features.T).softmax(dim=-1)[0]
    top = min(top, len(terms))
    values, indices = probs.topk(top)
    return [(terms[i], float(v)) for v, i in zip(values, indices.tolist())]


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _device_dtype():
    device = shared.device_config.device
    half = device.type == "cuda" and not shared.cmd_opts.no_half
    return device, torch.float16 if half else torch.float32


def _blip():
    from transformers import BlipForConditionalGeneration, BlipProcessor
    folder = files.hf_folder(files.blip_folder(), "BLIP captioning", "blip-image-captioning-base")
    if _models.get("blip_path") != folder:
        model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
        _models.update(blip_path=folder, blip=model,
                       blip_processor=BlipProcessor.from_pretrained(folder, local_files_only=True))
    return _models["blip"], _models["blip_processor"]


def _clip():
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer
    folder = files.hf_folder(files.clip_folder(), "CLIP", "clip-vit-large-patch14")
    if _models.get("clip_path") != folder:
        model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        if os.path.isfile(os.path.join(folder, "vocab.json")):
            tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        else:  # the BPE vocabulary open_clip ships (offline.md §1.2)
            from modules.models.clip_tokenizer import load_clip_tokenizer
            tokenizer = load_clip_tokenizer()
        has_processor = os.path.isfile(os.path.join(folder, "preprocessor_config.json"))
        processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True) if has_processor \
            else CLIPImageProcessor()  # the standard 224 px CLIP preprocessing
        _models.update(clip_path=folder, clip=model, clip_tokenizer=tokenizer, clip_processor=processor)
    return _models["clip"], _models["clip_tokenizer"], _models["clip_processor"]


def caption(image: Image.Image) -> str:
    opts = shared.opts
    model, processor = _blip()
    device, dtype = _device_dtype()
    model.to(device, dtype)
    try:
        inputs = processor(images=image, text=BLIP_PROMPT, return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        with torch.inference_mode():
            out = model.generate(**inputs, num_beams=int(opts.interrogate_clip_num_beams), do_sample=False,
                                 min_length=int(opts.interrogate_clip_min_length),
                                 max_length=int(opts.interrogate_clip_max_length), repetition_penalty=1.0)
    finally:
        if not opts.interrogate_keep_models_in_memory:
            model.to("cpu")
    text = processor.decode(out[0], skip_special_tokens=True).strip()
    return text[len(BLIP_PROMPT):].strip() if text.startswith(BLIP_PROMPT) else text


def interrogate(image: Image.Image) -> str:
    opts = shared.opts
    image = image.convert("RGB")
    with _lock:
        text = caption(image)
        categories = load_categories(categories_folder(), list(opts.interrogate_clip_skip_categories or []),
                                     int(opts.interrogate_clip_dict_limit))
        if not categories:
            return text
        model, tokenizer, processor = _clip()
        device, dtype = _device_dtype()
        model.to(device, dtype)
        try:
            with torch.inference_mode():
                pixels = processor(images=image, return_tensors="pt")["pixel_values"].to(device, dtype)
                image_features = _features(model.get_image_features(pixel_values=pixels)).float()
                for _name, top, terms in categories:
                    tokens = tokenizer(terms, padding="max_length", truncation=True, max_length=77,
                                       return_tensors="pt").to(device)
                    text_features = _features(model.get_text_features(**tokens)).float()
                    for term, probability in rank(image_features, text_features, terms, top):
                        text += f", ({term}:{probability:.3f})" if opts.interrogate_return_ranks else f", {term}"
        finally:
            if not opts.interrogate_keep_models_in_memory:
                model.to("cpu")
    return text
