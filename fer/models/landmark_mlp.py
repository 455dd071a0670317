"""The landmark ANN of the "Face-Detection-and-Emotion-Recognition" seed, as an MLP.

Input: the 2,278 scale-normalised pairwise distances of the 68 iBUG landmarks
(see ``fer.face.landmarks.pairwise_distances``; the seed fed the full 68x68 matrix, whose
other entries are the same distances again or zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LandmarkMLP(nn.Module):
    """Fully connected layers with batch norm, ReLU and dropout.

    Args:
        num_classes: outputs.
        in_features: feature count (2,278: the unordered pairs of the 68 iBUG landmarks).
        hidden: widths of the hidden layers.
        dropout: after every hidden layer.

    Shapes: ``(B, in_features)`` float -> ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_features: int = 68 * 67 // 2,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for out in hidden:
            layers += [
                nn.Linear(width, out, bias=False),
                nn.BatchNorm1d(out),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
            width = out
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
