"""A1111's learning-rate schedule text: `0.005:100, 1e-5:1000, 1e-5` (merge-train.md §4.5).

Each item is `rate:end_step` (the rate holds until that step, exclusive) or a bare `rate` / `rate:-1`
that holds until max_steps. Items ending at or before the starting step are skipped, so a resumed
run picks up where its schedule was. When the last item ends, training stops.
"""
from __future__ import annotations


class ScheduleError(ValueError):
    pass


def parse_schedule(text, max_steps: int, start_step: int = 0) -> list[tuple[float, int]]:
    """[(rate, end_step)] still to run from start_step; raises ScheduleError when nothing is valid."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)  # ours: a JSON number is accepted as a single rate
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError("Invalid learning rate schedule: it is empty")
    items: list[tuple[float, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        rate_text, colon, step_text = part.partition(":")
        try:
            rate = float(rate_text)
            end = int(step_text.strip()) if colon else -1
        except ValueError:
            raise ScheduleError(f"Invalid learning rate schedule {text!r}: {part!r} is not rate or rate:step "
                                "with an integer step") from None
        if end == -1 or end > max_steps:
            end = max_steps
        if end > start_step:
            items.append((rate, end))
        if end == max_steps:
            break  # a bare rate, or one reaching max steps, ends the schedule
    if not items:
        raise ScheduleError(f"Invalid learning rate schedule {text!r}: no item runs after step {start_step}")
    return items


class LearnRateScheduler:
    """Walks the items as steps advance; `finished` once the last item's end is reached."""

    def __init__(self, text, max_steps: int, start_step: int = 0, verbose: bool = False):
        self.items = parse_schedule(text, max_steps, start_step)
        self.index = 0
        self.learn_rate, self.end_step = self.items[0]
        self.finished = False

    def step(self, step: int) -> bool:
        """Advance to the item covering `step`; returns True when the rate changed."""
        changed = False
        while step >= self.end_step:
            self.index += 1
            if self.index >= len(self.items):
                self.finished = True
                return changed
            self.learn_rate, self.end_step = self.items[self.index]
            changed = True
        return changed

    def apply(self, optimizer, step: int) -> None:
        self.step(step)
        for group in optimizer.param_groups:
            group["lr"] = self.learn_rate
