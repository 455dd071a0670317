"""Learning-rate schedules of the training runs beyond ``torch.optim.lr_scheduler``."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds of a Lightning ``max_time`` (``"DD:HH:MM:SS"``) or of a plain number; ``None`` stays ``None``.

    Raises:
        ValueError: a string that is not four ``:``-separated numbers, or a duration <= 0.
    """
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(":")
        try:
            days, hours, minutes, seconds = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"max_time must be 'DD:HH:MM:SS' or seconds, not {value!r}") from None
        value = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if value <= 0:
        raise ValueError(f"max_time must be positive, not {value!r}")
    return float(value)


class TimedCosineLR(LRScheduler):
    """Cosine annealing to ``eta_min`` over the run's steps or its time budget, whichever ends first.

    Stepped every optimizer step. The schedule's progress is the larger of ``steps / total_steps``
    and ``training seconds / max_time``, so a run that Lightning stops at ``trainer.max_time`` on a
    slower machine still ends annealed (with fewer epochs) instead of cut off mid-schedule; on a
    machine fast enough for all the steps it is the plain per-step cosine. The seconds spent so far
    are part of the state dict, so a run resumed with ``ckpt_path=last`` goes on where it stopped.

    Args:
        optimizer: the optimizer whose groups' ``lr`` start at their initial values.
        total_steps: optimizer steps of the whole run (the classifier passes the trainer's estimate).
        max_time: the time budget, seconds or Lightning's ``"DD:HH:MM:SS"``; ``None``: steps only.
        eta_min: the learning rate at the end.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None = None,
        max_time: str | float | None = None,
        eta_min: float = 0.0,
    ) -> None:
        if total_steps is None or total_steps < 1:
            raise ValueError(f"total_steps must be a number of steps >= 1, not {total_steps!r}")
        self.total_steps, self.max_seconds, self.eta_min = total_steps, parse_duration(max_time), eta_min
        self.seconds, self._clock = 0.0, time.monotonic()
        super().__init__(optimizer)

    def progress(self) -> float:
        """How far through the schedule, in [0, 1]."""
        done = self.last_epoch / self.total_steps
        if self.max_seconds:
            done = max(done, self.seconds / self.max_seconds)
        return min(done, 1.0)

    def step(self, epoch: Any = None) -> None:
        now = time.monotonic()
        if self.last_epoch >= 0:  # the constructor's own first step is not training time
            self.seconds += now - self._clock
        self._clock = now
        super().step()

    def get_lr(self) -> list[float]:
        scale = 0.5 * (1 + math.cos(math.pi * self.progress()))
        return [self.eta_min + (base - self.eta_min) * scale for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._clock = time.monotonic()  # the gap between the sittings is not training time
