"""Create and train hypernetworks in A1111's `.pt` format (merge-train.md §5).

The file layout and the MLPs are those of modules.networks.hypernetworks (the loader generation
uses), so what is created and trained here is exactly what `<hypernet:NAME>` applies. Training
shares the embedding trainer's dataset, schedule, loss, CSV and previews (step_loop); only the
MLP weights are trained, entering the UNet through pre-hooks on to_k / to_v.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import KW_ONLY, dataclass

import torch

from modules import conditioning, shared
from modules.networks import hypernetworks as hn_files
from modules.training import progress, step_loop
from modules.training.embedding import (TrainingError, build_dataset, log_folder, preview_image,
                                        require_resident_model, sanitize_name, schedules, validate_common,
                                        _sampler_name, _write_settings)
from modules.training.train_args import SharedTrainArgs

WEIGHT_INITS = ["Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal"]
_FIRST_ACTIVATIONS = ["linear", "relu", "leakyrelu", "elu", "swish", "tanh", "sigmoid"]


def activation_choices() -> list[str]:
    """A1111's dropdown: the named ones, then every other torch activation class in lower case."""
    others = sorted(name.lower() for name in dir(torch.nn.modules.activation)
                    if isinstance(getattr(torch.nn.modules.activation, name), type)
                    and issubclass(getattr(torch.nn.modules.activation, name), torch.nn.Module)
                    and name.lower() not in ("hardswish", "multiheadattention", "module")
                    and name.lower() not in _FIRST_ACTIVATIONS)
    return _FIRST_ACTIVATIONS + others


# ------------------------------------------------------------------------------------- create

def parse_numbers(value, field_name: str) -> list[float]:
    """`"1, 2, 1"` or [1, 2, 1] -> [1.0, 2.0, 1.0]; anything else names the field."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        numbers = [float(str(item).strip()) for item in items if str(item).strip() != ""]
    except ValueError:
        raise TrainingError(f"{field_name}: expected numbers separated by commas, got {value!r}") from None
    return numbers


def layer_structure_of(value) -> list[float]:
    structure = [1.0, 2.0, 1.0] if value is None or value == "" else parse_numbers(value, "layer_structure")
    if len(structure) < 2:
        raise TrainingError(f"layer_structure: needs at least two entries, got {structure}")
    if structure[0] != 1 or structure[-1] != 1:
        raise TrainingError(f"layer_structure: must start and end with 1, got {structure}")
    if any(m <= 0 for m in structure):
        raise TrainingError(f"layer_structure: every width multiplier must be > 0, got {structure}")
    return structure


def dropout_structure_of(value, use_dropout: bool, length: int) -> list[float] | None:
    if not use_dropout:
        return None
    structure = parse_numbers(value if value not in (None, "") else ",".join(["0"] * length), "dropout_structure")
    if len(structure) != length:
        raise TrainingError(f"dropout_structure: needs {length} entries (one per layer structure entry), "
                            f"got {len(structure)}")
    if any(not 0 <= p < 1 for p in structure):
        raise TrainingError(f"dropout_structure: every probability must be in [0, 1), got {structure}")
    return structure


def sizes_of(enable_sizes) -> list[int]:
    sizes = []
    for item in enable_sizes or []:
        try:
            size = int(item)
        except (TypeError, ValueError):
            raise TrainingError(f"enable_sizes: {item!r} is not a module width") from None
        if size <= 0:
            raise TrainingError(f"enable_sizes: widths must be > 0, got {size}")
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise TrainingError("enable_sizes: choose at least one module size (768, 320, 640, 1024, 1280)")
    return sizes


def initialise(module: torch.nn.Module, weight_init: str, activation_func: str | None) -> None:
    """A1111's initialisation: Normal = N(0, 0.01) weights and zero biases (LayerNorms always so);
    Kaiming (leaky_relu gain for leakyrelu, else relu) or Xavier weights with zero biases."""
    nonlinearity = "leaky_relu" if activation_func == "leakyrelu" else "relu"
    with torch.no_grad():
        for layer in module.modules():
            if not isinstance(layer, (torch.nn.Linear, torch.nn.LayerNorm)):
                continue
            if weight_init == "Normal" or isinstance(layer, torch.nn.LayerNorm):
                torch.nn.init.normal_(layer.weight, mean=0.0, std=0.01)
            elif weight_init == "KaimingUniform":
                torch.nn.init.kaiming_uniform_(layer.weight, nonlinearity=nonlinearity)
            elif weight_init == "KaimingNormal":
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
            elif weight_init == "XavierUniform":
                torch.nn.init.xavier_uniform_(layer.weight)
            elif weight_init == "XavierNormal":
                torch.nn.init.xavier_normal_(layer.weight)
            torch.nn.init.zeros_(layer.bias)


def hypernetwork_path(name: str) -> str:
    return os.path.join(hn_files.hypernetwork_folder(), f"{name}.pt")


def create_hypernetwork(name: str, enable_sizes, overwrite_old: bool = False, layer_structure="1, 2, 1",
                        activation_func: str | None = "linear", weight_init: str | None = "Normal",
                        add_layer_norm: bool = False, use_dropout: bool = False,
                        dropout_structure="0, 0, 0") -> str:
    """Write `<hypernetwork dir>/<name>.pt` (step 0) and list the folder again; returns the path."""
    clean = sanitize_name(name)
    if not clean:
        raise TrainingError("name: give the hypernetwork a name (letters, digits, '._- ')")
    sizes = sizes_of(enable_sizes)
    structure = layer_structure_of(layer_structure)
    activation_func = activation_func or "linear"
    weight_init = weight_init or "Normal"
    if weight_init not in WEIGHT_INITS:
        raise TrainingError(f"weight_init must be one of {', '.join(WEIGHT_INITS)}, got {weight_init!r}")
    dropout = dropout_structure_of(dropout_structure, bool(use_dropout), len(structure))
    path = hypernetwork_path(clean)
    if os.path.exists(path) and not overwrite_old:
        raise TrainingError(f"file {path} already exists")
    hn = hn_files.Hypernetwork(name=clean, layer_structure=structure, activation_func=activation_func,
                               add_layer_norm=bool(add_layer_norm), activate_output=False,
                               use_dropout=bool(use_dropout), dropout_structure=dropout,
                               weight_initialization=weight_init)
    try:
        for size in sizes:
            hn.add_width(size)
            for module in hn.layers[size]:
                initialise(module, weight_init, activation_func)
        # an activation that cannot run on a width-d vector (threshold, glu) fails here, not in training
        probe = hn.layers[sizes[0]][0]
        probe(torch.zeros(1, sizes[0]))
    except (hn_files.HypernetworkError, TypeError, RuntimeError) as e:
        raise TrainingError(f"activation_func: {activation_func!r} cannot be used in a hypernetwork ({e})") from None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save_atomically(hn, path)
    forget_loaded(clean)
    hn_files.list_hypernetworks()
    return path


def _save_atomically(hn, path: str) -> None:
    tmp = path + ".tmp"
    hn.save(tmp)
    os.replace(tmp, path)


def forget_loaded(name: str) -> None:
    """Drop a cached copy the `<hypernet:>` handler holds, so the next generation reads the new file."""
    hn_files.loaded_hypernetworks = [h for h in hn_files.loaded_hypernetworks if h.name != name]


# -------------------------------------------------------------------------------------- train

@dataclass
class TrainHypernetworkArgs(SharedTrainArgs):
    """A1111's 29 train/hypernetwork fields (api.md §13): the shared ones and these."""
    hypernetwork_name: str
    _: KW_ONLY
    learn_rate: str = "0.00001"
    save_hypernetwork_every: int = 500
    template_filename: str = "hypernetwork.txt"


def file_hash(path: str) -> str:
    """First 10 hex digits of the file's SHA-256: what A1111's .optim records to match its .pt."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def save_with_optimizer(hn, path: str, optimizer=None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save_atomically(hn, path)
    if optimizer is not None:
        state = {"hash": file_hash(path), "optimizer_name": type(optimizer).__name__,
                 "optimizer_state_dict": optimizer.state_dict()}
        torch.save(state, path + ".optim.tmp")
        os.replace(path + ".optim.tmp", path + ".optim")


def attention_widths(unet) -> set[int]:
    """Widths of what enters to_k / to_v: the context (cross-attention) and the block width (self)."""
    found = set()
    for module in unet.modules():
        if hasattr(module, "to_k") and isinstance(module.to_k, torch.nn.Linear):
            found.add(module.to_k.in_features)
    return found


def _optimizer_for(params, lr: float, optim_file: str, pt_path: str):
    """The optimizer class and state the .optim names, when it belongs to this file; else AdamW
    with torch's default weight decay (A1111's choice for hypernetworks)."""
    if os.path.exists(optim_file):
        saved = torch.load(optim_file, map_location="cpu", weights_only=True)
        cls = getattr(torch.optim, str(saved.get("optimizer_name", "")), None)
        if saved.get("hash") != file_hash(pt_path):
            print(f"Optimizer state {optim_file} does not match {pt_path}; starting a fresh optimizer")
        elif isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
            optimizer = cls(params, lr=lr)
            optimizer.load_state_dict(saved["optimizer_state_dict"])
            return optimizer
        else:
            print(f"Optimizer {saved.get('optimizer_name')!r} of {optim_file} is not in torch.optim; using AdamW")
    return torch.optim.AdamW(params, lr=lr)


def _set_training(hn, on: bool) -> None:
    for pair in hn.layers.values():
        for module in pair:
            module.train(on)
            module.requires_grad_(on)


def train_hypernetwork(args: TrainHypernetworkArgs) -> tuple[str, str]:
    """Train on the queue worker; returns (message, final file). Interrupt stops before the next
    step and still writes the file and its .optim, so a rerun resumes."""
    template_path = validate_common(args, "hypernetwork_name", "save_hypernetwork_every")
    state = shared.state
    model = shared.model_holder.ensure_for_job()
    require_resident_model(model)
    name = re.sub(r"\([^()]*\)$", "", args.hypernetwork_name).strip()  # "name(hash)" from a dropdown
    if name not in hn_files.hypernetworks:
        hn_files.list_hypernetworks()
    path = hn_files.hypernetworks.get(name)
    if path is None:
        raise TrainingError(f"hypernetwork_name: hypernetwork '{name}' not found in {hn_files.hypernetwork_folder()} "
                            f"(create it first; found: {', '.join(hn_files.hypernetworks) or 'none'})")
    try:
        hn = hn_files.load_hypernetwork_file(path, name)
    except hn_files.HypernetworkError as e:
        raise TrainingError(f"hypernetwork_name: {e}") from None
    widths = attention_widths(model.unet)
    if not widths & set(hn.layers):
        raise TrainingError(f"hypernetwork_name: its module sizes {sorted(hn.layers)} match no attention input of "
                            f"the loaded model (widths {sorted(widths)})")
    start_step = int(hn.step or 0)
    if start_step >= args.steps:
        return f"Model has already been trained beyond specified max steps ({start_step} >= {args.steps})", path
    scheduler, clip_scheduler = schedules(args, start_step)
    run = progress.start(state, "train-hypernetwork", name, args.steps, start_step)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    device = model.device_config.device

    log_dir = log_folder(args.log_directory, name)
    dataset = build_dataset(model, args, name, template_path, seed, state)
    batch_size = min(args.batch_size, len(dataset.items))
    accumulation = max(1, min(args.gradient_step, len(dataset.items) // batch_size))
    _write_settings(log_dir, args, model, len(dataset.items), None)

    for pair in hn.layers.values():
        for module in pair:
            module.to(device, torch.float32)
    _set_training(hn, True)
    params = [p for pair in hn.layers.values() for module in pair for p in module.parameters()]
    optimizer = _optimizer_for(params, scheduler.learn_rate, path + ".optim", path)
    hn.sd_checkpoint = model.sd_model_hash
    hn.sd_checkpoint_name = model.sd_checkpoint_info.name_for_extra
    hooks = hn_files.HypernetworkHooks()
    hooks.install(model.unet, [hn], device)

    def after_step(step: int, last_prompt: str) -> None:
        hn.step = step
        if args.save_hypernetwork_every and step % args.save_hypernetwork_every == 0:
            copy = os.path.join(log_dir, "hypernetworks", f"{name}-{step}.pt")
            saved_name, hn.name = hn.name, f"{name}-{step}"
            try:
                save_with_optimizer(hn, copy, optimizer if shared.opts.save_optimizer_state else None)
            finally:
                hn.name = saved_name
            run.last_saved = copy
        if args.create_image_every and step % args.create_image_every == 0:
            _set_training(hn, False)  # no dropout in previews
            try:
                _preview(model, run, args, name, step, last_prompt, log_dir)
            finally:
                _set_training(hn, True)

    loop = step_loop.StepLoop(
        model=model, run=run, dataset=dataset, params=params, optimizer=optimizer, scheduler=scheduler,
        clip_scheduler=clip_scheduler, clip_mode=args.clip_grad_mode,
        encode=lambda prompts: conditioning.encode(model, prompts),  # the text encoder is not trained
        after_step=after_step, max_steps=args.steps, batch_size=batch_size, accumulation=accumulation,
        use_weight=args.use_weight,
        csv_path=os.path.join(log_dir, "hypernetwork_loss.csv") if args.log_directory else None,
        seed=seed, step=start_step)
    try:
        loop.run_steps()
    finally:
        hooks.remove()
        _set_training(hn, False)
        hn.step = loop.step
        # ours: the final file always gets its .optim, so any run can be continued
        save_with_optimizer(hn, path, optimizer)
        run.last_saved = path
        forget_loaded(name)
        hn_files.list_hypernetworks()
    verb = "interrupted" if loop.interrupted else "finished"
    run.message = f"Training {verb} at {loop.step} steps.\nHypernetwork saved to {path}"
    return run.message, path


def _preview(model, run, args, name, step, last_prompt, log_dir) -> None:
    if args.preview_from_txt2img:
        options = dict(prompt=args.preview_prompt, negative=args.preview_negative_prompt, steps=args.preview_steps,
                       sampler=_sampler_name(args.preview_sampler_name), cfg=args.preview_cfg_scale,
                       seed=args.preview_seed, width=args.preview_width, height=args.preview_height)
    else:
        options = dict(prompt=last_prompt, negative="", steps=20, sampler="Euler a", cfg=7.0, seed=-1,
                       width=args.training_width, height=args.training_height)
    out = os.path.join(log_dir, "images", f"{name}-{step}.png")
    # the training hooks stay on the UNet, so the preview shows the hypernetwork being trained;
    # other extra networks are off (A1111)
    with torch.no_grad():
        preview_image(model, run, out_path=out, **options)
