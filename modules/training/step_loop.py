"""The optimisation loop textual inversion and hypernetwork training share (merge-train.md §4.6, §5):
schedule, accumulation, the model's own objective, clipping, the GradScaler, the loss CSV, and the
per-step hook the trainer uses for copies and previews. What is trained and how prompts become
conditioning is the trainer's business (`encode`, `params`).
"""
from __future__ import annotations

import csv
import os
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch

from modules import shared
from modules.state import Interrupted
from modules.training import objective, progress
from modules.training.learn_schedule import LearnRateScheduler


def sdxl_time_ids(width: int, height: int, batch: int) -> torch.Tensor:
    return torch.tensor([[height, width, 0, 0, height, width]] * batch, dtype=torch.float32)


def grad_scaler(model):
    """fp16 weights: scale the loss so small gradients do not flush to zero (off in float32)."""
    fp16 = model.device_config.device.type == "cuda" and model.device_config.dtype == torch.float16
    return torch.amp.GradScaler("cuda", enabled=fp16)


def clip_gradients(params, mode: str, value: float) -> None:
    if mode == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)


def write_csv(path: str, step: int, epoch_len: int, loss: float, rate: float) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf8") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(["step", "epoch", "epoch_step", "loss", "learn_rate"])
        epoch = (step - 1) // epoch_len
        writer.writerow([step, epoch, (step - 1) % epoch_len + 1, f"{loss:.7f}", rate])


def batch_loss(model, dataset, batch, cond, generator, parameterization: str, use_weight: bool) -> torch.Tensor:
    """Mean diffusion loss of one batch given its conditioning (a tensor, or SDXL's dict)."""
    device = model.device_config.device
    latents = torch.stack([dataset.latent_for(item, generator) for item in batch]).to(device)
    x0 = latents * model.vae_scaling_factor
    t, noise = objective.sample_noise(x0, generator)
    x_t, target = objective.noisy_latents_and_target(x0, noise, t, model.alphas_cumprod, parameterization)
    if isinstance(cond, dict):
        h, w = x0.shape[2] * 8, x0.shape[3] * 8
        pred = objective.unet_prediction(model, model.unet, x_t, t, cond["crossattn"], cond["vector"],
                                         sdxl_time_ids(w, h, len(batch)))
    else:
        pred = objective.unet_prediction(model, model.unet, x_t, t, cond)
    weight = None
    if use_weight and all(item.weight is not None for item in batch):
        weight = torch.stack([item.weight for item in batch]).to(device)
    return objective.per_sample_mse(pred, target, weight).mean()


@dataclass
class StepLoop:
    model: object
    run: progress.TrainingRun
    dataset: object
    params: list
    optimizer: torch.optim.Optimizer
    scheduler: LearnRateScheduler
    clip_scheduler: LearnRateScheduler | None
    clip_mode: str
    encode: Callable[[list[str]], object]       # prompts -> conditioning (with or without grad)
    after_step: Callable[[int, str], None]      # (step, last prompt): copies and previews
    max_steps: int
    batch_size: int
    accumulation: int
    use_weight: bool
    csv_path: str | None
    seed: int
    step: int = 0
    interrupted: bool = False

    @property
    def epoch_len(self) -> int:
        return max(1, len(self.dataset.items) // self.batch_size // self.accumulation)

    def run_steps(self) -> None:
        """Train until max steps or the schedule ends; Interrupt stops before the next step. self.step
        always holds the last completed step, so the caller's `finally` saves the right state."""
        state = shared.state
        generator = torch.Generator().manual_seed(self.seed)
        rng = random.Random(self.seed)
        parameterization = objective.parameterization_of(self.model)
        scaler = grad_scaler(self.model)
        batches: list = []
        last_prompt = ""
        state.time_start = time.time()
        try:
            while self.step < self.max_steps:
                if state.interrupted:
                    self.interrupted = True
                    return
                self.scheduler.apply(self.optimizer, self.step)
                if self.scheduler.finished:
                    return
                total = 0.0
                for _ in range(self.accumulation):
                    if not batches:
                        batches = self.dataset.batches(self.batch_size, rng)
                    batch = batches.pop()
                    prompts = [self.dataset.prompt_for(item) for item in batch]
                    last_prompt = prompts[0]
                    loss = batch_loss(self.model, self.dataset, batch, self.encode(prompts), generator,
                                      parameterization, self.use_weight) / self.accumulation
                    scaler.scale(loss).backward()
                    total += float(loss.detach())
                scaler.unscale_(self.optimizer)
                if self.clip_scheduler is not None:
                    self.clip_scheduler.step(self.step)
                    clip_gradients(self.params, self.clip_mode, self.clip_scheduler.learn_rate)
                scaler.step(self.optimizer)
                scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                progress.report_step(state, self.run, self.step, total, last_prompt)
                every_csv = shared.opts.training_write_csv_every
                if self.csv_path and every_csv and self.step % every_csv == 0:
                    os.makedirs(os.path.dirname(self.csv_path), exist_ok=True)
                    write_csv(self.csv_path, self.step, self.epoch_len, total, self.scheduler.learn_rate)
                self.after_step(self.step, last_prompt)
        except Interrupted:
            self.interrupted = True
