"""The shallow and deep CNNs of the Real-Time-Emotion-Recognition project.

Both are stacks of "same"-padded convolutions, each followed by batch norm, ReLU,
2x2 max-pooling and dropout, then fully connected layers with batch norm and dropout.

That project trained them with a sigmoid output and binary cross-entropy. We use a
softmax output with (categorical) cross-entropy instead: every FER-2013 image carries
exactly one of the seven expressions, so the classes are mutually exclusive. Softmax
cross-entropy models that single categorical distribution, its probabilities sum to
one and its gradient pushes the true class up *against* the others; sigmoid + BCE
treats seven independent yes/no questions, whose outputs need not sum to one and
whose loss is dominated by the six easy negatives of each image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_block(in_channels: int, out_channels: int, kernel_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


def _dense_block(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


class VGGStyleCNN(nn.Module):
    """Conv blocks ``(channels, kernel)`` followed by dense blocks and a linear classifier.

    Args:
        conv: ``(out_channels, kernel_size)`` of each conv block; each halves the side.
        dense: widths of the hidden fully connected layers.
        num_classes: number of output logits.
        in_channels: 1 for grey, 3 for colour.
        input_size: side of the square input in pixels.
        dropout: dropout after every block.

    Shapes: ``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.

    Raises:
        ValueError: ``input_size`` too small for the number of pooling steps.
    """

    def __init__(
        self,
        conv: Sequence[tuple[int, int]],
        dense: Sequence[int],
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: int = 48,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        side = input_size // 2 ** len(conv)
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for {len(conv)} 2x2 poolings")
        blocks, channels = [], in_channels
        for out_channels, kernel in conv:
            blocks.append(_conv_block(channels, out_channels, kernel, dropout))
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        layers, width = [nn.Flatten()], channels * side * side
        for out_features in dense:
            layers.append(_dense_block(width, out_features, dropout))
            width = out_features
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def shallow_cnn(num_classes: int = 7, in_channels: int = 1, input_size: int = 48, dropout: float = 0.25) -> VGGStyleCNN:
    """The shallow CNN: conv 64 3x3, conv 128 5x5, FC 256."""
    return VGGStyleCNN([(64, 3), (128, 5)], [256], num_classes, in_channels, input_size, dropout)


def deep_cnn(num_classes: int = 7, in_channels: int = 1, input_size: int = 48, dropout: float = 0.25) -> VGGStyleCNN:
    """The deep CNN: conv 64 5x5, 128 3x3, 512 3x3, 512 3x3, FC 256, FC 512."""
    return VGGStyleCNN(
        [(64, 5), (128, 3), (512, 3), (512, 3)], [256, 512], num_classes, in_channels, input_size, dropout
    )
