"""Expression networks: plain ``nn.Module``s mapping ``(B, C, H, W)`` images to ``(B, classes)`` logits."""

from fer.models.cnn4 import CNN4
from fer.models.dexpression import DeXpression
from fer.models.landmark_mlp import LandmarkMLP
from fer.models.vgg_style import VGGStyleCNN, deep_cnn, shallow_cnn

__all__ = ["CNN4", "DeXpression", "LandmarkMLP", "VGGStyleCNN", "deep_cnn", "shallow_cnn"]
