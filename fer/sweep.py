"""Hydra callback that sums up a multirun: one row per job, as a table and a CSV."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def collect_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job dir of a sweep: its overrides, test accuracy, macro-F1 and best val accuracy."""
    rows = []
    for job in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        rows.append(
            {
                "job": job.name,
                "overrides": " ".join(overrides or []),
                "val_acc_best": metrics.get("logged", {}).get("val/acc_best"),
                "test_acc": metrics.get("accuracy"),
                "test_macro_f1": metrics.get("macro_f1"),
            }
        )
    return rows


class MultirunSummary(Callback):
    """Writes ``summary.csv`` in the sweep dir and logs a table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_runs(sweep_dir)
        if not rows:
            return
        with (sweep_dir / "summary.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

        def cell(value: Any) -> str:
            return f"{value:.4f}" if isinstance(value, float) else str(value)

        widths = {k: max(len(k), *(len(cell(r[k])) for r in rows)) for k in rows[0]}
        lines = ["  ".join(k.ljust(w) for k, w in widths.items())]
        lines += ["  ".join(cell(r[k]).ljust(w) for k, w in widths.items()) for r in rows]
        log.info("multirun summary (%s):\n%s", sweep_dir / "summary.csv", "\n".join(lines))
