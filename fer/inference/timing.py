"""Wall-clock time per stage of the realtime loop (decode, detect, classify, draw, write)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class StageTimes:
    """Wall-clock seconds spent per stage (decode, detect, classify, draw, ...)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - start
        self.calls[stage] += 1
        return now

    def summary(self) -> str:
        return ", ".join(f"{s} {1000 * t / max(self.calls[s], 1):.1f} ms" for s, t in self.seconds.items())
