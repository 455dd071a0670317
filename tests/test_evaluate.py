"""Zero-shot evaluation (fer/evaluate.py) of the shipped model on the real CK+ apex faces and BAUM-2 clips."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from fer.checkpoint import load_predictor
from fer.data.ckplus import read_ckplus
from fer.data.labels import CKPLUS_CODES, common_name
from fer.evaluate import baum2_clips, ckplus_apex, main, markdown, recognizer_items, through_recognizer, zero_shot
from fer.face.crops import preprocess
from fer.inference.recognizer import EmotionRecognizer
from fer.shipped import shipped_model
from tests.conftest import DATA, FER2013_CSV, need


def test_shipped_model_on_ckplus_apex_faces(tmp_path):
    crops, names = ckplus_apex(need(DATA / "ckplus"), cache_dir=tmp_path)
    assert crops.shape == (327, 1, 96, 96) and len(names) == 327  # Lucey et al. 2010: 327 labelled sequences
    result = zero_shot(shipped_model(), crops, names)
    assert result["unknown_class"] == {"contempt": 18} and result["faces"] == 309
    confusion = np.array(result["confusion"])
    assert confusion.sum() == 309 and confusion.shape == (6, 7)  # no neutral apex in CK+'s labels
    diagonal = sum(confusion[i, result["predicted"].index(n)] for i, n in enumerate(result["classes"]))
    assert result["accuracy"] == diagonal / 309 and 0.6 < result["accuracy"] < 0.8  # 73.8 % when written (ResNet-18)
    assert result["per_class_recall"]["happy"] > 0.95
    assert markdown(result).count("\n") == 7


def test_shipped_model_on_baum2_clips():
    clips, names = baum2_clips(need(DATA / "baum2" / "Extracted"))
    assert len(clips) == 147 and sum(len(c) for c in clips) == 2272 and clips[0].shape[1:] == (1, 48, 48)
    result = zero_shot(shipped_model(), clips, names)
    assert result["unknown_class"] == {"contempt": 10} and result["faces"] == 137
    assert 0.4 < result["accuracy"] < 0.6  # 50.4 % when written (ResNet-18)
    # a clip is the class of its frames' mean probability
    model, settings = load_predictor(shipped_model())
    some = [k for k, n in enumerate(names) if n != "contempt"][:60:4]
    part = zero_shot(shipped_model(), [clips[k] for k in some], [names[k] for k in some])
    expected = np.zeros_like(np.array(part["confusion"]))
    for k in some:
        x = preprocess(clips[k], settings["image_size"], settings["mean"], settings["std"])
        expected[part["classes"].index(names[k]), int(model.predict_proba(x).mean(0).argmax())] += 1
    assert part["confusion"] == expected.tolist()


def test_the_command_names_a_missing_data_folder_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["fer.evaluate", "baum2", "--path", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"no BAUM-2 clips (S###/###/emotion.txt + frames/) under {tmp_path}/nowhere")
    )


def test_through_the_recognizer_an_image_folder_tree_and_faces_not_found(tmp_path):
    sequences = [s for s in read_ckplus(need(DATA / "ckplus")) if s.code is not None]
    for s in sequences[:12]:
        folder = tmp_path / "tree" / common_name(CKPLUS_CODES[s.code])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.frames[-1], folder)
    (tmp_path / "tree" / "happy").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "tree" / "happy" / "blank.png"), np.full((200, 200, 3), 90, np.uint8))
    items, names = recognizer_items(f"folder:{tmp_path / 'tree'}", DATA)
    assert len(items) == 13 and items[0]().ndim == 3
    result = through_recognizer(EmotionRecognizer(device="cpu"), items, names)
    known = sum(n != "contempt" for n in names)
    assert result["images"] == known and result["not_found"] == 1  # the blank picture
    assert result["unknown_class"] == ({"contempt": len(names) - known} if known < len(names) else {})
    assert result["accuracy"] <= result["accuracy_found"] and set(result["per_class_recall"]) <= set(names)
    assert result["accuracy"] * result["images"] == pytest.approx(round(result["accuracy"] * result["images"]))


def test_fer2013_faces_are_upscaled_and_padded_for_the_detector():
    need(FER2013_CSV)
    items, names = recognizer_items("fer2013", DATA)
    assert len(items) == 3589 and len(set(names)) == 7
    picture = items[0]()
    assert picture.shape == (384, 384, 3) and (picture[:90] == 128).all()
    found = sum(bool(EmotionRecognizer(device="cpu").predict(read(), track=False)) for read in items[:20])
    assert found >= 18
