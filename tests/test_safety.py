"""A checkpoint never runs code; runs never share files; bad input fails early and clearly."""

import json
import os
import signal
import subprocess
import sys
import time

import onnx
import pytest
import torch

from fer.checkpoint import CheckpointError, load_predictor, read_checkpoint
from fer.data import FER2013DataModule
from fer.export import main as export_main
from fer.face.crops import preprocess
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer
from fer.shipped import shipped_model
from fer.training.run import train
from tests.conftest import DATA, ROOT, need, run_train


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
    shipped = torch.load(shipped_model(), weights_only=True)
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
        load_predictor(paths["pickle"])
    with pytest.raises(CheckpointError, match=r"target.ckpt: the network config names 'builtins.open'"):
        EmotionRecognizer(paths["target"], detector="haar", device="cpu")
    with pytest.raises(CheckpointError, match=r"nested.ckpt: the network config names 'builtins.open'"):
        load_predictor(paths["nested"])
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
    cmd = [sys.executable, "infer.py", f"hydra.run.dir={tmp_path / 'run'}", "display=false", "recognizer.detector=haar"]
    cmd += [
        f"source={ROOT / 'fer' / 'weights' / 'confusion_matrix_fer2013_deep_cnn.png'}",
        f"ckpt_path={paths['pickle']}",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "not a readable checkpoint of plain data" in result.stderr
    assert untouched()


def test_the_shipped_checkpoint_is_plain_data_without_machine_paths():
    checkpoint = read_checkpoint(shipped_model())
    assert "/" not in repr(checkpoint.get("datamodule_hyper_parameters", {}))


def test_slim_export_keeps_the_model_and_drops_paths(tmp_path):
    out, float16 = tmp_path / "slim.ckpt", shipped_model("fer2013_deep_cnn")
    assert export_main([str(float16), str(out)]) == 0
    assert export_main([str(float16), str(out)]) == 2  # exists: refused without --overwrite
    (original, _), (slim, _) = load_predictor(float16), load_predictor(out)
    x = torch.randn(4, 1, 48, 48)
    with torch.inference_mode():
        assert torch.equal(original(x), slim(x))
    assert set(read_checkpoint(out)["datamodule_hyper_parameters"]) <= {"image_size", "mean", "std"}


def test_int8_export_quarters_the_weights_and_keeps_the_predictions(tmp_path):
    out, float16 = tmp_path / "int8.ckpt", shipped_model("fer2013_deep_cnn")
    assert export_main([str(float16), str(tmp_path / "x.onnx"), "--int8"]) == 0  # .onnx: a quantised graph
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "x.onnx")).metadata_props}
    assert meta["precision"] == "int8" and "class_names" in meta
    assert export_main([str(float16), str(out), "--int8"]) == 0
    raw = torch.load(out, weights_only=True)
    assert raw["state_dict"]["net.classifier.3.weight"].dtype == torch.int8
    assert out.stat().st_size < 0.55 * float16.stat().st_size  # float16 -> int8, biases and norms stay float16
    dm = FER2013DataModule()  # the real sample shipped in the package: 350 PrivateTest faces
    dm.setup()
    faces, labels = dm.splits["test"].tensors
    (original, _), (int8, _) = load_predictor(float16), load_predictor(out)
    assert all(w.dtype == torch.float32 for w in int8.state_dict().values() if w.is_floating_point())
    with torch.inference_mode():
        p, q = original.predict_proba(preprocess(faces)), int8.predict_proba(preprocess(faces))
    assert (p.argmax(1) == q.argmax(1)).float().mean() >= 0.98 and (p - q).abs().max() < 0.1
    assert abs(int((p.argmax(1) == labels).sum()) - int((q.argmax(1) == labels).sum())) <= 3
    raw["int8_scales"]["net.classifier.3.weight"] = raw["int8_scales"]["net.classifier.3.weight"][:3]
    torch.save(raw, tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match=r"cut.ckpt: the int8 scale of net.classifier.3.weight does not fit"):
        load_predictor(tmp_path / "cut.ckpt")


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


VIDEO = DATA / "videos" / "single_face.mp4"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_infer_py_stopped_by_a_signal_leaves_playable_outputs(tmp_path, sig):
    import cv2

    cmd = [sys.executable, "infer.py", f"hydra.run.dir={tmp_path}", "display=false", "recognizer.detector=haar"]
    cmd += [f"source={need(VIDEO)}", "recognizer.detect_every=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".predictions.csv.partial"
    deadline = time.monotonic() + 120
    while (not partial.exists() or partial.stat().st_size < 2000) and time.monotonic() < deadline:
        time.sleep(0.02)  # a few frames written
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig], err[-2000:]
    assert "Traceback" not in out + err and f"stopped by {sig.name}" in out + err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ended"] == sig.name and 0 < summary["frames"] < 72
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + summary["faces"]
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    readable = 0
    while capture.read()[0]:
        readable += 1
    assert readable == summary["frames"]
    assert not list(tmp_path.glob(".*partial*"))


def test_infer_outputs_are_all_checked_before_any_is_written(tmp_path):
    recognizer = EmotionRecognizer(detector="haar", device="cpu")
    photo = need(DATA / "photos" / "multi_face.jpg")
    run(recognizer, photo, tmp_path, display=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(FileExistsError, match="summary.json"):  # other prediction and media names
        run(recognizer, DATA / "photos" / "obama.jpg", tmp_path, display=False, predictions="jsonl", save_media=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    with pytest.raises(ValueError, match="detect_scale"):
        EmotionRecognizer(detector="haar", device="cpu", detect_scale=0)


def test_a_huge_photo_is_searched_at_a_capped_size(tmp_path):
    import cv2

    photo = cv2.imread(str(need(DATA / "photos" / "multi_face.jpg")))
    huge = cv2.resize(photo, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)  # 6000x4002
    sizes = []

    def detector(image):
        sizes.append(image.shape[:2])
        return []

    recognizer = EmotionRecognizer(detector=detector, device="cpu", max_image_side=1600)
    assert recognizer.predict(huge, track=False) == []
    assert max(sizes[0]) == 1600


def test_only_cameras_and_true_streams_are_live():
    from fer.inference.sources import is_live

    assert is_live("0") and is_live("rtsp://cam/1") and is_live("udp://0.0.0.0:5000")
    assert not is_live("https://host/clip.mp4") and not is_live("clip.mp4")
    assert is_live("https://host/live.m3u8", live=True) and not is_live("0", live="false")


def _sample_rows():
    import gzip

    from fer.data.fer2013 import SAMPLE_CSV

    with gzip.open(SAMPLE_CSV, "rt") as f:
        return f.read().splitlines()


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path):
    from fer.data import load_fer2013

    rows = _sample_rows()
    (tmp_path / "bom.csv").write_text("\ufeff" + "\n".join(rows[:50]) + "\n", encoding="utf-8")
    assert len(load_fer2013(tmp_path / "bom.csv").labels) == 49


def test_missing_splits_are_named_at_setup(tmp_path, train_config):
    from fer.data import FER2013DataModule, FER2013FormatError

    rows = _sample_rows()
    no_public = [r for r in rows if not r.endswith("PublicTest")]
    (tmp_path / "no_public.csv").write_text("\n".join(no_public) + "\n")
    with pytest.raises(FER2013FormatError, match="no_public.csv: no PublicTest rows"):
        FER2013DataModule(str(tmp_path / "no_public.csv")).setup()
    no_private = [r for r in rows if not r.endswith("PrivateTest")]
    (tmp_path / "no_private.csv").write_text("\n".join(no_private) + "\n")
    metrics = train(train_config(f"data.path={tmp_path / 'no_private.csv'}", "debug=fdr", "logger=none"))
    assert "val/acc" in metrics and "test/acc" not in metrics
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_hidden_and_unknown_class_folders(tmp_path, train_config):
    from fer.data import FER2013FormatError, load_fer2013
    from tests.layouts import fer2013_folder_tree

    fer2013_folder_tree(tmp_path / "export", per_class=2)
    (tmp_path / "export" / "train" / ".ipynb_checkpoints").mkdir()  # hidden: ignored
    assert len(load_fer2013(tmp_path / "export").labels) == 7 * 6
    (tmp_path / "export" / "train" / "contempt").mkdir()  # unknown: on_bad_row decides
    with pytest.raises(FER2013FormatError, match="contempt: unknown class folder"):
        load_fer2013(tmp_path / "export")
    cfg = train_config(f"data.path={tmp_path / 'export'}", "data.on_bad_row=skip", "debug=fdr", "logger=none")
    train(cfg)
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["skipped"] == {"unknown class folder": 1}


def test_train_py_stopped_by_sigterm_in_epoch_0_resumes_to_the_uninterrupted_result(tmp_path):
    same = ["model=cnn4", "trainer.max_epochs=2", "seed=11", "logger=none", "data.batch_size=32"]
    same += ["+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2"]
    run_train(tmp_path / "whole", *same)
    # a real SIGTERM to the run's own process after 9 of epoch 0's 44 batches
    stop = ["+callbacks.sigterm._target_=tests.helpers.SigtermAt", "+callbacks.sigterm.epoch=0"]
    result = run_train(tmp_path / "stopped", *same, *stop, "+callbacks.sigterm.batch=9", check=False)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "stopped by SIGTERM" in result.stdout + result.stderr
    stopped = read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt")
    assert stopped["epoch"] == 0 and stopped["FER2013DataModule"] == {"epoch": 0, "batches_done": 9}
    assert not (tmp_path / "stopped" / "metrics.json").exists()

    run_train(tmp_path / "stopped", *same, "ckpt_path=last")
    whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "stopped"))
    assert resumed["confusion_matrix"] == whole["confusion_matrix"]
    assert resumed["logged"]["val/acc_best"] == whole["logged"]["val/acc_best"]
    a, b = (read_checkpoint(tmp_path / d / "checkpoints" / "last.ckpt")["state_dict"] for d in ("whole", "stopped"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB file system (tmpfs), as a full disk comes about; skips where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_stops_infer_with_a_clear_error(tiny_disk):
    recognizer = EmotionRecognizer(detector="haar", device="cpu")
    with pytest.raises(OSError, match="no space left on device"):
        run(recognizer, need(VIDEO.parent / "short_hamilton_clip.mp4"), tiny_disk, display=False)
    names = {p.name for p in tiny_disk.iterdir()}
    assert not names & {"annotated.mp4", "predictions.csv", "summary.json"}  # nothing looks complete
    assert ".predictions.csv.partial" in names


def test_a_landmark_model_given_to_the_recognizer_says_what_it_needs(tmp_path):
    from tests.helpers import save_classifier

    net = {"_target_": "fer.models.LandmarkMLP", "num_classes": 7, "in_features": 2278}  # as build_model writes it
    save_classifier(tmp_path / "mlp.ckpt", net, 7)
    assert load_predictor(tmp_path / "mlp.ckpt")[1]["kind"] == "features"  # fine for train=false on landmarks
    with pytest.raises(CheckpointError, match="2278 landmark distances"):
        EmotionRecognizer(tmp_path / "mlp.ckpt", detector="haar", device="cpu")
