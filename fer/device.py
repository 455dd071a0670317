"""Where to compute: the device for inference and the fastest precision for training."""

from __future__ import annotations

from pathlib import Path

import torch


def fast_precision(accelerator: str = "cpu") -> str:
    """The fastest correct Lightning ``precision`` for an accelerator.

    bf16 autocast pays off only where the hardware has bf16 arithmetic: GPUs of compute
    capability 8.0 and newer, and CPUs with AVX512-BF16 or AMX. Elsewhere it is
    emulated and many times slower than fp32 (``benchmarks/train_throughput.py``;
    figures in ``docs/benchmarks.md``).
    """
    if accelerator in ("gpu", "cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "bf16-mixed" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "32-true"


def resolve_device(device: str = "auto") -> str:
    """``"cuda"`` when asked for and present (``auto``: when present), else ``"cpu"``.

    Raises:
        RuntimeError: ``cuda`` asked for, but torch sees no CUDA GPU.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device=cuda asked for, but torch sees no CUDA GPU; use device=cpu or auto")
    return device


def set_thread_budget(threads: int) -> None:
    """Use at most ``threads`` threads in torch and in OpenCV (0: leave both at their defaults).

    Their default pools each take every core; in a loop that detects (OpenCV, torch) and
    classifies (torch) they fight over the same cores (``benchmarks/detectors.py``).
    """
    if threads > 0:
        import cv2

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
