"""CK+ (Lucey et al. 2010, the Extended Cohn-Kanade data set): original layout and CK+48 export.

Original layout::

    cohn-kanade-images/S###/###/S###_###_########.png   frames of one posed sequence,
                                                         neutral (first) to apex (last)
    Emotion/S###/###/S###_###_########_emotion.txt      one code for 327 of 593 sequences

Codes: see :data:`fer.data.labels.CKPLUS_CODES`. Labels are carried by *name*, in
FER-2013's vocabulary (anger -> angry, sadness -> sad), so data sets combine through
names, never codes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.progress import track

from fer.data.base import InMemoryDataModule, cache_key
from fer.data.labels import CKPLUS_CODES, common_name, read_emotion_code
from fer.data.splits import check_fold, masks, subject_splits
from fer.face.crops import crop_faces, largest_box
from fer.face.detection import make_detector

log = logging.getLogger(__name__)

_FRAME = re.compile(r"(S\d+)_(\d+)_(\d+)\.png$")


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
            code = read_emotion_code(label_file)
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


def load_faces(
    paths: Sequence[Path], size: int, detector: Any = None, margin: float = 0.1, cache_dir: str | Path | None = None
) -> tuple[torch.Tensor, int]:
    """Grey face crops ``uint8 (N, 1, size, size)`` of image files, and how many had no face found.

    Each image's largest detected face is cropped with
    :func:`~fer.face.crops.crop_faces`; where ``detector`` is ``None`` or finds
    nothing (already-cropped faces), the whole image is the face. Results are cached in
    ``cache_dir`` under a key of the file list, detector, size and margin, so the
    detection runs once.
    """
    name = type(detector).__name__ if detector is not None else "none"
    key = cache_key([str(p) for p in paths], name, size, margin)
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
            box = largest_box([d.box for d in found])
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
        **kwargs: see :class:`~fer.data.base.InMemoryDataModule`.
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
        if not holdout:
            check_fold(fold, num_folds)
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
        h = self.hparams
        items = self.items()
        subjects = [s for _, _, s in items]
        self.subjects = subject_splits(subjects, h.num_folds, h.fold, h.seed, h.holdout)
        detector = make_detector(h.detector) if h.detector else None
        images, no_face = load_faces([p for p, _, _ in items], h.crop_size, detector, cache_dir=h.cache_dir)
        if no_face:
            log.info("%s: no face found in %d of %d images; the whole image was used", self.path, no_face, len(items))
        labels = torch.tensor([self.class_names.index(name) for _, name, _ in items])
        return {split: (images[mask], labels[mask]) for split, mask in masks(subjects, self.subjects).items()}
