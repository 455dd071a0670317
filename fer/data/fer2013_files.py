"""FER-2013 (Goodfellow et al. 2013) read into memory: the official CSV and the common image-folder export.

The set has 35,887 grey 48x48 faces in seven classes. Its ``Usage`` column splits it
into Training (28,709), PublicTest (3,589) and PrivateTest (3,589). We select models
on PublicTest and report on PrivateTest, as the Kaggle challenge did. This file needs no
Lightning (inference reads the shipped sample, e.g. to calibrate int8 graphs); the data
module is :class:`fer.data.fer2013.FER2013DataModule`.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

#: FER-2013 class names in the order of the CSV's ``emotion`` codes 0-6.
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: The three values of the CSV's ``Usage`` column, in split order train/val/test.
USAGES = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
REQUIRED_COLUMNS = ("emotion", "pixels", "Usage")
#: The small real sample shipped with the package (Training 1,400, PublicTest 350,
#: PrivateTest 350 rows, 50/200 per class, drawn with a fixed seed from the official CSV).
SAMPLE_CSV = resources.files("fer.data") / "fer2013_sample.csv.gz"


class FER2013FormatError(ValueError):
    """A FER-2013 file that cannot be read; the message names the file and line."""


@dataclass
class FER2013:
    """FER-2013 held in memory.

    Attributes:
        images: ``uint8`` tensor ``(N, 48, 48)``, grey levels 0-255.
        labels: ``int64`` tensor ``(N,)``, emotion codes 0-6 (see :data:`CLASS_NAMES`).
        usage: ``int64`` tensor ``(N,)``, index into :data:`USAGES`.
        skipped: reason -> number of rows skipped with ``on_bad_row="skip"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    usage: torch.Tensor
    skipped: Counter = field(default_factory=Counter)

    def split(self, usage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(n, 48, 48)`` uint8 and labels ``(n,)`` int64 of one ``Usage``."""
        mask = self.usage == USAGES.index(usage)
        return self.images[mask], self.labels[mask]


def load_fer2013(path: str | Path | None = None, on_bad_row: str = "error") -> FER2013:
    """Load FER-2013 from the official CSV (plain or ``.gz``) or an image-folder export.

    Args:
        path: ``fer2013.csv[.gz]``, or a folder holding ``train/<class>/*.jpg`` and
            ``test/<class>/{PublicTest,PrivateTest}_*.jpg``. ``None`` loads the sample
            shipped with the package.
        on_bad_row: ``"error"`` raises on the first malformed row or unreadable image;
            ``"skip"`` drops it, counts it per reason and logs a warning.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FER2013FormatError: a malformed row or image (names file and line), with
            ``on_bad_row="error"``; or no usable row at all.
    """
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row must be 'error' or 'skip', not {on_bad_row!r}")
    path = Path(str(SAMPLE_CSV)) if path is None else Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"FER-2013 not found at {path}. Put the official fer2013.csv (or .csv.gz) "
            "there, or point data.path at it or at an image-folder export."
        )
    data = _load_folder(path, on_bad_row) if path.is_dir() else _load_csv(path, on_bad_row)
    if data.skipped:
        log.warning("%s: skipped %d bad rows: %s", path, sum(data.skipped.values()), dict(data.skipped))
    if len(data.labels) == 0:
        raise FER2013FormatError(f"{path}: no usable FER-2013 rows")
    return data


def _load_csv(path: Path, on_bad_row: str) -> FER2013:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as f:  # a byte-order mark is read, not refused
        text = f.read()
    # The official file has no quoting: a plain split is twice as fast as the csv module.
    reader = csv.reader(io.StringIO(text)) if '"' in text else (line.split(",") for line in text.splitlines())
    header = next(reader, None) or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FER2013FormatError(f"{path}: line 1: missing column(s) {missing}; found {header}")
    i_emotion, i_pixels, i_usage = (header.index(c) for c in REQUIRED_COLUMNS)

    skipped: Counter = Counter()
    rows: list[tuple[int, int, int, str]] = []  # line, emotion, usage, pixels

    def bad(line: int, reason: str, detail: str) -> None:
        if on_bad_row == "error":
            raise FER2013FormatError(f"{path}: line {line}: {detail}")
        skipped[reason] += 1

    for line, row in enumerate(reader, start=2):
        if row in ([], [""]):  # blank line
            continue
        if len(row) != len(header):
            bad(line, "column count", f"expected {len(header)} fields, found {len(row)}")
            continue
        emotion, pix, use = row[i_emotion].strip(), row[i_pixels].strip(), row[i_usage].strip()
        if emotion not in ("0", "1", "2", "3", "4", "5", "6"):
            bad(line, "label", f"emotion {emotion!r} is not a label 0-6")
        elif use not in USAGES:
            bad(line, "usage", f"Usage {use!r} is not one of {list(USAGES)}")
        elif pix.count(" ") != NUM_PIXELS - 1 and len(pix.split()) != NUM_PIXELS:
            bad(line, "pixel count", f"found {len(pix.split())} pixels, expected {NUM_PIXELS}")
        else:
            rows.append((line, int(emotion), USAGES.index(use), pix))

    # Fast path: one C-level parse of all pixel strings at once.
    flat = _parse_pixels(" ".join(r[3] for r in rows), len(rows))
    if flat is None:  # some row holds a non-number or a value outside 0-255: find it
        good, parsed = [], []
        for r in rows:
            values = _parse_pixels(r[3], 1)
            if values is None:
                bad(r[0], "pixel value", "pixels must be integers 0-255 separated by spaces")
            else:
                good.append(r)
                parsed.append(values)
        rows = good
        flat = np.concatenate(parsed) if parsed else np.zeros((0, NUM_PIXELS), np.uint8)
    images = torch.from_numpy(flat.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    labels = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    usage = torch.tensor([r[2] for r in rows], dtype=torch.int64)
    return FER2013(images, labels, usage, skipped)


def _parse_pixels(text: str, n_rows: int) -> np.ndarray | None:
    """``n_rows`` rows of 2,304 grey levels from space-separated text, or ``None`` if invalid."""
    if not n_rows:
        return np.zeros((0, NUM_PIXELS), np.uint8)
    try:  # where parsing stops early, numpy warns (older) or raises (newer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(text, dtype=np.int32, sep=" ")
    except ValueError:
        return None
    if values.size != n_rows * NUM_PIXELS or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(n_rows, NUM_PIXELS)


def _load_folder(root: Path, on_bad_row: str) -> FER2013:
    skipped: Counter = Counter()
    images, labels, usage = [], [], []
    for split_dir, default_usage in (("train", "Training"), ("test", None)):
        for class_dir in sorted((root / split_dir).glob("*")):
            if not class_dir.is_dir() or class_dir.name.startswith("."):  # .ipynb_checkpoints and the like
                continue
            name = class_dir.name.lower()
            if name not in CLASS_NAMES:
                if on_bad_row == "error":
                    raise FER2013FormatError(f"{class_dir}: unknown class folder; expected one of {CLASS_NAMES}")
                skipped["unknown class folder"] += 1
                continue
            for file in sorted(f for f in class_dir.iterdir() if not f.name.startswith(".")):
                use = default_usage or file.name.split("_", 1)[0]
                problem = None
                if use not in USAGES:
                    problem = ("usage", f"name must start with PublicTest_ or PrivateTest_, not {file.name!r}")
                else:
                    img = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                    if img is None:
                        problem = ("unreadable image", "not a readable image")
                if problem:
                    if on_bad_row == "error":
                        raise FER2013FormatError(f"{file}: {problem[1]}")
                    skipped[problem[0]] += 1
                    continue
                if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
                images.append(img)
                labels.append(CLASS_NAMES.index(name))
                usage.append(USAGES.index(use))
    if not images and not skipped:
        raise FER2013FormatError(f"{root}: no images under train/<class>/ or test/<class>/")
    stacked = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return FER2013(torch.from_numpy(stacked), torch.tensor(labels, dtype=torch.int64), torch.tensor(usage), skipped)
