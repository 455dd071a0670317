"""benchmarks/avx2_only.py: libraries see a CPU without AVX-512, and a real crash still crashes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

WRAPPER = [sys.executable, str(ROOT / "benchmarks" / "avx2_only.py"), sys.executable, "-c"]


def _usable() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "cpuid_fault" not in cpuinfo.read_text():
        pytest.skip("needs Linux x86-64 with CPUID faulting (cpuid_fault)")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs a C compiler")


def test_pytorch_chooses_avx2_kernels_and_still_computes():
    _usable()
    probe = (
        "import torch; print(torch.backends.cpu.get_cpu_capability());"
        "print(torch.nn.functional.conv2d(torch.ones(1, 1, 8, 8), torch.ones(1, 1, 3, 3)).sum().item())"
    )
    out = subprocess.run([*WRAPPER, probe], capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out[0] in ("AVX2", "DEFAULT") and float(out[1]) == 36 * 9


def test_a_real_segmentation_fault_still_ends_the_process():
    _usable()
    crash = subprocess.run([*WRAPPER, "import ctypes; ctypes.string_at(0)"], capture_output=True, timeout=60)
    assert crash.returncode == 128 + 11  # SIGSEGV, as the shell reports it
