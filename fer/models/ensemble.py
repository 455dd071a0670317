"""An ensemble of image networks: the mean of their class probabilities.

Averaging the softmax outputs of independently trained networks is the usual way the
FER-2013 papers combine models (e.g. Pramerdorfer & Kampel 2016, 75.2 % from eight).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.transforms.v2.functional import center_crop, five_crop

from fer.models.build import build_network


def check_ten_crops(crops: Sequence[int | None], ten_crops: Sequence[bool]) -> None:
    """Raises ValueError unless there is one ten-crop flag a member, true only where the member has a crop."""
    if len(ten_crops) != len(crops) or any(t and not c for t, c in zip(ten_crops, crops)):
        raise ValueError(f"ten_crops {list(ten_crops)} do not fit the members' crops {list(crops)}")


class Ensemble(nn.Module):
    """``(B, C, S, S)`` float images -> ``(B, num_classes)`` log mean probability of the members.

    The output is a valid logit: its softmax is the members' mean softmax. Every member
    sees the same input and has the same classes in the same order.

    Args:
        members: the networks (modules, or their configs with ``fer.models`` targets, which
            hold their own inputs and classes); ``fer.training.run.build_model`` fills them
            from ``checkpoints=[...]``.
        crops: per member, the side in pixels of the centre crop of the input it sees (a
            network trained on 40x40 crops of 48x48 faces gets the middle 40x40), or
            ``None`` for the whole input; ``None``: every member sees the whole input.
        ten_crops: per member with a crop, whether its vote is the mean softmax of its four
            corner crops and its centre crop (the ten-crop test of a checkpoint trained with
            ``model.ten_crop``, the ensemble's mirrors making the ten); ``None``: centre crops only.

    Raises:
        ValueError: no members, or not one crop (or ten-crop flag) a member, or ten crops
            for a member without a crop.
    """

    def __init__(
        self,
        members: Sequence[nn.Module | Mapping[str, Any]],
        crops: Sequence[int | None] | None = None,
        ten_crops: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.crops = list(crops) if crops is not None else [None] * len(members)
        if len(self.crops) != len(members):
            raise ValueError(f"{len(self.crops)} crops for {len(members)} ensemble members")
        self.ten_crops = list(ten_crops) if ten_crops is not None else [False] * len(members)
        check_ten_crops(self.crops, self.ten_crops)
        self.members = nn.ModuleList(m if isinstance(m, nn.Module) else build_network(dict(m)) for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = [self._vote(m, x, c, t) for m, c, t in zip(self.members, self.crops, self.ten_crops)]
        return torch.stack(votes).logsumexp(0) - math.log(len(self.members))

    @staticmethod
    def _vote(member: nn.Module, x: torch.Tensor, crop: int | None, ten_crop: bool) -> torch.Tensor:
        """A member's log probabilities ``(B, num_classes)``: its crop's, or the log mean of its five crops'."""
        if not crop:
            return member(x).float().log_softmax(-1)
        if not ten_crop:
            return member(center_crop(x, [crop, crop])).float().log_softmax(-1)
        logs = member(torch.cat(five_crop(x, [crop, crop]))).float().log_softmax(-1).unflatten(0, (5, -1))
        return logs.logsumexp(0) - math.log(5)
