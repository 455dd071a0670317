"""Milliseconds a face of every shipped model, PyTorch eager and onnxruntime (float32 and int8), in one run.

    python benchmarks/shipped_models.py [--threads 2] [--repeat 100]

One face (with the model's own test-time views, e.g. its mirror, in the same batch), median
over ``--repeat`` calls after a warm-up, the thread budget of ``infer.py``. Prints the CPU's
bf16 support with the table, since fp32 and bf16 machines differ; the figures go into
``fer/weights/models.json`` (``ms_per_face``) and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from onnx_backend import latency_ms  # this folder is on the path when run as a script

from fer.device import fast_precision, set_thread_budget
from fer.export import export_onnx, quantized_onnx
from fer.inference.backends import OnnxBackend, TorchBackend
from fer.shipped import SHIPPED_MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()
    set_thread_budget(args.threads)
    print(f"{args.threads} thread(s); CPU bf16: {fast_precision('cpu') == 'bf16-mixed'} (inference runs in fp32)")
    print("| model | torch eager | onnxruntime fp32 | onnxruntime int8 |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, entry in SHIPPED_MODELS.items():
            x = torch.randn(1, entry.input["channels"], entry.input["size"], entry.input["size"])
            eager, _ = latency_ms(TorchBackend(entry.path), x, args.repeat)
            fp32_graph, int8_graph = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}_int8.onnx"
            onnx, _ = latency_ms(OnnxBackend(export_onnx(entry.path, fp32_graph)), x, args.repeat)
            int8, _ = latency_ms(OnnxBackend(quantized_onnx(entry.path, int8_graph)), x, args.repeat)
            print(f"| {name} | {eager:.1f} | {onnx:.1f} | {int8:.1f} |", flush=True)


if __name__ == "__main__":
    main()
