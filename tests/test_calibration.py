"""Temperature scaling: fitted on validation, stored in the checkpoint, used on every path; the uncertain label."""

import csv
import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from fer.calibration import calibrate, fit_temperature, scores, view_logits
from fer.calibration import main as calibration_main
from fer.checkpoint import load_predictor, read_checkpoint
from fer.data import FER2013DataModule
from fer.face.crops import preprocess
from fer.inference.backends import onnx_for
from fer.inference.recognizer import UNCERTAIN, EmotionRecognizer
from fer.predictor import calibrated, face_temperature, log_mean_softmax
from fer.shipped import SHIPPED_MODELS, shipped_model
from fer.web.app import create_app
from fer.web.recognizers import Recognizers, model_names
from fer.web.settings import WebSettings
from tests.conftest import DATA, FER2013_CSV, ROOT, need, run_infer


def test_every_shipped_model_carries_its_fitted_temperature():
    for entry in SHIPPED_MODELS.values():
        hparams = read_checkpoint(entry.path)["hyper_parameters"]
        stored = hparams["temperature"], hparams["entropy_exponent"]
        assert stored == pytest.approx((entry.metrics["temperature"], entry.metrics["entropy_exponent"]), abs=1e-4)
        assert stored != (1.0, 0.0)
        predictor = load_predictor(entry.path)[0]
        assert (predictor.temperature, predictor.entropy_exponent) == stored


def test_the_fitted_temperature_is_the_validation_nll_minimum():
    dm = FER2013DataModule()  # the real sample in the package: 350 PublicTest, 350 PrivateTest faces
    dm.setup()
    predictor, _ = load_predictor(shipped_model("fer2013"))
    predictor.temperature, predictor.entropy_exponent = 1.0, 0.0
    (val_x, val_y), (test_x, test_y) = dm.splits["val"].tensors, dm.splits["test"].tensors
    val, test = view_logits(predictor, val_x), view_logits(predictor, test_x)
    assert val.shape == (2, 350, 7)  # the face and its mirror
    t = fit_temperature(val, val_y, entropy=False)
    assert t[1] == 0
    grid = torch.linspace(0.5, 2.0, 151)
    nll = torch.stack([F.nll_loss(log_mean_softmax(val, g), val_y) for g in grid])
    assert t[0] == pytest.approx(float(grid[nll.argmin()]), abs=0.01)
    # with the entropy term: the minimum over a grid of both, and at least as good as one temperature
    t, a = fit_temperature(val, val_y)
    exponents = torch.linspace(-0.5, 1.0, 61)
    nll = torch.stack([torch.stack([F.nll_loss(calibrated(val, g, e), val_y) for e in exponents]) for g in grid])
    best = divmod(int(nll.argmin()), len(exponents))
    assert (t, a) == pytest.approx((float(grid[best[0]]), float(exponents[best[1]])), abs=0.03)
    assert F.nll_loss(calibrated(val, t, a), val_y) <= nll.min() + 1e-4
    before, after = scores(log_mean_softmax(test, 1.0), test_y), scores(calibrated(test, t, a), test_y)
    assert after["accuracy"] == pytest.approx(before["accuracy"], abs=2 / 350)  # mirror averages may swap near-ties
    # one face, one number: the class of one view never changes, and surer faces get lower temperatures
    assert torch.equal(calibrated(val[:1], t, a).argmax(-1), val[0].argmax(-1))
    temperatures = face_temperature(val, t, a).flatten()
    entropy = -(log_mean_softmax(val).exp() * log_mean_softmax(val)).sum(-1)
    assert a > 0 and torch.equal(temperatures.argsort(), entropy.argsort())
    # the predictor with a stored (T, a) gives what calibrated() gives for its views
    predictor.temperature, predictor.entropy_exponent = t, a
    with torch.inference_mode():
        stored = predictor.predict_proba(preprocess(test_x))
    assert torch.allclose(stored, calibrated(test, t, a).exp(), atol=1e-5)


def test_calibration_cli_writes_a_copy_and_never_overwrites(tmp_path):
    csv_path = str(need(FER2013_CSV))
    source, target = shipped_model("fer2013_deep_cnn"), tmp_path / "calibrated.ckpt"
    assert calibration_main([str(source), str(target), "--data", csv_path, "--report", str(tmp_path / "r")]) == 0
    hparams, metrics = read_checkpoint(target)["hyper_parameters"], SHIPPED_MODELS["fer2013_deep_cnn"].metrics
    assert hparams["temperature"] == pytest.approx(metrics["temperature"], abs=1e-3)
    assert hparams["entropy_exponent"] == pytest.approx(metrics["entropy_exponent"], abs=1e-3)
    assert (tmp_path / "r" / "reliability.png").stat().st_size > 10_000
    report = json.loads((tmp_path / "r" / "calibration.json").read_text())["test"]  # PrivateTest
    assert report["after"]["ece"] < report["before"]["ece"] - 0.01 and report["after"]["nll"] < report["before"]["nll"]
    assert report["after"]["accuracy"] == report["before"]["accuracy"]
    before = target.read_bytes()
    assert calibration_main([str(source), str(target), "--data", csv_path]) == 2
    assert target.read_bytes() == before
    with pytest.raises(ValueError, match="--ferplus"):
        calibrate(shipped_model("ferplus_deep_cnn"), csv_path)


def test_calibrated_probabilities_are_the_same_from_infer_py_the_web_app_and_onnxruntime(tmp_path):
    photo = need(DATA / "photos" / "single_face.jpg")
    run_infer(tmp_path / "run", f"source={photo}", f"output_dir={tmp_path / 'out'}")
    (row,) = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    from_cli = np.array([float(row[f"p_{c}"]) for c in SHIPPED_MODELS["fer2013"].classes])
    with TestClient(
        create_app(
            Recognizers(model_names([None]), ["auto"]), tmp_path / "web", WebSettings(allowed_hosts=["testserver"])
        )
    ) as client:
        (face,) = client.post("/api/upload?name=face.jpg", content=photo.read_bytes()).json()["faces"]
    from_web = np.array(list(face["probabilities"].values()))
    recognizer = EmotionRecognizer(device="cpu")
    (found,) = recognizer.predict(cv2.imread(str(photo)), track=False)
    x = preprocess(recognizer.crops(cv2.imread(str(photo)), [np.array(found.box, np.float32)])).numpy()
    graph = onnx_for(None, ROOT / "outputs" / "cache" / "onnx", int8=True)  # the recognizer's own default graph
    (from_onnx,) = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, {"faces": x})[0]
    np.testing.assert_allclose(from_cli, from_onnx, atol=1e-4)  # the CSV rounds to 4 decimals
    np.testing.assert_allclose(from_web, from_onnx, atol=1e-4)
    model, _ = load_predictor(None)
    with torch.inference_mode():
        in_torch = model.predict_proba(torch.from_numpy(x))[0].numpy()
        model.temperature, model.entropy_exponent = 1.0, 0.0
        uncalibrated = model.predict_proba(torch.from_numpy(x))[0].numpy()
    assert np.abs(in_torch - from_onnx).max() < np.abs(uncalibrated - from_onnx).max()


def test_uncertain_below_labels_an_unsure_face_and_keeps_its_probabilities():
    image = cv2.imread(str(need(DATA / "photos" / "multi_face.jpg")))
    sure = EmotionRecognizer(device="cpu").predict(image, track=False)
    floor = float(np.median([max(f.probabilities.values()) for f in sure]))
    unsure = EmotionRecognizer(device="cpu", uncertain_below=floor).predict(image, track=False)
    for a, b in zip(sure, unsure):
        assert a.probabilities == b.probabilities
        assert b.label == (a.label if max(a.probabilities.values()) >= floor else UNCERTAIN)
    assert UNCERTAIN in [f.label for f in unsure] and UNCERTAIN not in [f.label for f in sure]
    with pytest.raises(ValueError, match="uncertain_below"):
        EmotionRecognizer(device="cpu", detector="haar", uncertain_below=1.5)
