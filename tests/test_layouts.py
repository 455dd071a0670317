"""Every loader on a synthetic copy of its data set's layout: runs on a clean clone, without ../shared."""

import json
from collections import Counter

import pytest
import torch

from fer.data import BAUM2DataModule, CKPlusDataModule, load_fer2013
from fer.data.baum2 import read_baum2
from fer.data.ckplus import label_frames, read_ckplus, read_ckplus48
from fer.training.run import train
from tests.layouts import baum2_tree, ckplus48_tree, ckplus_tree, fer2013_folder_tree


def test_ckplus_original_layout(tmp_path):
    counts = ckplus_tree(tmp_path, subjects=6, frames=10)
    sequences = read_ckplus(tmp_path)
    assert len(sequences) == 12 and sum(s.code is not None for s in sequences) == 6
    frames = label_frames(sequences)  # frames 5..10 of each labelled sequence: the first 40 % dropped
    assert len(frames) == 6 * 6 and min(int(p.stem[-8:]) for p, _, _ in frames) == 5
    assert Counter(name for _, name, _ in frames) == {n: 6 * c for n, c in counts.items()}
    dm = CKPlusDataModule(str(tmp_path), num_folds=3, fold=1, detector=None, crop_size=48)
    dm.setup()
    train_, val, test = (set(dm.subjects[s]) for s in ("train", "val", "test"))
    assert len(train_) == len(val) == len(test) == 2 and not (train_ & val or train_ & test or val & test)
    assert sum(len(d) for d in dm.splits.values()) == 36
    assert dm.splits["train"].tensors[0].shape[1:] == (1, 48, 48)


def test_ckplus_bad_fold_and_unknown_holdout(tmp_path):
    ckplus_tree(tmp_path, subjects=3, frames=4)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.2"):
        CKPlusDataModule(str(tmp_path), num_folds=3, fold=3)
    dm = CKPlusDataModule(str(tmp_path), holdout=["S999"], detector=None)
    with pytest.raises(ValueError, match="S999"):
        dm.setup()


def test_ckplus48_layout(tmp_path):
    ckplus48_tree(tmp_path, per_class=2)
    items = read_ckplus48(tmp_path)
    assert Counter(name for _, name, _ in items) == dict.fromkeys(
        ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"), 2
    )
    assert len({subject for _, _, subject in items}) == 14


def test_baum2_layout(tmp_path):
    lengths = baum2_tree(tmp_path, subjects=5)
    clips = read_baum2(tmp_path)
    assert [len(c.frames) for c in clips] == lengths
    assert [c.code for c in clips] == [(s + c) % 8 for s in range(5) for c in range(2)]
    for grey, channels in ((True, 1), (False, 3)):
        dm = BAUM2DataModule(str(tmp_path), clip_length=8, grey=grey, fold=2)
        dm.setup()
        assert dm.input_spec == {"in_channels": channels, "input_size": 48, "clip_length": 8}
        assert sum(len(d) for d in dm.splits.values()) == 10
        assert [len(dm.subjects[s]) for s in ("test", "val", "train")] == [1, 1, 3]
        clips_, _ = dm.splits["train"].tensors
        assert clips_.shape[1:] == (8, channels, 48, 48) and clips_.dtype == torch.uint8


def test_fer2013_folder_export_layout(tmp_path):
    fer2013_folder_tree(tmp_path, per_class=3)
    data = load_fer2013(tmp_path)
    for usage in ("Training", "PublicTest", "PrivateTest"):
        assert torch.bincount(data.split(usage)[1], minlength=7).tolist() == [3] * 7


def test_train_in_process_on_synthetic_ckplus(tmp_path, train_config):
    ckplus_tree(tmp_path / "ckplus", subjects=6, frames=6)
    cfg = train_config(
        "data=ckplus",
        f"data.path={tmp_path / 'ckplus'}",
        "data.detector=null",
        "data.num_folds=3",
        f"data.cache_dir={tmp_path / 'cache'}",
        "model=cnn4",
        "debug=fdr",
    )
    metrics = train(cfg)
    assert "test/acc" in metrics and "val/acc" in metrics
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["class_names"] == ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]


def test_train_in_process_on_synthetic_baum2_clips(tmp_path, train_config):
    baum2_tree(tmp_path / "baum2", subjects=5)
    overrides = ["data=baum2", f"data.path={tmp_path / 'baum2'}", "data.clip_length=6", "data.batch_size=4"]
    train(train_config(*overrides, "model=cnn_lstm", "debug=fdr"))
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["num_images"] == 2  # the test fold's clips: one subject, two clips
