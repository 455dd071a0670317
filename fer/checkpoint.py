"""The one place that reads and checks checkpoints and rebuilds their predictors.

A checkpoint is data, never code. Every path that reads one (the recognizer,
``train=false``, resuming a run, pretrained frame networks, ``python -m fer.export``)
goes through :func:`read_checkpoint`, which unpickles with ``weights_only=True``: tensors,
numbers, strings and containers only, so a pickle that would call a function is refused
before anything runs. A network is rebuilt from the checkpoint's stored config only when
every ``_target_`` in it is a ``fer.models`` network (:func:`fer.models.allowed_targets`).
Nothing here imports Lightning, torchmetrics or Hydra.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fer.face.crops import FER2013_MEAN, FER2013_STD
from fer.models import disallowed_targets
from fer.predictor import VIEWS, ExpressionPredictor, check_views
from fer.shipped import shipped_model


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and says why."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of a checkpoint file, unpickled with ``weights_only=True`` on the CPU.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a PyTorch checkpoint of plain data (a pickle that names
            functions or classes other than tensors and containers is refused unrun).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint of plain data (refused: {reason})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, not a dict)")
    if "int8_scales" in checkpoint:
        _dequantize(checkpoint, path)
    return checkpoint


def _dequantize(checkpoint: dict[str, Any], path: Path) -> None:
    """Replace the int8 weights of a slim ``int8`` checkpoint by float32 ones, in place.

    Raises:
        CheckpointError: a scale names no int8 weight of the state dict, or does not fit its shape.
    """
    state, scales = checkpoint.get("state_dict"), checkpoint["int8_scales"]
    if not isinstance(state, dict) or not isinstance(scales, dict):
        raise CheckpointError(f"{path}: int8 weights without a state dict of them")
    for key, scale in scales.items():
        weight = state.get(key)
        if not isinstance(weight, torch.Tensor) or weight.dtype != torch.int8:
            raise CheckpointError(f"{path}: an int8 scale for {key}, which is not an int8 weight of the checkpoint")
        if not isinstance(scale, torch.Tensor) or scale.shape != (len(weight), *(1,) * (weight.dim() - 1)):
            raise CheckpointError(f"{path}: the int8 scale of {key} does not fit its shape {tuple(weight.shape)}")
        state[key] = weight.float() * scale.float()
    del checkpoint["int8_scales"]


def network_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checked network config of a train.py checkpoint's hyper-parameters.

    Raises:
        CheckpointError: no network config or class names, or a ``_target_`` (at any depth)
            outside ``fer.models``; nothing has been called.
    """
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("net"), dict) or "class_names" not in hparams:
        raise CheckpointError(f"{path}: not an EmotionClassifier checkpoint written by train.py (no network config)")
    bad = disallowed_targets(hparams["net"])
    if bad or "_target_" not in hparams["net"]:
        raise CheckpointError(
            f"{path}: the network config names {', '.join(bad) or 'no _target_'}; "
            "only fer.models networks are rebuilt from a checkpoint"
        )
    return hparams["net"]


def check_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint read by :func:`read_checkpoint` whose network config passed :func:`network_config`.

    Resuming a run goes through here before Lightning reads the file again.

    Raises:
        FileNotFoundError, CheckpointError: see both.
    """
    checkpoint = read_checkpoint(path)
    network_config(checkpoint, path)
    return checkpoint


def input_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """How the model's inputs were prepared: ``kind`` (``"image"``, ``"clip"`` or ``"features"``),
    ``image_size`` (pixels), ``channels``, ``clip_length`` (frames or ``None``), ``in_features``
    (or ``None``), ``mean`` and ``std`` (on the [0, 1] scale)."""
    net = checkpoint["hyper_parameters"]["net"]
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    clip = net.get("clip_length")
    kind = "features" if "in_features" in net else "clip" if clip else "image"
    return {
        "kind": kind,
        "image_size": data.get("image_size", net.get("input_size", 48)),
        "channels": net.get("in_channels", 1),
        "clip_length": clip,
        "in_features": net.get("in_features"),
        "mean": data.get("mean", FER2013_MEAN),
        "std": data.get("std", FER2013_STD),
    }


def predictor_arguments(
    checkpoint: dict[str, Any], path: str | Path, views: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:class:`~fer.predictor.ExpressionPredictor`'s keyword arguments as a checkpoint stores them.

    ``views`` (``tta_flip``, ``tta_shift``, ``tta_rotate``, ``ten_crop``) replace the stored ones.

    Raises:
        CheckpointError: see :func:`network_config`. ValueError: ``views`` the predictor cannot take.
    """
    net = network_config(checkpoint, path)
    hparams = checkpoint["hyper_parameters"]
    check_views(**(views or {}))
    kept = {k: hparams[k] for k in (*VIEWS, "crop", "channels_last", "temperature", "entropy_exponent") if k in hparams}
    kept |= dict(views or {})
    return {"net": net, "class_names": list(hparams["class_names"]), **kept}


def predictor_of(
    checkpoint: dict[str, Any], path: str | Path, views: Mapping[str, Any] | None = None
) -> ExpressionPredictor:
    """The checked predictor of a checkpoint already read from ``path``, in eval mode on the CPU.

    Raises:
        CheckpointError: see :func:`network_config`, or the weights do not fit the architecture it names.
        ValueError: ``views`` the predictor cannot take.
    """
    arguments = predictor_arguments(checkpoint, path, views)
    try:
        predictor = ExpressionPredictor(**arguments)
        predictor.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: weights do not fit the architecture {arguments['net']}: {error}") from error
    predictor.eval()
    settings = input_settings(checkpoint)
    if settings["kind"] == "features":
        shape = (1, settings["in_features"])
    else:
        clip = (settings["clip_length"],) if settings["clip_length"] else ()
        shape = (1, *clip, settings["channels"], settings["image_size"], settings["image_size"])
    with torch.inference_mode():  # as inference calls it (a predictor that crops gets whole images)
        outputs = predictor.predict_proba(torch.zeros(shape)).shape[-1]
    if outputs != predictor.num_classes:
        raise CheckpointError(
            f"{path}: weights do not fit: the network has {outputs} outputs for {predictor.num_classes} class names"
        )
    return predictor


def load_predictor(
    path: str | Path | None = None, views: Mapping[str, Any] | None = None
) -> tuple[ExpressionPredictor, dict[str, Any]]:
    """An :class:`~fer.predictor.ExpressionPredictor` in eval mode on the CPU, and its :func:`input_settings`.

    Args:
        path: a train.py checkpoint (full or slim); ``None`` is the default shipped model
            (:data:`fer.shipped.DEFAULT_MODEL`).
        views: test-time views to use instead of the checkpoint's (``tta_flip``,
            ``tta_shift``, ``tta_rotate``, ``ten_crop``); ``None``: the checkpoint's own.

    Raises:
        FileNotFoundError: no such file. CheckpointError: see :func:`read_checkpoint` and
        :func:`predictor_of`. ValueError: ``views`` the predictor cannot take.
    """
    path = shipped_model() if path is None else Path(path)
    checkpoint = read_checkpoint(path)
    return predictor_of(checkpoint, path, views), input_settings(checkpoint)


def pretrained_network(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[str], int | None, bool]:
    """An image classifier's network config, weights, class names, input crop and ten-crop test, to start training from.

    The crop is the side in pixels of the centre crop the classifier's network was trained
    on (``model.crop``; ``None``: whole images); the flag tells whether it is tested on
    ten crops (``model.ten_crop`` true or ``test``, with a crop).

    ``model.net.pretrained=PATH`` (see :func:`fer.training.run.build_model`): an image
    network is fine-tuned from these weights (:func:`fer.training.transfer.transfer_weights`);
    a clip model gets this config as ``frame_net`` (a CNN-LSTM with ``drop_frame_classifier``)
    and these weights; the new checkpoint stores the config, never the path.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`load_predictor`; also a clip or
        feature model, which cannot be a frame network.
    """
    checkpoint = read_checkpoint(path)
    predictor = predictor_of(checkpoint, path)
    kind = input_settings(checkpoint)["kind"]
    if kind != "image":
        raise CheckpointError(f"{path}: a {kind} model; only image models are pretrained networks")
    ten_crop = bool(predictor.crop and predictor.ten_crop)
    return predictor.net_config, predictor.net.state_dict(), predictor.class_names, predictor.crop, ten_crop


def write_temperature(
    source: str | Path, target: str | Path, temperature: float, entropy_exponent: float = 0.0, overwrite: bool = False
) -> Path:
    """A copy of a checkpoint whose predictor divides its logits by ``temperature`` times the normalised
    entropy to ``entropy_exponent`` (the hyper-parameters of the same names, see
    :class:`~fer.predictor.ExpressionPredictor`); everything else is kept as stored
    (int8 weights stay int8). Written to a partial file first, so ``target`` is whole or untouched.

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``. FileNotFoundError, CheckpointError: see
        :func:`read_checkpoint`; also a checkpoint without hyper-parameters. ValueError: ``temperature`` <= 0.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    if not temperature > 0:
        raise ValueError(f"temperature must be above 0, not {temperature}")
    read_checkpoint(source)  # checked as every reader checks it
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise CheckpointError(f"{source}: no hyper_parameters to hold a temperature")
    checkpoint["hyper_parameters"]["temperature"] = float(temperature)
    checkpoint["hyper_parameters"]["entropy_exponent"] = float(entropy_exponent)
    partial = target.with_name(f".{target.name}.partial")
    torch.save(checkpoint, partial)
    partial.replace(target)
    return target
