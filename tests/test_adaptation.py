"""Per-person adaptation: baselines divided out, in the recognizer's streams and over collections (AdaBN)."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer.adaptation import Baseline, adapt_batchnorm, divide
from fer.checkpoint import load_predictor
from fer.data import FER2013DataModule
from fer.evaluate import _padded
from fer.face.crops import preprocess
from fer.inference.loop import adapt_to_source
from fer.inference.recognizer import EmotionRecognizer
from fer.inference.settings import RecognizerSettings
from fer.shipped import shipped_model
from tests.conftest import DATA, need, run_infer


def test_divide_removes_a_baseline_by_its_strength():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]], np.float32)
    np.testing.assert_allclose(divide(p, np.array([0.2, 0.5, 0.3]), 0.0), p, rtol=1e-6)
    np.testing.assert_allclose(
        divide(p[0], p[0]), [1 / 3] * 3, rtol=1e-6
    )  # a face like its baseline: no class stands out
    sad_person = np.array([0.2, 0.6, 0.2])
    q = divide(p, sad_person)
    assert q.dtype == np.float32 and np.allclose(q.sum(1), 1)
    assert (q[:, 1] < p[:, 1]).all() and (q[:, 0] > p[:, 0]).all()
    half = divide(p, sad_person, 0.5)
    assert (q[:, 1] < half[:, 1]).all() and (half[:, 1] < p[:, 1]).all()


def test_a_baseline_starts_uniform_and_becomes_the_mean_of_its_frames():
    b = Baseline(4, prior=2)
    np.testing.assert_allclose(b.value, [0.25] * 4)
    b.add(np.array([1.0, 0, 0, 0]))
    b.add(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    np.testing.assert_allclose(b.value, (np.array([2, 1, 0, 0]) + 0.5) / 5)
    assert Baseline(3).value.sum() == pytest.approx(1)


def test_adabn_reestimates_batch_norm_over_the_collection_only():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten())
    x = torch.randn(64, 1, 8, 8) * 3 + 2
    weights = net[0].weight.clone()
    assert adapt_batchnorm(net, x.split(16)) == 1
    features = net[0](x)
    torch.testing.assert_close(net[1].running_mean, features.mean((0, 2, 3)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(net[1].running_var, features.var((0, 2, 3)), rtol=1e-2, atol=1e-3)
    assert not net.training and net[1].momentum == 0.1 and torch.equal(net[0].weight, weights)
    assert adapt_batchnorm(torch.nn.Linear(3, 2), [torch.zeros(1, 3)]) == 0


def test_adabn_on_the_shipped_model_follows_the_faces_it_is_given():
    predictor, settings = load_predictor(views=None)
    dm = FER2013DataModule()  # the FER-2013 sample shipped with the package
    dm.setup()
    x = preprocess(dm.splits["test"].tensors[0][:200], None, settings["mean"], settings["std"])
    before = predictor.predict_proba(x)
    washed = x * 0.25 + 1.0  # another camera: brighter, flatter faces
    unadapted = (predictor.predict_proba(washed).argmax(1) == before.argmax(1)).float().mean()
    assert adapt_batchnorm(predictor, washed.split(64)) > 10
    first = next(m for m in predictor.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert first.running_mean.abs().sum() > 0
    # normalised by their own statistics, the washed-out faces are read much as the originals were
    agreement = (predictor.predict_proba(washed).argmax(1) == before.argmax(1)).float().mean()
    assert unadapted < 0.7 and agreement > 0.8, (unadapted, agreement)


def _photos(folder: Path, faces: np.ndarray) -> Path:
    """48x48 faces as photos the detector finds, as ``fer.evaluate`` pads FER-2013's (upscaled 4x, grey frame)."""
    folder.mkdir()
    for i, face in enumerate(faces):
        cv2.imwrite(str(folder / f"{i:03d}.png"), _padded(face))
    return folder


def _labels(recognizer: EmotionRecognizer, folder: Path) -> list[str | None]:
    """Each photo's label: its face of the highest detector score (``None``: no face found), in one batch."""
    images = [cv2.imread(str(path)) for path in sorted(folder.iterdir())]
    best = [max(recognizer.detect_still(image), key=lambda d: d.score, default=None) for image in images]
    found = [(image, d) for image, d in zip(images, best) if d is not None]
    probabilities = iter(recognizer.probabilities(torch.cat([recognizer.crops(i, [d.box]) for i, d in found])))
    return [None if d is None else recognizer.class_names[next(probabilities).argmax()] for d in best]


def test_adabn_over_a_folder_reads_another_cameras_faces_as_the_originals(tmp_path):
    dm = FER2013DataModule()  # the sample's PrivateTest faces, as photos and as a flat, bright camera takes them
    dm.setup()
    faces = dm.splits["test"].tensors[0][:60, 0].numpy()
    originals = _photos(tmp_path / "originals", faces)
    washed = _photos(tmp_path / "washed", (faces * 0.3 + 150).astype(np.uint8))
    recognizer = EmotionRecognizer(backend="torch", device="cpu")  # the default ResNet-18
    truth = _labels(recognizer, originals)
    unadapted = _labels(recognizer, washed)
    assert adapt_to_source(recognizer, str(washed)) >= 50  # faces the first pass found
    adapted = _labels(recognizer, washed)

    def agreement(labels: list[str | None]) -> float:
        return np.mean([a is not None and a == b for a, b in zip(labels, truth)])

    assert agreement(adapted) > agreement(unadapted) + 0.08, (agreement(unadapted), agreement(adapted))
    # infer.py adabn=true: the same first pass, then the same labels in its predictions
    run_infer(tmp_path / "run", f"source={washed}", "adabn=true", f"output_dir={tmp_path / 'out'}")
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = {}
        for row in csv.DictReader(f):  # a photo's best face is its first (faces are numbered by score)
            rows.setdefault(row["source"], row["label"])
    assert [rows.get(p.name) for p in sorted(washed.iterdir())] == adapted
    with pytest.raises(ValueError, match="not a live source"):
        adapt_to_source(recognizer, "0")
    with pytest.raises(ValueError, match="backend=torch"):  # an exported graph's batch norms are folded
        EmotionRecognizer(
            shipped_model("fer2013_deep_cnn"), backend="onnxruntime", int8=False, device="cpu"
        ).adapt_batchnorm(torch.zeros(1, 1, 48, 48, dtype=torch.uint8))


def _frames(n: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(need(DATA / "videos" / "single_face.mp4")))
    return [capture.read()[1] for _ in range(n)]


def _stream(frames, **settings) -> np.ndarray:
    recognizer = EmotionRecognizer(detector="blazeface_front", device="cpu", smoothing=0.0, **settings)
    faces = [recognizer.predict(f) for f in frames]
    assert [len(f) for f in faces] == [1] * len(frames)
    return np.array([list(f[0].probabilities.values()) for f in faces]), recognizer


def test_adapt_mean_divides_each_frame_by_its_tracks_running_mean():
    frames = _frames(10)
    raw, _ = _stream(frames)
    adapted, _ = _stream(frames, adapt="mean", adapt_prior=3)
    for k in range(10):
        baseline = (raw[: k + 1].sum(0) + 3 / raw.shape[1]) / (k + 1 + 3)
        np.testing.assert_allclose(adapted[k], divide(raw[k], baseline), atol=1e-5)
    off, _ = _stream(frames, adapt="mean", adapt_strength=0.0)
    np.testing.assert_allclose(off, raw, atol=1e-6)


def test_adapt_neutral_divides_by_the_frames_marked_neutral():
    frames = _frames(8)
    raw, _ = _stream(frames)
    recognizer = EmotionRecognizer(detector="blazeface_front", device="cpu", smoothing=0.0, adapt="neutral")
    seen = [recognizer.predict(f)[0] for f in frames[:3]]
    np.testing.assert_allclose([list(f.probabilities.values()) for f in seen], raw[:3], atol=1e-6)  # unmarked
    assert recognizer.mark_neutral() == [1] and recognizer.mark_neutral([7]) == []
    after = [list(recognizer.predict(f)[0].probabilities.values()) for f in frames[3:]]
    np.testing.assert_allclose(after, divide(raw[3:], raw[2]), atol=1e-5)
    with pytest.raises(ValueError, match="adapt='neutral'"):
        EmotionRecognizer(detector="haar", device="cpu").mark_neutral()
    with pytest.raises(ValueError, match="adapt must be"):
        RecognizerSettings(adapt="person")
    with pytest.raises(ValueError, match="adapt_strength"):
        RecognizerSettings(adapt_strength=2)
