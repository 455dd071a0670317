"""Export a train.py checkpoint: ``python -m fer.export BEST.ckpt OUT.{ckpt,onnx} [--overwrite] [--int8]``.

The format follows the target's suffix: ``.ckpt`` is a slim checkpoint
(:func:`slim_checkpoint`: float16 weights, or with ``--int8`` int8
convolution and linear weights with a scale per channel; the model's hyper-parameters
and input settings; no optimizer state, no data paths), ``.onnx`` an ONNX graph for
onnxruntime with its preprocessing and class names in the metadata
(:func:`export_onnx`; needs ``pip install 'fer[onnx]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer.checkpoint import CheckpointError, input_settings, load_predictor, predictor_of, read_checkpoint
from fer.data.fer2013_files import load_fer2013
from fer.predictor import ExpressionPredictor
from fer.shipped import shipped_model

#: Data-module settings a slim checkpoint keeps: what inference needs to prepare inputs.
INPUT_SETTINGS = ("image_size", "mean", "std", "clip_length", "grey")


def _quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight (``(out, ...)`` float) as int8 and its per-output-row float16 scale (``(out, 1, ...)``):
    symmetric, ``weight ~ int8 * scale``, the largest magnitude of each row mapped to 127."""
    weight = weight.float()
    scale = weight.abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True).clamp_min(1e-8) / 127
    scale = scale.half()
    return (weight / scale.float()).round().clamp(-127, 127).to(torch.int8), scale


def slim_checkpoint(source: str | Path, target: str | Path, overwrite: bool = False, int8: bool = False) -> Path:
    """Write a slim copy of a train.py checkpoint for shipping; returns ``target``.

    Keeps the weights (as float16, half the size), the model's hyper-parameters, the data
    settings of :data:`INPUT_SETTINGS` (no data paths of the machine it was trained on)
    and the epoch; drops optimizer and scheduler states and callbacks. With ``int8``, the
    convolution and linear weights (every tensor of 2 or more dimensions) are stored as
    int8 with a float16 scale per output channel (a quarter of float32; what lets an
    11 M-parameter ResNet-18 ship within 20 MB); :func:`~fer.checkpoint.read_checkpoint` turns them back
    into float32, so every reader sees an ordinary checkpoint.

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``.
        FileNotFoundError, CheckpointError: see :func:`~fer.checkpoint.load_predictor` (the source is
        rebuilt once to check it).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    checkpoint = read_checkpoint(source)
    predictor_of(checkpoint, source)  # rebuilt once: only a checkpoint that loads is shipped
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
    """:meth:`ExpressionPredictor.predict_proba` as a module's ``forward``, for the exporter."""

    def __init__(self, model: ExpressionPredictor) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_proba(x)


def _onnx_metadata(model: ExpressionPredictor, settings: dict) -> dict[str, str]:
    """What a plain onnxruntime script needs besides the graph (see :func:`export_onnx`), as strings."""
    return {
        "class_names": json.dumps(model.class_names),
        "kind": settings["kind"],
        "input_size": str(settings["image_size"]),
        "channels": str(settings["channels"]),
        "clip_length": str(settings["clip_length"] or 0),
        "mean": str(settings["mean"]),
        "std": str(settings["std"]),
        "tta_flip": str(bool(model.tta_flip)),
    }


def _program(model: ExpressionPredictor, example: torch.Tensor, name: str, opset: int, source: object) -> Any:
    """torch's dynamo export of a predictor's probabilities (the batch axis dynamic).

    Raises:
        CheckpointError: the exporter cannot translate the network (its first line of reason given).
    """
    try:
        return torch.onnx.export(
            _Probabilities(model.float().eval()).eval(), (example,), input_names=[name], output_names=["probabilities"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, opset_version=opset, dynamo=True,
            verbose=False,
        )  # fmt: skip
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{source}: the ONNX exporter cannot translate this network: {reason}") from error


def export_onnx(
    source: str | Path | None,
    target: str | Path,
    overwrite: bool = False,
    opset: int = 18,
    views: Mapping[str, Any] | None = None,
) -> Path:
    """Export a classifier to ONNX (torch's dynamo exporter) for onnxruntime; returns ``target``.

    The graph maps a normalised ``float32`` batch (input ``faces`` ``(batch, C, S, S)`` or
    ``clips`` ``(batch, T, C, S, S)``; the batch axis is dynamic) to ``probabilities``
    ``(batch, classes)``, the checkpoint's test-time views included (or ``views``, as
    :func:`~fer.checkpoint.load_predictor` takes them: ``{"tta_flip": False}`` leaves the mirror out).
    The metadata holds what a plain onnxruntime script needs: ``class_names`` (JSON),
    ``kind``, ``input_size``, ``channels``, ``clip_length``, ``mean`` and ``std`` (the input
    is ``(grey / 255 - mean) / std``).

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``.
        FileNotFoundError, CheckpointError: see :func:`~fer.checkpoint.load_predictor`; also a landmark
            model (its 2,278 input features come from dlib, outside the graph), or a network
            the exporter cannot translate (the exporter's reason is given).
        ImportError: ``onnx``/``onnxscript`` missing (``pip install 'fer[onnx]'``).
    """
    import onnx

    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    model, settings = load_predictor(source, views)
    if settings["kind"] == "features":
        raise CheckpointError(
            f"{source}: a landmark model; its inputs are 2,278 landmark distances computed outside the network, "
            "so an ONNX file of it alone would not classify faces"
        )
    size, channels, clip = settings["image_size"], settings["channels"], settings["clip_length"]
    name = "clips" if clip else "faces"
    example = torch.zeros(2, *((clip,) if clip else ()), channels, size, size)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.onnx")
    _program(model, example, name, opset, source).save(str(partial))
    onnx_model = onnx.load(str(partial))
    onnx.helper.set_model_props(onnx_model, _onnx_metadata(model, settings))
    onnx.save(onnx_model, str(partial))
    partial.replace(target)
    return target


def calibration_faces(settings: dict[str, Any], count: int = 512, seed: int = 0) -> np.ndarray:
    """Normalised ``float32 (count, 1, 48, 48)`` FER-2013 Training faces from the sample shipped
    with the package, the calibration set of :func:`quantize_onnx` (so a user needs no data set).

    Raises:
        ValueError: the model does not take whole 48x48 grey faces (the sample's kind).
    """
    if settings["kind"] != "image" or settings["channels"] != 1 or settings["image_size"] != 48:
        raise ValueError("int8 calibration uses FER-2013's 48x48 grey faces; this model takes other inputs")
    images, _ = load_fer2013(None).split("Training")
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return ((images[chosen].float() / 255 - settings["mean"]) / settings["std"]).unsqueeze(1).numpy()


def quantize_onnx(
    source: str | Path, target: str | Path, faces: np.ndarray, overwrite: bool = False, batch: int = 32
) -> Path:
    """An int8 copy of a graph written by :func:`export_onnx`: onnxruntime's static quantisation in the
    QDQ format, weights per channel (int8), activations per tensor (uint8) with ranges calibrated on
    ``faces`` (the graph's normalised input, e.g. :func:`calibration_faces`); the metadata is kept.

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``. CheckpointError: onnxruntime
        cannot quantise the graph (its reason given).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(source), Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    graph = onnx.load(str(source))
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            batches = iter([{graph.graph.input[0].name: faces[i : i + batch]} for i in range(0, len(faces), batch)])
            reader = type("Batches", (), {"get_next": lambda self: next(batches, None)})()  # a CalibrationDataReader
            quantize_static(
                str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv", "Gemm", "MatMul"],  # probabilities stay float, not steps of 1/255
            )  # fmt: skip
        except Exception as error:
            raise CheckpointError(f"{source}: onnxruntime cannot quantise this graph: {error}") from error
        result = onnx.load(str(quantized))
        onnx.helper.set_model_props(result, {p.key: p.value for p in graph.metadata_props} | {"precision": "int8"})
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.stem}.partial.onnx")  # beside the target: the rename is atomic
        onnx.save(result, str(partial))
        partial.replace(target)
    return target


def quantized_onnx(
    source: str | Path | None, target: str | Path, overwrite: bool = False, views: Mapping[str, Any] | None = None
) -> Path:
    """:func:`export_onnx` then :func:`quantize_onnx` on :func:`calibration_faces`: the int8 graph of a checkpoint.

    Raises:
        as :func:`export_onnx` and :func:`quantize_onnx`; ValueError: see :func:`calibration_faces`.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    settings = input_settings(read_checkpoint(shipped_model() if source is None else source))
    faces = calibration_faces(settings)
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_onnx(source, Path(tmp) / "fp32.onnx", views=views)
        return quantize_onnx(graph, target, faces, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a checkpoint written by train.py")
    parser.add_argument("target", type=Path, help="where to write: a slim .ckpt or an .onnx graph")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="slim .ckpt: int8 weights, a quarter of float32; .onnx: static int8 QDQ graph, FER-2013 calibrated",
    )
    args = parser.parse_args(argv)
    if args.target.suffix not in (".ckpt", ".onnx"):
        print(f"error: {args.target}: the target must end in .ckpt or .onnx", file=sys.stderr)
        return 2
    try:
        if args.target.suffix == ".onnx" and args.int8:
            path = quantized_onnx(args.source, args.target, args.overwrite)
        elif args.target.suffix == ".onnx":
            path = export_onnx(args.source, args.target, args.overwrite)
        else:
            path = slim_checkpoint(args.source, args.target, args.overwrite, int8=args.int8)
    except (FileNotFoundError, FileExistsError, CheckpointError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
