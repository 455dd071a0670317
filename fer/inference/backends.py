"""What computes the class probabilities of prepared faces: PyTorch, or onnxruntime on an exported graph."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer.checkpoint import CheckpointError, load_predictor
from fer.export import export_onnx, quantized_onnx
from fer.shipped import shipped_model

log = logging.getLogger(__name__)


class TorchBackend:
    """An :class:`~fer.predictor.ExpressionPredictor` on ``device`` (half precision on CUDA), with the
    checkpoint's test-time views or ``views`` (see :func:`~fer.checkpoint.load_predictor`).

    Attributes:
        class_names: one name per output. settings: see :func:`fer.checkpoint.input_settings`.
    """

    def __init__(self, ckpt_path: str | Path | None, device: str = "cpu", views: dict[str, Any] | None = None) -> None:
        model, self.settings = load_predictor(ckpt_path, views)
        self.model = model.to(device)
        if device.startswith("cuda"):
            self.model = self.model.half()
        self.class_names: list[str] = list(model.class_names)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        """``float32 (B, classes)`` probabilities of a normalised batch ``(B, C, S, S)`` or ``(B, T, C, S, S)``."""
        x = x.to(next(self.model.parameters()).dtype)
        return self.model.predict_proba(x).float().cpu().numpy()


class OnnxBackend:
    """An ONNX graph written by :func:`fer.export.export_onnx`, run by onnxruntime.

    Args:
        path: the ``.onnx`` file; its metadata gives the class names and input settings.
        device: ``"cuda"`` uses onnxruntime's CUDA execution provider where it is present.

    Raises:
        FileNotFoundError: no such file. CheckpointError: not a graph exported by fer (no
        class names in its metadata) or not readable by onnxruntime.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.path = path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # the thread budget of infer.py
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:
            raise CheckpointError(f"{path}: not an ONNX model onnxruntime can run ({error})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in meta:
            raise CheckpointError(f"{path}: no class_names in its metadata; export it with python -m fer.export")
        self.class_names = json.loads(meta["class_names"])
        self.settings: dict[str, Any] = {
            "kind": meta["kind"],
            "image_size": int(meta["input_size"]),
            "channels": int(meta["channels"]),
            "clip_length": int(meta["clip_length"]) or None,
            "in_features": None,
            "mean": float(meta["mean"]),
            "std": float(meta["std"]),
        }
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        """``float32 (B, classes)`` probabilities of a normalised batch, as :class:`TorchBackend` gives them."""
        (probabilities,) = self.session.run(["probabilities"], {self.input_name: x.float().cpu().numpy()})
        return probabilities


def onnx_for(
    ckpt_path: str | Path | None, cache_dir: str | Path, views: dict[str, Any] | None = None, int8: bool = False
) -> Path:
    """The ONNX graph of a checkpoint (with ``views`` replacing its test-time views; ``int8``: quantised
    by :func:`fer.export.quantized_onnx`), made once into ``cache_dir``, named by the file's SHA-1,
    the views and the precision.

    Raises:
        FileNotFoundError: no such checkpoint. ImportError: the exporter's packages are missing.
        CheckpointError: the exporter or the quantiser cannot translate the network. ValueError: ``int8``
        for a model that does not take 48x48 grey faces.
    """
    path = shipped_model() if ckpt_path is None else Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    digest = hashlib.sha1(path.read_bytes() + json.dumps(views or {}, sort_keys=True).encode()).hexdigest()[:16]
    target = Path(cache_dir) / f"{path.stem}_{digest}{'_int8' if int8 else ''}.onnx"
    if not target.exists():
        log.info("Exporting %s to ONNX%s once, into %s", path, " (int8)" if int8 else "", target)
        (quantized_onnx if int8 else export_onnx)(path, target, views=views)
    return target


def make_backend(
    ckpt_path: str | Path | None,
    backend: str = "auto",
    device: str = "cpu",
    onnx_cache: str | Path = "outputs/cache/onnx",
    views: dict[str, Any] | None = None,
    int8: bool = False,
) -> TorchBackend | OnnxBackend:
    """The classifier of a checkpoint or ``.onnx`` graph on one runtime.

    Args:
        backend: ``"onnxruntime"`` (an ``.onnx`` file as it is; a checkpoint exported on the
            fly into ``onnx_cache``), ``"torch"``, or ``"auto"``: onnxruntime on the CPU (it
            runs the shipped networks faster than PyTorch eager; ``benchmarks/frontier.py``),
            PyTorch on CUDA and where the network cannot be exported.
        views: test-time views replacing the checkpoint's (``{"tta_flip": False}``); not for ``.onnx`` files.
        int8: a checkpoint on onnxruntime runs as its int8 graph (see :func:`onnx_for`), or in
            float32 where it cannot be quantised (logged).

    Raises:
        ValueError: unknown backend; a ``.onnx`` file with ``backend="torch"`` or with ``views``.
    """
    is_onnx = ckpt_path is not None and Path(ckpt_path).suffix == ".onnx"
    automatic = backend == "auto"
    if automatic:
        backend = "onnxruntime" if is_onnx or not device.startswith("cuda") else "torch"
    if is_onnx and views:
        raise ValueError(f"{ckpt_path}: an ONNX graph's test-time views are fixed at export; export it again")
    if backend == "torch":
        if is_onnx:
            raise ValueError(f"{ckpt_path}: an ONNX graph runs with backend=onnxruntime")
        return TorchBackend(ckpt_path, device, views)
    if backend != "onnxruntime":
        raise ValueError(f"unknown backend {backend!r}; use auto, torch or onnxruntime")
    if is_onnx:
        return OnnxBackend(ckpt_path, device)
    if int8:
        try:
            return OnnxBackend(onnx_for(ckpt_path, onnx_cache, views, int8=True), device)
        except (CheckpointError, ValueError) as error:
            log.warning("Classifying in float32: no int8 graph of %s (%s)", ckpt_path or "the default model", error)
    try:
        return OnnxBackend(onnx_for(ckpt_path, onnx_cache, views), device)
    except (CheckpointError, ImportError) as error:  # a network the exporter cannot translate, or no exporter
        if not automatic:
            raise
        log.warning("Classifying in PyTorch: no ONNX graph of %s (%s)", ckpt_path or "the default model", error)
        return TorchBackend(ckpt_path, device, views)
