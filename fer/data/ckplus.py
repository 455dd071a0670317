"""CK+ (Lucey et al. 2010, the Extended Cohn-Kanade data set): original layout and CK+48 export.

Original layout::

    cohn-kanade-images/S###/###/S###_###_########.png   frames of one posed sequence,
                                                         neutral (first) to apex (last)
    Emotion/S###/###/S###_###_########_emotion.txt      one code for 327 of 593 sequences

Codes: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
Labels are carried by *name*, in FER-2013's vocabulary (anger -> angry, sadness -> sad),
so data sets combine through names, never codes.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.progress import track

from fer.data.datamodule import InMemoryDataModule
from fer.data.transforms import crop_faces

log = logging.getLogger(__name__)

#: CK+ emotion codes 0-7 as CK+ names them.
CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
#: CK+ names -> the shared vocabulary (FER-2013's spelling, plus contempt).
TO_COMMON_NAME = {"anger": "angry", "sadness": "sad"}
_FRAME = re.compile(r"(S\d+)_(\d+)_(\d+)\.png$")


def common_name(ckplus_name: str) -> str:
    """``"anger"`` -> ``"angry"``, ``"sadness"`` -> ``"sad"``; other names unchanged."""
    return TO_COMMON_NAME.get(ckplus_name, ckplus_name)


@dataclass
class CKPlusSequence:
    """One posed sequence: its frames in order and its emotion code (``None``: unlabelled)."""

    subject: str
    sequence: str
    frames: list[Path]
    code: int | None

    @property
    def length(self) -> int:
        """Frames in the full sequence: the last frame's number (copies may hold only some frames)."""
        return frame_number(self.frames[-1])


def frame_number(path: Path) -> int:
    """``S005_001_00000011.png`` -> 11."""
    match = _FRAME.search(path.name)
    if match is None:
        raise ValueError(f"{path}: not a CK+ frame name (S###_###_########.png)")
    return int(match.group(3))


def read_ckplus(root: str | Path) -> list[CKPlusSequence]:
    """All sequences under ``root/cohn-kanade-images`` with their labels from ``root/Emotion``.

    Raises:
        FileNotFoundError: ``root/cohn-kanade-images`` is missing.
        ValueError: an emotion file that does not hold one code 0-7 (names the file).
    """
    root = Path(root)
    images = root / "cohn-kanade-images"
    if not images.is_dir():
        raise FileNotFoundError(f"CK+ not found: {images} is missing (expected the original CK+ layout)")
    sequences = []
    for folder in sorted(p for p in images.glob("S*/*") if p.is_dir()):
        frames = sorted(folder.glob("*.png"), key=frame_number)
        if not frames:
            continue
        code = None
        for label_file in (root / "Emotion" / folder.parent.name / folder.name).glob("*_emotion.txt"):
            text = label_file.read_text().strip()
            try:
                code = int(float(text))
            except ValueError:
                raise ValueError(f"{label_file}: expected one emotion code, found {text!r}") from None
            if not 0 <= code < len(CKPLUS_CODES) or code != float(text):
                raise ValueError(f"{label_file}: emotion code {text!r} is not one of 0-7")
        sequences.append(CKPlusSequence(folder.parent.name, folder.name, frames, code))
    return sequences


def label_frames(
    sequences: Sequence[CKPlusSequence], drop_fraction: float = 0.4, neutral: bool = False, contempt: bool = True
) -> list[tuple[Path, str, str]]:
    """``(frame, class name, subject)`` for the frames of the labelled sequences.

    The rule of the "Face-Detection-and-Emotion-Recognition" seed: the first
    ``drop_fraction`` of each sequence's frames (by frame number, so copies holding
    only some frames give the same answer) are too close to neutral and are dropped;
    the rest carry the sequence's label. With ``neutral`` the first frame is added as
    neutral; without ``contempt`` contempt sequences are left out.
    """
    labelled = []
    for seq in sequences:
        if seq.code is None or (not contempt and CKPLUS_CODES[seq.code] == "contempt"):
            continue
        first_kept = int(drop_fraction * seq.length) + 1
        name = common_name(CKPLUS_CODES[seq.code])
        labelled += [(f, name, seq.subject) for f in seq.frames if frame_number(f) >= first_kept]
        if neutral and frame_number(seq.frames[0]) == 1:
            labelled.append((seq.frames[0], "neutral", seq.subject))
    return labelled


def read_ckplus48(root: str | Path) -> list[tuple[Path, str, str]]:
    """``(image, class name, subject)`` of the CK+48 export ``<class>/S###_###_########.png``."""
    root = Path(root)
    items = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if class_dir.name not in CKPLUS_CODES:
            raise ValueError(f"{class_dir}: unknown CK+ class folder; expected one of {CKPLUS_CODES}")
        for image in sorted(class_dir.glob("*.png")):
            match = _FRAME.search(image.name)
            if match is None:
                raise ValueError(f"{image}: not a CK+ frame name (S###_###_########.png)")
            items.append((image, common_name(class_dir.name), match.group(1)))
    if not items:
        raise FileNotFoundError(f"{root}: no CK+48 images under <class>/")
    return items


def shuffled_subjects(subjects: Sequence[str], seed: int = 0) -> list[str]:
    """The distinct subjects in a seeded random order."""
    unique = sorted(set(subjects))
    random.Random(seed).shuffle(unique)
    return unique


def subject_folds(subjects: Sequence[str], num_folds: int, seed: int = 0) -> list[list[str]]:
    """Subjects dealt into ``num_folds`` disjoint folds after a seeded shuffle."""
    order = shuffled_subjects(subjects, seed)
    return [sorted(order[k::num_folds]) for k in range(num_folds)]


def load_faces(
    paths: Sequence[Path], size: int, detector: Any = None, margin: float = 0.1, cache_dir: str | Path | None = None
) -> tuple[torch.Tensor, int]:
    """Grey face crops ``uint8 (N, 1, size, size)`` of image files, and how many had no face found.

    Each image's largest detected face is cropped with
    :func:`~fer.data.transforms.crop_faces`; where ``detector`` is ``None`` or finds
    nothing (already-cropped faces), the whole image is the face. Results are cached in
    ``cache_dir`` under a key of the file list, detector, size and margin, so the
    detection runs once.
    """
    name = type(detector).__name__ if detector is not None else "none"
    key = hashlib.sha1("\n".join([*map(str, paths), name, str(size), str(margin)]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"faces_{name}_{size}_{key}.pt" if cache_dir else None
    if cache is not None and cache.exists():
        stored = torch.load(cache)
        return stored["images"], stored["no_face"]
    crops, no_face = torch.empty((len(paths), 1, size, size), dtype=torch.uint8), 0
    for k, path in enumerate(track(paths, description="cropping faces", transient=True)):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        found = detector(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)) if detector is not None else []
        if found:
            box = max((d.box for d in found), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        else:
            no_face += detector is not None
            box = np.array([0, 0, image.shape[1], image.shape[0]], dtype=np.float32)
        crops[k] = crop_faces(image, [box], size, margin if found else 0.0)[0]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": crops, "no_face": no_face}, cache)
    return crops, no_face


class CKPlusDataModule(InMemoryDataModule):
    """CK+ with subject-independent splits (no subject is ever in two splits).

    Args:
        path: the original layout's root (holding ``cohn-kanade-images/`` and
            ``Emotion/``) or a CK+48 export (class folders).
        drop_fraction: leading fraction of each sequence's frames dropped (original layout).
        neutral: add each labelled sequence's first frame as neutral.
        contempt: keep the contempt class.
        num_folds, fold: subject-independent k-fold: fold ``fold`` is the test split,
            fold ``fold + 1`` (cyclically) the validation split, the rest train.
        holdout: instead of folds, a fixed list of test subjects (validation: the next
            ``len(holdout)`` subjects of the shuffled order).
        seed: shuffle of the subjects before dealing folds.
        detector: ``"haar"``, ``"face_alignment"``, ... to find and crop faces, or
            ``None`` for images that are face crops already.
        crop_size: side of the cached crops in pixels (``image_size`` resizes them).
        cache_dir: where face crops are cached (``None``: no cache).
        **kwargs: see :class:`~fer.data.datamodule.InMemoryDataModule`.
    """

    def __init__(
        self,
        path: str,
        drop_fraction: float = 0.4,
        neutral: bool = False,
        contempt: bool = True,
        num_folds: int = 10,
        fold: int = 0,
        holdout: list[str] | None = None,
        seed: int = 0,
        detector: str | None = "haar",
        crop_size: int = 96,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in 0..{num_folds - 1}, not {fold}")
        self.path = Path(path)
        names = ["neutral"] * neutral + [common_name(c) for c in CKPLUS_CODES[1:] if contempt or c != "contempt"]
        self.class_names = tuple(names)
        self.subjects: dict[str, list[str]] = {}

    def items(self) -> list[tuple[Path, str, str]]:
        """``(image, class name, subject)`` of every labelled image."""
        if (self.path / "cohn-kanade-images").is_dir():
            h = self.hparams
            return label_frames(read_ckplus(self.path), h.drop_fraction, h.neutral, h.contempt)
        if not self.path.is_dir():
            raise FileNotFoundError(f"CK+ not found at {self.path}")
        return [item for item in read_ckplus48(self.path) if item[1] in self.class_names]

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        from fer.detection import make_detector

        h = self.hparams
        items = self.items()
        subjects = [s for _, _, s in items]
        if h.holdout:
            rest = [s for s in shuffled_subjects(subjects, h.seed) if s not in set(h.holdout)]
            split_subjects = {"test": list(h.holdout), "val": rest[: len(h.holdout)]}
        else:
            folds = subject_folds(subjects, h.num_folds, h.seed)
            split_subjects = {"test": folds[h.fold], "val": folds[(h.fold + 1) % h.num_folds]}
        taken = set(split_subjects["test"]) | set(split_subjects["val"])
        split_subjects["train"] = sorted(set(subjects) - taken)
        self.subjects = split_subjects

        detector = make_detector(h.detector) if h.detector else None
        images, no_face = load_faces([p for p, _, _ in items], h.crop_size, detector, cache_dir=h.cache_dir)
        if no_face:
            log.info("%s: no face found in %d of %d images; the whole image was used", self.path, no_face, len(items))
        labels = torch.tensor([self.class_names.index(name) for _, name, _ in items])
        splits = {}
        for split, members in split_subjects.items():
            mask = torch.tensor([s in set(members) for s in subjects], dtype=torch.bool)
            splits[split] = (images[mask], labels[mask])
        return splits
