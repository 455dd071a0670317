"""The one place that reads, checks, rebuilds and slims checkpoints.

A checkpoint is data, never code. Every path that reads one (the recognizer,
``train=false``, resuming a run, pretrained frame networks, ``python -m fer.export``)
goes through :func:`read_checkpoint`, which unpickles with ``weights_only=True``: tensors,
numbers, strings and containers only, so a pickle that would call a function is refused
before anything runs. A network is rebuilt from the checkpoint's stored config only when
every ``_target_`` in it is a ``fer.models`` network (:data:`fer.models.ALLOWED_TARGETS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from fer.face.crops import FER2013_MEAN, FER2013_STD
from fer.models import disallowed_targets
from fer.training.module import VIEWS, EmotionClassifier, check_views

#: The model used when none is named: the best FER-2013 one (distilled ResNet-18, 72.6 % PrivateTest; see
#: MODEL_CARD_fer2013_resnet18.md).
SHIPPED_CHECKPOINT = resources.files("fer") / "weights" / "fer2013_resnet18.ckpt"
#: Models shipped in ``fer/weights`` by short name (``infer.py model_name=...``), each with a model card.
#: The deep CNNs are 2.6x faster a face than the ResNet-18s and the starting points of the FER+, CK+ and
#: BAUM-2 recipes.
SHIPPED_MODELS = {
    "fer2013": "fer2013_resnet18.ckpt",
    "fer2013_deep_cnn": "fer2013_deep_cnn.ckpt",
    "ferplus": "ferplus_resnet18.ckpt",
    "ferplus_deep_cnn": "ferplus_deep_cnn.ckpt",
}


def shipped_model(name: str) -> Path:
    """The checkpoint of a shipped model's short name (:data:`SHIPPED_MODELS`).

    Raises:
        ValueError: not a shipped model's name; the message lists them.
    """
    if name not in SHIPPED_MODELS:
        raise ValueError(f"model_name={name!r} is not a shipped model; choose one of {sorted(SHIPPED_MODELS)}")
    return Path(str(resources.files("fer") / "weights" / SHIPPED_MODELS[name]))


#: Data-module settings a slim checkpoint keeps: what inference needs to prepare inputs.
INPUT_SETTINGS = ("image_size", "mean", "std", "clip_length", "grey")


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


def _quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight (``(out, ...)`` float) as int8 and its per-output-row float16 scale (``(out, 1, ...)``):
    symmetric, ``weight ~ int8 * scale``, the largest magnitude of each row mapped to 127."""
    weight = weight.float()
    scale = weight.abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True).clamp_min(1e-8) / 127
    scale = scale.half()
    return (weight / scale.float()).round().clamp(-127, 127).to(torch.int8), scale


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


def load_classifier(
    path: str | Path | None = None, views: Mapping[str, Any] | None = None
) -> tuple[EmotionClassifier, dict[str, Any]]:
    """An :class:`EmotionClassifier` in eval mode on the CPU, and its :func:`input_settings`.

    Args:
        path: a train.py checkpoint (full or slim); ``None`` is the shipped FER-2013 model.
        views: test-time views to use instead of the checkpoint's (``tta_flip``,
            ``tta_shift``, ``tta_rotate``, ``ten_crop``); ``None``: the checkpoint's own.

    Raises:
        FileNotFoundError: no such file. CheckpointError: see :func:`read_checkpoint` and
        :func:`network_config`, or the weights do not fit the architecture it names.
        ValueError: ``views`` that :class:`EmotionClassifier` cannot take.
    """
    path = Path(str(SHIPPED_CHECKPOINT)) if path is None else Path(path)
    return _classifier(read_checkpoint(path), path, views)


def _classifier(
    checkpoint: dict[str, Any], path: Path, views: Mapping[str, Any] | None = None
) -> tuple[EmotionClassifier, dict[str, Any]]:
    """:func:`load_classifier` of a checkpoint already read from ``path``."""
    net = network_config(checkpoint, path)
    hparams = checkpoint["hyper_parameters"]
    keep = ("label_smoothing", *VIEWS, "crop", "channels_last")
    check_views(**(views or {}))
    kept = {k: hparams[k] for k in keep if k in hparams} | dict(views or {})
    try:
        model = EmotionClassifier(net, hparams["class_names"], **kept)
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: weights do not fit the architecture {net}: {error}") from error
    model.on_load_checkpoint(checkpoint)
    model.eval()
    settings = input_settings(checkpoint)
    if settings["kind"] == "features":
        shape = (1, settings["in_features"])
    else:
        clip = (settings["clip_length"],) if settings["clip_length"] else ()
        shape = (1, *clip, settings["channels"], settings["image_size"], settings["image_size"])
    with torch.inference_mode():  # as inference calls it (a classifier that crops gets whole images)
        outputs = model.predict_proba(torch.zeros(shape)).shape[-1]
    if outputs != model.num_classes:
        raise CheckpointError(
            f"{path}: weights do not fit: the network has {outputs} outputs for {model.num_classes} class names"
        )
    return model, settings


def pretrained_network(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[str], int | None, bool]:
    """An image classifier's network config, weights, class names, input crop and ten-crop test, to start training from.

    The crop is the side in pixels of the centre crop the classifier's network was trained
    on (``model.crop``; ``None``: whole images); the flag tells whether it is tested on
    ten crops (``model.ten_crop`` true or ``test``, with a crop).

    ``model.net.pretrained=PATH`` (see :func:`fer.training.run.build_model`): an image
    network is fine-tuned from these weights (:func:`transfer_weights`); a clip model gets
    this config as ``frame_net`` (a CNN-LSTM with ``drop_frame_classifier``) and these
    weights; the new checkpoint stores the config, never the path.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`load_classifier`; also a clip or
        feature model, which cannot be a frame network.
    """
    model, settings = load_classifier(path)
    if settings["kind"] != "image":
        raise CheckpointError(f"{path}: a {settings['kind']} model; only image models are pretrained networks")
    crop = model.hparams.get("crop")
    ten_crop = bool(crop and model.hparams.get("ten_crop"))
    return dict(model.hparams.net), model.net.state_dict(), list(model.class_names), crop, ten_crop


def transfer_weights(
    net: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    source_classes: list[str],
    target_classes: list[str],
    path: str | Path,
) -> list[str]:
    """Load a pretrained image classifier's ``weights`` into ``net`` (same architecture).

    Every tensor of the same shape is copied. A tensor whose first dimension is the
    class count (the class layer's weight and bias) gets the rows of the classes both
    sets name (FER-2013's ``happy`` row for FER+'s ``happy``); rows of new classes keep
    their fresh initialisation. Returns the target classes that started fresh.

    Raises:
        CheckpointError: a tensor of ``net`` is absent from ``weights`` or fits neither way.
    """
    state = net.state_dict()
    missing = sorted(set(state) - set(weights))
    if missing:
        raise CheckpointError(f"{path}: the pretrained weights lack {missing[:5]}; is it the same network?")
    shared = [(target_classes.index(n), source_classes.index(n)) for n in target_classes if n in source_classes]
    rows = torch.tensor([t for t, _ in shared]), torch.tensor([s for _, s in shared])
    for key, tensor in state.items():
        source = weights[key]
        if source.shape == tensor.shape:
            tensor.copy_(source)
        elif (
            source.shape[:1] == (len(source_classes),)
            and tensor.shape[:1] == (len(target_classes),)
            and source.shape[1:] == tensor.shape[1:]
        ):
            tensor[rows[0]] = source[rows[1]].to(tensor.dtype)
        else:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(source.shape)}, the network wants {tuple(tensor.shape)}"
            )
    return [n for n in target_classes if n not in source_classes]


def slim_checkpoint(source: str | Path, target: str | Path, overwrite: bool = False, int8: bool = False) -> Path:
    """Write a slim copy of a train.py checkpoint for shipping; returns ``target``.

    Keeps the weights (as float16, half the size), the model's hyper-parameters, the data
    settings of :data:`INPUT_SETTINGS` (no data paths of the machine it was trained on)
    and the epoch; drops optimizer and scheduler states and callbacks. With ``int8``, the
    convolution and linear weights (every tensor of 2 or more dimensions) are stored as
    int8 with a float16 scale per output channel (a quarter of float32; what lets an
    11 M-parameter ResNet-18 ship within 20 MB); :func:`read_checkpoint` turns them back
    into float32, so every reader sees an ordinary checkpoint.

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``.
        FileNotFoundError, CheckpointError: see :func:`load_classifier` (the source is
        rebuilt once to check it).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    checkpoint = read_checkpoint(source)
    _classifier(checkpoint, Path(source))  # rebuilt once: only a checkpoint that loads is shipped
    slim = {k: checkpoint[k] for k in ("epoch", "global_step", "pytorch-lightning_version") if k in checkpoint}
    hparams = checkpoint["hyper_parameters"]
    slim["hyper_parameters"] = {k: v for k, v in hparams.items() if k not in ("optimizer", "scheduler")}
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    slim["datamodule_hyper_parameters"] = {k: data[k] for k in INPUT_SETTINGS if k in data}
    slim["val_acc_best"] = checkpoint.get("val_acc_best", float("-inf"))
    slim["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    if int8:
        slim["int8_scales"] = {}
        for key, weight in slim["state_dict"].items():
            if weight.is_floating_point() and weight.dim() >= 2:
                slim["state_dict"][key], slim["int8_scales"][key] = _quantize(checkpoint["state_dict"][key])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    torch.save(slim, partial)
    partial.replace(target)
    return target


class _Probabilities(torch.nn.Module):
    """:meth:`EmotionClassifier.predict_proba` as a module's ``forward``, for the exporter."""

    def __init__(self, model: EmotionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_proba(x)


def export_onnx(source: str | Path | None, target: str | Path, overwrite: bool = False, opset: int = 18) -> Path:
    """Export a classifier to ONNX (torch's dynamo exporter) for onnxruntime; returns ``target``.

    The graph maps a normalised ``float32`` batch (input ``faces`` ``(batch, C, S, S)`` or
    ``clips`` ``(batch, T, C, S, S)``; the batch axis is dynamic) to ``probabilities``
    ``(batch, classes)``, mirror test-time augmentation included where the model uses it.
    The metadata holds what a plain onnxruntime script needs: ``class_names`` (JSON),
    ``kind``, ``input_size``, ``channels``, ``clip_length``, ``mean`` and ``std`` (the input
    is ``(grey / 255 - mean) / std``).

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``.
        FileNotFoundError, CheckpointError: see :func:`load_classifier`; also a landmark
            model (its 2,278 input features come from dlib, outside the graph), or a network
            the exporter cannot translate (the exporter's reason is given).
        ImportError: ``onnx``/``onnxscript`` missing (``pip install 'fer[onnx]'``).
    """
    import json

    import onnx

    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    model, settings = load_classifier(source)
    if settings["kind"] == "features":
        raise CheckpointError(
            f"{source}: a landmark model; its inputs are 2,278 landmark distances computed outside the network, "
            "so an ONNX file of it alone would not classify faces"
        )
    size, channels, clip = settings["image_size"], settings["channels"], settings["clip_length"]
    name = "clips" if clip else "faces"
    example = torch.zeros(2, *((clip,) if clip else ()), channels, size, size)
    wrapper = _Probabilities(model.float().eval()).eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.onnx")
    try:
        program = torch.onnx.export(
            wrapper,
            (example,),
            input_names=[name],
            output_names=["probabilities"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{source}: the ONNX exporter cannot translate this network: {reason}") from error
    program.save(str(partial))
    onnx_model = onnx.load(str(partial))
    metadata = {
        "class_names": json.dumps(model.class_names),
        "kind": settings["kind"],
        "input_size": str(size),
        "channels": str(channels),
        "clip_length": str(clip or 0),
        "mean": str(settings["mean"]),
        "std": str(settings["std"]),
        "tta_flip": str(bool(model.hparams.get("tta_flip"))),
    }
    onnx.helper.set_model_props(onnx_model, metadata)
    onnx.save(onnx_model, str(partial))
    partial.replace(target)
    return target
