"""What a running (or the last) training job reports: step and loss in shared.state for
/sdapi/v1/progress, plus the loss history and preview images the Train tab plots and shows."""
from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, field


@dataclass
class TrainingRun:
    kind: str = ""                 # "train-embedding", "train-lora", ...
    name: str = ""
    max_steps: int = 0
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    previews: list = field(default_factory=list)   # PIL images, newest last
    last_saved: str = ""
    last_image: str = ""
    message: str = ""
    started: float = field(default_factory=time.time)


_lock = threading.Lock()
_current = TrainingRun()


def current() -> TrainingRun:
    return _current


def start(state, kind: str, name: str, max_steps: int, start_step: int) -> TrainingRun:
    global _current
    with _lock:
        _current = TrainingRun(kind=kind, name=name, max_steps=max_steps, step=start_step)
    state.job = kind
    state.job_count = max_steps
    state.job_no = start_step
    state.textinfo = "Preparing dataset..."
    return _current


def report_step(state, run: TrainingRun, step: int, loss: float, prompt: str = "") -> None:
    run.step = step
    run.losses.append((step, float(loss)))
    state.job_no = step
    state.sampling_step = state.sampling_steps = 0
    recent = [value for _, value in run.losses[-32:]]
    mean = sum(recent) / len(recent)
    state.textinfo = textinfo(run, mean, prompt)


def textinfo(run: TrainingRun, loss: float, prompt: str) -> str:
    """A1111's training status HTML: loss, step, last prompt, last saved file and image."""
    return (f"<p>Loss: {loss:.7f}<br/>Step: {run.step}<br/>Last prompt: {html.escape(prompt)}<br/>"
            f"Last saved {run.kind.removeprefix('train-')}: {html.escape(run.last_saved or 'none')}<br/>"
            f"Last saved image: {html.escape(run.last_image or 'none')}<br/></p>")


def add_preview(state, run: TrainingRun, image, path: str) -> None:
    run.previews.append(image)
    del run.previews[:-16]
    run.last_image = path
    state.set_current_image(image)
