"""ResNet-18 (He, Zhang, Ren and Sun 2016) for small grey faces, built from torchvision's ``resnet18``.

torchvision's ImageNet stem (7x7/2 convolution, then a 3x3/2 max-pool) shrinks a 48x48
face to 12x12 before the first residual stage; here the stem is one 3x3 convolution
(stride 2 by default: 48 -> 24 -> 12 -> 6 -> 3 over the four stages; stride 1 keeps twice
the resolution at four times the cost) and the max-pool is dropped, as in the CIFAR
adaptations and the FER-2013 ResNets of Pramerdorfer & Kampel (2016).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18 as torchvision_resnet18


def resnet18(
    num_classes: int = 7, in_channels: int = 1, input_size: int = 48, stem_stride: int = 2, dropout: float = 0.0
) -> nn.Module:
    """ResNet-18 with a 3x3 stem and no max-pool, randomly initialised.

    Args:
        num_classes: outputs. in_channels: 1 (grey) or 3.
        input_size: side of the input in pixels (at least 16 with ``stem_stride=2``).
        stem_stride: stride of the stem convolution (2, or 1 for twice the resolution).
        dropout: before the final linear layer (0: none).

    Shapes: ``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.

    Raises:
        ValueError: ``input_size`` too small for the network's strides.
    """
    if input_size // (stem_stride * 8) < 1:
        raise ValueError(f"input_size {input_size} is too small for ResNet-18 with stem stride {stem_stride}")
    net = torchvision_resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=stem_stride, padding=1, bias=False)
    net.maxpool = nn.Identity()
    if dropout:
        net.fc = nn.Sequential(nn.Dropout(dropout), net.fc)
    return net
