"""The speed-accuracy frontier: every shipped model (and any checkpoint given) in onnxruntime, float32 and int8.

    python benchmarks/frontier.py [--data ../shared/data] [--extra NAME=CKPT ...] [--plot docs/frontier.png]

For each model, with its mirror and without it: accuracy and macro-F1 on its test split
(FER-2013 PrivateTest, or FER+ Test with majority labels) of the float32 graph and of its
int8 graph (static QDQ, calibrated on the shipped sample's FER-2013 Training faces:
:func:`fer.export.quantized_onnx`); milliseconds a face (one face, median of ``--repeat``
calls after a warm-up, ``--threads`` threads) and the graphs' sizes. One run, so the
times compare; the CPU's name and vector flags are printed with them. Writes the table
(Markdown) to stdout and the plot of the FER-2013 models to ``--plot``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
from onnx_backend import latency_ms  # this folder is on the path when run as a script
from torchmetrics.functional.classification import multiclass_f1_score

from fer.calibration import splits
from fer.checkpoint import input_settings, read_checkpoint
from fer.device import set_thread_budget
from fer.export import calibration_faces, export_onnx, quantize_onnx
from fer.face.crops import preprocess
from fer.inference.backends import OnnxBackend
from fer.shipped import SHIPPED_MODELS

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")


def cpu_line() -> str:
    """The CPU's model name, which of :data:`FLAGS` it has, and the kernels PyTorch chose (``AVX2`` under
    ``benchmarks/avx2_only.py``, which hides the rest from CPUID but not from ``/proc/cpuinfo``)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    have = ", ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)
    hidden = " (AVX-512, VNNI, AMX hidden by avx2_only.py)" if "avx2_only" in os.environ.get("LD_PRELOAD", "") else ""
    return f"{name}; {have}; PyTorch kernels {torch.backends.cpu.get_cpu_capability()}{hidden}"


@cache
def test_split(ferplus: bool, data: Path) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The test split's name, faces ``uint8 (N, 1, 48, 48)`` and labels: FER+ Test or FER-2013 PrivateTest
    (read once a run, see :func:`fer.calibration.splits`)."""
    csv, labels = str(data / "fer2013" / "fer2013.csv.gz"), str(data / "ferplus" / "fer2013new.csv")
    faces, targets = splits(csv, labels if ferplus else None)["test"]
    return ("FER+ Test" if ferplus else "PrivateTest"), faces, targets


def scores(backend: OnnxBackend, faces: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy and macro-F1 of a backend on faces."""
    predicted = torch.from_numpy(
        np.concatenate([backend(preprocess(faces[k : k + 512])).argmax(1) for k in range(0, len(faces), 512)])
    )
    f1 = multiclass_f1_score(predicted, labels, len(backend.class_names), average="macro")
    return float((predicted == labels).float().mean()), float(f1)


def measure(name: str, ckpt: Path, data: Path, folder: Path, repeat: int) -> list[dict]:
    checkpoint = read_checkpoint(ckpt)
    calibration = calibration_faces(input_settings(checkpoint))
    split, faces, labels = test_split("contempt" in checkpoint["hyper_parameters"]["class_names"], data)
    rows = []
    for flip in (True, False):
        row = {"model": name, "mirror": flip, "split": split}
        fp32 = export_onnx(ckpt, folder / f"{name}_{flip}.onnx", views={"tta_flip": flip})
        int8 = quantize_onnx(fp32, folder / f"{name}_{flip}_int8.onnx", calibration)
        for precision, graph in (("fp32", fp32), ("int8", int8)):
            backend = OnnxBackend(graph)
            row[f"acc_{precision}"], row[f"f1_{precision}"] = scores(backend, faces, labels)
            one_face = preprocess(torch.zeros(1, 1, 48, 48, dtype=torch.uint8))
            row[f"ms_{precision}"] = latency_ms(backend, one_face, repeat)[0]
            row[f"mb_{precision}"] = graph.stat().st_size / 2**20
        rows.append(row)
        print(f"# {name}, mirror {flip}: done", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | mirror | test split | accuracy fp32 / int8 | macro-F1 fp32 / int8 | ms a face fp32 / int8 "
        "| MB fp32 / int8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {'yes' if r['mirror'] else 'no'} | {r['split']} "
            f"| {100 * r['acc_fp32']:.2f} / {100 * r['acc_int8']:.2f} % | {r['f1_fp32']:.3f} / {r['f1_int8']:.3f} "
            f"| {r['ms_fp32']:.2f} / {r['ms_int8']:.2f} | {r['mb_fp32']:.1f} / {r['mb_int8']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in (r for r in rows if r["split"] == "PrivateTest"):
        for precision, marker in (("fp32", "o"), ("int8", "s")):
            label = f"{r['model']}{'' if r['mirror'] else ', no mirror'}, {precision}"
            ax.scatter(r[f"ms_{precision}"], 100 * r[f"acc_{precision}"], marker=marker)
            ax.annotate(label, (r[f"ms_{precision}"], 100 * r[f"acc_{precision}"]), fontsize=7, xytext=(4, 2),
                        textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("ms a face (onnxruntime, one face; log scale)")
    ax.set_ylabel("FER-2013 PrivateTest accuracy, %")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--extra", nargs="*", default=[], help="NAME=CKPT: more checkpoints on the frontier")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--plot", type=Path, default=Path("docs/frontier.png"))
    args = parser.parse_args()
    set_thread_budget(args.threads)
    models = {name: entry.path for name, entry in SHIPPED_MODELS.items()}
    models |= {name: Path(path) for name, path in (item.split("=", 1) for item in args.extra)}
    title = f"{args.threads} threads; {cpu_line()}"
    print(title, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for name, ckpt in models.items() for row in measure(name, ckpt, args.data, Path(tmp), args.repeat)]
    print(table(rows))
    plot(rows, args.plot, title)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
