"""Zero-shot evaluation: a trained image classifier on CK+ faces or BAUM-2 clips it never saw.

    python -m fer.evaluate ckplus CKPT [CKPT ...] [--path ../shared/data/ckplus] [--json out.json]
    python -m fer.evaluate baum2 CKPT [CKPT ...] [--path ../shared/data/baum2/Extracted]

``ckplus``: every labelled CK+ sequence (Lucey et al. 2010: 327 of them) gives its last
frame, the apex of the expression; faces are found with the Haar detector and cropped as
for training (cached in ``outputs/cache``). ``baum2``: every labelled BAUM-2 clip (Erdem
et al. 2015) as all of its face frames (1-16 here); a clip's prediction is the class of the
mean of its frames' probabilities. Classes are matched by name (CK+'s "anger" is the
model's "angry"); faces or clips of a class the model does not have (contempt, for a
FER-2013 model) are counted apart, and the accuracy is over those whose class it has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer.checkpoint import load_predictor
from fer.data.baum2 import CLASS_NAMES as BAUM2_CLASS_NAMES
from fer.data.baum2 import load_clip, read_baum2
from fer.data.ckplus import load_faces, read_ckplus
from fer.data.labels import CKPLUS_CODES, common_name
from fer.face.crops import preprocess
from fer.face.detection import make_detector
from fer.shipped import shipped_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def ckplus_apex(path: str | Path, cache_dir: str | Path | None = "outputs/cache") -> tuple[torch.Tensor, list[str]]:
    """``uint8 (N, 1, 96, 96)`` face crops of the last frame of every labelled CK+ sequence, and their class names.

    Raises:
        FileNotFoundError: no CK+ original layout at ``path``.
    """
    sequences = [s for s in read_ckplus(path) if s.code is not None]
    frames = [s.frames[-1] for s in sequences]
    crops, _ = load_faces(frames, 96, make_detector("haar"), cache_dir=cache_dir)
    return crops, [common_name(CKPLUS_CODES[s.code]) for s in sequences]


def baum2_clips(path: str | Path) -> tuple[list[torch.Tensor], list[str]]:
    """Every labelled BAUM-2 clip as ``uint8 (T, 1, 48, 48)`` grey frames (all it has), and their class names.

    Raises:
        FileNotFoundError: no clip under ``path``. ValueError: a bad label or frame (names the file).
    """
    clips = read_baum2(path)
    return [load_clip(c.frames, len(c.frames)) for c in clips], [BAUM2_CLASS_NAMES[c.code] for c in clips]


@torch.inference_mode()
def zero_shot(ckpt: str | Path, crops: torch.Tensor | list[torch.Tensor], names: list[str]) -> dict[str, Any]:
    """Accuracy and confusion matrix of a classifier checkpoint on labelled faces or clips.

    Args:
        crops: ``uint8 (N, C, H, W)`` faces, or N clips of ``uint8 (T, C, H, W)`` frames
            (a clip is predicted as the class of its frames' mean probability).
        names: the N class names.

    Returns:
        ``accuracy`` over the faces (clips) whose class the model has, ``faces`` (that many),
        ``unknown_class`` (faces of other classes, by class), ``classes`` (the rows: true
        classes the model has), ``predicted`` (the columns: the model's classes),
        ``confusion`` (counts), ``per_class_recall``.
    """
    model, settings = load_predictor(ckpt)
    known = [n for n in model.class_names if n in set(names)]
    keep = [k for k, n in enumerate(names) if n in known]
    items = [crops[k] if crops[k].dim() == 4 else crops[k][None] for k in keep]
    x = torch.cat(items)
    if settings["channels"] == 1 and x.shape[1] == 3:
        x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
    x = preprocess(x, settings["image_size"], settings["mean"], settings["std"])
    probabilities = torch.cat([model.predict_proba(b) for b in x.split(256)])
    predicted = torch.stack([p.mean(0) for p in probabilities.split([len(i) for i in items])]).argmax(1).numpy()
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
    """The confusion matrix as a Markdown table (rows: true classes; columns: predictions)."""
    head = "| true \\ predicted | " + " | ".join(result["predicted"]) + " | recall |"
    lines = [head, "|" + "---|" * (len(result["predicted"]) + 2)]
    for name, row in zip(result["classes"], result["confusion"]):
        recall = result["per_class_recall"][name]
        lines.append(f"| {name} | " + " | ".join(map(str, row)) + f" | {recall:.0%} |")
    return "\n".join(lines)


#: dataset -> (default path, loader, what its items are called)
DATASETS = {
    "ckplus": (SHARED_DATA / "ckplus", ckplus_apex, "CK+ apex faces"),
    "baum2": (SHARED_DATA / "baum2" / "Extracted", baum2_clips, "BAUM-2 clips"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("checkpoints", nargs="*", default=[str(shipped_model())])
    parser.add_argument("--path", help="CK+ original layout / BAUM-2 Extracted folder (default: ../shared/data/...)")
    parser.add_argument("--json", help="write the results here as JSON too")
    args = parser.parse_args()
    default_path, load, what = DATASETS[args.dataset]
    try:
        crops, names = load(args.path or default_path)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))  # one line naming the file, exit status 2
    results = []
    for ckpt in args.checkpoints:
        result = zero_shot(ckpt, crops, names)
        results.append(result)
        skipped = ", ".join(f"{n} {c}" for n, c in result["unknown_class"].items()) or "none"
        print(f"\n{ckpt}: {result['accuracy']:.1%} of {result['faces']} {what} (classes it lacks: {skipped})")
        print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
