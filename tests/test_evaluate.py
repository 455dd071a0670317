"""Zero-shot evaluation (fer/evaluate.py) of the shipped model on the real CK+ apex faces and BAUM-2 clips."""

from __future__ import annotations

import numpy as np
import pytest

from fer.checkpoint import load_predictor
from fer.evaluate import baum2_clips, ckplus_apex, main, markdown, zero_shot
from fer.face.crops import preprocess
from fer.shipped import shipped_model
from tests.conftest import DATA, need


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
