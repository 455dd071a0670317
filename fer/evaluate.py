"""Zero-shot evaluation: a trained classifier on faces it never saw, through the recognizer or on crops.

    python -m fer.evaluate recognizer ckplus ckplus_neutral ckplus_first_last baum2 fer2013 [folder:PATH] \
        [--models fer2013 ...] [--adapt none mean neutral adabn] [--json F]
    python -m fer.evaluate ckplus CKPT [CKPT ...] [--path ../shared/data/ckplus] [--json out.json]
    python -m fer.evaluate baum2 CKPT [CKPT ...] [--path ../shared/data/baum2/Extracted]

``recognizer``: every image goes through :class:`~fer.inference.recognizer.EmotionRecognizer`
with its defaults, as a user meets it (detector, crop, test-time views), on the sets of
:data:`RECOGNIZER_SETS` or an image-folder tree; faces not found are counted, and each
per-person adaptation of :mod:`fer.adaptation` is scored on the same faces
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
import ast
import dataclasses
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import track

from fer.adaptation import divide
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
from fer.inference.settings import RecognizerSettings
from fer.shipped import DEFAULT_MODEL, SHIPPED_MODELS, shipped_model

log = logging.getLogger(__name__)
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
    "ckplus_first_last": "CK+ first (neutral) and last (apex) frame of every labelled sequence",
    "baum2": "BAUM-2 clips, each frame upscaled 4x and padded; a clip is the mean of its frames",
    "fer2013": "FER-2013 PrivateTest faces, upscaled 4x to 192 px and padded with 96 px of grey",
}
#: Per-person adaptations :func:`through_recognizer` measures (see :mod:`fer.adaptation`).
ADAPTATIONS = ("none", "mean", "neutral", "adabn")


@dataclass(frozen=True)
class Item:
    """One labelled image of a set.

    Attributes:
        read: returns the BGR ``uint8`` image. name: its class.
        unit: what is scored: items of one unit (a clip's frames) count as one prediction, the
            mean of their probabilities. person: who shows it (a subject; ``""``: unknown).
        session: the sequence or clip it comes from; reference: a frame of ``person`` at rest
            (CK+'s first frames), the ``neutral`` adaptation's baseline for the person's other sessions.
        scored: whether it is scored (a reference frame may only serve as a baseline).
    """

    read: Callable[[], np.ndarray]
    name: str
    unit: str
    person: str = ""
    session: str = ""
    reference: bool = False
    scored: bool = True


def recognizer_items(name: str, data: Path) -> list[Item]:
    """A set's labelled images (:class:`Item`).

    ``name`` is one of :data:`RECOGNIZER_SETS` or ``folder:PATH`` (an image-folder tree
    ``PATH/<class>/*.{jpg,png}``, the class named by its folder).

    Raises:
        FileNotFoundError: the set is not under ``data`` (or no image in the folder). ValueError: an unknown set.
    """
    if name.startswith("ckplus") and name in RECOGNIZER_SETS:
        sequences = [s for s in read_ckplus(data / "ckplus") if s.code is not None]
        items = []
        for s in sequences:
            session = f"{s.subject}/{s.sequence}"
            first = Item(partial(_read, s.frames[0]), "neutral", f"{session}/first", s.subject, session, True)
            last = Item(partial(_read, s.frames[-1]), common_name(CKPLUS_CODES[s.code]), session, s.subject, session)
            unscored = dataclasses.replace(first, scored=False)  # a baseline of the apex frames only
            items += {"ckplus": [unscored, last], "ckplus_neutral": [first]}.get(name, [first, last])
        return items
    if name == "baum2":
        return [
            Item(partial(_padded_file, f), BAUM2_CLASS_NAMES[c.code], f"{c.subject}/{c.clip}", c.subject, c.clip)
            for c in read_baum2(data / "baum2" / "Extracted")
            for f in c.frames
        ]
    if name == "fer2013":
        faces, labels = load_fer2013(data / "fer2013" / "fer2013.csv.gz").split("PrivateTest")
        return [
            Item(partial(_padded, face.numpy()), FER2013_CLASSES[k], str(i))
            for i, (face, k) in enumerate(zip(faces, labels.tolist()))
        ]
    if name.startswith("folder:"):
        root = Path(name.split(":", 1)[1])
        paths = sorted(p for p in root.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not paths:
            raise FileNotFoundError(f"{root}: no <class>/*.jpg or *.png images")
        return [Item(partial(_read, p), p.parent.name.lower(), str(p)) for p in paths]
    raise ValueError(f"unknown set {name!r}; use {', '.join(RECOGNIZER_SETS)} or folder:PATH")


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return image


def _padded(face: np.ndarray) -> np.ndarray:
    """A small face (48x48 grey or BGR) as a BGR picture: upscaled 4x (bicubic), 96 px of grey around it."""
    big = cv2.resize(face, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, 96, 96, 96, 96, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR) if big.ndim == 2 else big


def _padded_file(path: Path) -> np.ndarray:
    return _padded(_read(path))


def recognised(
    recognizer: EmotionRecognizer, items: list[Item], keep_crops: bool = False
) -> tuple[np.ndarray, list[torch.Tensor | None]]:
    """Each item's probabilities ``float32 (N, C)`` (NaN where no face was found) through the recognizer
    as a user runs it: the face of the highest detector score of each image, standing alone; with
    ``keep_crops`` also each face's crop ``uint8 (C, S, S)`` (``None`` where none was found)."""
    probabilities = np.full((len(items), len(recognizer.class_names)), np.nan, np.float32)
    crops: list[torch.Tensor | None] = [None] * len(items)
    for i, item in enumerate(track(items, description="recognising", transient=True, console=Console(stderr=True))):
        image = item.read()
        faces = recognizer.predict(image, track=False)
        if faces:
            probabilities[i] = [faces[0].probabilities[c] for c in recognizer.class_names]
            if keep_crops:
                crops[i] = recognizer.crops(image, [np.array(faces[0].box, np.float32)])[0]
    return probabilities, crops


def adapted(probabilities: np.ndarray, items: list[Item], how: str, strength: float = 1.0) -> np.ndarray:
    """Probabilities ``(N, C)`` (NaN rows: no face) adapted per person (see :mod:`fer.adaptation`;
    ``strength``: the baseline's power).

    ``mean``: divided by the mean of the person's found faces in the set. ``neutral``: divided
    by the mean of the person's reference faces from other sessions (a face whose person has
    none stays as it was). Items without a person stay as they were.
    """
    if how == "none":
        return probabilities
    found = ~np.isnan(probabilities[:, 0])
    people: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if found[i] and item.person:
            people.setdefault(item.person, []).append(i)
    out = probabilities.copy()
    for faces in people.values():
        for i in faces:
            base = faces if how == "mean" else [
                j for j in faces if items[j].reference and items[j].session != items[i].session
            ]  # fmt: skip
            if base:
                out[i] = divide(probabilities[i], probabilities[base].mean(0), strength)
    return out


def scores(probabilities: np.ndarray, items: list[Item], classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class recall of the units of the scored ``items`` (a unit: the mean of
    its found items' probabilities; a unit without a face is a miss), and how many units had no face."""
    units: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item.scored:
            units.setdefault(item.unit, []).append(i)
    truth, predicted = [], []
    for members in units.values():
        p = probabilities[members]
        p = p[~np.isnan(p[:, 0])]
        truth.append(classes.index(items[members[0]].name))
        predicted.append(int(p.mean(0).argmax()) if len(p) else -1)
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
    }


def through_recognizer(
    ckpt: str | Path,
    items: list[Item],
    adaptations: tuple[str, ...] = ("none",),
    strength: float = 1.0,
    **settings: Any,
) -> dict[str, dict[str, Any]]:
    """Scores of the recognizer as a user runs it (its defaults: detector, crop, views, backend) on
    labelled images, by per-person adaptation (:data:`ADAPTATIONS`; ``mean`` and ``neutral`` divide by
    the baseline to the power ``strength``). ``settings`` replace the recognizer's defaults by name
    (:class:`~fer.inference.settings.RecognizerSettings`: ``margin=0.2``, ``detector="haar"``).

    Each image's face of the highest detector score is its prediction; an image without a
    face counts as wrong. Images of classes the model lacks are counted apart. ``adabn``
    re-estimates the network's batch-norm statistics over the set's face crops
    (:func:`fer.adaptation.adapt_batchnorm`; PyTorch float32, as no graph can) and classifies them again.

    Returns:
        By adaptation: ``images`` (units of the model's classes), ``not_found``, ``accuracy``
        (over those), ``accuracy_found`` (over the units with a face), ``macro_f1`` and
        ``per_class_recall`` (a face not found is a miss), ``unknown_class``.

    Raises:
        ValueError: an adaptation not in :data:`ADAPTATIONS`, or a setting out of range.
        TypeError: an unknown setting.
    """
    if unknown_how := set(adaptations) - set(ADAPTATIONS):
        raise ValueError(f"unknown adaptation {sorted(unknown_how)}; use {', '.join(ADAPTATIONS)}")
    recognizer = EmotionRecognizer(ckpt, **{"device": "cpu", **settings})
    classes = recognizer.class_names
    unknown = Counter(item.name for item in items if item.scored and item.name not in classes)
    items = [item for item in items if item.name in classes]
    if adaptations == ("none",):  # reference-only faces serve the adaptations alone
        items = [item for item in items if item.scored]
    probabilities, crops = recognised(recognizer, items, keep_crops="adabn" in adaptations)
    results = {}
    for how in adaptations:
        p = (
            _adabn(ckpt, probabilities, crops, settings)
            if how == "adabn"
            else adapted(probabilities, items, how, strength)
        )
        results[how] = scores(p, items, classes) | {"unknown_class": dict(unknown)}
    return results


def _adabn(
    ckpt: str | Path, probabilities: np.ndarray, crops: list[torch.Tensor | None], settings: dict[str, Any]
) -> np.ndarray:
    """The found faces' probabilities after AdaBN over all of them (PyTorch float32)."""
    recognizer = EmotionRecognizer(ckpt, **{"device": "cpu", **settings, "backend": "torch"})
    found = [i for i, c in enumerate(crops) if c is not None]
    out = np.full_like(probabilities, np.nan)
    if not found:
        return out
    faces = torch.stack([crops[i] for i in found])
    recognizer.adapt_batchnorm(faces)
    out[found] = np.concatenate([recognizer.probabilities(b) for b in faces.split(256)])
    return out


def recognizer_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m fer.evaluate recognizer", description=through_recognizer.__doc__)
    parser.add_argument("sets", nargs="+", help=f"{', '.join(RECOGNIZER_SETS)} or folder:PATH")
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], help="shipped names or checkpoints")
    parser.add_argument("--adapt", nargs="+", default=["none"], choices=ADAPTATIONS, help="per-person adaptations")
    parser.add_argument("--strength", type=float, default=1.0, help="power of the baseline (mean, neutral)")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="recognizer settings, e.g. margin=0.2 detector=haar"
    )
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the folder holding ckplus/, baum2/, fer2013/")
    parser.add_argument("--json", type=Path, help="write the results here as JSON too")
    args = parser.parse_args(argv)
    try:
        settings = dict(_setting(kv) for kv in args.set)
        RecognizerSettings(**settings)
    except (TypeError, ValueError) as error:
        parser.error(f"--set: {error}")
    results = []
    print(
        "| set | model | adaptation | images | faces not found | accuracy | accuracy of found faces "
        "| macro-F1 | recall by class |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        try:
            items = recognizer_items(name, args.data)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        for model in args.models:
            ckpt = shipped_model(model) if model in SHIPPED_MODELS else model
            for how, r in through_recognizer(ckpt, items, tuple(args.adapt), args.strength, **settings).items():
                results.append(r | {"set": name, "model": model, "adaptation": how, "settings": settings})
                recall = ", ".join(f"{c} {v:.0%}" for c, v in r["per_class_recall"].items())
                print(f"| {name} | {model} | {how} | {r['images']} | {r['not_found']} | {r['accuracy']:.1%} "
                      f"| {r['accuracy_found']:.1%} | {r['macro_f1']:.3f} | {recall} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as a recognizer setting: the value a Python literal where it is one, else a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r} is not KEY=VALUE")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


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
