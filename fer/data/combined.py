"""Several image data sets as one, labels matched by class name (CK+ + FER-2013, say)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from fer.data.base import InMemoryDataModule

log = logging.getLogger(__name__)


class CombinedDataModule(InMemoryDataModule):
    """The union of image data modules, split by split.

    Classes are matched through their names, never their codes: the class list is the
    union of the members' names in order of first appearance (FER-2013's seven, then
    CK+'s contempt, for instance). Images are resized to ``crop_size`` so they stack,
    and the class balance of every split is logged and kept in :attr:`balance_report`.
    The seed "Face-Detection-and-Emotion-Recognition" trained on CK+ and FER-2013
    together.

    Args:
        members: the data modules, e.g. ``{"fer2013": ..., "ckplus": ...}``.
        crop_size: side in pixels of the stored images (48: FER-2013's own).
        **kwargs: see :class:`InMemoryDataModule`.
    """

    hparams_ignore = ("members",)

    def __init__(self, members: dict[str, InMemoryDataModule], crop_size: int = 48, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.members, self.crop_size = members, crop_size
        names: list[str] = []
        for module in members.values():
            names += [n for n in module.class_names if n not in names]
        self.class_names = tuple(names)
        self.balance_report: dict[str, dict[str, int]] = {}

    def prepare_data(self) -> None:
        for module in self.members.values():
            module.prepare_data()

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": [], "test": []}
        for module in self.members.values():
            module.setup()
            to_common = torch.tensor([self.class_names.index(n) for n in module.class_names])
            for split, dataset in module.splits.items():
                images, labels = dataset.tensors
                if images.shape[-1] != self.crop_size:
                    size = (self.crop_size, self.crop_size)
                    images = F.interpolate(images.float(), size=size, mode="area").round().to(torch.uint8)
                parts[split].append((images, to_common[labels]))
        splits = {s: (torch.cat([i for i, _ in p]), torch.cat([lab for _, lab in p])) for s, p in parts.items()}
        for split, (_, labels) in splits.items():
            counts = Counter(self.class_names[k] for k in labels.tolist())
            self.balance_report[split] = {n: counts.get(n, 0) for n in self.class_names}
            log.info("combined %s split: %d images, per class %s", split, len(labels), self.balance_report[split])
        return splits
