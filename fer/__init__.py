"""fer: facial expression recognition with PyTorch Lightning and Hydra."""
