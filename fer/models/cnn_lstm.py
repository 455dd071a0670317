"""CNN-LSTM for clips (after Fan et al., ICMI 2016): a frame CNN, an LSTM over its features, a classifier.

The seed "Facial Emotion Recognition" (IIT Kanpur) used 12 frames of 48x48 and
reported 36 % on BAUM-2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fer.models.build import build_network
from fer.models.frames import FrameModel


class CNNLSTM(FrameModel):
    """``(B, T, C, H, W)`` float clips -> ``(B, num_classes)`` logits.

    Args:
        frame_net: an image network (module, or its config with a ``fer.models`` target).
            Its last ``nn.Linear`` gives the frame embedding: from scratch a config is
            built with ``num_classes=feature_size`` (and the clip's ``in_channels``,
            ``input_size``); with ``drop_frame_classifier`` the network is an image
            classifier as it is (a pretrained one, say: ``fer.checkpoint.pretrained_network``
            loads its weights) whose class layer is replaced by ``nn.Identity``, so the
            embedding is that layer's input.
        num_classes: outputs.
        in_channels, input_size: frame channels and side, for a ``frame_net`` config.
        clip_length: frames per clip in training; ``infer.py`` classifies each face over
            a sliding window of this many frames.
        feature_size: frame embedding width when trained from scratch.
        hidden_size, num_layers: the LSTM's.
        drop_frame_classifier: see ``frame_net``.
        freeze: keep the frame network as it is: no gradients, and in eval mode while the clip
            model trains (batch-norm statistics kept, dropout off), so its features are the
            image network's own.
        dropout: before the classifier.
    """

    def __init__(
        self,
        frame_net: nn.Module | Mapping[str, Any],
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: int = 48,
        *,
        clip_length: int,
        feature_size: int = 256,
        hidden_size: int = 128,
        num_layers: int = 1,
        drop_frame_classifier: bool = False,
        freeze: bool = False,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.clip_length = clip_length
        self.freeze = freeze
        if isinstance(frame_net, nn.Module):
            net = frame_net
        elif drop_frame_classifier:
            net = build_network(dict(frame_net))
        else:
            net = build_network(
                {**frame_net, "num_classes": feature_size, "in_channels": in_channels, "input_size": input_size}
            )
        last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        if drop_frame_classifier:
            _replace(net, last, nn.Identity())
            feature_size = last.in_features
        else:
            feature_size = last.out_features
        self.frame_net = net.requires_grad_(not freeze)
        self.lstm = nn.LSTM(feature_size, hidden_size, num_layers, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))
        self.train()  # frozen from the start (FrameModel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        features = self.frame_net(x.flatten(0, 1)).view(b, t, -1)
        _, (hidden, _) = self.lstm(features.float())
        return self.classifier(hidden[-1])


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for module in root.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)
                return
