"""Expression networks: plain ``nn.Module``s mapping input tensors to ``(B, classes)`` logits.

Nothing here imports another part of ``fer``. A network is described by a config
(``{"_target_": "fer.models.deep_cnn", "num_classes": 7, ...}``) that checkpoints store;
:func:`build_network` rebuilds it, and only from the names listed in ``__all__``.
"""

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from torch import nn

from fer.models.c3d import C3D
from fer.models.cnn4 import CNN4
from fer.models.cnn_lstm import CNNLSTM
from fer.models.dexpression import DeXpression
from fer.models.ensemble import Ensemble
from fer.models.frame_average import FrameAverage
from fer.models.landmark_mlp import LandmarkMLP
from fer.models.resnet import resnet18
from fer.models.vgg_style import VGGStyleCNN, deep_cnn, shallow_cnn
from fer.models.vggnet import VGGNet

__all__ = [
    "C3D",
    "CNN4",
    "CNNLSTM",
    "DeXpression",
    "Ensemble",
    "FrameAverage",
    "LandmarkMLP",
    "VGGNet",
    "VGGStyleCNN",
    "deep_cnn",
    "resnet18",
    "shallow_cnn",
]

#: The only ``_target_`` values a network config may name.
ALLOWED_TARGETS = frozenset(f"fer.models.{name}" for name in __all__)


def disallowed_targets(config: Any) -> list[str]:
    """Every ``_target_`` in ``config`` (nested dicts and lists included) that is not a ``fer.models`` network."""
    found: list[str] = []
    if isinstance(config, Mapping):
        target = config.get("_target_")
        if target is not None and target not in ALLOWED_TARGETS:
            found.append(repr(target))
        for value in config.values():
            found += disallowed_targets(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            found += disallowed_targets(value)
    return found


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The network a config describes (its ``_target_`` one of :data:`ALLOWED_TARGETS`).

    Raises:
        ValueError: the config, or a config nested in it, names any other target; nothing
            was called.
    """
    bad = disallowed_targets(config)
    if bad or "_target_" not in config:
        named = ", ".join(bad) or "no _target_"
        raise ValueError(f"not a fer.models network: {named}; allowed: {', '.join(sorted(ALLOWED_TARGETS))}")
    # nested configs reach the network as dicts (the clip models and Ensemble build theirs themselves)
    return instantiate(dict(config), _recursive_=False, _convert_="all")
