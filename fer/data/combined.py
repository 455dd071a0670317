"""Several image data sets as one, labels matched by class name (CK+ + FER-2013, say)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler, TensorDataset, WeightedRandomSampler

from fer.data.base import InMemoryDataModule, _global_seed

log = logging.getLogger(__name__)


class CombinedDataModule(InMemoryDataModule):
    """The union of image data modules, split by split.

    Classes are matched through their names, never their codes: the class list is the
    union of the members' names in order of first appearance (FER-2013's seven, then
    CK+'s contempt, for instance). Images are resized to ``crop_size`` so they stack,
    and the class balance of every split is logged and kept in :attr:`balance_report`
    (soft targets counted by their largest class). Where a member gives a split soft targets
    ``float (N, classes)`` (FER-2013 with FER+ votes), that split's targets are all
    distributions over the common classes, the other members' labels one-hot.
    The seed "Face-Detection-and-Emotion-Recognition" trained on CK+ and FER-2013
    together.

    Args:
        members: the data modules, e.g. ``{"fer2013": ..., "ckplus": ...}``.
        crop_size: side in pixels of the stored images (48: FER-2013's own).
        weights: a member's share of the training draws, by name (``{"fer2013": 3, "ckplus": 1}``:
            three FER-2013 images drawn for every CK+ one, with replacement, as many draws an
            epoch as there are training images); ``None``: every image once an epoch.
        **kwargs: see :class:`InMemoryDataModule`.

    Raises:
        ValueError: weights that do not name the members, negative weights, or weights
            together with ``balance="sampler"``.
    """

    hparams_ignore = ("members",)

    def __init__(
        self,
        members: dict[str, InMemoryDataModule],
        crop_size: int = 48,
        weights: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if weights is not None:
            weights = dict(weights)
            if set(weights) != set(members) or min(weights.values()) < 0 or not sum(weights.values()) > 0:
                raise ValueError(f"weights {weights} must give each of {sorted(members)} a share >= 0, not all 0")
            if self.balance == "sampler":
                raise ValueError("give weights or balance='sampler', not both")
        self.members, self.crop_size, self.weights = members, crop_size, weights
        self.member_of: dict[str, torch.Tensor] = {}
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
        for member, module in enumerate(self.members.values()):
            module.setup()
            to_common = torch.tensor([self.class_names.index(n) for n in module.class_names])
            for split, dataset in module.splits.items():
                images, labels = dataset.tensors
                if images.shape[-1] != self.crop_size:
                    size = (self.crop_size, self.crop_size)
                    images = F.interpolate(images.float(), size=size, mode="area").round().to(torch.uint8)
                if labels.is_floating_point():  # soft targets: each class's column moved to its common one
                    labels = torch.zeros(len(labels), len(self.class_names)).index_copy_(1, to_common, labels.float())
                else:
                    labels = to_common[labels]
                parts[split].append((images, labels))
                self.member_of.setdefault(split, []).append(torch.full((len(labels),), member))
        self.member_of = {split: torch.cat(index) for split, index in self.member_of.items()}
        classes = len(self.class_names)
        for split, p in parts.items():
            if any(lab.is_floating_point() for _, lab in p):
                parts[split] = [
                    (i, lab if lab.is_floating_point() else F.one_hot(lab, classes).float()) for i, lab in p
                ]
        splits = {s: (torch.cat([i for i, _ in p]), torch.cat([lab for _, lab in p])) for s, p in parts.items()}
        for split, (_, labels) in splits.items():
            top = labels.argmax(1) if labels.is_floating_point() else labels
            counts = Counter(self.class_names[k] for k in top.tolist())
            self.balance_report[split] = {n: counts.get(n, 0) for n in self.class_names}
            log.info("combined %s split: %d images, per class %s", split, len(labels), self.balance_report[split])
        return splits

    def _train_sampler(self, dataset: TensorDataset) -> Sampler:
        """Draws by the members' ``weights`` (seeded by the run's seed), else the base class's order."""
        if self.weights is None:
            return super()._train_sampler(dataset)
        member = self.member_of["train"]
        share = torch.tensor([float(self.weights[name]) for name in self.members])
        counts = torch.bincount(member, minlength=len(share)).clamp_min(1)
        generator = torch.Generator().manual_seed(_global_seed())
        return WeightedRandomSampler((share / counts)[member], len(member), replacement=True, generator=generator)
