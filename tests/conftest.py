from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FER_DATA", ROOT.parent / "shared" / "data"))
FER2013_CSV = DATA / "fer2013" / "fer2013.csv.gz"
FER2013_FOLDERS = DATA / "fer2013" / "folders_sample"


def need(path: Path) -> Path:
    """Skip the calling test when a real data file is absent (e.g. on a user's machine)."""
    if not path.exists():
        pytest.skip(f"real data not found: {path} (see ../shared/data/README.md)")
    return path


def run_train(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python train.py`` as a user would, its Hydra run dir set to ``run_dir``."""
    cmd = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", "callbacks.rich_progress_bar=null", *overrides]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def run_infer(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Run ``python infer.py`` headless as a user would, its Hydra run dir set to ``run_dir``."""
    cmd = [sys.executable, "infer.py", f"hydra.run.dir={run_dir}", "display=false", *overrides]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"infer.py failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture
def train_config(tmp_path):
    """``train.py``'s config as Hydra composes it, for in-process :func:`fer.training.run.train` runs.

    Call it with overrides; outputs go to ``tmp_path / "run"``, no progress bar.
    """
    from hydra import compose, initialize_config_dir

    from fer.config import register_resolvers

    register_resolvers()

    def make(*overrides: str):
        fixed = [f"paths.root_dir={ROOT}", f"paths.output_dir={tmp_path / 'run'}", "callbacks.rich_progress_bar=null"]
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[*fixed, *overrides])

    return make


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where tests that look at a screen or a page keep what they saw: ``outputs/screenshots/`` (git-ignored)."""
    folder = ROOT / "outputs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
