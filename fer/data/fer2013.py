"""FER-2013's Lightning data module (Training -> train, PublicTest -> val, PrivateTest -> test).

The files are read by :mod:`fer.data.fer2013_files`, whose names are kept here too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from fer.data.base import InMemoryDataModule
from fer.data.fer2013_files import (  # noqa: F401 (the readers' names, where they have always been)
    CLASS_NAMES,
    FER2013,
    IMAGE_SIZE,
    SAMPLE_CSV,
    USAGES,
    FER2013FormatError,
    load_fer2013,
)
from fer.data.ferplus import soft_targets, votes_of

log = logging.getLogger(__name__)


class FER2013DataModule(InMemoryDataModule):
    """FER-2013 with Training -> train, PublicTest -> val, PrivateTest -> test.

    The whole set stays in memory as one ``uint8`` tensor (35,887 x 48 x 48, about 83 MB).

    Args:
        path: official CSV (``.csv`` or ``.csv.gz``) or image-folder export; ``None``
            uses the real sample shipped with the package.
        on_bad_row: ``"error"`` or ``"skip"``, see :func:`~fer.data.fer2013_files.load_fer2013`.
        ferplus: FER+'s ``fer2013new.csv`` (row for row the official CSV): the Training targets
            become soft, ``float32 (N, 7)``: ``(1 - ferplus_weight)`` FER-2013's label plus
            ``ferplus_weight`` the image's FER+ vote distribution over FER-2013's classes
            (:func:`fer.data.ferplus.soft_targets`; contempt's votes dropped). PublicTest and
            PrivateTest keep FER-2013's labels. ``None``: FER-2013's labels alone.
        ferplus_weight: in [0, 1].
        **kwargs: see :class:`InMemoryDataModule` (``image_size`` 48 is FER-2013's own).

    Raises:
        ValueError: ``ferplus_weight`` outside [0, 1].
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        path: str | None = None,
        on_bad_row: str = "error",
        ferplus: str | None = None,
        ferplus_weight: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= ferplus_weight <= 1:
            raise ValueError(f"ferplus_weight must be in [0, 1], not {ferplus_weight}")
        self.path, self.on_bad_row = path, on_bad_row
        self.ferplus, self.ferplus_weight = ferplus, ferplus_weight
        self.data: FER2013 | None = None

    def prepare_data(self) -> None:
        if self.path is not None and not Path(self.path).expanduser().exists():
            raise FileNotFoundError(
                f"FER-2013 not found at {self.path}. Put the official fer2013.csv (or .csv.gz) "
                "there, or set data.path to it or to an image-folder export."
            )

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self.data.skipped) if self.data is not None else {}

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The three Usages as splits.

        Raises:
            FER2013FormatError: Training or PublicTest has no row (training needs both;
                the message names the file and the Usage). A missing PrivateTest only
                leaves the test split out, with a warning. With ``ferplus``: see
                :func:`fer.data.ferplus.votes_of`.
        """
        self.data = load_fer2013(self.path, self.on_bad_row)
        votes = None if self.ferplus is None else votes_of(self.ferplus, self.data, self.path)
        splits = {}
        for name, usage in zip(("train", "val", "test"), USAGES, strict=True):
            images, labels = self.data.split(usage)
            if len(labels) == 0 and name != "test":
                raise FER2013FormatError(f"{self.path or SAMPLE_CSV}: no {usage} rows; the {name} split needs them")
            if len(labels) == 0:
                log.warning("%s: no PrivateTest rows: test skipped", self.path)
                continue
            if name == "train" and votes is not None:
                rows = (self.data.usage == USAGES.index(usage)).numpy()
                labels = soft_targets(votes[rows], labels, self.class_names, self.ferplus_weight)
            splits[name] = (images.unsqueeze(1), labels)
        return splits
