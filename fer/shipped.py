"""The models shipped in ``fer/weights``, described as data (``fer/weights/models.json``).

Each entry names its checkpoint file and model card and states what the file holds
(network, classes, input size, channels, mean/std, test-time views) and what it scored
(data set, split, accuracy, macro-F1, and the command that measured them).
``infer.py model_name=``, the web app and ``python -m fer.shipped`` (the README's table of models)
read it; ``tests/test_shipped.py`` checks every entry against its file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

WEIGHTS = resources.files("fer") / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """One entry of ``fer/weights/models.json``.

    Attributes:
        name: the short name (``infer.py model_name=...``).
        file, card: the checkpoint and its model card, in ``fer/weights``.
        network: the network's ``_target_``.
        data: the data set it was trained on (``FER-2013``, ``FER+``).
        classes: class names in output order.
        input: ``size`` (pixels), ``channels``, ``mean`` and ``std`` (of ``grey / 255``).
        views: the test-time views it uses (``tta_flip``, ``tta_shift``, ``tta_rotate``, ``ten_crop``).
        metrics: ``split``, ``accuracy`` and ``macro_f1`` (fractions), ``command``; the stored
            ``temperature`` (:mod:`fer.calibration`), the test split's expected calibration error
            with it (``ece``, 15 bins) and without (``ece_uncalibrated``), its ``nll``, and the
            ``calibration_command``.
        ms_per_face: milliseconds a face by backend (``torch``, ``onnxruntime``, and ``int8``: its
            int8 graph in onnxruntime, the default on a CPU), measured as :data:`TIMING` says.
        summary: one line for tables.
    """

    name: str
    file: str
    card: str
    network: str
    data: str
    classes: tuple[str, ...]
    input: dict[str, Any]
    views: dict[str, Any]
    metrics: dict[str, Any]
    ms_per_face: dict[str, float]
    summary: str

    @property
    def path(self) -> Path:
        """The checkpoint's path in the installed package."""
        return Path(str(WEIGHTS / self.file))


def _registry() -> tuple[str, str, dict[str, ShippedModel]]:
    data = json.loads((WEIGHTS / "models.json").read_text())
    models = {
        name: ShippedModel(name=name, **{**entry, "classes": tuple(entry["classes"])})
        for name, entry in data["models"].items()
    }
    return data["default"], data["timing"], models


#: The name of the model used when none is given, how ``ms_per_face`` was measured, and every shipped model by name.
DEFAULT_MODEL, TIMING, SHIPPED_MODELS = _registry()


def shipped_model(name: str | None = None) -> Path:
    """The checkpoint of a shipped model's short name (``None``: :data:`DEFAULT_MODEL`).

    Raises:
        ValueError: not a shipped model's name; the message lists them.
    """
    name = name or DEFAULT_MODEL
    if name not in SHIPPED_MODELS:
        raise ValueError(f"model_name={name!r} is not a shipped model; choose one of {sorted(SHIPPED_MODELS)}")
    return SHIPPED_MODELS[name].path


def markdown_table() -> str:
    """The shipped models as the README's Markdown table."""
    rows = [
        "| `model_name` | file | data | classes | accuracy | macro-F1 | ECE "
        "| ms a face (torch / onnxruntime fp32 / int8) | card |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in SHIPPED_MODELS.values():
        score = f"{100 * m.metrics['accuracy']:.2f} % ({m.metrics['split']})"
        ms = " / ".join(f"{m.ms_per_face[k]:.1f}" for k in ("torch", "onnxruntime", "int8"))
        card = f"[{m.summary}](fer/weights/{m.card})"
        rows.append(
            f"| `{m.name}` | `{m.file}` | {m.data} | {len(m.classes)} | {score} | {m.metrics['macro_f1']:.3f} "
            f"| {m.metrics['ece']:.3f} | {ms} | {card} |"
        )
    return "\n".join(rows) + f"\n\nms a face: {TIMING}."


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
