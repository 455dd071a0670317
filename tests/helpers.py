"""Callbacks that tests add to real train.py runs (as ``+callbacks.NAME._target_=tests.helpers.X``)."""

import os
import signal

import pytorch_lightning as pl


class SigtermAt(pl.Callback):
    """Sends SIGTERM to this very process after training batch ``batch`` of ``epoch``: a real signal, known point."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.current_epoch == self.epoch and args[-1] + 1 == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)
