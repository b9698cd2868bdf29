"""img2img Batch (ui.md §3.4): every image of a folder (or uploaded files) as its own job, with an
optional mask folder and parameters read from each image's infotext."""
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from modules import images, infotext_utils

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
PNG_INFO_PROPS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps", "Model hash")


@dataclass
class BatchResult:
    images: list = field(default_factory=list)
    infotexts: list = field(default_factory=list)
    errors: list = field(default_factory=list)   # "file: problem", one per file that was skipped


def list_images(folder: str) -> list[Path]:
    """Image files under `folder`, recursively, in name order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"Input directory not found: {folder}")
    return sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def find_mask(mask_files: list[Path], stem: str) -> Path | None:
    """One mask for every image, or the first mask named like the image."""
    if len(mask_files) == 1:
        return mask_files[0]
    return next((path for path in mask_files if path.stem == stem), None)


def open_image(path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return images.fix_image(image)


def apply_png_info(p, image: Image.Image, wanted: list[str], base_prompt: str, base_negative: str) -> None:
    """Parameters chosen by the user, from the image's own infotext (prompts are appended)."""
    text, _ = infotext_utils.read_info_from_image(image)
    if not text:
        return
    params = infotext_utils.parse_generation_parameters(text)
    if "Prompt" in wanted and params.get("Prompt"):
        p.prompt = f"{base_prompt} {params['Prompt']}".strip()
    if "Negative prompt" in wanted and params.get("Negative prompt"):
        p.negative_prompt = f"{base_negative} {params['Negative prompt']}".strip()
    if "Seed" in wanted and "Seed" in params:
        p.seed = int(float(params["Seed"]))
    if "CFG scale" in wanted and "CFG scale" in params:
        p.cfg_scale = float(params["CFG scale"])
    if "Sampler" in wanted and "Sampler" in params:
        p.sampler_name = params["Sampler"]
    if "Steps" in wanted and "Steps" in params:
        p.steps = int(float(params["Steps"]))
    if "Model hash" in wanted and params.get("Model hash"):
        p.override_settings["sd_model_checkpoint"] = params["Model hash"]


def send_output_to(p, output_dir: str, stem: str) -> None:
    """Results go to `output_dir` as <stem> (<stem>-[generation_number] for several images)."""
    p.outpath_samples = output_dir
    pattern = f"{stem}-[generation_number]" if p.n_iter > 1 or p.batch_size > 1 else stem
    p.override_settings.update(save_to_dirs=False, save_images_add_number=False, samples_filename_pattern=pattern)


def run(files: list[Path], make_p, run_job, output_dir: str = "", mask_dir: str = "", png_info_props=(),
        png_info_dir: str = "", is_interrupted=lambda: False) -> BatchResult:
    """`make_p(image, mask)` builds a job's processing object, `run_job(p)` runs it and returns
    Processed. An unreadable file is reported and the batch goes on."""
    result = BatchResult()
    masks = list_images(mask_dir) if mask_dir else []
    for path in files:
        if is_interrupted():
            break
        try:
            image = open_image(path)
            mask = None
            if mask_dir:
                mask_path = find_mask(masks, path.stem)
                if mask_path is None:
                    result.errors.append(f"{path}: no mask named {path.stem}.* in {mask_dir}; skipped")
                    continue
                mask = open_image(mask_path)
            info_source = image
            if png_info_props and png_info_dir:
                candidate = Path(png_info_dir) / path.name
                if candidate.is_file():
                    info_source = open_image(candidate)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            result.errors.append(f"{path}: cannot read this image ({e}); skipped")
            continue
        p = make_p(image, mask)
        if png_info_props:
            apply_png_info(p, info_source, list(png_info_props), p.prompt, p.negative_prompt)
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            send_output_to(p, output_dir, path.stem)
        processed = run_job(p)
        result.images += processed.images
        result.infotexts += processed.infotexts
    return result
