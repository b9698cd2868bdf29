"""Train a LoRA on the loaded checkpoint (merge-train.md §6), with kohya-ss's argument names.

The run: dataset (repeat folders, captions, buckets, cached latents) -> peft adapters injected
into the UNet and/or text encoders -> AdamW with a diffusers LR schedule -> the model's own
objective -> `<lora dir>/<output_name>.safetensors` in kohya's layout with ss_* metadata. The
trainer state (adapters, optimizer, LR schedule, step) is saved on interrupt and at the end, so
`resume` continues the step count. Adapters are always removed afterwards.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import random
import re
import time
import uuid
from dataclasses import asdict, dataclass, fields

import torch

from modules import conditioning, shared
from modules.state import Interrupted
from modules.training import datasets, lora_network, objective, progress
from modules.training.embedding import TrainingError, grad_scaler, preview_image, require_resident_model, sanitize_name

SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
OPTIMIZERS = ("AdamW", "AdamW8bit")
DEFAULT_EPOCHS = 10


@dataclass
class LoraTrainArgs:
    """kohya-ss `train_network.py` names; defaults are ours (merge-train.md §6.1)."""
    train_data_dir: str = ""
    output_name: str | None = None
    network_dim: int = 16
    network_alpha: float = 8.0
    max_train_steps: int | None = None
    max_train_epochs: int | None = None
    learning_rate: float = 1e-4
    unet_lr: float | None = None
    text_encoder_lr: float | None = 5e-5
    resolution: str | None = None
    enable_bucket: bool = True
    min_bucket_reso: int = 256
    max_bucket_reso: int | None = None
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    lr_scheduler: str = "constant"
    lr_warmup_steps: float = 0
    lr_scheduler_num_cycles: int = 1
    lr_scheduler_power: float = 1.0
    optimizer_type: str = "AdamW"
    max_grad_norm: float = 1.0
    save_every_n_steps: int | None = None
    save_every_n_epochs: int | None = None
    save_precision: str = "fp16"
    save_state: bool = True
    resume: bool | str | None = None
    sample_prompts: str | None = None
    sample_every_n_steps: int | None = None
    sample_every_n_epochs: int | None = None
    sample_sampler: str = "Euler a"
    seed: int | None = None
    network_train_unet_only: bool | None = None
    network_train_text_encoder_only: bool = False
    shuffle_caption: bool = False
    keep_tokens: int = 0
    caption_dropout_rate: float = 0.0
    caption_tag_dropout_rate: float = 0.0
    noise_offset: float = 0.0
    min_snr_gamma: float | None = None
    clip_skip: int | None = None
    instance_prompt: str | None = None
    reg_data_dir: str | None = None
    prior_loss_weight: float = 1.0
    class_prompt: str | None = None
    num_class_images: int = 0
    training_comment: str | None = None

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def lora_dir() -> str:
    return getattr(shared.cmd_opts, "lora_dir", None) or os.path.join(shared.paths.models, "Lora")


def state_dir(output_name: str) -> str:
    """Trainer states live outside the LoRA folder, so the LoRA list never shows them."""
    return os.path.join(shared.paths.data, "train_states", f"{output_name}-state")


def parse_resolution(text, family: str) -> tuple[int, int]:
    if text in (None, ""):
        side = 1024 if family.startswith("sdxl") else 768 if family.startswith("sd2") else 512
        return side, side
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise TrainingError(f"resolution must be \"512\" or \"width,height\", got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 64 or max(values) > 4096 or any(v % 8 for v in values):
        raise TrainingError(f"resolution must be one or two multiples of 8 from 64 to 4096, got {text!r}")
    return values[0], values[1]


def validate(args: LoraTrainArgs) -> None:
    if not args.train_data_dir or not os.path.isdir(args.train_data_dir):
        raise TrainingError(f"train_data_dir: {args.train_data_dir!r} is not a folder")
    for name in ("network_dim", "train_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise TrainingError(f"{name} must be an integer > 0, got {value!r}")
    for name in ("max_train_steps", "max_train_epochs", "save_every_n_steps", "save_every_n_epochs",
                 "sample_every_n_steps", "sample_every_n_epochs"):
        value = getattr(args, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise TrainingError(f"{name} must be an integer >= 0, got {value!r}")
    if args.lr_scheduler not in SCHEDULERS:
        raise TrainingError(f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, got {args.lr_scheduler!r}")
    if args.optimizer_type not in OPTIMIZERS:
        raise TrainingError(f"optimizer_type must be one of {', '.join(OPTIMIZERS)}, got {args.optimizer_type!r}")
    if args.optimizer_type == "AdamW8bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise TrainingError("optimizer_type AdamW8bit needs the bitsandbytes package, which is not installed") from None
    if args.network_train_unet_only and args.network_train_text_encoder_only:
        raise TrainingError("network_train_unet_only and network_train_text_encoder_only exclude each other")
    if args.save_precision not in ("fp16", "bf16", "float"):
        raise TrainingError(f"save_precision must be fp16, bf16 or float, got {args.save_precision!r}")
    if args.reg_data_dir and not os.path.isdir(args.reg_data_dir) and not (args.class_prompt and args.num_class_images):
        raise TrainingError(f"reg_data_dir: {args.reg_data_dir!r} is not a folder")
    if args.num_class_images and not args.class_prompt:
        raise TrainingError("num_class_images needs class_prompt (the prompt that generates the class images)")
    if not 0 <= args.caption_dropout_rate <= 1 or not 0 <= args.caption_tag_dropout_rate <= 1:
        raise TrainingError("caption_dropout_rate and caption_tag_dropout_rate must be between 0 and 1")
    name = args.output_name or os.path.basename(os.path.normpath(args.train_data_dir))
    if not sanitize_name(name) or sanitize_name(name) != name:
        raise TrainingError(f"output_name {name!r}: use letters, digits and '._- ' only")


# ------------------------------------------------------------------------------ class images

def ensure_class_images(model, args: LoraTrainArgs, resolution: tuple[int, int], seed: int) -> str | None:
    """DreamBooth prior preservation: top reg_data_dir up to num_class_images with our txt2img."""
    if not args.class_prompt or not args.num_class_images:
        return args.reg_data_dir
    folder = args.reg_data_dir or os.path.join(shared.paths.data, "train_class_images", sanitize_name(args.class_prompt))
    os.makedirs(folder, exist_ok=True)
    subfolders = [f for f, _, _ in datasets.concept_folders(folder) if f != folder]
    target = subfolders[0] if subfolders else folder
    have = sum(len(datasets.list_images(f)) for f, _, _ in datasets.concept_folders(folder))
    run = progress.current()
    for index in range(have, args.num_class_images):
        shared.state.check_stop()
        shared.state.textinfo = f"Generating class image {index + 1} of {args.num_class_images}"
        out = os.path.join(target, f"class-{index:05d}.png")
        preview_image(model, run, prompt=args.class_prompt, negative="", steps=20, sampler=args.sample_sampler,
                      cfg=7.0, seed=seed + index, width=resolution[0], height=resolution[1], out_path=out)
        with open(os.path.splitext(out)[0] + ".txt", "w", encoding="utf8") as file:
            file.write(args.class_prompt)
    return folder


# ---------------------------------------------------------------------------------- samples

def parse_sample_prompts(text: str | None) -> list[dict]:
    """kohya's prompt lines: `prompt --n negative --w 512 --h 512 --d seed --s steps --l cfg`."""
    if not text:
        return []
    if os.path.isfile(text):
        with open(text, encoding="utf8") as file:
            text = file.read()
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pieces = re.split(r"\s--(?=[nwhdsl]\s)", " " + line)
        entry = {"prompt": pieces[0].strip(), "negative": "", "width": None, "height": None,
                 "seed": -1, "steps": 20, "cfg": 7.0}
        for piece in pieces[1:]:
            flag, _, value = piece.partition(" ")
            value = value.strip()
            try:
                if flag == "n":
                    entry["negative"] = value
                elif flag in ("w", "h"):
                    entry["width" if flag == "w" else "height"] = int(value)
                elif flag == "d":
                    entry["seed"] = int(value)
                elif flag == "s":
                    entry["steps"] = int(value)
                elif flag == "l":
                    entry["cfg"] = float(value)
            except ValueError:
                raise TrainingError(f"sample_prompts: --{flag} {value!r} is not a number in {line!r}") from None
        out.append(entry)
    return out



# ------------------------------------------------------------------------------------ the run

@dataclass
class _Parts:
    unet: bool
    text_encoders: bool


def _parts(args: LoraTrainArgs, model) -> _Parts:
    unet_only = args.network_train_unet_only
    if unet_only is None:
        unet_only = bool(model.is_sdxl)  # ours: SDXL trains the UNet only unless asked
    te_lr = args.text_encoder_lr if args.text_encoder_lr is not None else args.learning_rate
    unet = not args.network_train_text_encoder_only
    text = not unet_only and te_lr > 0
    if not unet and not text:
        raise TrainingError("nothing to train: text_encoder_lr is 0 while network_train_text_encoder_only is set")
    return _Parts(unet, text)


def _te_names(model) -> list[str]:
    return ["te"] if len(model.text_encoders) == 1 else ["te1", "te2"][:len(model.text_encoders)]


def _base_model_version(model) -> str:
    if model.is_sdxl:
        return "sdxl_base_v1-0"
    if model.family.startswith("sd2"):
        return "sd_v2_v" if model.parameterization == "v" else "sd_v2"
    return "sd_v1"


def _architecture(model) -> tuple[str, str]:
    if model.is_sdxl:
        return "stable-diffusion-xl-v1-base/lora", "https://github.com/Stability-AI/generative-models"
    if model.family.startswith("sd2"):
        kind = "stable-diffusion-v2-768-v" if model.parameterization == "v" else "stable-diffusion-v2-512"
        return f"{kind}/lora", "diffusers"
    return "stable-diffusion-v1/lora", "diffusers"


def build_metadata(args: LoraTrainArgs, model, *, output_name: str, items, reg_items, resolution,
                   steps_done: int, epoch: int, total_steps: int, epochs: int, started: float, session_id: str,
                   parts: _Parts, seed: int) -> dict[str, str]:
    info = model.sd_checkpoint_info
    buckets: dict[tuple, int] = {}
    for item in items:
        buckets[item.bucket] = buckets.get(item.bucket, 0) + item.repeats
    dirs, tags = {}, {}
    for item in items:
        key = os.path.basename(item.folder)
        entry = dirs.setdefault(key, {"n_repeats": item.repeats, "img_count": 0})
        entry["img_count"] += 1
        freq = tags.setdefault(key, {})
        for tag in item.caption.split(","):
            tag = tag.strip().lower()
            if tag:
                freq[tag] = freq.get(tag, 0) + 1
    errors = [abs(i.bucket[0] / i.bucket[1] - i.original_size[0] / i.original_size[1]) for i in items]
    unet_lr = args.unet_lr if args.unet_lr is not None else args.learning_rate
    te_lr = args.text_encoder_lr if args.text_encoder_lr is not None else args.learning_rate
    architecture, implementation = _architecture(model)
    meta = {f"ss_{name}": value for name, value in asdict(args).items() if value is not None}
    meta.update({
        "ss_session_id": session_id,
        "ss_training_started_at": str(started),
        "ss_training_finished_at": str(time.time()),
        "ss_output_name": output_name,
        "ss_learning_rate": str(args.learning_rate),
        "ss_unet_lr": str(unet_lr) if parts.unet else "0",
        "ss_text_encoder_lr": str(te_lr) if parts.text_encoders else "0",
        "ss_num_train_images": str(sum(i.repeats for i in items)),
        "ss_num_reg_images": str(len(reg_items)),
        "ss_num_batches_per_epoch": str(max(1, math.ceil(sum(i.repeats for i in items) / args.train_batch_size))),
        "ss_num_epochs": str(epochs),
        "ss_epoch": str(epoch),
        "ss_steps": str(steps_done),
        "ss_max_train_steps": str(total_steps),
        "ss_batch_size_per_device": str(args.train_batch_size),
        "ss_resolution": f"({resolution[0]}, {resolution[1]})",
        "ss_seed": str(seed),
        "ss_clip_skip": str(args.clip_skip if args.clip_skip is not None else shared.opts.CLIP_stop_at_last_layers),
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(args.network_dim),
        "ss_network_alpha": str(float(args.network_alpha)),
        "ss_network_args": json.dumps({}),
        "ss_network_train_unet_only": str(not parts.text_encoders),
        "ss_network_train_text_encoder_only": str(not parts.unet),
        "ss_optimizer": f"torch.optim.{'AdamW' if args.optimizer_type == 'AdamW' else 'bitsandbytes.optim.AdamW8bit'}",
        "ss_lr_scheduler": args.lr_scheduler,
        "ss_lr_warmup_steps": str(args.lr_warmup_steps),
        "ss_noise_offset": str(args.noise_offset),
        "ss_min_snr_gamma": str(args.min_snr_gamma),
        "ss_prior_loss_weight": str(args.prior_loss_weight),
        "ss_enable_bucket": str(args.enable_bucket),
        "ss_bucket_info": json.dumps({"buckets": {str(i): {"resolution": list(b), "count": n}
                                                  for i, (b, n) in enumerate(sorted(buckets.items()))},
                                      "mean_img_ar_error": sum(errors) / len(errors)}),
        "ss_dataset_dirs": json.dumps(dirs),
        "ss_reg_dataset_dirs": json.dumps({os.path.basename(args.reg_data_dir or ""): {"img_count": len(reg_items)}}
                                          if reg_items else {}),
        "ss_tag_frequency": json.dumps(tags),
        "ss_base_model_version": _base_model_version(model),
        "ss_v2": str(model.family.startswith("sd2")),
        "ss_sd_model_name": os.path.basename(info.filename),
        "ss_sd_model_hash": info.hash or "",
        "ss_new_sd_model_hash": info.sha256 or "",
        "ss_training_comment": args.training_comment or "",
        "ss_mixed_precision": "no" if model.device_config.dtype == torch.float32 else "fp16",
        "ss_full_fp16": "False",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": architecture,
        "modelspec.implementation": implementation,
        "modelspec.title": output_name,
        "modelspec.date": datetime.datetime.now().replace(microsecond=0).isoformat(),
        "modelspec.resolution": f"{resolution[0]}x{resolution[1]}",
        "modelspec.prediction_type": "v" if model.parameterization == "v" else "epsilon",
    })
    for key in ("ss_resume", "ss_reg_data_dir", "ss_train_data_dir", "ss_sample_prompts"):
        if key in meta:
            meta[key] = str(meta[key])
    return {k: v if isinstance(v, str) else str(v) for k, v in meta.items()}


def _captions(batch, args: LoraTrainArgs, rng: random.Random) -> list[str]:
    out = []
    for item in batch:
        if args.caption_dropout_rate and rng.random() < args.caption_dropout_rate:
            out.append("")
            continue
        out.append(datasets.process_tags(item.caption, args.shuffle_caption, args.caption_tag_dropout_rate, rng,
                                         args.keep_tokens) if (args.shuffle_caption or args.caption_tag_dropout_rate)
                   else item.caption)
    return out


def _sdxl_time_ids(batch) -> torch.Tensor:
    rows = [[i.original_size[1], i.original_size[0], i.crop[0], i.crop[1], i.bucket[1], i.bucket[0]] for i in batch]
    return torch.tensor(rows, dtype=torch.float32)


def _save_dtype(name: str):
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "float": torch.float32}[name]


class LoraRun:
    """One training run; `train()` runs it on the queue worker."""

    def __init__(self, args: LoraTrainArgs):
        validate(args)
        self.args = args
        self.output_name = args.output_name or os.path.basename(os.path.normpath(args.train_data_dir))

    # -- pieces ---------------------------------------------------------------------------------
    def _modules(self, model, parts: _Parts) -> dict[str, torch.nn.Module]:
        modules = {}
        if parts.unet:
            modules["unet"] = model.unet
        if parts.text_encoders:
            modules.update(zip(_te_names(model), model.text_encoders))
        return modules

    def _kohya_tensors(self, model, modules) -> dict[str, torch.Tensor]:
        states = {name: lora_network.adapter_state(module) for name, module in modules.items()}
        return lora_network.to_kohya(states, is_sdxl=model.is_sdxl, unet_config=model.unet.config,
                                     alpha=self.args.network_alpha, dtype=_save_dtype(self.args.save_precision))

    def _save_lora(self, path, model, modules, meta_args) -> None:
        meta = build_metadata(self.args, model, output_name=self.output_name, **meta_args)
        lora_network.save_kohya_file(path, self._kohya_tensors(model, modules), meta)

    def _save_state(self, modules, optimizer, scheduler, step: int, seed: int) -> str:
        folder = state_dir(self.output_name)
        os.makedirs(folder, exist_ok=True)
        state = {"step": step, "seed": seed, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "adapters": {name: lora_network.adapter_state(m) for name, m in modules.items()},
                 "args": asdict(self.args)}
        path = os.path.join(folder, "train_state.pth")
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
        return folder

    def _load_state(self) -> dict | None:
        resume = self.args.resume
        if not resume:
            return None
        folder = resume if isinstance(resume, str) else state_dir(self.output_name)
        path = os.path.join(folder, "train_state.pth")
        if not os.path.exists(path):
            raise TrainingError(f"resume: no saved trainer state at {path}")
        return torch.load(path, map_location="cpu", weights_only=True)

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> tuple[str, str]:
        args = self.args
        state = shared.state
        model = shared.model_holder.ensure_for_job()
        require_resident_model(model)
        resolution = parse_resolution(args.resolution, model.family)
        parts = _parts(args, model)
        saved = self._load_state()
        seed = int(saved["seed"]) if saved else (args.seed if args.seed is not None else random.randrange(2**31))
        run = progress.start(state, "train-lora", self.output_name, 0, int(saved["step"]) if saved else 0)
        started = time.time()
        max_bucket = args.max_bucket_reso or (2048 if model.is_sdxl else 1024)
        bucket_options = dict(resolution=resolution, enable_bucket=args.enable_bucket, min_bucket_reso=args.min_bucket_reso,
                              max_bucket_reso=max_bucket, bucket_reso_steps=args.bucket_reso_steps,
                              bucket_no_upscale=args.bucket_no_upscale, check_stop=state.check_stop)
        reg_dir = ensure_class_images(model, args, resolution, seed)
        items = datasets.build_lora_items(model, args.train_data_dir, seed=seed, **bucket_options)
        if args.instance_prompt:
            for item in items:
                if item.caption == "":
                    item.caption = args.instance_prompt
        reg_items = []
        if reg_dir:
            reg_items = datasets.build_lora_items(model, reg_dir, seed=seed + 1, is_reg=True, **bucket_options)
            for item in reg_items:
                if item.caption == "" and args.class_prompt:
                    item.caption = args.class_prompt
        batches_per_epoch = len(self._epoch(items, reg_items, seed, 0))
        steps_per_epoch = max(1, math.ceil(batches_per_epoch / args.gradient_accumulation_steps))
        if args.max_train_epochs:
            total_steps, epochs = args.max_train_epochs * steps_per_epoch, args.max_train_epochs
        elif args.max_train_steps:
            total_steps = args.max_train_steps
            epochs = math.ceil(total_steps / steps_per_epoch)
        else:
            total_steps, epochs = DEFAULT_EPOCHS * steps_per_epoch, DEFAULT_EPOCHS
        state.job_count = run.max_steps = total_steps

        modules = self._modules(model, parts)
        unet_lr = args.unet_lr if args.unet_lr is not None else args.learning_rate
        te_lr = args.text_encoder_lr if args.text_encoder_lr is not None else args.learning_rate
        cache_text = not parts.text_encoders and not (args.shuffle_caption or args.caption_tag_dropout_rate
                                                      or args.caption_dropout_rate)
        groups = []
        try:
            for index, (name, module) in enumerate(modules.items()):
                targets = lora_network.UNET_TARGETS if name == "unet" else lora_network.TEXT_ENCODER_TARGETS
                params = lora_network.add_adapters(module, targets, args.network_dim, args.network_alpha, seed + index)
                groups.append({"params": params, "lr": unet_lr if name == "unet" else te_lr})
            optimizer = self._optimizer(groups)
            warmup = args.lr_warmup_steps
            warmup = int(warmup * total_steps) if isinstance(warmup, float) and 0 < warmup < 1 else int(warmup)
            from diffusers.optimization import get_scheduler
            scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=warmup,
                                      num_training_steps=total_steps, num_cycles=args.lr_scheduler_num_cycles,
                                      power=args.lr_scheduler_power)
            step = 0
            if saved:
                for name, module in modules.items():
                    if name not in saved["adapters"]:
                        raise TrainingError(f"resume: the saved state has no {name} adapters (trained parts differ)")
                    lora_network.load_adapter_state(module, saved["adapters"][name])
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                step = int(saved["step"])
            if step >= total_steps:
                return (f"Model has already been trained beyond specified max steps ({step} >= {total_steps})",
                        os.path.join(lora_dir(), f"{self.output_name}.safetensors"))
            return self._loop(model, run, modules, optimizer, scheduler, items, reg_items, step, total_steps,
                              steps_per_epoch, epochs, seed, resolution, parts, started, cache_text)
        finally:
            for module in modules.values():
                lora_network.remove_adapters(module)
            model.cond_cache.clear()  # conds made while the text encoders carried adapters

    def _optimizer(self, groups):
        if self.args.optimizer_type == "AdamW8bit":
            import bitsandbytes
            return bitsandbytes.optim.AdamW8bit(groups)
        return torch.optim.AdamW(groups, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8)

    def _epoch(self, items, reg_items, seed: int, epoch: int) -> list[list]:
        """The batches of one epoch; prior-preservation images are drawn to match the instance count."""
        rng = random.Random(seed * 1000 + epoch)
        entries = list(items)
        if reg_items:
            instance_count = sum(i.repeats for i in items)
            pool = [i for i in reg_items for _ in range(i.repeats)]
            rng.shuffle(pool)
            entries += [datasets.LoraItem(**{**vars(pool[k % len(pool)]), "repeats": 1}) for k in range(instance_count)]
        return datasets.lora_epoch_batches(entries, self.args.train_batch_size, rng)

    def _loop(self, model, run, modules, optimizer, scheduler, items, reg_items, step, total_steps,
              steps_per_epoch, epochs, seed, resolution, parts, started, cache_text) -> tuple[str, str]:
        args = self.args
        state = shared.state
        device = model.device_config.device
        parameterization = objective.parameterization_of(model)
        scaler = grad_scaler(model)
        generator = torch.Generator().manual_seed(seed + step)
        rng = random.Random(seed + step)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        text_cache: dict[str, object] = {}
        samples = parse_sample_prompts(args.sample_prompts)
        session_id = uuid.uuid4().hex
        final = os.path.join(lora_dir(), f"{self.output_name}.safetensors")
        clip_skip = args.clip_skip
        interrupted = False
        state.time_start = time.time()
        epoch = step // steps_per_epoch
        batches = self._epoch(items, reg_items, seed, epoch)[(step % steps_per_epoch) * args.gradient_accumulation_steps:]
        meta_args = lambda: dict(items=items, reg_items=reg_items, resolution=resolution, steps_done=step,  # noqa: E731
                                 epoch=epoch, total_steps=total_steps, epochs=epochs, started=started,
                                 session_id=session_id, parts=parts, seed=seed)

        def encode(captions):
            if not cache_text:
                return conditioning.encode_with_grad(model, captions, clip_skip=clip_skip)
            missing = [c for c in dict.fromkeys(captions) if c not in text_cache]
            if missing:
                with torch.no_grad():
                    cond = conditioning.encode(model, missing, clip_skip=clip_skip)
                for k, caption in enumerate(missing):
                    text_cache[caption] = {key: v[k:k + 1] for key, v in cond.items()} if isinstance(cond, dict) \
                        else cond[k:k + 1]
            rows = [text_cache[c] for c in captions]
            if isinstance(rows[0], dict):
                return {key: torch.cat([r[key] for r in rows]) for key in rows[0]}
            return torch.cat(rows)

        try:
            while step < total_steps:
                if state.interrupted:
                    interrupted = True
                    break
                total = 0.0
                caption = ""
                for _ in range(args.gradient_accumulation_steps):
                    if not batches:
                        epoch += 1
                        batches = self._epoch(items, reg_items, seed, epoch)
                    batch = batches.pop(0)
                    x0 = torch.stack([item.latent for item in batch]).to(device)
                    captions = _captions(batch, args, rng)
                    caption = captions[0]
                    cond = encode(captions)
                    t, noise = objective.sample_noise(x0, generator, args.noise_offset)
                    x_t, target = objective.noisy_latents_and_target(x0, noise, t, model.alphas_cumprod, parameterization)
                    if isinstance(cond, dict):
                        pred = objective.unet_prediction(model, model.unet, x_t, t, cond["crossattn"], cond["vector"],
                                                         _sdxl_time_ids(batch))
                    else:
                        pred = objective.unet_prediction(model, model.unet, x_t, t, cond)
                    loss = objective.per_sample_mse(pred, target)
                    if args.min_snr_gamma:
                        loss = loss * objective.min_snr_weights(t, model.alphas_cumprod, args.min_snr_gamma,
                                                                parameterization).to(loss.device)
                    weights = torch.tensor([args.prior_loss_weight if item.is_reg else 1.0 for item in batch],
                                           device=loss.device)
                    loss = (loss * weights).mean() / args.gradient_accumulation_steps
                    scaler.scale(loss).backward()
                    total += float(loss.detach())
                scaler.unscale_(optimizer)
                if args.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                progress.report_step(state, run, step, total, caption)
                epoch_done = step % steps_per_epoch == 0
                if args.save_every_n_steps and step % args.save_every_n_steps == 0 and step < total_steps:
                    path = os.path.join(lora_dir(), f"{self.output_name}-step{step:08d}.safetensors")
                    self._save_lora(path, model, modules, meta_args())
                    run.last_saved = path
                if epoch_done and args.save_every_n_epochs and (step // steps_per_epoch) % args.save_every_n_epochs == 0 \
                        and step < total_steps:
                    path = os.path.join(lora_dir(), f"{self.output_name}-{step // steps_per_epoch:06d}.safetensors")
                    self._save_lora(path, model, modules, meta_args())
                    run.last_saved = path
                if samples and ((args.sample_every_n_steps and step % args.sample_every_n_steps == 0) or
                                (epoch_done and args.sample_every_n_epochs and
                                 (step // steps_per_epoch) % args.sample_every_n_epochs == 0)):
                    self._samples(model, run, samples, step, resolution)
        except Interrupted:
            interrupted = True
        finally:
            if args.save_state or interrupted:
                self._save_state(modules, optimizer, scheduler, step, seed)
        epoch = step // steps_per_epoch
        self._save_lora(final, model, modules, meta_args())
        run.last_saved = final
        _refresh_lora_list()
        verb = "interrupted" if interrupted else "finished"
        run.message = f"Training {verb} at {step} steps.\nLoRA saved to {final}"
        return run.message, final

    def _samples(self, model, run, samples, step, resolution) -> None:
        model.cond_cache.clear()  # the text encoders' adapters changed since the last sample
        folder = os.path.join(shared.paths.data, "textual_inversion", datetime.date.today().isoformat(),
                              self.output_name, "sample")
        for index, sample in enumerate(samples):
            out = os.path.join(folder, f"{self.output_name}_{step:06d}_{index:02d}.png")
            with torch.no_grad():
                preview_image(model, run, prompt=sample["prompt"], negative=sample["negative"], steps=sample["steps"],
                              sampler=self.args.sample_sampler, cfg=sample["cfg"], seed=sample["seed"],
                              width=sample["width"] or resolution[0], height=sample["height"] or resolution[1],
                              out_path=out)
        model.cond_cache.clear()


def _refresh_lora_list() -> None:
    """List the LoRA folders again so GET /sdapi/v1/loras and the prompt tags see the new file."""
    from modules.networks import lora as networks_lora
    networks_lora.list_available_networks()


def train_lora(args: LoraTrainArgs) -> tuple[str, str]:
    return LoraRun(args).train()
