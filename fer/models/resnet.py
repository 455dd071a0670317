"""ResNet-18 (He, Zhang, Ren and Sun 2016) for small grey faces, built from torchvision's ``resnet18``.

torchvision's ImageNet stem (7x7/2 convolution, then a 3x3/2 max-pool) shrinks a 48x48
face to 12x12 before the first residual stage; here the stem is one 3x3 convolution
(stride 2 by default: 48 -> 24 -> 12 -> 6 -> 3 over the four stages; stride 1 keeps twice
the resolution at four times the cost) and the max-pool is dropped, as in the CIFAR
adaptations and the FER-2013 ResNets of Pramerdorfer & Kampel (2016). ``width`` scales the
channels of every stage (64-128-256-512 at the default 64): at 32 a training step costs
about 0.3x the full network's on 2 bf16 CPU cores, for a shorter schedule.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18 as torchvision_resnet18
from torchvision.models.resnet import BasicBlock


def resnet18(
    num_classes: int = 7,
    in_channels: int = 1,
    input_size: int = 48,
    stem_stride: int = 2,
    dropout: float = 0.0,
    width: int = 64,
) -> nn.Module:
    """ResNet-18 with a 3x3 stem and no max-pool, randomly initialised.

    Args:
        num_classes: outputs. in_channels: 1 (grey) or 3.
        input_size: side of the input in pixels (at least 16 with ``stem_stride=2``).
        stem_stride: stride of the stem convolution (2, or 1 for twice the resolution).
        dropout: before the final linear layer (0: none).
        width: channels of the stem and first stage, doubled at each later stage (64: torchvision's).

    Shapes: ``(B, in_channels, input_size, input_size)`` float -> ``(B, num_classes)`` logits.

    Raises:
        ValueError: ``input_size`` too small for the network's strides, or ``width`` < 1.
    """
    if input_size // (stem_stride * 8) < 1:
        raise ValueError(f"input_size {input_size} is too small for ResNet-18 with stem stride {stem_stride}")
    if width < 1:
        raise ValueError(f"ResNet-18 width must be a positive number of channels, not {width}")
    net = torchvision_resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False)
    net.maxpool = nn.Identity()
    if width != 64:
        _rebuild_stages(net, width, num_classes)
    if dropout:
        net.fc = nn.Sequential(nn.Dropout(dropout), net.fc)
    return net


def _rebuild_stages(net: nn.Module, width: int, num_classes: int) -> None:
    """Replace the stem's norm, the four stages and ``fc`` with ``width``-based ones (same names, same init)."""
    net.bn1 = nn.BatchNorm2d(width)
    channels = width
    for stage in range(4):
        planes, stride = width * 2**stage, 1 if stage == 0 else 2
        down = None
        if stride != 1 or channels != planes:
            down = nn.Sequential(nn.Conv2d(channels, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
        setattr(
            net,
            f"layer{stage + 1}",
            nn.Sequential(BasicBlock(channels, planes, stride, down), BasicBlock(planes, planes)),
        )
        channels = planes
    net.fc = nn.Linear(channels, num_classes)
    for name, module in net.named_modules():  # torchvision's initialisation of ResNet
        if isinstance(module, nn.Conv2d) and name != "conv1":
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
