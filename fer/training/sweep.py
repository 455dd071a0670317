"""Hydra callback that sums up a multirun: one row per job, as a table and a CSV.

Jobs that differ only in their fold (``data.fold``, ``data.images.fold``) are the folds of one
cross-validation; they are also summed up as mean ± sample std per configuration (``folds.csv``).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

METRICS = ("val_acc_best", "test_acc", "test_macro_f1")
_FOLD = re.compile(r"(^|\s)(\S*\.)?fold=\S+")


def collect_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job dir of a sweep: its overrides, test accuracy, macro-F1 and best val accuracy."""
    rows = []
    jobs = (p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith("."))  # not .submitit
    for job in sorted(jobs, key=lambda p: (len(p.name), p.name)):
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


def fold_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std of each metric over the folds of every configuration (rows grouped by
    their overrides without ``...fold=``); empty when no job set a fold."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if _FOLD.search(row["overrides"]):
            groups.setdefault(_FOLD.sub("", row["overrides"]).strip(), []).append(row)
    summary = []
    for overrides, members in groups.items():
        out: dict[str, Any] = {"overrides": overrides, "folds": len(members)}
        for metric in METRICS:
            values = [r[metric] for r in members if r[metric] is not None]
            out[f"{metric}_mean"] = statistics.fmean(values) if values else None
            out[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(out)
    return summary


def _write(rows: list[dict[str, Any]], path: Path) -> str:
    """Write ``rows`` as CSV to ``path``; return them as an aligned text table."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    widths = {k: max(len(k), *(len(cell(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items())]
    lines += ["  ".join(cell(r[k]).ljust(w) for k, w in widths.items()) for r in rows]
    return "\n".join(lines)


def summarize(sweep_dir: str | Path) -> str:
    """Write ``summary.csv`` (and ``folds.csv`` for cross-validations) in ``sweep_dir``; return the tables."""
    sweep_dir = Path(sweep_dir)
    rows = collect_runs(sweep_dir)
    if not rows:
        return ""
    text = f"runs ({sweep_dir / 'summary.csv'}):\n" + _write(rows, sweep_dir / "summary.csv")
    folds = fold_summary(rows)
    if folds:
        text += f"\ncross-validation ({sweep_dir / 'folds.csv'}):\n" + _write(folds, sweep_dir / "folds.csv")
    return text


class MultirunSummary(Callback):
    """Writes ``summary.csv`` (and ``folds.csv``) in the sweep dir and logs the tables when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        text = summarize(config.hydra.sweep.dir)
        if text:
            log.info("multirun summary\n%s", text)


if __name__ == "__main__":  # python -m fer.training.sweep SWEEP_DIR: redo the summary of a finished sweep
    print(summarize(sys.argv[1]))
