"""Zero-shot evaluation (fer/evaluate.py) of the shipped model on the real CK+ apex faces and BAUM-2 clips."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from fer.adaptation import divide
from fer.checkpoint import load_predictor
from fer.data.ckplus import read_ckplus
from fer.data.fer2013_files import load_fer2013
from fer.data.labels import CKPLUS_CODES, common_name
from fer.evaluate import (
    _padded,
    adapted,
    baum2_clips,
    ckplus_apex,
    main,
    markdown,
    recognizer_items,
    scores,
    through_recognizer,
    zero_shot,
)
from fer.face.crops import crop_faces, preprocess
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
    items = recognizer_items(f"folder:{tmp_path / 'tree'}", DATA)
    names = [item.name for item in items]
    assert len(items) == 13 and items[0].read().ndim == 3 and len({item.unit for item in items}) == 13
    result = through_recognizer(shipped_model(), items)["none"]
    known = sum(n != "contempt" for n in names)
    assert result["images"] == known and result["not_found"] == 1  # the blank picture
    assert result["unknown_class"] == ({"contempt": len(names) - known} if known < len(names) else {})
    assert result["accuracy"] <= result["accuracy_found"] and set(result["per_class_recall"]) <= set(names)
    assert result["accuracy"] * result["images"] == pytest.approx(round(result["accuracy"] * result["images"]))
    with pytest.raises(ValueError, match="unknown adaptation"):
        through_recognizer(shipped_model(), items, ("person",))


def test_fer2013_faces_are_upscaled_and_padded_for_the_detector():
    need(FER2013_CSV)
    items = recognizer_items("fer2013", DATA)
    assert len(items) == 3589 and len({item.name for item in items}) == 7
    picture = items[0].read()
    assert picture.shape == (384, 384, 3) and (picture[:90] == 128).all()
    found = sum(bool(EmotionRecognizer(device="cpu").predict(item.read(), track=False)) for item in items[:20])
    assert found >= 18


def test_per_person_baselines_follow_ckplus_subjects_and_sequences():
    need(DATA / "ckplus")
    items = recognizer_items("ckplus", DATA)
    assert sum(i.scored for i in items) == 327 and sum(i.reference for i in items) == 327
    assert all(i.name == "neutral" for i in items if i.reference) and not any(i.scored for i in items if i.reference)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), len(items)).astype(np.float32)
    p[4] = np.nan  # a face not found: an unscored first frame
    for k, item in enumerate(items):
        same = [j for j, o in enumerate(items) if o.person == item.person and j != 4]
        other_rest = [j for j in same if items[j].reference and items[j].session != item.session]
        if k != 4 and other_rest and len(same) > 2:
            break
    mean, neutral = adapted(p, items, "mean"), adapted(p, items, "neutral", 0.5)
    np.testing.assert_allclose(mean[k], divide(p[k], p[same].mean(0)), rtol=1e-5)
    np.testing.assert_allclose(neutral[k], divide(p[k], p[other_rest].mean(0), 0.5), rtol=1e-5)
    assert np.isnan(mean[4]).all() and np.array_equal(adapted(p, items, "none"), p, equal_nan=True)
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt"]
    result = scores(p, items, classes)
    assert result["images"] == 327 and result["not_found"] == 0


def test_baum2_clips_through_the_recognizer_are_scored_as_clips():
    need(DATA / "baum2" / "Extracted")
    items = recognizer_items("baum2", DATA)
    assert len(items) == 2272 and len({i.unit for i in items}) == 147
    picture = items[0].read()
    assert picture.shape == (384, 384, 3) and (picture[:90] == 128).all()
    some = [i for i in items if i.person in ("S001", "S002")]
    results = through_recognizer(shipped_model(), some, ("none", "mean", "adabn"))
    clips = len({i.unit for i in some if i.name != "contempt"})
    assert set(results) == {"none", "mean", "adabn"}
    for r in results.values():
        assert r["images"] == clips and r["not_found"] < clips and 0 <= r["accuracy"] <= 1


def test_a_shifted_crop_recovers_fer2013s_framing_from_a_lower_box():
    need(FER2013_CSV)
    face = load_fer2013(FER2013_CSV).split("PrivateTest")[0][0].numpy()
    picture = _padded(face)  # as recognizer_items("fer2013") gives it: upscaled 4x at (96, 96)-(288, 288)
    side = 192 / 1.2  # a detector's box: smaller than FER-2013's frame and 0.1 of its side lower
    top = 192 - side / 2 + 0.1 * side
    box = np.array([192 - side / 2, top, 192 + side / 2, top + side])
    matched = crop_faces(picture, [box], 48, margin=0.2, shift=-0.1)[0, 0].numpy().astype(int)
    centred = crop_faces(picture, [box], 48, margin=0.2)[0, 0].numpy().astype(int)
    assert np.abs(matched - face).mean() < 3 < 10 < np.abs(centred - face).mean()
    with pytest.raises(ValueError, match="crop_shift"):
        EmotionRecognizer(detector="haar", device="cpu", crop_shift=0.7)
