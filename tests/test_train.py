"""train.py end to end, as a user runs it, on the FER-2013 sample shipped in the package."""

import contextlib
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from tests.conftest import run_train


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Two short epochs on the embedded sample (debug=limit) with seed 7."""
    run_dir = tmp_path_factory.mktemp("run")
    run_train(run_dir, "debug=limit", "seed=7")
    return run_dir


def test_fast_dev_run_on_embedded_sample(tmp_path):
    result = run_train(tmp_path, "debug=fdr")
    assert "test/acc" in result.stdout
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["num_images"] == 64  # one test batch
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000
    assert (tmp_path / "config.yaml").exists()


def test_run_writes_checkpoints_report_and_tensorboard(short_run):
    assert (short_run / "checkpoints" / "best.ckpt").exists()
    assert (short_run / "checkpoints" / "last.ckpt").exists()
    report = json.loads((short_run / "metrics.json").read_text())
    assert report["num_images"] == 128  # limit_test_batches=2 of 64
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert sum(sum(row) for row in report["confusion_matrix"]) == 128
    assert 0 <= report["macro_f1"] <= report["accuracy"] * 7

    scalars, images, hparams = {}, set(), {}
    for events in (short_run / "tensorboard").glob("events.out.tfevents.*"):
        tb = EventAccumulator(str(events))
        tb.Reload()
        scalars.update({tag: tb.Scalars(tag) for tag in tb.Tags()["scalars"]})
        images |= set(tb.Tags()["images"])
        with contextlib.suppress(KeyError):  # only the file Lightning wrote the HPARAMS records into
            hparams.update(tb.PluginTagToContent("hparams"))
    for tag in ("val/acc", "val/acc_best", "val/f1", "train/loss", "test/acc", "test/ece", "test/nll", "lr-AdamW"):
        assert tag in scalars, tag
    assert 0 < scalars["test/ece"][0].value < 1 and scalars["test/nll"][0].value > 0
    assert len(scalars["val/acc"]) == 2  # one a validation epoch
    assert {"val/confusion_matrix", "val/samples", "test/confusion_matrix", "test/reliability"} <= images
    assert (short_run / "reliability.png").stat().st_size > 10_000
    # the HPARAMS tab compares runs by their config against val/acc_best and test/acc
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc_best", "test/acc"]
    session = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["seed"].number_value == 7
    assert session.hparams["model/optimizer/lr"].number_value == 1e-3


def test_same_seed_same_metrics(short_run, tmp_path):
    run_train(tmp_path, "debug=limit", "seed=7")
    first = json.loads((short_run / "metrics.json").read_text())
    second = json.loads((tmp_path / "metrics.json").read_text())
    assert first["confusion_matrix"] == second["confusion_matrix"]
    assert first["macro_f1"] == second["macro_f1"]


def test_test_only_from_checkpoint(short_run, tmp_path):
    best = short_run / "checkpoints" / "best.ckpt"
    # model=cnn4 is ignored: the architecture comes from the checkpoint
    run_train(tmp_path, "train=false", f"ckpt_path={best}", "model=cnn4", "debug=limit")
    tested = json.loads((tmp_path / "metrics.json").read_text())
    trained = json.loads((short_run / "metrics.json").read_text())
    assert tested["confusion_matrix"] == trained["confusion_matrix"]
    assert tested["logged"]["test/loss"] == pytest.approx(trained["logged"]["test/loss"])


@pytest.mark.parametrize("view", ["model.tta_flip=true", "model.tta_rotate=10"])
def test_test_only_takes_test_time_views_from_the_command_line(short_run, tmp_path, view):
    # the run trained without test-time views; named on the command line, the test averages over them
    run_train(tmp_path, "train=false", f"ckpt_path={short_run / 'checkpoints' / 'best.ckpt'}", view, "debug=limit")
    tested = json.loads((tmp_path / "metrics.json").read_text())["logged"]["test/loss"]
    trained = json.loads((short_run / "metrics.json").read_text())["logged"]["test/loss"]
    assert tested != pytest.approx(trained, abs=1e-4)


def test_test_only_needs_a_checkpoint(tmp_path):
    result = run_train(tmp_path, "train=false", check=False)
    assert result.returncode != 0
    assert "train=false needs ckpt_path" in result.stderr


def test_multirun_writes_a_summary(tmp_path):
    import csv
    import subprocess
    import sys

    from tests.conftest import ROOT

    # through hydra-submitit-launcher's local executor: the SLURM launcher's code path, minus SLURM
    cmd = [sys.executable, "train.py", "-m", "debug=fdr", "model=cnn4,shallow_cnn", f"hydra.sweep.dir={tmp_path}"]
    cmd += ["callbacks.rich_progress_bar=null", "hydra/launcher=submitit_local"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"].split()[:2] for r in rows] == [
        ["debug=fdr", "model=cnn4"],
        ["debug=fdr", "model=shallow_cnn"],
    ]
    assert all(0 <= float(r["test_acc"]) <= 1 and 0 <= float(r["val_acc_best"]) <= 1 for r in rows)
    assert (tmp_path / "0" / "metrics.json").exists() and (tmp_path / "1" / "metrics.json").exists()
    assert (tmp_path / ".submitit").is_dir()


def test_fold_summary_groups_the_folds_of_each_configuration():
    from fer.training.sweep import fold_summary

    rows = [
        {"overrides": f"model={m} data.images.fold={k}", "val_acc_best": None, "test_acc": acc, "test_macro_f1": 0.5}
        for m, accs in (("a", (0.8, 0.9, 1.0)), ("b", (0.5, 0.7)))
        for k, acc in enumerate(accs)
    ] + [{"overrides": "model=c", "val_acc_best": 0.1, "test_acc": 0.2, "test_macro_f1": 0.3}]
    summary = {row["overrides"]: row for row in fold_summary(rows)}
    assert set(summary) == {"model=a", "model=b"}  # model=c is no cross-validation
    assert summary["model=a"]["folds"] == 3
    assert summary["model=a"]["test_acc_mean"] == pytest.approx(0.9)
    assert summary["model=a"]["test_acc_std"] == pytest.approx(0.1)  # sample std
    assert summary["model=b"]["test_acc_std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["model=b"]["val_acc_best_mean"] is None


def test_optuna_sweep_of_two_trials(tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    cmd = [sys.executable, "train.py", "hparams_search=fer2013_optuna", "hydra.sweeper.n_trials=2", "debug=fdr"]
    cmd += [f"hydra.sweep.dir={tmp_path}", "callbacks.rich_progress_bar=null", "model=cnn4"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert 0 <= best["best_value"] <= 1 and "model.optimizer.lr" in best["best_params"]
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "1" / "metrics.json").exists()
