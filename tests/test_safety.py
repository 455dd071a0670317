"""A checkpoint never runs code; runs never share files; bad input fails early and clearly."""

import os
import subprocess
import sys

import pytest
import torch

from fer.checkpoint import SHIPPED_CHECKPOINT, CheckpointError, load_classifier, read_checkpoint
from fer.export import main as export_main
from fer.inference.recognizer import EmotionRecognizer
from fer.training.run import train
from tests.conftest import ROOT, run_train


class Payload:
    """Pickled, it runs ``touch marker`` when loaded with ``weights_only=False``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hostile(tmp_path):
    """Two otherwise valid copies of the shipped checkpoint: one whose pickle runs a command
    (hidden under ``loops``), one whose network config opens (and empties) a file of the user's."""
    shipped = torch.load(SHIPPED_CHECKPOINT, weights_only=True)
    marker, victim = tmp_path / "PWNED", tmp_path / "notes.txt"
    victim.write_text("my notes")
    torch.save({**shipped, "loops": {"fit_loop": Payload(marker)}}, tmp_path / "pickle.ckpt")
    target = {**shipped, "hyper_parameters": dict(shipped["hyper_parameters"])}
    target["hyper_parameters"]["net"] = {"_target_": "builtins.open", "_args_": [str(victim), "w"]}
    torch.save(target, tmp_path / "target.ckpt")
    nested = {**shipped, "hyper_parameters": dict(shipped["hyper_parameters"])}
    nested["hyper_parameters"]["net"] = {
        "_target_": "fer.models.CNNLSTM",
        "frame_net": {"_target_": "builtins.open", "_args_": [str(victim), "w"]},
        "clip_length": 4,
    }
    torch.save(nested, tmp_path / "nested.ckpt")

    def untouched():
        return not marker.exists() and victim.read_text() == "my notes"

    paths = {k: tmp_path / f"{k}.ckpt" for k in ("pickle", "target", "nested")}
    return paths, untouched


def test_hostile_checkpoints_are_refused_by_the_loader_and_the_recognizer(hostile):
    paths, untouched = hostile
    with pytest.raises(CheckpointError, match=r"pickle.ckpt: not a readable checkpoint of plain data"):
        load_classifier(paths["pickle"])
    with pytest.raises(CheckpointError, match=r"target.ckpt: the network config names 'builtins.open'"):
        EmotionRecognizer(paths["target"], detector="haar", device="cpu")
    with pytest.raises(CheckpointError, match=r"nested.ckpt: the network config names 'builtins.open'"):
        load_classifier(paths["nested"])
    assert untouched()


def test_hostile_checkpoints_are_refused_by_export(hostile, tmp_path, capsys):
    paths, untouched = hostile
    for path in paths.values():
        assert export_main([str(path), str(tmp_path / "out.ckpt")]) == 2
        assert f"error: {path}" in capsys.readouterr().err
    assert untouched() and not (tmp_path / "out.ckpt").exists()


@pytest.mark.parametrize("kind", ["pickle", "target"])
@pytest.mark.parametrize("how", ["train=false", "resume", "pretrained"])
def test_hostile_checkpoints_are_refused_by_training(hostile, train_config, how, kind):
    paths, untouched = hostile
    path = paths[kind]
    overrides = {
        "train=false": ["train=false", f"ckpt_path={path}"],
        "resume": [f"ckpt_path={path}"],
        "pretrained": ["data=baum2", "model=cnn_lstm", f"+model.net.pretrained={path}", "data.path=/nonexistent"],
    }[how]
    with pytest.raises(CheckpointError, match=path.name):
        train(train_config(*overrides, "debug=fdr"))
    assert untouched()


def test_infer_py_refuses_a_hostile_pickle(hostile, tmp_path):
    paths, untouched = hostile
    cmd = [sys.executable, "infer.py", f"hydra.run.dir={tmp_path / 'run'}", "display=false", "detector=haar"]
    cmd += [f"source={ROOT / 'fer' / 'weights' / 'confusion_matrix.png'}", f"ckpt_path={paths['pickle']}"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "not a readable checkpoint of plain data" in result.stderr
    assert untouched()


def test_the_shipped_checkpoint_is_plain_data_without_machine_paths():
    checkpoint = read_checkpoint(SHIPPED_CHECKPOINT)
    assert "/" not in repr(checkpoint.get("datamodule_hyper_parameters", {}))


def test_slim_export_keeps_the_model_and_drops_paths(tmp_path):
    out = tmp_path / "slim.ckpt"
    assert export_main([str(SHIPPED_CHECKPOINT), str(out)]) == 0
    assert export_main([str(SHIPPED_CHECKPOINT), str(out)]) == 2  # exists: refused without --overwrite
    (original, _), (slim, _) = load_classifier(SHIPPED_CHECKPOINT), load_classifier(out)
    x = torch.randn(4, 1, 48, 48)
    with torch.inference_mode():
        assert torch.equal(original(x), slim(x))
    assert set(read_checkpoint(out)["datamodule_hyper_parameters"]) <= {"image_size", "mean", "std"}


def test_two_runs_started_at_once_get_their_own_dirs(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "debug=fdr", "callbacks.rich_progress_bar=null", "logger=none"]
    runs = [
        subprocess.Popen([*cmd, f"seed={k}"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}) for k in (1, 2)
    ]
    assert [p.wait(timeout=600) for p in runs] == [0, 0]
    dirs = sorted((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(dirs) == 2 and all((d / "metrics.json").exists() for d in dirs)


def test_logger_none_trains(tmp_path):
    run_train(tmp_path, "logger=none", "debug=fdr")
    assert (tmp_path / "metrics.json").exists() and not (tmp_path / "tensorboard").exists()
