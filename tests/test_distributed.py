"""DDP over CPU processes and kill-and-resume, on the FER-2013 sample shipped in the package."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, run_train


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    # Without dropout, augmentation or batch norm, 2 processes x 32 images see exactly the
    # batches of 1 process x 64 (the sampler deals one seeded permutation round-robin) and
    # DDP averages their gradients: one step agrees to 3e-8; plain SGD keeps the rounding
    # small over an epoch of 22 steps (Adam would amplify it where gradients are near zero).
    # fp32: bf16 autocast (the default on AVX512-BF16 CPUs) rounds to 3 digits, far above that.
    same = ["model=cnn4", "model.net.dropout=0", "data.augment=null", "trainer.max_epochs=1", "seed=5"]
    same += ["trainer.precision=32-true"]
    same += ["model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=0.01", "+model.optimizer.momentum=0.9"]
    run_train(tmp_path / "one", *same, "data.batch_size=64")
    run_train(tmp_path / "ddp", *same, "data.batch_size=32", "trainer=ddp_cpu")
    one, ddp = weights(tmp_path / "one"), weights(tmp_path / "ddp")
    worst = max((one[k] - ddp[k]).abs().max().item() for k in one)
    assert worst < 1e-3, f"largest weight difference {worst}"
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "ddp"))
    assert second["num_images"] == first["num_images"] == 350  # test metrics synced over both processes
    # tolerance: two test (or validation) images of 350
    assert abs(first["accuracy"] - second["accuracy"]) <= 2 / 350
    assert abs(first["logged"]["val/acc_best"] - second["logged"]["val/acc_best"]) <= 2 / 350


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    same = ["model=cnn4", "trainer.max_epochs=3", "seed=11"]
    same += ["+trainer.limit_train_batches=8", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2"]
    run_train(tmp_path / "whole", *same)

    killed = tmp_path / "killed"
    cmd = [sys.executable, "train.py", f"hydra.run.dir={killed}", "callbacks.rich_progress_bar=null", *same]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        last, saved = killed / "checkpoints" / "last.ckpt", []  # times last.ckpt was written
        while len(saved) < 2 and proc.poll() is None:
            stamp = last.stat().st_mtime if last.exists() else None
            if stamp is not None and (not saved or stamp > saved[-1] + 0.5):  # a new save, not the same one
                saved.append(stamp)
            time.sleep(0.05)
        if len(saved) == 2:  # after epochs 1 and 2: halfway through the third and last epoch
            time.sleep((saved[1] - saved[0]) / 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "metrics.json").exists()

    run_train(killed, *same, "ckpt_path=last")
    whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "killed"))
    assert resumed["confusion_matrix"] == whole["confusion_matrix"]
    assert resumed["logged"]["val/acc_best"] == whole["logged"]["val/acc_best"]
    a, b = weights(tmp_path / "whole"), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_checkpoint_is_named(tmp_path):
    result = run_train(tmp_path, "ckpt_path=last", "debug=fdr", check=False)
    assert result.returncode != 0
    assert f"no checkpoint file at {tmp_path / 'checkpoints' / 'last.ckpt'}" in result.stderr
