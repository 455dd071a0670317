"""Zero-shot evaluation: a trained classifier on faces it never saw, through the recognizer or on crops.

    python -m fer.evaluate recognizer ckplus ckplus_neutral fer2013 [folder:PATH] [--models fer2013 ...] [--json F]
    python -m fer.evaluate ckplus CKPT [CKPT ...] [--path ../shared/data/ckplus] [--json out.json]
    python -m fer.evaluate baum2 CKPT [CKPT ...] [--path ../shared/data/baum2/Extracted]

``recognizer``: every image goes through :class:`~fer.inference.recognizer.EmotionRecognizer`
with its defaults, as a user meets it (detector, crop, test-time views), on the sets of
:data:`RECOGNIZER_SETS` or an image-folder tree; faces not found are counted
(:func:`through_recognizer`). The rest classify crops directly:

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
import sys
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import track

from fer.checkpoint import load_predictor
from fer.data.baum2 import CLASS_NAMES as BAUM2_CLASS_NAMES
from fer.data.baum2 import load_clip, read_baum2
from fer.data.ckplus import load_faces, read_ckplus
from fer.data.fer2013_files import CLASS_NAMES as FER2013_CLASSES
from fer.data.fer2013_files import load_fer2013
from fer.data.labels import CKPLUS_CODES, common_name
from fer.face.crops import preprocess
from fer.face.detection import make_detector
from fer.inference.recognizer import EmotionRecognizer
from fer.shipped import DEFAULT_MODEL, SHIPPED_MODELS, shipped_model

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


#: The sets :func:`through_recognizer` scores, and what their items are.
RECOGNIZER_SETS = {
    "ckplus": "CK+ apex frames (the last frame of every labelled sequence)",
    "ckplus_neutral": "CK+ first frames of the labelled sequences, as neutral",
    "fer2013": "FER-2013 PrivateTest faces, upscaled 4x to 192 px and padded with 96 px of grey",
}


def recognizer_items(name: str, data: Path) -> tuple[list[Callable[[], np.ndarray]], list[str]]:
    """A set's images, each as a function reading its BGR ``uint8`` array, and their class names.

    ``name`` is one of :data:`RECOGNIZER_SETS` or ``folder:PATH`` (an image-folder tree
    ``PATH/<class>/*.{jpg,png}``, the class named by its folder).

    Raises:
        FileNotFoundError: the set is not under ``data`` (or no image in the folder). ValueError: an unknown set.
    """
    if name in ("ckplus", "ckplus_neutral"):
        sequences = [s for s in read_ckplus(data / "ckplus") if s.code is not None]
        if name == "ckplus":
            return [partial(_read, s.frames[-1]) for s in sequences], [
                common_name(CKPLUS_CODES[s.code]) for s in sequences
            ]
        return [partial(_read, s.frames[0]) for s in sequences], ["neutral"] * len(sequences)
    if name == "fer2013":
        faces, labels = load_fer2013(data / "fer2013" / "fer2013.csv.gz").split("PrivateTest")
        return [partial(_padded, face.numpy()) for face in faces], [FER2013_CLASSES[k] for k in labels.tolist()]
    if name.startswith("folder:"):
        root = Path(name.split(":", 1)[1])
        paths = sorted(p for p in root.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not paths:
            raise FileNotFoundError(f"{root}: no <class>/*.jpg or *.png images")
        return [partial(_read, p) for p in paths], [p.parent.name.lower() for p in paths]
    raise ValueError(f"unknown set {name!r}; use {', '.join(RECOGNIZER_SETS)} or folder:PATH")


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return image


def _padded(face: np.ndarray) -> np.ndarray:
    """A 48x48 grey FER-2013 face as a 384x384 BGR picture: upscaled 4x (bicubic), 96 px of grey around it."""
    big = cv2.resize(face, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(cv2.copyMakeBorder(big, 96, 96, 96, 96, cv2.BORDER_CONSTANT, value=128), cv2.COLOR_GRAY2BGR)


def through_recognizer(recognizer: EmotionRecognizer, items: list[Callable[[], np.ndarray]], names: list[str]) -> dict:
    """Scores of the recognizer as a user runs it (its detector, crop and views) on labelled images.

    Each image's face of the highest detector score is its prediction; an image without a
    face counts as wrong. Images of classes the model lacks are counted apart.

    Returns:
        ``images`` (of the model's classes), ``not_found``, ``accuracy`` (over those images),
        ``accuracy_found`` (over the images with a face), ``macro_f1`` and ``per_class_recall``
        (over all of them; a face not found is a miss), ``unknown_class``.
    """
    classes = recognizer.class_names
    truth, predicted, unknown = [], [], Counter()
    pairs = list(zip(items, names))
    for read, name in track(pairs, description="recognising", transient=True, console=Console(stderr=True)):
        if name not in classes:
            unknown[name] += 1
            continue
        faces = recognizer.predict(read(), track=False)
        truth.append(classes.index(name))
        predicted.append(classes.index(max(faces[0].probabilities, key=faces[0].probabilities.get)) if faces else -1)
    t, p = np.array(truth), np.array(predicted)
    present = sorted(set(truth))
    recall = {classes[c]: float((p[t == c] == c).mean()) for c in present}
    f1 = []
    for c in present:
        precision = float((t[p == c] == c).mean()) if (p == c).any() else 0.0
        f1.append(2 * precision * recall[classes[c]] / max(precision + recall[classes[c]], 1e-12))
    found = p >= 0
    return {
        "images": len(t),
        "not_found": int((~found).sum()),
        "accuracy": float((t == p).mean()),
        "accuracy_found": float((t[found] == p[found]).mean()) if found.any() else 0.0,
        "macro_f1": float(np.mean(f1)),
        "per_class_recall": recall,
        "unknown_class": dict(unknown),
    }


def recognizer_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m fer.evaluate recognizer", description=through_recognizer.__doc__)
    parser.add_argument("sets", nargs="+", help=f"{', '.join(RECOGNIZER_SETS)} or folder:PATH")
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], help="shipped names or checkpoints")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the folder holding ckplus/ and fer2013/")
    parser.add_argument("--json", type=Path, help="write the results here as JSON too")
    args = parser.parse_args(argv)
    results = []
    print(
        "| set | model | images | faces not found | accuracy | accuracy of found faces | macro-F1 | recall by class |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        try:
            items, names = recognizer_items(name, args.data)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        for model in args.models:
            ckpt = shipped_model(model) if model in SHIPPED_MODELS else model
            r = through_recognizer(EmotionRecognizer(ckpt, device="cpu"), items, names) | {"set": name, "model": model}
            results.append(r)
            recall = ", ".join(f"{c} {v:.0%}" for c, v in r["per_class_recall"].items())
            print(f"| {name} | {model} | {r['images']} | {r['not_found']} | {r['accuracy']:.1%} "
                  f"| {r['accuracy_found']:.1%} | {r['macro_f1']:.3f} | {recall} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def main() -> None:
    if sys.argv[1:2] == ["recognizer"]:
        recognizer_main(sys.argv[2:])
        return
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
