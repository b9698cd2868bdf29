"""Training images and their captions.

* A1111's embedding / hypernetwork dataset (merge-train.md §4.3): the images directly in one
  folder, caption from `<stem>.txt` or the file name, prompts from a template.
* kohya's LoRA dataset (§6.1): `N_concept` sub-folders repeat their images N times (a flat folder
  repeats once), caption from `<stem>.txt` then `<stem>.caption`, aspect-ratio buckets.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from modules.training import buckets as bucketing
from modules.training import templates

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class DatasetError(ValueError):
    pass


def list_images(folder: str) -> list[str]:
    """Image files directly in folder (not recursive), in name order."""
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, name)))


def caption_from_filename(path: str, word_regex: str = "", join_string: str = " ") -> str:
    """`00012-a red fox.png` -> `a red fox`; with a word regex, its matches joined."""
    stem = os.path.splitext(os.path.basename(path))[0]
    text = re.sub(r"^[\d-]+\s*", "", stem)
    if word_regex:
        text = join_string.join(re.findall(word_regex, text))
    return text


def ti_caption(path: str, word_regex: str = "", join_string: str = " ") -> str:
    txt = os.path.splitext(path)[0] + ".txt"
    if os.path.exists(txt):
        with open(txt, encoding="utf8") as file:
            return file.read()
    return caption_from_filename(path, word_regex, join_string)


def lora_caption(path: str, concept: str) -> str:
    """kohya: the first line of `<stem>.txt` (ours) or `<stem>.caption`, stripped; none -> the concept."""
    stem = os.path.splitext(path)[0]
    for extension in (".txt", ".caption"):
        if os.path.exists(stem + extension):
            with open(stem + extension, encoding="utf8") as file:
                lines = file.read().splitlines()
            caption = lines[0].strip() if lines else ""
            if not caption:
                raise DatasetError(f"caption file {stem + extension} is empty")
            return caption
    return concept


def process_tags(caption: str, shuffle: bool, drop_out: float, rng: random.Random, keep_tokens: int = 0) -> str:
    """Split at ',', drop each tag with probability drop_out, shuffle (the first keep_tokens stay)."""
    tags = caption.split(",")
    kept, rest = tags[:keep_tokens], tags[keep_tokens:]
    if drop_out > 0:
        rest = [tag for tag in rest if rng.random() >= drop_out]
    if shuffle:
        rng.shuffle(rest)
    return ",".join(kept + rest)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL -> [3, H, W] in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(2, 0, 1)


@torch.no_grad()
def encode_latent_distribution(model, pixels: torch.Tensor):
    """(mean, std) of the VAE posterior for [3, H, W] pixels, float32 (the VAE runs in float32 for
    SDXL, whose VAE overflows in float16)."""
    from modules import devices
    vae = model.vae
    with devices.on_device(vae, model.device_config):
        param = next(vae.parameters())
        dtype = torch.float32 if model.is_sdxl else param.dtype
        original = param.dtype
        if dtype != original:
            vae.to(dtype)
        try:
            dist = vae.encode(pixels[None].to(param.device, dtype)).latent_dist
            mean, std = dist.mean.float(), dist.std.float()
        finally:
            if dtype != original:
                vae.to(original)
    return mean[0], std[0]


# ----------------------------------------------------------------------------- embedding dataset

@dataclass
class TiItem:
    path: str
    caption: str
    mean: torch.Tensor           # latent mean [4, h, w] (unscaled)
    std: torch.Tensor
    latent: torch.Tensor | None  # the kept sample (once / deterministic)
    weight: torch.Tensor | None  # per-element loss weight from alpha, [4, h, w]
    prompt: str | None           # chosen once when no shuffle / dropout
    size: tuple[int, int]


def alpha_weight(image: Image.Image, latent_hw: tuple[int, int]) -> torch.Tensor | None:
    """PNG alpha -> per-latent-element loss weight (ours: A1111's (H, W) mix-up and the 0/0 NaN of a
    fully opaque alpha fixed: an alpha without contrast weighs every element 1)."""
    if "A" not in image.getbands():
        return None
    h, w = latent_hw
    alpha = np.asarray(image.getchannel("A").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    weight = torch.from_numpy(alpha)
    weight = weight - weight.min()
    mean = weight.mean()
    weight = torch.ones_like(weight) if mean <= 0 else weight / mean
    return weight[None].expand(4, h, w).clone()


@dataclass
class TiDataset:
    items: list[TiItem]
    name: str
    template_lines: list[str]
    shuffle_tags: bool
    tag_drop_out: float
    latent_sampling_method: str
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def prompt_for(self, item: TiItem) -> str:
        if item.prompt is not None:
            return item.prompt
        words = process_tags(item.caption, self.shuffle_tags, self.tag_drop_out, self.rng)
        return templates.fill(self.rng.choice(self.template_lines), self.name, words)

    def latent_for(self, item: TiItem, generator: torch.Generator) -> torch.Tensor:
        if item.latent is not None:
            return item.latent
        noise = torch.randn(item.mean.shape, generator=generator).to(item.mean.device)
        return item.mean + item.std * noise

    def batches(self, batch_size: int, rng: random.Random) -> list[list[TiItem]]:
        """One epoch: items grouped by size (a batch never mixes sizes), shuffled; a short last
        batch of a group is filled with other items of the same size."""
        groups: dict[tuple, list[TiItem]] = {}
        for item in self.items:
            groups.setdefault(item.size, []).append(item)
        out = []
        for group in groups.values():
            order = list(group)
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                while len(chunk) < batch_size:
                    chunk.append(rng.choice(group))
                out.append(chunk)
        rng.shuffle(out)
        return out


def build_ti_dataset(model, data_root: str, *, width: int, height: int, varsize: bool, name: str,
                     template_lines: list[str], shuffle_tags: bool = False, tag_drop_out: float = 0.0,
                     latent_sampling_method: str = "once", use_weight: bool = False,
                     word_regex: str = "", join_string: str = " ", seed: int = 0,
                     check_stop=None) -> TiDataset:
    if latent_sampling_method not in ("once", "deterministic", "random"):
        raise DatasetError(f"latent_sampling_method must be once, deterministic or random, not {latent_sampling_method!r}")
    paths = list_images(data_root)
    if not paths:
        raise DatasetError(f"Dataset directory {data_root} holds no images")
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    fixed_prompt = not shuffle_tags and tag_drop_out == 0
    items = []
    for path in paths:
        if check_stop is not None:
            check_stop()
        image = Image.open(path)
        image.load()
        if not varsize:
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        image = image.crop((0, 0, image.width - image.width % 8, image.height - image.height % 8))
        mean, std = encode_latent_distribution(model, pil_to_tensor(image))
        latent = None
        if latent_sampling_method == "deterministic":
            latent = mean
        elif latent_sampling_method == "once":
            latent = mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)
        caption = ti_caption(path, word_regex, join_string)
        weight = alpha_weight(image, tuple(mean.shape[1:])) if use_weight else None
        prompt = templates.fill(rng.choice(template_lines), name, caption) if fixed_prompt else None
        items.append(TiItem(path, caption, mean, std, latent, weight, prompt, image.size))
    return TiDataset(items, name, template_lines, shuffle_tags, tag_drop_out, latent_sampling_method, rng)


# ----------------------------------------------------------------------------------- LoRA dataset

@dataclass
class LoraItem:
    path: str
    caption: str
    repeats: int
    folder: str
    bucket: tuple[int, int]
    original_size: tuple[int, int]   # (w, h) of the file
    crop: tuple[int, int]            # (top, left) in the scaled image
    latent: torch.Tensor             # scaled latent sample [4, h/8, w/8]
    is_reg: bool = False


def concept_folders(root: str) -> list[tuple[str, int, str]]:
    """[(folder, repeats, concept)]: `N_concept` sub-folders, else the root itself once."""
    if not os.path.isdir(root):
        raise DatasetError(f"train_data_dir {root} is not a folder")
    found = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        match = re.fullmatch(r"(\d+)_(.*)", name)
        if os.path.isdir(folder) and match:
            found.append((folder, int(match[1]), match[2].strip()))
    if not found:
        found = [(root, 1, "")]
    return found


def build_lora_items(model, root: str, *, resolution: tuple[int, int], enable_bucket: bool,
                     min_bucket_reso: int = 256, max_bucket_reso: int = 1024, bucket_reso_steps: int = 64,
                     bucket_no_upscale: bool = False, seed: int = 0, is_reg: bool = False,
                     check_stop=None) -> list[LoraItem]:
    generator = torch.Generator().manual_seed(seed)
    bucket_list = bucketing.make_buckets(resolution, min_bucket_reso, max_bucket_reso, bucket_reso_steps)
    items = []
    for folder, repeats, concept in concept_folders(root):
        for path in list_images(folder):
            if check_stop is not None:
                check_stop()
            image = Image.open(path).convert("RGB")
            if not enable_bucket:
                bucket = resolution
            elif bucket_no_upscale:
                bucket = bucketing.no_upscale_bucket(image.size, resolution, bucket_reso_steps)
            else:
                bucket = bucketing.nearest_bucket(image.size, bucket_list)
            fitted, crop = bucketing.fit_to_bucket(image, bucket)
            mean, std = encode_latent_distribution(model, pil_to_tensor(fitted))
            latent = (mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)) * model.vae_scaling_factor
            items.append(LoraItem(path, lora_caption(path, concept), repeats, folder, bucket, image.size, crop,
                                  latent, is_reg))
    if not items:
        raise DatasetError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return items


def lora_epoch_batches(items: list[LoraItem], batch_size: int, rng: random.Random) -> list[list[LoraItem]]:
    """One epoch: every item `repeats` times, batched within its bucket, in random order."""
    by_bucket: dict[tuple, list[LoraItem]] = {}
    for item in items:
        by_bucket.setdefault(item.bucket, []).extend([item] * item.repeats)
    batches = []
    for bucket in sorted(by_bucket):
        entries = by_bucket[bucket]
        rng.shuffle(entries)
        batches += [entries[i:i + batch_size] for i in range(0, len(entries), batch_size)]
    rng.shuffle(batches)
    return batches


def steps_per_epoch(items: list[LoraItem], batch_size: int) -> int:
    return len(lora_epoch_batches(items, batch_size, random.Random(0)))
