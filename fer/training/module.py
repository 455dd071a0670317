"""The one LightningModule: trains and evaluates any network as an expression classifier.

The prediction half (network, class names, test-time views) is a plain
:class:`~fer.predictor.ExpressionPredictor`; this module adds losses, metrics, optimisers and
the training-time augmentations that need a batch (crops, MixUp, CutMix, distillation).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)
from torchvision.transforms import v2

from fer.predictor import ExpressionPredictor

STAGES = ("train", "val", "test")


class EmotionClassifier(pl.LightningModule):
    """Softmax cross-entropy classification of expressions by any network.

    Targets are class indices ``int64 (B,)`` or distributions ``float (B, classes)`` (soft
    targets, e.g. FER+ votes); metrics compare predictions with the index or the
    distribution's largest class.

    Args:
        net: an ``nn.Module`` mapping ``(B, ...)`` inputs to ``(B, num_classes)`` logits,
            or its config (a ``fer.models`` ``_target_`` and arguments, see
            :func:`fer.models.build_network`). Given as a config it is stored in the
            checkpoint, so :func:`fer.checkpoint.load_predictor` rebuilds it alone.
        class_names: one name per output, in label order; ``num_classes`` is its length.
        optimizer: a partial (Hydra ``_partial_: true`` config or callable) taking the
            parameters, e.g. ``torch.optim.AdamW``.
        scheduler: optional partial taking the optimizer. One that takes ``total_steps``
            (``OneCycleLR``) and is not given it gets the run's number of optimizer steps;
            one that takes ``T_max`` (``CosineAnnealingLR``) and is not given it, the run's
            number of epochs (of steps with ``scheduler_interval="step"``).
        scheduler_interval: step the scheduler each ``"epoch"`` or each ``"step"``.
        scheduler_monitor: the metric a ``ReduceLROnPlateau`` scheduler watches.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        mixup_alpha, cutmix_alpha: mix each training batch with a shuffled copy of itself,
            images and targets alike, by MixUp (Zhang et al. 2018) or CutMix (Yun et al.
            2019) with a mixing ratio drawn from Beta(alpha, alpha); 0 leaves that one out;
            with both, each batch takes one of them at random (torchvision's ``v2.MixUp`` /
            ``v2.CutMix``).
        tta_flip, tta_shift, tta_rotate, crop, ten_crop, channels_last: the test-time views and
            input crop of the :class:`~fer.predictor.ExpressionPredictor` (see there); with
            ``crop`` training also takes a random ``crop`` x ``crop`` window of each image.
        teacher: a trained network of the same classes (e.g. an
            :class:`~fer.models.Ensemble`) whose softened outputs the network also learns in
            training (knowledge distillation, Hinton et al. 2015); it sees the same
            (cropped, mixed) batch, is never trained, and is not saved in checkpoints.
        distill_weight: with a teacher, the training loss is ``(1 - w)`` cross-entropy
            plus ``w`` times the distillation loss.
        distill_temperature: ``T`` of the distillation loss, ``T**2 KL(softmax(teacher / T)
            || softmax(net / T))`` (the ``T**2`` keeps its gradients' scale as ``T`` changes).
        temperature, entropy_exponent: of the predictor's probabilities (see
            :class:`~fer.predictor.ExpressionPredictor`); :mod:`fer.calibration` fits them after training.

    Logs ``{stage}/loss``, ``{stage}/acc``, ``{stage}/f1`` (macro), ``val/acc_best`` and, in test,
    ``test/ece`` (expected calibration error, 15 bins) and ``test/nll`` of the probabilities;
    keeps the last validation and test confusion matrices in :attr:`confusion`, and the test
    probabilities and labels of this process, batch by batch, in :attr:`test_probabilities`.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        class_names: Sequence[str],
        optimizer: Any = None,
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/acc",
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        tta_flip: bool = False,
        tta_shift: int = 0,
        tta_rotate: float = 0.0,
        crop: int | None = None,
        ten_crop: bool | str = False,
        channels_last: bool | None = None,
        teacher: nn.Module | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 2.0,
        temperature: float = 1.0,
        entropy_exponent: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= distill_weight <= 1 or distill_temperature <= 0:
            raise ValueError(
                f"distill_weight must be in [0, 1] and distill_temperature > 0: {distill_weight}, {distill_temperature}"
            )
        # Plain containers keep the checkpoint's hyper-parameters readable without Hydra.
        net, class_names, optimizer, scheduler = (
            OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v
            for v in (net, class_names, optimizer, scheduler)
        )
        views = dict(tta_flip=tta_flip, tta_shift=tta_shift, tta_rotate=tta_rotate, crop=crop, ten_crop=ten_crop)
        calibration = dict(temperature=temperature, entropy_exponent=entropy_exponent)
        predictor = ExpressionPredictor(net, class_names, channels_last=channels_last, **calibration, **views)
        channels_last = predictor.channels_last  # resolved, so the checkpoint says what was used
        # The network is this module's one child, so the state dict is the predictor's own (``net.*``) and a
        # checkpoint loads into an ExpressionPredictor as it is; the predictor itself sits outside the tree.
        self.net = predictor.net
        self._predictor = (predictor,)
        self.save_hyperparameters(ignore=["net", "teacher"] if isinstance(net, nn.Module) else ["teacher"])
        n = predictor.num_classes
        for stage in STAGES:  # train_acc, val_f1, test_confmat, ...
            setattr(self, f"{stage}_acc", MulticlassAccuracy(n, average="micro"))
            setattr(self, f"{stage}_f1", MulticlassF1Score(n, average="macro"))
            if stage != "train":
                setattr(self, f"{stage}_confmat", MulticlassConfusionMatrix(n))
        self.val_acc_best = MaxMetric()
        self.test_ece = MulticlassCalibrationError(n, n_bins=15, norm="l1")
        mixers = ((v2.MixUp, mixup_alpha), (v2.CutMix, cutmix_alpha))
        mixes = [kind(alpha=alpha, num_classes=n) for kind, alpha in mixers if alpha > 0]
        self.mix = v2.RandomChoice(mixes) if mixes else None
        self.confusion: dict[str, torch.Tensor] = {}
        self.class_weights: torch.Tensor | None = None
        # in a tuple, not a submodule: out of the state dict, the optimizer and the weight average
        self._teacher = () if teacher is None else (teacher.eval().requires_grad_(False),)
        if teacher is not None and predictor.channels_last:
            teacher.to(memory_format=torch.channels_last)

    @property
    def predictor(self) -> ExpressionPredictor:
        """The plain prediction module around :attr:`net` (what inference loads from the checkpoint)."""
        return self._predictor[0]

    @property
    def class_names(self) -> list[str]:
        return self.predictor.class_names

    @property
    def num_classes(self) -> int:
        return self.predictor.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for a normalised float batch."""
        return self.predictor(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, num_classes)``, see :meth:`ExpressionPredictor.predict_proba`."""
        return self.predictor.predict_proba(x)

    def _random_crops(self, x: torch.Tensor) -> torch.Tensor:
        """A random ``crop`` x ``crop`` window of each image of ``(B, C, S, S)`` (its own offset)."""
        c, side = self.hparams.crop, x.shape[-1]
        offsets = torch.randint(0, side - c + 1, (len(x), 2)).tolist()
        return torch.stack([image[:, t : t + c, u : u + c] for image, (t, u) in zip(x, offsets)])

    def on_fit_start(self) -> None:
        for teacher in self._teacher:  # the trainer has moved the network to its device by now, not the teacher
            teacher.to(self.device)

    def setup(self, stage: str) -> None:
        weights = getattr(self.trainer.datamodule, "class_weights", None)  # data modules may offer them
        self.class_weights = None if weights is None else weights.to(self.device)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        x, target = batch
        if stage == "train" and self.hparams.crop:
            x = self._random_crops(x)
        if stage == "train" and self.mix is not None:  # soft targets from here on
            x, target = self.mix(x, target)
        logits = self(x) if stage == "train" else self.predictor.view_logits(x, stage)
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=self.hparams.label_smoothing)
        if stage == "train" and self._teacher:
            w = self.hparams.distill_weight
            loss = (1 - w) * loss + w * self._distillation(x, logits)
        # soft targets (B, classes), e.g. FER+ vote distributions: metrics compare with their largest class
        y = target.argmax(-1) if target.is_floating_point() else target
        preds = logits.argmax(-1)
        acc, f1 = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_f1")
        acc(preds, y)
        f1(preds, y)
        if stage != "train":
            getattr(self, f"{stage}_confmat")(preds, y)
        if stage == "test":
            self.test_probabilities.append((logits.detach().float().softmax(-1).cpu(), y.cpu()))
            self.test_ece(logits.float().softmax(-1), y)
            self.log("test/ece", self.test_ece, on_step=False, on_epoch=True)
            self.log("test/nll", F.cross_entropy(logits.float(), y), on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/f1", f1, on_step=False, on_epoch=True)
        return {"loss": loss, "preds": preds}

    def _distillation(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``T**2 KL(teacher || net)`` of the softened outputs on the training batch ``x``."""
        if self.predictor.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            taught = self._teacher[0](x).float()
        t = self.hparams.distill_temperature
        log_p, log_q = (logits.float() / t).log_softmax(-1), (taught / t).log_softmax(-1)
        return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * t * t

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.predict_proba(x)

    def _end_eval_epoch(self, stage: str) -> None:
        confmat = getattr(self, f"{stage}_confmat")
        self.confusion[stage] = confmat.compute().cpu()
        confmat.reset()

    def on_validation_epoch_end(self) -> None:
        self._end_eval_epoch("val")
        if not self.trainer.sanity_checking:
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def on_test_start(self) -> None:
        self.test_probabilities: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_test_epoch_end(self) -> None:
        self._end_eval_epoch("test")

    # torchmetrics states are not in the state dict: carry the best validation accuracy
    # through checkpoints by hand, so that a resumed run still knows it.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_acc_best"] = float(self.val_acc_best.max_value)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_acc_best.reset()
        if checkpoint.get("val_acc_best", float("-inf")) > float("-inf"):
            self.val_acc_best.update(torch.tensor(checkpoint["val_acc_best"]))

    def configure_optimizers(self) -> Any:
        make_optimizer = self.hparams.optimizer or torch.optim.AdamW
        if isinstance(make_optimizer, Mapping):
            make_optimizer = instantiate(make_optimizer, _partial_=True)
        optimizer = make_optimizer(params=self.parameters())
        make_scheduler = self.hparams.scheduler
        if make_scheduler is None:
            return optimizer
        if isinstance(make_scheduler, Mapping):
            make_scheduler = instantiate(make_scheduler, _partial_=True)
        extra, parameters = {}, inspect.signature(make_scheduler).parameters
        if "total_steps" in parameters and parameters["total_steps"].default is None:  # OneCycleLR
            extra["total_steps"] = int(self.trainer.estimated_stepping_batches)
        if "T_max" in parameters and parameters["T_max"].default is inspect.Parameter.empty:  # CosineAnnealingLR
            by_step = self.hparams.scheduler_interval == "step"
            extra["T_max"] = int(self.trainer.estimated_stepping_batches) if by_step else self.trainer.max_epochs
        scheduler = make_scheduler(optimizer=optimizer, **extra)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.hparams.scheduler_interval,
                "monitor": self.hparams.scheduler_monitor,
            },
        }
