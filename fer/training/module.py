"""The one LightningModule: trains and evaluates any network as an expression classifier."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import center_crop, five_crop

from fer.models import build_network

STAGES = ("train", "val", "test")
#: EmotionClassifier's test-time view settings (see its arguments), which a command line may set for a checkpoint
VIEWS = ("tta_flip", "tta_shift", "tta_rotate", "ten_crop")


def check_views(
    tta_flip: bool = False, tta_shift: int = 0, tta_rotate: float = 0.0, ten_crop: bool | str = False
) -> None:
    """Raises ValueError for test-time views :class:`EmotionClassifier` cannot take (see its arguments)."""
    if ten_crop not in (True, False, "test"):
        raise ValueError(f"ten_crop must be true, false or 'test', not {ten_crop!r}")
    if tta_shift < 0:
        raise ValueError(f"tta_shift must be a number of pixels >= 0, not {tta_shift}")
    if not 0 <= tta_rotate < 90:
        raise ValueError(f"tta_rotate must be an angle in degrees in [0, 90), not {tta_rotate}")


def _rotated(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` rotated by ``degrees`` about its centre, bilinear, edge pixels repeated."""
    a = math.radians(degrees)
    theta = x.new_tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    grid = F.affine_grid(theta, [1, *x.shape[1:]], align_corners=False)
    # expanded to x.shape[0], not len(x), which the ONNX exporter would freeze at its example's batch size
    return F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), padding_mode="border", align_corners=False)


class EmotionClassifier(pl.LightningModule):
    """Softmax cross-entropy classification of expressions by any network.

    Targets are class indices ``int64 (B,)`` or distributions ``float (B, classes)`` (soft
    targets, e.g. FER+ votes); metrics compare predictions with the index or the
    distribution's largest class.

    Args:
        net: an ``nn.Module`` mapping ``(B, ...)`` inputs to ``(B, num_classes)`` logits,
            or its config (a ``fer.models`` ``_target_`` and arguments, see
            :func:`fer.models.build_network`). Given as a config it is stored in the
            checkpoint, so :func:`fer.checkpoint.load_classifier` rebuilds it alone.
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
        tta_flip: in val/test/predict, average the softmax of the image and its mirror.
        tta_shift: in test/predict, also average over the image moved by this many
            pixels up, down, left and right (edge pixels repeated into the gap), each view
            cropped and mirrored as the others; 0: no shifted views. Validation (model
            selection) leaves them out, at a fifth of the cost.
        tta_rotate: in test/predict, also average over the image rotated by this many
            degrees each way about its centre (edge pixels repeated into the corners; the
            default training augmentation turns faces by up to 10 degrees), each view cropped
            and mirrored as the others; 0: no rotated views. Validation leaves them out.
        crop: train on random ``crop`` x ``crop`` crops of the (augmented) images, one
            offset an image, and evaluate on the centre crop (the 40x40-of-48x48 recipe of
            the FER-2013 papers, e.g. Pramerdorfer & Kampel 2016); the network's input
            is ``crop`` pixels. ``None``: whole images.
        ten_crop: with ``crop``, evaluate on the four corner crops and the centre crop
            instead, each also mirrored when ``tta_flip`` (ten-crop test-time augmentation),
            averaging their softmaxes; ``"test"``: only in test and predict, validation
            (model selection) keeps the centre crop at a fifth of the cost.
        channels_last: run the network in channels-last memory format (faster
            convolutions on recent CPUs and GPUs, together with bf16/fp16); ``None``:
            where the network has 2-D convolutions (4-D weights).
        teacher: a trained network of the same classes (e.g. an
            :class:`~fer.models.Ensemble`) whose softened outputs the network also learns in
            training (knowledge distillation, Hinton et al. 2015); it sees the same
            (cropped, mixed) batch, is never trained, and is not saved in checkpoints.
        distill_weight: with a teacher, the training loss is ``(1 - w)`` cross-entropy
            plus ``w`` times the distillation loss.
        distill_temperature: ``T`` of the distillation loss, ``T**2 KL(softmax(teacher / T)
            || softmax(net / T))`` (the ``T**2`` keeps its gradients' scale as ``T`` changes).

    Logs ``{stage}/loss``, ``{stage}/acc``, ``{stage}/f1`` (macro) and ``val/acc_best``;
    keeps the last validation and test confusion matrices in :attr:`confusion`.
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
    ) -> None:
        super().__init__()
        check_views(tta_flip, tta_shift, tta_rotate, ten_crop)
        if not 0 <= distill_weight <= 1 or distill_temperature <= 0:
            raise ValueError(
                f"distill_weight must be in [0, 1] and distill_temperature > 0: {distill_weight}, {distill_temperature}"
            )
        # Plain containers keep the checkpoint's hyper-parameters readable without Hydra.
        net, class_names, optimizer, scheduler = (
            OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v
            for v in (net, class_names, optimizer, scheduler)
        )
        self.net = net if isinstance(net, nn.Module) else build_network(net)
        if channels_last is None:
            channels_last = any(p.ndim == 4 for p in self.net.parameters())
        self.save_hyperparameters(ignore=["net", "teacher"] if isinstance(net, nn.Module) else ["teacher"])
        self.class_names = list(class_names)
        n = len(self.class_names)
        for stage in STAGES:  # train_acc, val_f1, test_confmat, ...
            setattr(self, f"{stage}_acc", MulticlassAccuracy(n, average="micro"))
            setattr(self, f"{stage}_f1", MulticlassF1Score(n, average="macro"))
            if stage != "train":
                setattr(self, f"{stage}_confmat", MulticlassConfusionMatrix(n))
        self.val_acc_best = MaxMetric()
        mixers = ((v2.MixUp, mixup_alpha), (v2.CutMix, cutmix_alpha))
        mixes = [kind(alpha=alpha, num_classes=n) for kind, alpha in mixers if alpha > 0]
        self.mix = v2.RandomChoice(mixes) if mixes else None
        self.confusion: dict[str, torch.Tensor] = {}
        self.class_weights: torch.Tensor | None = None
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # in a tuple, not a submodule: out of the state dict, the optimizer and the weight average
        self._teacher = () if teacher is None else (teacher.eval().requires_grad_(False),)
        if teacher is not None and channels_last:
            teacher.to(memory_format=torch.channels_last)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for a normalised float batch."""
        if self.hparams.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, num_classes)``, the mean over the test-time views (mirrors, shifts, crops)."""
        return self._eval_logits(x).float().softmax(-1)

    def _eval_logits(self, x: torch.Tensor, stage: str = "test") -> torch.Tensor:
        """Logits of the test-time views of ``x`` (shifts, crops, mirrors): log of the mean of their softmaxes."""
        images = [x]
        if (s := self.hparams.tta_shift) and stage != "val":
            side = x.shape[-1]
            padded = F.pad(x, (s, s, s, s), mode="replicate")
            for t, u in ((0, s), (2 * s, s), (s, 0), (s, 2 * s)):  # content moved down, up, right, left
                images.append(padded[..., t : t + side, u : u + side])
        if (degrees := self.hparams.tta_rotate) and stage != "val":
            images += [_rotated(x, angle) for angle in (degrees, -degrees)]
        crop, ten_crop = self.hparams.crop, self.hparams.ten_crop
        views = list(images)
        if crop and (not ten_crop or (ten_crop == "test" and stage == "val")):
            views = [center_crop(i, [crop, crop]) for i in images]
        elif crop:  # the four corners and the centre, the windows fer.models.Ensemble takes for a member
            views = [v for i in images for v in five_crop(i, [crop, crop])]
        if self.hparams.tta_flip:
            views += [v.flip(-1) for v in views]
        if len(views) == 1:
            return self(views[0])
        # every view in one batch
        logs = self(torch.cat(views)).float().log_softmax(-1).unflatten(0, (len(views), -1))
        return logs.logsumexp(0) - torch.log(torch.tensor(float(len(views))))

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
        logits = self(x) if stage == "train" else self._eval_logits(x, stage)
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
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/f1", f1, on_step=False, on_epoch=True)
        return {"loss": loss, "preds": preds}

    def _distillation(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``T**2 KL(teacher || net)`` of the softened outputs on the training batch ``x``."""
        if self.hparams.channels_last and x.ndim == 4:
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
