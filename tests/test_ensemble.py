"""model=ensemble: the mean probability of trained checkpoints, tested by train=false and used by the recognizer."""

from __future__ import annotations

import json

import cv2
import pytest
import torch

from fer.checkpoint import CheckpointError, load_predictor
from fer.data import CLASS_NAMES, FER2013DataModule
from fer.inference.recognizer import EmotionRecognizer
from fer.models import Ensemble
from fer.shipped import shipped_model
from fer.training.module import EmotionClassifier
from fer.training.run import build_model, train
from tests.conftest import DATA, need
from tests.helpers import save_classifier


@pytest.fixture(scope="module")
def second_member(tmp_path_factory):
    """A 4-conv CNN of FER-2013's classes (seeded, untrained) on 40x40 crops, ten at test: unlike the shipped model."""
    net = {"_target_": "fer.models.CNN4", "num_classes": 7, "in_channels": 1, "input_size": 40}
    path = tmp_path_factory.mktemp("member") / "cnn4.ckpt"
    return save_classifier(path, net, 7, list(CLASS_NAMES), crop=40, ten_crop="test")


def test_train_false_tests_the_ensemble_and_writes_one_checkpoint(tmp_path, train_config, second_member):
    members = f"model.net.checkpoints=[{shipped_model()},{second_member}]"
    metrics = train(train_config("train=false", "model=ensemble", members, "model.tta_shift=2", "model.tta_rotate=5"))
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["num_images"] == 350 and abs(metrics["test/acc"] - report["accuracy"]) < 1e-6
    ensemble, _ = load_predictor(tmp_path / "run" / "checkpoints" / "ensemble.ckpt")
    assert "checkpoints" not in ensemble.net_config  # configs, never paths
    # test-time views travel with the checkpoint to the recognizer
    assert ensemble.tta_shift == 2 and ensemble.tta_rotate == 5
    shipped, cnn4 = load_predictor(shipped_model())[0], load_predictor(second_member)[0]
    dm = FER2013DataModule()
    dm.setup()
    x = dm.on_after_batch_transfer(dm.splits["test"][:64], 0)[0]
    with torch.inference_mode():
        # the cropping member votes as its own test does: the mean of its centre and four corner 40x40 crops
        windows = [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]
        vote = torch.stack([cnn4.net(x[..., t : t + 40, u : u + 40]).float().softmax(-1) for t, u in windows]).mean(0)
        assert torch.allclose(cnn4.predict_proba(x), vote, atol=1e-5)
        mean = (shipped.net(x).float().softmax(-1) + vote) / 2
        assert torch.allclose(ensemble.net(x).softmax(-1), mean, atol=1e-5)

        # an ensemble checkpoint is one member: its vote is its own mean, half of this one
        nested = f"model.net.checkpoints=[{shipped_model()},{tmp_path / 'run' / 'checkpoints' / 'ensemble.ckpt'}]"
        outer = build_model(train_config("model=ensemble", nested), dm).eval()
        halves = (shipped.net(x).float().softmax(-1) + mean) / 2
        assert torch.allclose(outer.net(x).softmax(-1), halves, atol=1e-5)

    recognizer = EmotionRecognizer(tmp_path / "run" / "checkpoints" / "ensemble.ckpt", device="cpu")
    faces = recognizer.predict(cv2.imread(str(need(DATA / "photos" / "multi_face.jpg"))), track=False)
    assert len(faces) == 5 and all(abs(sum(f.probabilities.values()) - 1) < 1e-4 for f in faces)


def test_members_of_other_classes_are_refused(train_config):
    ferplus = shipped_model("ferplus")
    with pytest.raises(CheckpointError, match=r"ferplus_resnet18.ckpt: classes .* are not the data's"):
        train(train_config("train=false", "model=ensemble", f"model.net.checkpoints=[{shipped_model()},{ferplus}]"))


def test_a_hostile_member_target_is_refused_unrun(tmp_path):
    hostile = {"_target_": "fer.models.Ensemble", "members": [{"_target_": "os.system", "command": "touch x"}]}
    model = EmotionClassifier({"_target_": "fer.models.CNN4", "num_classes": 7}, class_names=list(CLASS_NAMES))
    hparams = dict(model.hparams) | {"net": hostile}
    torch.save({"hyper_parameters": hparams, "state_dict": model.state_dict()}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="os.system"):
        load_predictor(tmp_path / "bad.ckpt")


def test_ten_crops_need_a_member_that_crops():
    with pytest.raises(ValueError, match="ten_crops"):
        Ensemble([torch.nn.Flatten()], crops=[None], ten_crops=[True])


def test_members_vote_on_their_centre_crops_when_told(train_config, second_member):
    members = f"model.net.checkpoints=[{shipped_model()},{second_member}]"
    dm = FER2013DataModule()
    assert build_model(train_config("model=ensemble", members), dm).net.ten_crops == [False, True]
    centre = build_model(train_config("model=ensemble", members, "model.net.ten_crops=[false,false]"), dm).eval()
    assert centre.net.ten_crops == [False, False]
    dm.setup()
    x = dm.on_after_batch_transfer(dm.splits["test"][:64], 0)[0]
    with torch.inference_mode():
        alone = (centre.net.members[0](x).softmax(-1) + centre.net.members[1](x[..., 4:44, 4:44]).softmax(-1)) / 2
        assert torch.allclose(centre.net(x).softmax(-1), alone, atol=1e-5)
    # the shipped member sees whole faces: it has no crops to take
    with pytest.raises(ValueError, match=r"model.net.ten_crops .*: ten_crops \[True, True\] do not fit.*\[None, 40\]"):
        build_model(train_config("model=ensemble", members, "model.net.ten_crops=[true,true]"), dm)
