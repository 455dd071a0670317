"""Callbacks of a training run: TensorBoard figures, the test report, per-epoch seeds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torchmetrics.functional.classification import multiclass_f1_score

from fer.calibration import reliability_figure
from fer.files import write_json_atomically


def confusion_figure(confusion: torch.Tensor, class_names: list[str], title: str = "") -> plt.Figure:
    """Counts and row-normalised (recall) confusion matrices side by side; rows are true labels."""
    counts = confusion.double()
    normalised = counts / counts.sum(1, keepdim=True).clamp(min=1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, matrix, name, fmt in (
        (axes[0], counts, "counts", "{:.0f}"),
        (axes[1], normalised, "row-normalised", "{:.2f}"),
    ):
        ax.imshow(matrix.numpy(), cmap="Blues")
        ticks = range(len(class_names))
        ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=f"{title} {name}".strip())
        ax.set_xticklabels(class_names, rotation=45, ha="right")
        ax.set_yticklabels(class_names)
        high = matrix.max().item() / 2
        for i in ticks:
            for j in ticks:
                value = matrix[i, j].item()
                ax.text(
                    j,
                    i,
                    fmt.format(value),
                    ha="center",
                    va="center",
                    color="white" if value > high else "black",
                    fontsize=8,
                )
    fig.tight_layout()
    return fig


def classification_report(confusion: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix."""
    c = confusion.double()
    tp = c.diag()
    precision = tp / c.sum(0).clamp(min=1)
    recall = tp / c.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    per_class = {
        name: {
            "precision": precision[k].item(),
            "recall": recall[k].item(),
            "f1": f1[k].item(),
            "support": int(c[k].sum()),
        }
        for k, name in enumerate(class_names)
    }
    return {
        "accuracy": (tp.sum() / c.sum().clamp(min=1)).item(),
        "macro_f1": f1.mean().item(),
        "num_images": int(c.sum()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "class_names": class_names,
    }


def _tensorboard(trainer: pl.Trainer) -> Any:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class ConfusionMatrixLogger(pl.Callback):
    """Logs the validation confusion matrix as a TensorBoard figure every validation epoch."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard(trainer)
        if writer is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        fig = confusion_figure(pl_module.confusion["val"], pl_module.class_names, "val")
        writer.add_figure("val/confusion_matrix", fig, global_step=trainer.current_epoch)
        plt.close(fig)


class SamplePredictionLogger(pl.Callback):
    """Logs a grid of validation images with their predicted and true labels each validation epoch.

    Args:
        num_images: how many images of the first validation batch to show.
    """

    def __init__(self, num_images: int = 16) -> None:
        self.num_images = num_images

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        writer = _tensorboard(trainer)
        if batch_idx != 0 or writer is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        images, labels = batch
        if images.ndim < 4:  # features, not images
            return
        n = min(self.num_images, len(labels))
        cols = min(n, 8)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
        names = pl_module.class_names
        for k, ax in enumerate(axes.flat):
            ax.axis("off")
            if k >= n:
                continue
            image = images[k]
            while image.ndim > 3:  # a clip: its middle frame
                image = image[image.shape[0] // 2]
            image = image.float().mean(0).cpu()  # channels averaged for display
            ax.imshow(image.numpy(), cmap="gray")
            pred, true = outputs["preds"][k].item(), labels[k].item()
            ax.set_title(f"{names[pred]}\n({names[true]})", fontsize=7, color="green" if pred == true else "red")
        fig.suptitle("predicted (true)", fontsize=8)
        fig.tight_layout()
        writer.add_figure("val/samples", fig, global_step=trainer.current_epoch)
        plt.close(fig)


class TestReport(pl.Callback):
    """Writes ``metrics.json``, ``confusion_matrix.png`` and ``reliability.png`` (accuracy against
    confidence, with the expected calibration error) for the test split, the figures also to TensorBoard.

    Args:
        output_dir: folder for both files (the Hydra run dir); created if missing.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        confusion = pl_module.confusion["test"]
        report = classification_report(confusion, pl_module.class_names)
        report["checkpoint"] = getattr(trainer, "ckpt_path", None)
        report["logged"] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        best = float(pl_module.val_acc_best.max_value)  # as the tested checkpoint holds it
        report["logged"]["val/acc_best"] = best if best > float("-inf") else None
        report["epochs_trained"] = trainer.current_epoch
        report["skipped"] = getattr(trainer.datamodule, "skipped", {})
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.output_dir / "metrics.json", report)
        fig = confusion_figure(confusion, pl_module.class_names, "test")
        fig.savefig(self.output_dir / "confusion_matrix.png", dpi=120)
        writer = _tensorboard(trainer)
        if writer is not None:
            writer.add_figure("test/confusion_matrix", fig)  # closes it
        plt.close(fig)
        if pl_module.test_probabilities:
            probabilities, labels = (torch.cat(t) for t in zip(*pl_module.test_probabilities))
            fig = reliability_figure({"test": probabilities}, labels, "test split")
            fig.savefig(self.output_dir / "reliability.png", dpi=110)
            if writer is not None:
                writer.add_figure("test/reliability", fig)
            plt.close(fig)


class PerSetMetrics(pl.Callback):
    """Accuracy and macro-F1 of each member of a combined data set, apart: ``val/acc/<member>`` and
    ``val/f1/<member>`` after every validation, ``test/...`` after the test (so in ``metrics.json``).

    Works with data modules that say which member each image of a split comes from
    (:attr:`fer.data.combined.CombinedDataModule.member_of`); does nothing for the others and in
    multi-process runs (where a process sees only part of a split).
    """

    def _start(self, *args: Any) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    on_validation_epoch_start = on_test_epoch_start = _start

    def _batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        y = batch[1]
        self.seen.append((outputs["preds"].cpu(), (y.argmax(-1) if y.is_floating_point() else y).cpu()))

    on_validation_batch_end = on_test_batch_end = _batch_end

    def _end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        members = getattr(trainer.datamodule, "member_of", {}).get(stage)
        if members is None or trainer.world_size > 1 or trainer.sanity_checking or not self.seen:
            return
        preds, labels = (torch.cat(t) for t in zip(*self.seen))
        members = members[: len(preds)]  # the loader's order; fewer where batches are limited
        for k, name in enumerate(trainer.datamodule.members):
            mine = members == k
            if mine.any():
                p, y = preds[mine], labels[mine]
                per_class = multiclass_f1_score(p, y, len(pl_module.class_names), average="none")
                f1 = per_class[torch.bincount(y, minlength=len(per_class)) > 0].mean()  # classes the member has
                pl_module.log(f"{stage}/acc/{name}", (p == y).float().mean())
                pl_module.log(f"{stage}/f1/{name}", f1)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(trainer, pl_module, "test")


class EpochSeed(pl.Callback):
    """Reseeds torch, NumPy and ``random`` at the start of every training epoch.

    The seed is a function of ``(seed, epoch, global rank)`` alone, so augmentation and
    dropout in epoch ``e`` draw the same numbers whether the run got there uninterrupted
    or resumed from a checkpoint (the training order is seeded the same way by the data
    modules' sampler). Each DDP process gets its own stream. Checkpoints also carry the
    generators' states: a run resumed in the middle of an epoch (after a SIGTERM) goes on
    from exactly where it stopped.

    Args:
        seed: the run's seed; ``None`` disables reseeding.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.epoch = 0
        self._restored: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning does not call on_train_epoch_start when it resumes inside an epoch:
        # the generators go on from the checkpoint's states (an epoch start reseeds anyway)
        restored, self._restored = self._restored, None
        if self.seed is not None and restored is not None:
            self.epoch = restored["epoch"]
            torch.set_rng_state(restored["torch"])
            np.random.set_state(("MT19937", restored["numpy"].numpy().astype(np.uint32), *restored["numpy_pos"]))
            random.setstate((restored["random"][0], tuple(restored["random"][1]), restored["random"][2]))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch = trainer.current_epoch
        if self.seed is None:
            return
        state = np.random.SeedSequence([self.seed, trainer.current_epoch, trainer.global_rank]).generate_state(1)
        seed = int(state[0])
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        return {
            "epoch": self.epoch,
            "torch": torch.get_rng_state(),
            "numpy": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": [int(pos), int(has_gauss), float(cached)],
            "random": [version, list(internal), gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) if "torch" in state_dict else None


class SaveOnSigterm(pl.Callback):
    """On SIGTERM, writes ``last.ckpt`` of where the run stopped (Lightning stops after the current batch).

    With the data module's position in the epoch and :class:`EpochSeed`'s generator
    states in it, ``ckpt_path=last`` continues the run to the result of an uninterrupted
    one. The file is written under a temporary name and renamed.

    Args:
        dirpath: the checkpoints folder of the run.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or not trainer.training:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        partial = self.dirpath / ".last.ckpt.partial"
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            partial.replace(self.dirpath / "last.ckpt")
