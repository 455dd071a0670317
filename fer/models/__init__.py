"""Expression networks: plain ``nn.Module``s mapping ``(B, C, H, W)`` images to ``(B, classes)`` logits."""

from fer.models.c3d import C3D
from fer.models.cnn4 import CNN4
from fer.models.cnn_lstm import CNNLSTM
from fer.models.dexpression import DeXpression
from fer.models.landmark_mlp import LandmarkMLP
from fer.models.vgg_style import VGGStyleCNN, deep_cnn, shallow_cnn

__all__ = ["C3D", "CNN4", "CNNLSTM", "DeXpression", "LandmarkMLP", "VGGStyleCNN", "deep_cnn", "shallow_cnn"]
