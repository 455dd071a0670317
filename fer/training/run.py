"""A training run driven by a composed Hydra config (see ``conf/train.yaml``): build, fit, test."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fer.checkpoint import (
    CheckpointError,
    check_checkpoint,
    predictor_arguments,
    predictor_of,
    pretrained_network,
    read_checkpoint,
)
from fer.models import Ensemble
from fer.models.ensemble import check_ten_crops
from fer.predictor import VIEWS
from fer.training.module import EmotionClassifier
from fer.training.transfer import transfer_weights

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, datamodule: pl.LightningDataModule) -> EmotionClassifier:
    """The :class:`EmotionClassifier` of ``cfg.model`` for ``datamodule``'s inputs and classes.

    The network config gets ``num_classes`` and the data module's ``input_spec``
    (``in_channels`` and ``input_size``; ``clip_length`` for clips; ``in_features`` for
    feature vectors). ``model.net.pretrained=PATH`` (an image classifier checkpoint) is
    read here, not by the network: an image network of the same architecture starts
    from its weights, class rows matched by name (:func:`fer.training.transfer.transfer_weights`);
    a clip model takes it as its frame network (:func:`fer.checkpoint.pretrained_network`):
    the CNN-LSTM without its class layer, the frame average with it.
    ``model.teacher=[a.ckpt,...]`` (image classifiers of the data's classes, trained on the
    input the network gets) become the :class:`~fer.models.Ensemble` it is distilled from.

    Raises:
        TypeError: the network does not take the data module's inputs (an image network
            on clips, say). FileNotFoundError, CheckpointError: a bad ``pretrained`` or
            ``teacher``.
    """
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    net = model_cfg["net"]
    teachers = model_cfg.pop("teacher", None)
    if "checkpoints" in net:  # model=ensemble: trained image classifiers, their weights as they are
        return _ensemble(model_cfg, net.pop("checkpoints"), datamodule)
    extra = {"teacher": _teacher(teachers, datamodule, model_cfg.get("crop"))} if teachers else {}
    pretrained = net.pop("pretrained", None)
    if pretrained:
        source_net, weights, source_classes, source_crop, _ = pretrained_network(pretrained)
        if source_crop != model_cfg.get("crop"):
            log.warning(
                "%s was trained on %s, this run uses %s", pretrained, *map(_input, (source_crop, model_cfg.get("crop")))
            )
        if "frame_net" in net:  # a clip model: the image classifier becomes its frame network
            net["frame_net"] = source_net
            if "drop_frame_classifier" in net:  # the CNN-LSTM's frame embedding: the class layer's input
                net["drop_frame_classifier"] = True
        elif source_net["_target_"] != net["_target_"]:
            raise CheckpointError(
                f"{pretrained}: holds {source_net['_target_']}, but the model config builds {net['_target_']}"
            )
    net.update(num_classes=datamodule.num_classes, **datamodule.input_spec)
    if model_cfg.get("crop"):  # the classifier crops the data's images for its network
        net["input_size"] = model_cfg["crop"]
    model = instantiate(model_cfg, class_names=list(datamodule.class_names), **extra)
    if pretrained:
        target = model.net.frame_net if "frame_net" in net else model.net
        fresh = transfer_weights(target, weights, source_classes, list(datamodule.class_names), pretrained)
        if net.get("drop_frame_classifier"):
            log.info("%s: the frame network from %s, less its class layer", net["_target_"], pretrained)
        else:
            log.info("Fine-tuning %s from %s; classes new to it: %s", net["_target_"], pretrained, fresh or "none")
    return model


def _input(crop: int | None) -> str:
    return f"{crop}x{crop} crops (model.crop={crop})" if crop else "whole images (model.crop=null)"


def _members(
    checkpoints: list[str], datamodule: pl.LightningDataModule, crop: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, torch.Tensor]], list[int | None], list[bool]]:
    """Network configs, weights, input crops and ten-crop flags of image classifiers of ``datamodule``'s classes.

    ``crop``: the side of the inputs they will get (the crops a distilled network trains
    on; ``None``: the data's whole images); members trained on larger inputs are refused.

    Raises:
        ValueError: no checkpoints. CheckpointError: a checkpoint with other classes (or
            another order) than the data's, not an image model, or trained on larger inputs.
    """
    if not checkpoints:
        raise ValueError("an ensemble needs checkpoints: model.net.checkpoints=[a.ckpt,b.ckpt,...]")
    configs, states, member_classes, crops, ten_crops = zip(*(pretrained_network(path) for path in checkpoints))
    for path, classes, member_crop in zip(checkpoints, member_classes, crops):
        if classes != list(datamodule.class_names):
            raise CheckpointError(f"{path}: classes {classes} are not the data's {list(datamodule.class_names)}")
        if crop and (member_crop is None or member_crop > crop):
            raise CheckpointError(f"{path}: trained on {_input(member_crop)}, the inputs here are {crop}x{crop} crops")
    return list(configs), list(states), list(crops), list(ten_crops)


def _ensemble(
    model_cfg: dict[str, Any], checkpoints: list[str], datamodule: pl.LightningDataModule
) -> EmotionClassifier:
    """The classifier of ``model=ensemble`` (see :func:`_members`); its checkpoint stores configs, never paths."""
    configs, states, crops, ten_crops = _members(checkpoints, datamodule)
    given = model_cfg["net"].get("ten_crops")
    if given is None:  # each member votes on its own test's crops
        given = ten_crops
    try:  # here, not in instantiate, which would wrap the error twice
        check_ten_crops(crops, given)
    except ValueError as error:
        raise ValueError(f"model.net.ten_crops (one flag a checkpoint): {error}") from error
    model_cfg["net"].update(members=configs, crops=crops, ten_crops=given)
    model = instantiate(model_cfg, class_names=list(datamodule.class_names))
    for member, weights in zip(model.net.members, states):
        member.load_state_dict(weights)
    return model


def _teacher(checkpoints: list[str], datamodule: pl.LightningDataModule, crop: int | None) -> Ensemble:
    """The :class:`~fer.models.Ensemble` of ``model.teacher=[...]``, distilled into a network (see :func:`_members`)."""
    configs, states, crops, _ = _members(checkpoints, datamodule, crop)
    teacher = Ensemble(configs, crops)  # centre crops only: ten would cost every training step five passes
    for member, weights in zip(teacher.members, states):
        member.load_state_dict(weights)
    log.info("Distilling from the mean of %s", ", ".join(map(str, checkpoints)))
    return teacher


#: Callbacks that only work with a logger; left out of runs without one (``logger=none``).
NEED_A_LOGGER = ("pytorch_lightning.callbacks.LearningRateMonitor",)


def _instantiate_all(configs: DictConfig | None, logged: bool = True) -> list[Any]:
    """Objects of every entry of a config group that has a ``_target_`` (callbacks, loggers);
    without ``logged``, the callbacks of :data:`NEED_A_LOGGER` are left out."""
    if not configs:
        return []
    entries = [c for c in configs.values() if isinstance(c, DictConfig) and "_target_" in c]
    return [instantiate(c) for c in entries if logged or c._target_ not in NEED_A_LOGGER]


def _views_given(cfg: DictConfig) -> dict[str, Any]:
    """The test-time views (:data:`~fer.predictor.VIEWS`, e.g. ``model.tta_shift``) set on the command line.

    ``train=false ckpt_path=...`` tests the checkpoint with its own views unless the
    command line names others; the model config's defaults do not count.
    """
    if not HydraConfig.initialized():
        return {}
    given = {o.split("=", 1)[0].lstrip("+") for o in HydraConfig.get().overrides.task if not o.startswith("~")}
    return {key: cfg.model[key] for key in VIEWS if f"model.{key}" in given}


def tested_checkpoint(path: str, views: dict[str, Any]) -> EmotionClassifier:
    """The classifier of a checkpoint, to test it (``train=false``) with its own views or ``views``.

    Raises:
        FileNotFoundError, CheckpointError, ValueError: see :func:`fer.checkpoint.predictor_of`.
    """
    checkpoint = read_checkpoint(path)
    predictor = predictor_of(checkpoint, path, views)  # checked: the weights fit the network
    smoothing = checkpoint["hyper_parameters"].get("label_smoothing", 0.0)
    model = EmotionClassifier(**predictor_arguments(checkpoint, path, views), label_smoothing=smoothing)
    model.load_state_dict(predictor.state_dict())
    model.on_load_checkpoint(checkpoint)
    return model.eval()


def resolve_checkpoint(ckpt_path: str | None, output_dir: Path, train: bool) -> str | None:
    """The checkpoint file that ``ckpt_path`` names.

    ``"last"`` is this run dir's ``checkpoints/last.ckpt`` (resume a killed run with
    ``hydra.run.dir=<its dir> ckpt_path=last``); a run dir stands for its
    ``checkpoints/last.ckpt`` when training (resume) and its ``checkpoints/best.ckpt``
    when only testing; anything else is a checkpoint file.

    Raises:
        FileNotFoundError: the checkpoint does not exist; the message names the path.
    """
    if ckpt_path is None:
        return None
    path = Path(ckpt_path)
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
    elif path.is_dir():
        path = path / "checkpoints" / ("last.ckpt" if train else "best.ckpt")
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no checkpoint file at {path}")
    return str(path)


def _model(cfg: DictConfig, datamodule: pl.LightningDataModule, ckpt_path: str | None) -> EmotionClassifier:
    """The classifier a run fits or tests: built from ``cfg.model``, or read from ``ckpt_path`` to test it."""
    if cfg.train:
        model = build_model(cfg, datamodule)
        if ckpt_path:
            check_checkpoint(ckpt_path)  # refused here, unrun, unless plain data naming a fer.models network
        return model
    if ckpt_path:
        return tested_checkpoint(ckpt_path, _views_given(cfg))
    if "checkpoints" in cfg.model.net:  # an ensemble of trained models: nothing to fit
        return build_model(cfg, datamodule)
    raise ValueError("train=false needs ckpt_path=PATH to a checkpoint to test (or model=ensemble)")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (``cfg.train``) and test (``cfg.test``) a model; returns the logged metrics.

    With ``train=false`` the model is rebuilt from ``ckpt_path`` alone (its stored
    architecture), so any checkpoint of ours can be tested on any data config; test-time
    views named on the command line (``model.tta_shift=1``) replace the checkpoint's.

    ``ckpt_path`` (see :func:`resolve_checkpoint`) resumes training where that
    checkpoint left it, with the same result as an uninterrupted run.

    Raises:
        ValueError: ``train=false`` without ``ckpt_path``.
        FileNotFoundError: ``ckpt_path`` names no checkpoint.
        CheckpointError: ``ckpt_path`` is not a checkpoint of plain data or names a
            network outside ``fer.models``.
    """
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    datamodule: pl.LightningDataModule = instantiate(cfg.data, _convert_="all")
    ckpt_path = resolve_checkpoint(cfg.get("ckpt_path"), output_dir, cfg.train)
    model = _model(cfg, datamodule, ckpt_path)

    loggers = _instantiate_all(cfg.get("logger"))
    callbacks = _instantiate_all(cfg.get("callbacks"), logged=bool(loggers))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True), metrics={"val/acc_best": 0, "test/acc": 0})

    if cfg.train:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:  # Lightning stops after the current batch; a scheduler must see a failure
            log.warning("stopped by SIGTERM; last.ckpt holds where it stopped: resume with ckpt_path=last")
            raise SystemExit(143) from None
        ckpt_path = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        if ckpt_path is None:
            log.warning("no best checkpoint was saved; testing the weights as they are")
        # Weight averaging (callbacks=ema) would load the checkpoint's raw weights back for the
        # test; the averaged ones, which were validated and selected, are what is tested.
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test and hasattr(datamodule, "splits"):
        datamodule.setup("test")
        if "test" not in datamodule.splits:
            log.warning("no test split: test skipped (as with test=false)")
            return metrics
    if cfg.test:
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path if cfg.train else None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        log.info("test report: %s", output_dir / "metrics.json")
    if not cfg.train and not ckpt_path and cfg.test:  # the ensemble as one checkpoint, for infer.py and export
        path = output_dir / "checkpoints" / "ensemble.ckpt"
        trainer.save_checkpoint(path, weights_only=True)
        log.info("ensemble checkpoint: %s", path)
    return metrics
