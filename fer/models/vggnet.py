"""The VGG variant of Khaireddin & Chen (2021), "Facial Emotion Recognition: State of the Art
Performance on FER2013" (arXiv:2105.03588): 73.28 % on FER-2013 PrivateTest as one network.

Four stages of two 3x3 convolutions (64, 128, 256, 512 channels; batch norm and ReLU after
each) closed by 2x2 max-pooling, then two fully connected layers of 4,096 with dropout and
the classifier. The paper trains it on random 40x40 crops (``model.crop=40``), tests on ten
crops (``model.ten_crop=true``), with SGD + Nesterov momentum and a plateau schedule
(``classifier=sgd_plateau``) for 300 epochs.
"""

from __future__ import annotations

import torch
from torch import nn


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class VGGNet(nn.Module):
    """``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.

    Args:
        num_classes: outputs. in_channels: 1 (grey) or 3.
        input_size: side of the input in pixels (40 in the paper: 2x2 after the four poolings).
        width: channels of the first stage (64 in the paper); the stages double it.
        hidden: width of the two fully connected layers (4,096 in the paper).
        dropout: after each fully connected layer (0.2 in the paper's code).

    Raises:
        ValueError: ``input_size`` below 16 (nothing left after four poolings).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: int = 40,
        width: int = 64,
        hidden: int = 4096,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        side = input_size // 16
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for VGGNet's four 2x2 poolings")
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.features = nn.Sequential(*(_stage(a, b) for a, b in zip([in_channels, *widths[:-1]], widths)))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
