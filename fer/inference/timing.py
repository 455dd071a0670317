"""Wall-clock time of the realtime loop: per stage (decode, detect, classify, draw, write) and frames per second."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class StageTimes:
    """Wall-clock seconds spent per stage (decode, detect, classify, draw, ...)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stage: str, start: float, calls: int = 1) -> float:
        """Count the time since ``start`` (``time.perf_counter()``) for ``stage``, done ``calls`` times
        (frames of a batch); returns now."""
        now = time.perf_counter()
        self.seconds[stage] += now - start
        self.calls[stage] += calls
        return now

    def summary(self) -> str:
        return ", ".join(f"{s} {1000 * t / max(self.calls[s], 1):.1f} ms" for s, t in self.seconds.items())


class Clock:
    """The loop's running FPS (an EMA over frames) and its elapsed time, pauses left out."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.fps: float | None = None

    def frame_done(self, now: float) -> None:
        """Count a frame that ended at ``now`` (``time.perf_counter()``) in the FPS."""
        rate = 1 / max(now - self.last, 1e-6)
        self.fps = rate if self.fps is None else 0.9 * self.fps + 0.1 * rate
        self.last = now

    def pause(self, seconds: float) -> None:
        """Leave a pause of ``seconds`` out of both the FPS and the elapsed time."""
        self.start += seconds
        self.last += seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
