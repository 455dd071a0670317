"""The shipped models' registry (fer/weights/models.json) against the files it describes and the README."""

from __future__ import annotations

import pytest
import torch

from fer.checkpoint import load_predictor
from fer.shipped import DEFAULT_MODEL, SHIPPED_MODELS, WEIGHTS, markdown_table, shipped_model
from tests.conftest import ROOT


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_each_entry_says_what_its_file_holds(name):
    entry = SHIPPED_MODELS[name]
    predictor, settings = load_predictor(shipped_model(name))
    assert (WEIGHTS / entry.card).is_file()
    assert predictor.net_config["_target_"] == entry.network
    assert tuple(predictor.class_names) == entry.classes
    assert (settings["image_size"], settings["channels"]) == (entry.input["size"], entry.input["channels"])
    assert (settings["mean"], settings["std"]) == (entry.input["mean"], entry.input["std"])
    assert {k: getattr(predictor, k) for k in entry.views} == entry.views
    assert 0 < entry.metrics["macro_f1"] < entry.metrics["accuracy"] < 1 and "train.py" in entry.metrics["command"]
    # what the card reports is what the registry says
    card = (WEIGHTS / entry.card).read_text()
    assert f"{100 * entry.metrics['accuracy']:.2f} %" in card
    with torch.inference_mode():
        p = predictor.predict_proba(torch.zeros(2, 1, 48, 48))
    assert p.shape == (2, len(entry.classes)) and torch.allclose(p.sum(1), torch.ones(2))


def test_the_default_and_unknown_names():
    assert shipped_model() == shipped_model(DEFAULT_MODEL) == SHIPPED_MODELS[DEFAULT_MODEL].path
    with pytest.raises(ValueError, match=r"model_name='vgg' is not a shipped model.*fer2013"):
        shipped_model("vgg")


def test_the_readme_table_is_the_registry():
    assert markdown_table() in (ROOT / "README.md").read_text()
