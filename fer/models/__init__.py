"""Expression networks: plain ``nn.Module``s mapping input tensors to ``(B, classes)`` logits.

Nothing here imports another part of ``fer``. A network is described by a config
(``{"_target_": "fer.models.deep_cnn", "num_classes": 7, ...}``) that checkpoints store;
:func:`build_network` rebuilds it, and only from the networks listed in ``__all__``
(:data:`NETWORKS`, :mod:`fer.models.build`).
"""

from fer.models.build import NETWORKS, allowed_targets, build_network, disallowed_targets
from fer.models.c3d import C3D
from fer.models.cnn4 import CNN4
from fer.models.cnn_lstm import CNNLSTM
from fer.models.dexpression import DeXpression
from fer.models.ensemble import Ensemble
from fer.models.frame_average import FrameAverage
from fer.models.landmark_mlp import LandmarkMLP
from fer.models.mobilenet import mobilenet_v3
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
    "mobilenet_v3",
    "resnet18",
    "shallow_cnn",
]
# the allow-list of build_network: these networks and nothing else
NETWORKS.update((name, globals()[name]) for name in __all__)
__all__ += ["NETWORKS", "allowed_targets", "build_network", "disallowed_targets"]
