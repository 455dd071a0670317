"""Small helpers shared by the entry points."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf


def fast_precision(accelerator: str = "cpu") -> str:
    """The fastest correct Lightning ``precision`` for an accelerator.

    bf16 autocast pays off only where the hardware has bf16 arithmetic: GPUs of compute
    capability 8.0 and newer, and CPUs with AVX512-BF16 or AMX. Elsewhere it is
    emulated; on this project's 2-core AMD EPYC build machine (AVX2 only) bf16 trained
    the deep CNN at 5 images/s against 83 in fp32 (``benchmarks/train_throughput.py``).
    """
    if accelerator in ("gpu", "cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "bf16-mixed" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "32-true"


def register_resolvers() -> None:
    """Make ``${fast_precision:cpu}`` usable in configs."""
    if not OmegaConf.has_resolver("fast_precision"):
        OmegaConf.register_new_resolver("fast_precision", fast_precision)
