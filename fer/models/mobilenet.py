"""MobileNetV3 (Howard et al. 2019) for small grey faces, built from torchvision's ``mobilenet_v3_small``
and ``mobilenet_v3_large``.

torchvision's stem is a 3x3 stride-2 convolution on three channels, and four more stride-2
stages follow: a 48x48 face would be 2x2 at the last stage (3x3 halved). Here the stem takes
``in_channels`` at stride 1 by default, so the last stage sees 3x3 (48 / 16). The rest is
torchvision's network: inverted residual blocks of depthwise convolutions with
squeeze-and-excitation and hard-swish, and its classifier (a hidden linear layer, dropout,
the output layer).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

#: torchvision builders by ``size``.
_BUILDERS = {"small": mobilenet_v3_small, "large": mobilenet_v3_large}


def mobilenet_v3(
    num_classes: int = 7,
    in_channels: int = 1,
    input_size: int = 48,
    size: str = "small",
    stem_stride: int = 1,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV3-Small or -Large with a ``stem_stride`` stem on ``in_channels``, randomly initialised.

    Args:
        num_classes: outputs. in_channels: 1 (grey) or 3.
        input_size: side of the input in pixels (at least 16 times ``stem_stride``).
        size: ``"small"`` or ``"large"`` (the paper's two networks, width multiplier 1).
        stem_stride: stride of the stem convolution (1 for 48x48 faces; 2 is torchvision's).
        dropout: before the output layer.

    Shapes: ``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.

    Raises:
        ValueError: an unknown ``size``, or ``input_size`` too small for the network's strides.
    """
    if size not in _BUILDERS:
        raise ValueError(f"MobileNetV3 size must be one of {', '.join(_BUILDERS)}, not {size!r}")
    if input_size < 16 * stem_stride:
        raise ValueError(f"input_size {input_size} is too small for MobileNetV3 with stem stride {stem_stride}")
    net = _BUILDERS[size](weights=None, num_classes=num_classes, dropout=dropout)
    stem = net.features[0][0]
    net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stem_stride, 1, bias=False)
    nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")  # as torchvision initialises its convolutions
    return net
