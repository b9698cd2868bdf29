"""Create and train textual-inversion embeddings (merge-train.md §4).

Only the embedding's vectors are trained; the model's weights are never written to. The vectors
enter the text encoder through the same injection generation uses, so what is trained is what
prompts will get. SDXL embeddings carry `clip_l` and `clip_g` vectors (ours; A1111 cannot).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
from dataclasses import KW_ONLY, asdict, dataclass

import torch

from modules import conditioning, shared
from modules.textual_inversion import Embedding, EmbeddingDatabase, embedding_to_data
from modules.training import datasets, progress, step_loop, templates
from modules.training.learn_schedule import LearnRateScheduler, ScheduleError
from modules.training.train_args import SharedTrainArgs
from modules.training.step_loop import grad_scaler  # noqa: F401 (used by the LoRA trainer)


class TrainingError(ValueError):
    """Bad training input; the message names the field."""


def sanitize_name(name: str) -> str:
    return "".join(ch for ch in (name or "") if ch.isalnum() or ch in "._- ").strip()


# ------------------------------------------------------------------------------------- create

def _encoder_keys(model) -> list[str | None]:
    """Per text encoder, the key its vectors have in an SDXL embedding (None: a plain tensor)."""
    return ["clip_l", "clip_g"] if model.is_sdxl and len(model.text_encoders) == 2 else [None]


def initial_vectors(model, init_text: str, num_vectors: int):
    """init text -> vectors from each encoder's token-embedding table (before the transformer):
    vector i of k is token ⌊i·N/k⌋ of the N init tokens; empty text -> zeros."""
    out = {}
    for index, key in enumerate(_encoder_keys(model)):
        table = model.text_encoders[index].get_input_embeddings().weight
        ids = model.tokenizers[index](init_text, add_special_tokens=False)["input_ids"] if init_text else []
        vec = torch.zeros(num_vectors, table.shape[1])
        if ids:
            rows = table.detach()[torch.tensor(ids, device=table.device)].float().cpu()
            for i in range(num_vectors):
                vec[i] = rows[i * len(ids) // num_vectors]
        out[key] = vec
    return out[None] if None in out else out


def embedding_path(name: str) -> str:
    return os.path.join(shared.paths.embeddings, f"{name}.pt")


def create_embedding(name: str, num_vectors_per_token: int, overwrite_old: bool, init_text: str = "*") -> str:
    """Write `<embeddings>/<name>.pt` with step 0 and reload the embeddings; returns the path.
    Runs on the queue worker."""
    clean = sanitize_name(name)
    if not clean:
        raise TrainingError("name: give the embedding a name (letters, digits, '._- ')")
    if not isinstance(num_vectors_per_token, int) or not 1 <= num_vectors_per_token <= 75:
        raise TrainingError(f"num_vectors_per_token must be an integer from 1 to 75, got {num_vectors_per_token!r}")
    path = embedding_path(clean)
    if os.path.exists(path) and not overwrite_old:
        raise TrainingError(f"file {path} already exists")
    model = shared.model_holder.ensure_for_job()
    embedding = Embedding(initial_vectors(model, init_text or "", num_vectors_per_token), clean, step=0)
    embedding.sd_checkpoint = model.sd_model_hash
    embedding.sd_checkpoint_name = model.sd_checkpoint_info.name_for_extra
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(embedding_to_data(embedding), path)
    from modules import sd_models
    sd_models.refresh_embeddings(model, force=True)
    return path


# -------------------------------------------------------------------------------------- train

@dataclass
class TrainEmbeddingArgs(SharedTrainArgs):
    """A1111's 30 train/embedding fields (api.md §13): the shared ones and these."""
    embedding_name: str
    _: KW_ONLY
    learn_rate: str = "0.005"
    save_embedding_every: int = 500
    template_filename: str = "style_filewords.txt"
    save_image_with_stored_embedding: bool = True


def validate_common(args, name_field: str, every_field: str) -> str:
    """A1111's checks (merge-train.md §4.2) as messages naming the field; returns the template path."""
    name = getattr(args, name_field)
    if not name:
        raise TrainingError(f"{name_field}: choose one")
    if not str(args.learn_rate).strip():
        raise TrainingError("learn_rate: the learning rate is empty")
    for field_name in ("batch_size", "gradient_step", "steps"):
        value = getattr(args, field_name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise TrainingError(f"{field_name} must be an integer > 0, got {value!r}")
    for field_name in ("create_image_every", every_field):
        value = getattr(args, field_name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TrainingError(f"{field_name} must be an integer >= 0, got {value!r}")
    if not args.data_root:
        raise TrainingError("data_root: the dataset directory is empty")
    if not os.path.isdir(args.data_root):
        raise TrainingError(f"data_root: dataset directory {args.data_root} does not exist")
    if not os.listdir(args.data_root):
        raise TrainingError(f"data_root: dataset directory {args.data_root} is empty")
    if (args.create_image_every or getattr(args, every_field)) and not args.log_directory:
        raise TrainingError("log_directory: needed when images or copies are saved")
    if args.clip_grad_mode not in ("disabled", "value", "norm"):
        raise TrainingError(f"clip_grad_mode must be disabled, value or norm, got {args.clip_grad_mode!r}")
    if not 0 <= float(args.tag_drop_out) <= 1:
        raise TrainingError(f"tag_drop_out must be between 0 and 1, got {args.tag_drop_out!r}")
    if args.latent_sampling_method not in ("once", "deterministic", "random"):
        raise TrainingError("latent_sampling_method must be once, deterministic or random")
    for field_name in ("training_width", "training_height"):
        value = getattr(args, field_name)
        if not isinstance(value, int) or not 64 <= value <= 2048:
            raise TrainingError(f"{field_name} must be an integer from 64 to 2048, got {value!r}")
    found = templates.list_templates(templates.templates_dir(shared.cmd_opts))
    if not args.template_filename:
        raise TrainingError("template_filename: choose a prompt template")
    if args.template_filename not in found:
        raise TrainingError(f"template_filename: prompt template {args.template_filename} not found in "
                            f"{templates.templates_dir(shared.cmd_opts)}")
    try:
        LearnRateScheduler(args.learn_rate, args.steps, 0)
        if args.clip_grad_mode != "disabled":
            LearnRateScheduler(args.clip_grad_value, args.steps, 0)
    except ScheduleError as e:
        raise TrainingError(f"learn_rate: {e}") from None
    return found[args.template_filename]


def vec_checksum(vec) -> str:
    tensors = [vec[k] for k in sorted(vec)] if isinstance(vec, dict) else [vec]
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:4]


def log_folder(log_directory: str, name: str) -> str:
    base = log_directory if os.path.isabs(log_directory) else os.path.join(shared.paths.data, log_directory)
    return os.path.join(base, datetime.date.today().isoformat(), name)


def save_embedding_file(embedding: Embedding, vec, path: str, step: int, name: str, optimizer=None) -> None:
    """The A1111 .pt (and, with an optimizer, its .optim) written atomically."""
    saved = Embedding(_detached(vec), name, step=step)
    saved.sd_checkpoint, saved.sd_checkpoint_name = embedding.sd_checkpoint, embedding.sd_checkpoint_name
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(embedding_to_data(saved), tmp)
    os.replace(tmp, path)
    if optimizer is not None:
        torch.save({"hash": vec_checksum(vec), "optimizer_state_dict": optimizer.state_dict()}, path + ".optim.tmp")
        os.replace(path + ".optim.tmp", path + ".optim")


def _detached(vec):
    if isinstance(vec, dict):
        return {k: v.detach().float().cpu().clone() for k, v in vec.items()}
    return vec.detach().float().cpu().clone()


def _trainable(vec, device):
    if isinstance(vec, dict):
        return {k: v.detach().to(device, torch.float32).clone().requires_grad_(True) for k, v in vec.items()}
    return vec.detach().to(device, torch.float32).clone().requires_grad_(True)


def _params(vec) -> list[torch.Tensor]:
    return list(vec.values()) if isinstance(vec, dict) else [vec]


def _database_with(embedding: Embedding) -> EmbeddingDatabase:
    """The loaded embeddings plus the one being trained, for encoding training prompts."""
    db = EmbeddingDatabase()
    db.word_embeddings = dict(shared.embedding_db.word_embeddings)
    db.register_embedding(embedding)
    return db


def require_resident_model(model) -> None:
    """Training keeps every component on the device for the whole run; the offload modes move
    them back and forth per use, which a training step cannot follow."""
    if model.device_config.offloads:
        raise TrainingError("Training needs the whole model on the GPU: restart without --medvram / --lowvram")


def preview_image(model, run, *, prompt: str, negative: str, steps: int, sampler: str, cfg: float, seed: int,
                  width: int, height: int, out_path: str, preview_embedding: Embedding | None = None,
                  extra_networks_off: bool = True):
    """A txt2img preview inside the training job; the training's progress fields are restored."""
    from modules import processing
    state = shared.state
    saved = (state.job, state.job_count, state.job_no, state.textinfo)
    if preview_embedding is not None:
        shared.embedding_db.register_embedding(preview_embedding)
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt, negative_prompt=negative, steps=steps, sampler_name=sampler, cfg_scale=cfg, seed=seed,
        width=width, height=height, do_not_save_samples=True, do_not_save_grid=True,
        disable_extra_networks=extra_networks_off)
    try:
        processed = processing.process_images(p)
    finally:
        state.job, state.job_count, state.job_no, state.textinfo = saved
    if not processed.images:
        return None
    image = processed.images[0]
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    from modules import infotext_utils
    image.save(out_path, pnginfo=infotext_utils.pnginfo_for(processed.infotexts[0]))
    progress.add_preview(state, run, image, out_path)
    return image


def schedules(args, start_step: int):
    """The learning-rate schedule and the gradient-clipping one (None when disabled), resumed at start_step."""
    scheduler = LearnRateScheduler(args.learn_rate, args.steps, start_step)
    clip_scheduler = LearnRateScheduler(args.clip_grad_value, args.steps, start_step) \
        if args.clip_grad_mode != "disabled" else None
    return scheduler, clip_scheduler


def build_dataset(model, args, name: str, template_path: str, seed: int, state):
    """The captioned latents of `args.data_root`, as the embedding and hypernetwork trainers read them."""
    return datasets.build_ti_dataset(
        model, args.data_root, width=args.training_width, height=args.training_height, varsize=args.varsize,
        name=name, template_lines=templates.read_template(template_path), shuffle_tags=args.shuffle_tags,
        tag_drop_out=float(args.tag_drop_out), latent_sampling_method=args.latent_sampling_method,
        use_weight=args.use_weight, word_regex=shared.opts.dataset_filename_word_regex,
        join_string=shared.opts.dataset_filename_join_string, seed=seed, check_stop=state.check_stop)


def train_embedding(args: TrainEmbeddingArgs) -> tuple[str, str]:
    """Train on the queue worker; returns (message, final file). Interrupt stops before the next
    step and still writes the file (and optimizer state), so a rerun resumes."""
    template_path = validate_common(args, "embedding_name", "save_embedding_every")
    state = shared.state
    model = shared.model_holder.ensure_for_job()
    require_resident_model(model)
    name = args.embedding_name
    embedding = shared.embedding_db.word_embeddings.get(name)
    if embedding is None:
        raise TrainingError(f"embedding_name: embedding '{name}' is not loaded (create it first, or refresh the "
                            f"embeddings; loaded: {', '.join(shared.embedding_db.word_embeddings) or 'none'})")
    if isinstance(embedding.vec, dict) != bool(model.is_sdxl):
        raise TrainingError(f"embedding_name: '{name}' is made for {'SDXL' if isinstance(embedding.vec, dict) else 'SD1/SD2'}"
                            f", the loaded model is {model.family}")
    start_step = int(embedding.step or 0)
    final_path = embedding.filename or embedding_path(name)
    if start_step >= args.steps:
        return f"Model has already been trained beyond specified max steps ({start_step} >= {args.steps})", final_path
    scheduler, clip_scheduler = schedules(args, start_step)
    run = progress.start(state, "train-embedding", name, args.steps, start_step)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    device = model.device_config.device

    log_dir = log_folder(args.log_directory, name)
    dataset = build_dataset(model, args, name, template_path, seed, state)
    batch_size = min(args.batch_size, len(dataset.items))
    accumulation = max(1, min(args.gradient_step, len(dataset.items) // batch_size))
    _write_settings(log_dir, args, model, len(dataset.items), embedding.vectors)

    vec = _trainable(embedding.vec, device)
    trained = Embedding(vec, name, step=start_step)
    db = _database_with(trained)
    optimizer = torch.optim.AdamW(_params(vec), lr=scheduler.learn_rate, weight_decay=0.0)
    optim_file = final_path + ".optim"
    if os.path.exists(optim_file):
        saved = torch.load(optim_file, map_location="cpu", weights_only=True)
        if saved.get("hash") == vec_checksum(embedding.vec):
            optimizer.load_state_dict(saved["optimizer_state_dict"])
        else:
            print(f"Optimizer state {optim_file} does not match the embedding's vectors; starting a fresh optimizer")

    def after_step(step: int, last_prompt: str) -> None:
        trained.step = step
        if args.save_embedding_every and step % args.save_embedding_every == 0:
            copy = os.path.join(log_dir, "embeddings", f"{name}-{step}.pt")
            save_embedding_file(embedding, vec, copy, step, f"{name}-{step}",
                                optimizer if shared.opts.save_optimizer_state else None)
            run.last_saved = copy
        if args.create_image_every and step % args.create_image_every == 0:
            _embedding_preview(model, run, args, embedding, vec, step, last_prompt, log_dir)

    loop = step_loop.StepLoop(
        model=model, run=run, dataset=dataset, params=_params(vec), optimizer=optimizer, scheduler=scheduler,
        clip_scheduler=clip_scheduler, clip_mode=args.clip_grad_mode,
        encode=lambda prompts: conditioning.encode_with_grad(model, prompts, embeddings=db),
        after_step=after_step, max_steps=args.steps, batch_size=batch_size, accumulation=accumulation,
        use_weight=args.use_weight,
        csv_path=os.path.join(log_dir, "textual_inversion_loss.csv") if args.log_directory else None,
        seed=seed, step=start_step)
    try:
        loop.run_steps()
    finally:
        # written even when the loop stops early, so the run can be resumed (merge-train.md §4.8)
        # ours: the final file always gets its .optim, so any run can be continued with its
        # optimizer state (save_optimizer_state decides for the copies in the log folder)
        save_embedding_file(embedding, vec, final_path, loop.step, name, optimizer)
        run.last_saved = final_path
        from modules import sd_models
        sd_models.refresh_embeddings(model, force=True)
    step, interrupted = loop.step, loop.interrupted
    verb = "interrupted" if interrupted else "finished"
    run.message = f"Training {verb} at {step} steps.\nEmbedding saved to {final_path}"
    return run.message, final_path


def _embedding_preview(model, run, args, embedding, vec, step, last_prompt, log_dir) -> None:
    preview = Embedding(_detached(vec), args.embedding_name, step=step)
    preview.hash = f"training-{vec_checksum(vec)}-{step}"  # a distinct cond-cache key per preview
    if args.preview_from_txt2img:
        options = dict(prompt=args.preview_prompt, negative=args.preview_negative_prompt, steps=args.preview_steps,
                       sampler=_sampler_name(args.preview_sampler_name), cfg=args.preview_cfg_scale,
                       seed=args.preview_seed, width=args.preview_width, height=args.preview_height)
    else:
        options = dict(prompt=last_prompt, negative="", steps=20, sampler="Euler a", cfg=7.0, seed=-1,
                       width=args.training_width, height=args.training_height)
    out = os.path.join(log_dir, "images", f"{args.embedding_name}-{step}.png")
    image = preview_image(model, run, out_path=out, preview_embedding=preview, **options)
    if image is not None and args.save_image_with_stored_embedding:
        from modules.textual_inversion import image_embedding
        data = embedding_to_data(preview)
        data["name"] = args.embedding_name
        target = os.path.join(log_dir, "image_embeddings", f"{args.embedding_name}-{step}.png")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        image_embedding.write_embedding_image(target, data, image.convert("RGB"))


def _sampler_name(name: str) -> str:
    from modules import sd_samplers
    for sampler in sd_samplers.all_samplers:
        if sampler.name.lower() == str(name).lower():
            return sampler.name
    return name


def _write_settings(log_dir: str, args, model, image_count: int, vectors: int | None) -> None:
    if not shared.opts.save_training_settings_to_txt or not args.log_directory:
        return
    os.makedirs(log_dir, exist_ok=True)
    now = datetime.datetime.now()
    record = {"datetime": now.strftime("%Y-%m-%d %H:%M:%S"), **asdict(args),
              "model_name": model.sd_checkpoint_info.name_for_extra, "model_hash": model.sd_model_hash,
              "num_of_dataset_images": image_count}
    if vectors is not None:  # hypernetworks have none
        record["num_vectors_per_token"] = vectors
    path = os.path.join(log_dir, f"settings-{now.strftime('%Y-%m-%d-%H-%M-%S')}.json")
    with open(path, "w", encoding="utf8") as file:
        json.dump(record, file, indent=4)

