"""DeXpression (Burkert, Trier, Afzal, Dengel and Liwicki 2015, arXiv:1509.05371).

conv 7x7/2 (64) -> max-pool 3x3/2 -> LRN -> FeatEx -> FeatEx -> fully connected.
A FeatEx block runs two paths side by side and concatenates them:
1x1 conv 96 -> 3x3 conv 208, and 3x3/1 max-pool -> 1x1 conv 64 (272 channels),
then max-pools 3x3/2. The paper reports 99.6 % on CK+ and 98.36 % on MMI, with
cross-validation folds that were not subject-independent.

Deviations, all documented choices the paper leaves open: "same" padding everywhere
(224 -> 112 -> 56 -> 28 -> 14, the paper's sizes; 48 -> 24 -> 12 -> 6 -> 3), LRN with
Caffe/AlexNet's defaults (size 5, alpha 1e-4, beta 0.75), and optional dropout before
the classifier.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatEx(nn.Module):
    """The parallel feature-extraction block: ``(B, C, H, W)`` -> ``(B, 272, ceil(H/2), ceil(W/2))``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv_path = nn.Sequential(
            nn.Conv2d(in_channels, 96, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(96, 208, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool_path = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.Conv2d(in_channels, 64, 1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    out_channels = 208 + 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.cat([self.conv_path(x), self.pool_path(x)], 1))


class DeXpression(nn.Module):
    """DeXpression for ``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.

    Args:
        num_classes: outputs (7 for CK+ without neutral, as in the paper).
        in_channels: 1 (the paper's grey images) or 3.
        input_size: side in pixels (224 in the paper; 48 for FER-2013).
        dropout: before the classifier (0 = none).
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, input_size: int = 224, dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75),
        )
        self.featex1 = FeatEx(64)
        self.featex2 = FeatEx(FeatEx.out_channels)
        side = input_size
        for _ in range(4):  # conv1, pool1, featex1, featex2 each halve (rounding up)
            side = (side + 1) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(FeatEx.out_channels * side * side, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featex2(self.featex1(self.stem(x))))
