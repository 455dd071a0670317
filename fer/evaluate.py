"""Zero-shot evaluation: a trained classifier on the CK+ apex faces it never saw.

    python -m fer.evaluate ckplus CKPT [CKPT ...] [--path ../shared/data/ckplus] [--json out.json]

Every labelled CK+ sequence (Lucey et al. 2010: 327 of them) gives its last frame, the
apex of the expression; faces are found with the Haar detector and cropped as for
training (cached in ``outputs/cache``). Classes are matched by name (CK+'s "anger" is
the model's "angry"); faces of a class the model does not have (contempt, for a FER-2013
model) are counted apart, and the accuracy is over the faces whose class it has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer.checkpoint import SHIPPED_CHECKPOINT, load_classifier
from fer.data.ckplus import load_faces, read_ckplus
from fer.data.labels import CKPLUS_CODES, common_name
from fer.face.crops import preprocess
from fer.face.detection import make_detector

DEFAULT_CKPLUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ckplus"


def ckplus_apex(path: str | Path, cache_dir: str | Path | None = "outputs/cache") -> tuple[torch.Tensor, list[str]]:
    """``uint8 (N, 1, 96, 96)`` face crops of the last frame of every labelled CK+ sequence, and their class names.

    Raises:
        FileNotFoundError: no CK+ original layout at ``path``.
    """
    sequences = [s for s in read_ckplus(path) if s.code is not None]
    frames = [s.frames[-1] for s in sequences]
    crops, _ = load_faces(frames, 96, make_detector("haar"), cache_dir=cache_dir)
    return crops, [common_name(CKPLUS_CODES[s.code]) for s in sequences]


@torch.inference_mode()
def zero_shot(ckpt: str | Path, crops: torch.Tensor, names: list[str]) -> dict[str, Any]:
    """Accuracy and confusion matrix of a classifier checkpoint on labelled face crops.

    Returns:
        ``accuracy`` over the faces whose class the model has, ``faces`` (that many),
        ``unknown_class`` (faces of other classes, by class), ``classes`` (the rows: true
        classes the model has), ``predicted`` (the columns: the model's classes),
        ``confusion`` (counts), ``per_class_recall``.
    """
    model, settings = load_classifier(ckpt)
    known = [n for n in model.class_names if n in set(names)]
    keep = [k for k, n in enumerate(names) if n in known]
    x = crops[keep]
    if settings["channels"] == 1 and x.shape[1] == 3:
        x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
    x = preprocess(x, settings["image_size"], settings["mean"], settings["std"])
    predicted = torch.cat([model.predict_proba(b) for b in x.split(256)]).argmax(1).numpy()
    truth = np.array([model.class_names.index(names[k]) for k in keep])
    rows = [model.class_names.index(n) for n in known]
    confusion = np.zeros((len(rows), len(model.class_names)), dtype=int)
    for t, p in zip(truth, predicted):
        confusion[rows.index(t), p] += 1
    unknown: dict[str, int] = {}
    for n in names:
        if n not in known:
            unknown[n] = unknown.get(n, 0) + 1
    return {
        "checkpoint": str(ckpt),
        "accuracy": float((truth == predicted).mean()),
        "faces": len(keep),
        "unknown_class": unknown,
        "classes": known,
        "predicted": list(model.class_names),
        "confusion": confusion.tolist(),
        "per_class_recall": {n: float(confusion[i, rows[i]] / max(confusion[i].sum(), 1)) for i, n in enumerate(known)},
    }


def markdown(result: dict[str, Any]) -> str:
    """The confusion matrix as a Markdown table (rows: CK+ classes; columns: predictions)."""
    head = "| CK+ \\ predicted | " + " | ".join(result["predicted"]) + " | recall |"
    lines = [head, "|" + "---|" * (len(result["predicted"]) + 2)]
    for name, row in zip(result["classes"], result["confusion"]):
        recall = result["per_class_recall"][name]
        lines.append(f"| {name} | " + " | ".join(map(str, row)) + f" | {recall:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["ckplus"])
    parser.add_argument("checkpoints", nargs="*", default=[str(SHIPPED_CHECKPOINT)])
    parser.add_argument("--path", default=str(DEFAULT_CKPLUS), help="CK+ original layout")
    parser.add_argument("--json", help="write the results here as JSON too")
    args = parser.parse_args()
    crops, names = ckplus_apex(args.path)
    results = []
    for ckpt in args.checkpoints:
        result = zero_shot(ckpt, crops, names)
        results.append(result)
        skipped = ", ".join(f"{n} {c}" for n, c in result["unknown_class"].items()) or "none"
        print(f"\n{ckpt}: {result['accuracy']:.1%} of {result['faces']} CK+ apex faces (classes it lacks: {skipped})")
        print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
