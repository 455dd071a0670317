"""An ensemble of image networks: the mean of their class probabilities.

Averaging the softmax outputs of independently trained networks is the usual way the
FER-2013 papers combine models (e.g. Pramerdorfer & Kampel 2016, 75.2 % from eight).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn
from torchvision.transforms.v2.functional import center_crop


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

    Raises:
        ValueError: no members, or not one crop a member.
    """

    def __init__(
        self, members: Sequence[nn.Module | Mapping[str, Any]], crops: Sequence[int | None] | None = None
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.crops = list(crops) if crops is not None else [None] * len(members)
        if len(self.crops) != len(members):
            raise ValueError(f"{len(self.crops)} crops for {len(members)} ensemble members")
        self.members = nn.ModuleList(m if isinstance(m, nn.Module) else instantiate(dict(m)) for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [center_crop(x, [crop, crop]) if crop else x for crop in self.crops]
        logs = torch.stack([m(v).float().log_softmax(-1) for m, v in zip(self.members, views)])
        return logs.logsumexp(0) - math.log(len(self.members))
