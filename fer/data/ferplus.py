"""FER+ (Barsoum, Zhang, Canton Ferrer and Zhang 2016): FER-2013's images relabelled by 10 taggers each.

``fer2013new.csv`` has one row per row of ``fer2013.csv``, in the same order::

    Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF

with the votes of the 10 taggers; an empty image name marks an image FER+ dropped.
FER+ Train / Valid / Test are FER-2013's Training / PublicTest / PrivateTest.

Label modes, as the FER+ paper and its reference code define them:

* ``majority``: an emotion with a single vote is taken as noise and zeroed; the image's
  label is the emotion with more than half of the remaining votes, else it is unknown.
* ``probability`` (the paper's probabilistic label drawing) and ``crossentropy`` (soft
  targets): after the same noise removal, the one to three most voted emotions that
  reach 75 % of the votes, normalised, are the target distribution (unknown when they
  hold at most half of the votes). ``probability`` draws a hard label from it for every
  training batch; ``crossentropy`` trains on the distribution itself.

Images whose label (or the distribution's largest entry) is unknown or not a face (NF)
are dropped. Validation and test are always scored on majority labels.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer.data.base import InMemoryDataModule
from fer.data.fer2013_files import FER2013, SAMPLE_CSV, USAGES, FER2013FormatError, load_fer2013

#: FER+ columns of votes, in file order: the 8 emotions, then unknown and NF (not a face).
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
#: The 8 FER+ classes in FER+ order, spelled as FER-2013 spells them (happiness -> happy, ...).
CLASS_NAMES = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
MODES = ("majority", "probability", "crossentropy")


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """``int64 (N,)`` FER+ majority labels 0-7 of ``(N, 10)`` votes; -1 where unknown or not a face."""
    v = np.where(votes <= 1, 0, votes).astype(np.float64)  # a single vote is noise
    top = v.argmax(1)
    keep = v.max(1) > 0.5 * v.sum(1)
    return np.where(keep & (top < 8), top, -1)


def vote_distributions(votes: np.ndarray) -> np.ndarray:
    """``float32 (N, 8)`` target distributions of ``(N, 10)`` votes; all zero where unknown or not a face.

    After noise removal, the most voted entries (tied entries one by one) are taken until
    they hold 75 % of the votes or three are taken, stopping at an unknown/NF entry; the
    image is unknown when the taken votes are at most half of all, more than three
    entries tie, or unknown/NF is the largest. The 8 emotions' share is renormalised.
    """
    out = np.zeros((len(votes), 8), np.float32)
    for n, row in enumerate(np.where(votes <= 1, 0, votes).astype(np.float64)):
        total, kept, count, rest = row.sum(), np.zeros(10), 0, row.copy()
        while kept.sum() < 0.75 * total and count < 3 and rest.max() > 0:
            top = np.flatnonzero(rest == rest.max())
            kept[top], rest[top] = rest[top], 0
            count += len(top)
            if (top >= 8).any():
                break
        if kept.sum() > 0.5 * total and count <= 3 and kept.argmax() < 8:
            out[n] = kept[:8] / kept[:8].sum()
    return out


def read_ferplus(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """``int64 (N, 10)`` votes and the Usage of every row of ``fer2013new.csv``; dropped rows' votes are 0.

    Raises:
        FileNotFoundError: no such file. FER2013FormatError: a bad header or row (names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FER+ labels not found: {path} (fer2013new.csv of the FER+ release)")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header = rows[0] if rows else []
    if header[2:12] != list(VOTE_COLUMNS) or header[:2] != ["Usage", "Image name"]:
        raise FER2013FormatError(f"{path}: line 1: expected Usage,Image name,{','.join(VOTE_COLUMNS)}; found {header}")
    votes = np.zeros((len(rows) - 1, 10), np.int64)
    usages = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 12 or row[0] not in USAGES:
            raise FER2013FormatError(f"{path}: line {line}: expected 12 fields and a Usage of {USAGES}, found {row}")
        usages.append(row[0])
        if row[1].strip():
            try:
                votes[line - 2] = [int(v) for v in row[2:12]]
            except ValueError:
                raise FER2013FormatError(
                    f"{path}: line {line}: votes must be whole numbers, found {row[2:12]}"
                ) from None
    return votes, usages


def votes_of(labels: str | Path, data: FER2013, source: str | Path | None) -> np.ndarray:
    """``int64 (N, 10)`` FER+ votes of the ``N`` rows of FER-2013 ``data`` (read from ``source``), from
    ``labels`` (``fer2013new.csv``).

    Raises:
        FileNotFoundError, FER2013FormatError: see :func:`read_ferplus`; also files that do not match
        row for row (count or Usage; the first differing line is named).
    """
    votes, usages = read_ferplus(labels)
    fer_usages = [USAGES[k] for k in data.usage.tolist()]
    if len(usages) != len(fer_usages):
        raise FER2013FormatError(
            f"{labels}: {len(usages)} rows for the {len(fer_usages)} of {source or SAMPLE_CSV}; "
            "FER+ labels the official CSV row for row"
        )
    if usages != fer_usages:
        k = next(k for k, (a, b) in enumerate(zip(usages, fer_usages)) if a != b)
        raise FER2013FormatError(f"{labels}: line {k + 2}: Usage {usages[k]} where FER-2013 has {fer_usages[k]}")
    return votes


def soft_targets(votes: np.ndarray, labels: torch.Tensor, class_names: tuple[str, ...], weight: float) -> torch.Tensor:
    """``float32 (N, classes)`` targets: ``(1 - weight)`` times the one-hot ``int64 (N,)`` ``labels`` plus
    ``weight`` times the FER+ vote distribution of ``(N, 10)`` ``votes`` over ``class_names`` (FER+'s
    classes matched by name, the others' share dropped and the rest renormalised); the one-hot label
    alone where FER+ has no distribution (unknown, not a face, or only classes outside ``class_names``)."""
    soft = torch.from_numpy(vote_distributions(votes))[:, [CLASS_NAMES.index(n) for n in class_names]]
    total = soft.sum(1, keepdim=True)
    known = total > 0
    soft = soft / total.clamp_min(1e-12)  # rows without a distribution stay zero
    one_hot = torch.nn.functional.one_hot(labels, len(class_names)).float()
    return torch.where(known, (1 - weight) * one_hot + weight * soft, one_hot)


class FERPlusDataModule(InMemoryDataModule):
    """FER-2013's images with FER+ labels: 8 classes, Train -> train, Valid -> val, Test -> test.

    Args:
        path: FER-2013's official CSV (``None``: the sample shipped in the package).
        labels: FER+'s ``fer2013new.csv``, row for row the same images as ``path``.
        mode: ``"majority"``, ``"probability"`` or ``"crossentropy"`` (see the module).
        **kwargs: see :class:`~fer.data.base.InMemoryDataModule`.

    Raises:
        ValueError: unknown mode. FER2013FormatError: the two files do not match row for
        row (count or Usage; the first differing line is named).
    """

    class_names = CLASS_NAMES

    def __init__(self, labels: str, path: str | None = None, mode: str = "majority", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.path, self.labels, self.mode = path, labels, mode

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        data = load_fer2013(self.path)
        votes = votes_of(self.labels, data, self.path)
        majority = torch.from_numpy(majority_labels(votes))
        soft = torch.from_numpy(vote_distributions(votes))
        splits = {}
        for name, usage in zip(("train", "val", "test"), USAGES, strict=True):
            rows = data.usage == USAGES.index(usage)
            if name == "train" and self.mode != "majority":
                keep = rows & (soft.sum(1) > 0)
                splits[name] = (data.images[keep].unsqueeze(1), soft[keep])
            else:
                keep = rows & (majority >= 0)
                splits[name] = (data.images[keep].unsqueeze(1), majority[keep])
        return splits

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.mode == "probability" and y.is_floating_point():  # a label drawn from each image's votes
            y = torch.multinomial(y, 1).squeeze(1)
        return x, y
