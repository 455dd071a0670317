"""Frame averaging for clips: an image classifier scores every frame, the clip's logits are their mean.

The late-fusion baseline of video classification (Karpathy et al., CVPR 2014): no temporal
model to learn, so a small clip data set (BAUM-2: about 90 training clips a fold) only has
to adapt an image classifier that already reads expressions, rather than train an LSTM on
its features from scratch (:class:`~fer.models.CNNLSTM`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fer.models.build import build_network
from fer.models.frames import FrameModel


class FrameAverage(FrameModel):
    """``(B, T, C, H, W)`` float clips -> ``(B, num_classes)`` logits, the mean of the ``T`` frames' logits.

    Args:
        frame_net: an image classifier's config (a ``fer.models`` target), built with this
            model's ``num_classes``, ``in_channels`` and ``input_size``.
            ``model.net.pretrained=PATH`` starts it from a trained image classifier, class
            rows matched by name (:func:`fer.training.transfer.transfer_weights`).
        num_classes: outputs.
        in_channels, input_size: frame channels and side, for a ``frame_net`` config.
        clip_length: frames per clip in training; ``infer.py`` classifies each face over a
            sliding window of this many frames.
        freeze: train the class layer (the frame network's last ``nn.Linear``) only; the rest
            keeps its weights and stays in eval mode while the clip model trains (batch-norm
            statistics kept, dropout off).
    """

    def __init__(
        self,
        frame_net: Mapping[str, Any],
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: int = 48,
        *,
        clip_length: int,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        self.clip_length, self.freeze = clip_length, freeze
        spec = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
        self.frame_net = build_network({**frame_net, **spec})
        if freeze:
            self.frame_net.requires_grad_(False)
            [m for m in self.frame_net.modules() if isinstance(m, nn.Linear)][-1].requires_grad_(True)
        self.train()  # frozen from the start (FrameModel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        return self.frame_net(x.flatten(0, 1)).view(b, t, -1).mean(1)
