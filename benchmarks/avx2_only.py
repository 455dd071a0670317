"""Run a command as on a CPU with AVX2 and without AVX-512, AVX-VNNI, AVX512-BF16 or AMX.

    python benchmarks/avx2_only.py python benchmarks/realtime.py [its arguments]

Builds ``avx2_only.c`` (beside this file) with the system C compiler into a temporary
folder and runs the command with it preloaded: the CPUID instruction then hides those
features, so onnxruntime, oneDNN and PyTorch pick the kernels an AVX2-only laptop or cloud
CPU would run (``torch.backends.cpu.get_cpu_capability()`` says ``AVX2``). The clock, caches
and core stay this machine's, so figures approximate such a CPU rather than reproduce one.
Needs Linux on x86-64 with CPUID faulting (``cpuid_fault`` in ``/proc/cpuinfo``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_suffix(".c")


def main(command: list[str]) -> int:
    if not command:
        sys.exit(__doc__)
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        sys.exit("avx2_only: this CPU or kernel has no CPUID faulting (no cpuid_fault flag in /proc/cpuinfo)")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("avx2_only: no C compiler found (install gcc, or set CC)")
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "avx2_only.so"
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True)
        preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), str(library)]))
        code = subprocess.run(command, env={**os.environ, "LD_PRELOAD": preload}).returncode
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + its number


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
