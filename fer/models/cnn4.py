"""The four-convolution CNN of the Emotion-detection project (atulapra, 2018).

conv 32 3x3 -> conv 64 3x3 -> max-pool -> dropout -> conv 128 3x3 -> max-pool ->
conv 128 3x3 -> max-pool -> dropout -> dense 1024 -> dropout -> dense classes.
The project reports 63.2 % on FER-2013's test set.
"""

from __future__ import annotations

import torch
from torch import nn


class CNN4(nn.Module):
    """Four unpadded 3x3 convolutions and one 1,024-unit dense layer.

    Args:
        num_classes: number of output logits.
        in_channels: 1 for grey, 3 for colour.
        input_size: side of the square input in pixels (48 for FER-2013).
        dropout: dropout after the conv blocks (the dense layer uses twice it).

    Shapes: ``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, input_size: int = 48, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(64, 128, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        )
        side = (((input_size - 4) // 2 - 2) // 2 - 2) // 2
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for CNN4 (at least 22)")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(2 * dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
