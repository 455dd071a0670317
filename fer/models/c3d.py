"""C3D (Tran, Bourdev, Fergus, Torresani and Paluri 2015) adapted to small face clips.

Stacked 3x3x3 convolutions over time and space, as used for video emotion recognition
by Fan et al. (ICMI 2016, "Video-based emotion recognition using CNN-RNN and C3D
hybrid networks"). The original takes 16x112x112 RGB clips with eight conv layers
(64, 128, 256x2, 512x2, 512x2) and 4,096-wide FC layers; for 16x48x48 grey faces we
keep the 3x3x3 kernels and the pooling pattern (space only first, then space and
time) with halved widths, batch norm, and 512-wide FC layers.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(in_channels: int, out_channels: int, convs: int, pool: tuple[int, int, int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(convs):
        layers += [
            nn.Conv3d(in_channels if k == 0 else out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool3d(pool, pool, ceil_mode=True))
    return nn.Sequential(*layers)


class C3D(nn.Module):
    """C3D for ``(B, T, C, H, W)`` float clips -> ``(B, num_classes)`` logits.

    Args:
        num_classes: outputs.
        in_channels: 1 (grey) or 3.
        input_size: frame side (48; 112 as in the original).
        clip_length: frames ``T`` (16 in the original).
        width: channels of the first block (doubling per block, capped at 8x).
        dropout: before each FC layer.
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: int = 48,
        *,
        clip_length: int,
        width: int = 32,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.clip_length = clip_length
        plan = [(width, 1, (1, 2, 2)), (2 * width, 1, (2, 2, 2)), (4 * width, 2, (2, 2, 2)), (8 * width, 2, (2, 2, 2))]
        blocks, channels, t, s = [], in_channels, clip_length, input_size
        for out_channels, convs, pool in plan:
            blocks.append(_block(channels, out_channels, convs, pool))
            channels, t, s = out_channels, -(-t // pool[0]), -(-s // pool[1])
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * t * s * s, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.transpose(1, 2)))  # (B, C, T, H, W) for Conv3d
