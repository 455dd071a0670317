"""Test helpers: a callback for real train.py runs (``+callbacks.NAME._target_=tests.helpers.X``), checkpoints."""

import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch


class SigtermAt(pl.Callback):
    """Sends SIGTERM to this very process after training batch ``batch`` of ``epoch``: a real signal, known point."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.current_epoch == self.epoch and args[-1] + 1 == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)


def save_classifier(
    path: Path, net: dict, num_classes: int, class_names: list[str] | None = None, **classifier: object
) -> Path:
    """A checkpoint, as train.py stores its model, of an untrained network config (seeded weights);
    classes ``c0, c1, ...`` unless ``class_names`` are given; ``classifier``: more
    EmotionClassifier settings (``crop=40``, say)."""
    from fer.training.module import EmotionClassifier

    torch.manual_seed(0)
    model = EmotionClassifier(net, class_names=class_names or [f"c{k}" for k in range(num_classes)], **classifier)
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    return path
