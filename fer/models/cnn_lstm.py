"""CNN-LSTM for clips (after Fan et al., ICMI 2016): a frame CNN, an LSTM over its features, a classifier.

The seed "Facial Emotion Recognition" (IIT Kanpur) used 12 frames of 48x48 and
reported 36 % on BAUM-2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn


class CNNLSTM(nn.Module):
    """``(B, T, C, H, W)`` float clips -> ``(B, num_classes)`` logits.

    Args:
        frame_net: any of our image networks (module or Hydra config). Its last
            ``nn.Linear`` becomes the frame embedding: kept as a ``feature_size``-wide
            layer when trained from scratch, or dropped (``nn.Identity``) when
            ``pretrained`` gives it image weights.
        num_classes: outputs.
        in_channels, input_size: passed to ``frame_net`` when it is a config.
        feature_size: frame embedding width when trained from scratch.
        hidden_size, num_layers: the LSTM's.
        pretrained: a train.py checkpoint of the same image network to start from.
        freeze: keep the frame network's weights fixed.
        dropout: before the classifier.
        clip_length: frames per clip in training; ``infer.py`` classifies each face over
            a sliding window of this many frames.
    """

    def __init__(
        self,
        frame_net: nn.Module | Mapping[str, Any],
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: int = 48,
        feature_size: int = 256,
        hidden_size: int = 128,
        num_layers: int = 1,
        pretrained: str | None = None,
        freeze: bool = False,
        dropout: float = 0.3,
        clip_length: int = 12,
    ) -> None:
        super().__init__()
        self.clip_length = clip_length
        if pretrained:
            from fer.recognizer import load_classifier

            net = load_classifier(pretrained)[0].net
        elif isinstance(frame_net, nn.Module):
            net = frame_net
        else:
            shape = {"num_classes": feature_size, "in_channels": in_channels, "input_size": input_size}
            net = instantiate({**frame_net, **shape})
        last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        if pretrained:  # the image classes' layer goes; its input is the embedding
            _replace(net, last, nn.Identity())
            feature_size = last.in_features
        else:
            feature_size = last.out_features
        self.frame_net = net.requires_grad_(not freeze)
        self.lstm = nn.LSTM(feature_size, hidden_size, num_layers, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))

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
