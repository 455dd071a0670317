"""infer.py and the recognizer on real photos and videos from ../shared/data."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from fer.checkpoint import CheckpointError, load_predictor
from fer.face.detection import (
    BlazeFaceDetector,
    FaceAlignmentDetector,
    HaarDetector,
    detect_scaled,
    make_detector,
)
from fer.face.fan_weights import face_alignment_cache
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer
from tests.conftest import DATA, ROOT, need, run_infer

PHOTOS, VIDEOS = DATA / "photos", DATA / "videos"
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def recognizer():
    return EmotionRecognizer(detector="haar", device="cpu", smoothing=0.5)


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_multi_face_photo_finds_five_faces(recognizer, tmp_path):
    summary = run(recognizer, need(PHOTOS / "multi_face.jpg"), tmp_path, display=False)
    assert summary["faces"] == 5
    rows = _rows(tmp_path / "predictions.csv")
    assert list(rows[0]) == ["frame", "time", "source", "face", "x1", "y1", "x2", "y2", "score", "label"] + [
        f"p_{c}" for c in CLASSES
    ]
    assert len(rows) == 5 and len({r["face"] for r in rows}) == 5
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in CLASSES]
        assert abs(sum(probs) - 1) < 1e-2 and r["label"] == CLASSES[int(np.argmax(probs))]
        assert 0 <= int(r["x1"]) < int(r["x2"]) <= 1000 and 0 <= int(r["y1"]) < int(r["y2"]) <= 667
    assert (tmp_path / "annotated" / "multi_face.jpg").stat().st_size > 50_000


def test_no_face_photo_and_video_still_write_outputs(recognizer, tmp_path):
    summary = run(recognizer, need(PHOTOS / "grass.jpg"), tmp_path / "photo", display=False)
    assert summary["faces"] == 0 and summary["frames"] == 1
    assert _rows(tmp_path / "photo" / "predictions.csv") == []
    assert (tmp_path / "photo" / "annotated" / "grass.jpg").exists()
    summary = run(recognizer, need(VIDEOS / "no_face.mp4"), tmp_path / "video", display=False, predictions="jsonl")
    assert summary["frames"] >= 90 and summary["faces"] == 0  # 95 decodable of 98 declared
    assert (tmp_path / "video" / "predictions.jsonl").read_text() == ""
    assert (tmp_path / "video" / "annotated.mp4").stat().st_size > 10_000


def test_single_face_video_is_tracked_and_smiles(recognizer, tmp_path):
    summary = run(recognizer, need(VIDEOS / "single_face.mp4"), tmp_path, display=False, predictions="jsonl")
    assert summary["frames"] == 72 and summary["frames_with_face"] >= 0.9 * 72
    records = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert set(records[0]) == {"frame", "time", "source", "face", "box", "score", "label", "probabilities"}
    assert records[30]["time"] == pytest.approx(30 / 30, abs=0.01)
    assert len({r["face"] for r in records}) <= 2  # one man, one track (at most one re-acquisition)
    middle = [r["label"] for r in records if 30 <= r["frame"] < 50]
    assert middle.count("happy") > len(middle) / 2, middle
    assert set(summary["ms_per_stage"]) == {"decode", "detect", "classify", "draw", "write"}


def test_folder_with_non_images_and_unreadable_files(recognizer, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(need(PHOTOS / "single_face.jpg"), folder)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    summary = run(recognizer, folder, tmp_path / "out", display=False)
    assert summary["frames"] == 1 and summary["faces"] == 1
    assert summary["skipped"] == {"not an image": 1, "unreadable image": 1}


def test_bad_sources_and_existing_outputs(recognizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        run(recognizer, tmp_path / "nowhere.mp4", tmp_path / "a", display=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        run(recognizer, tmp_path / "empty", tmp_path / "b", display=False)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="fake.mp4"):
        run(recognizer, fake, tmp_path / "c", display=False)
    with pytest.raises(ValueError, match="no camera at index 7"):
        run(recognizer, 7, tmp_path / "d", display=False)
    photo = need(PHOTOS / "single_face.jpg")
    run(recognizer, photo, tmp_path / "e", display=False)
    before = (tmp_path / "e" / "predictions.csv").read_text()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        run(recognizer, PHOTOS / "grass.jpg", tmp_path / "e", display=False)
    assert (tmp_path / "e" / "predictions.csv").read_text() == before
    run(recognizer, PHOTOS / "grass.jpg", tmp_path / "e", display=False, overwrite=True)
    assert (tmp_path / "e" / "predictions.csv").read_text() != before


def test_checkpoints_that_do_not_fit(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_predictor(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_predictor(tmp_path / "junk.ckpt")
    checkpoint = torch.load(ROOT / "fer" / "weights" / "fer2013_deep_cnn.ckpt", weights_only=False)
    checkpoint["hyper_parameters"]["net"]["_target_"] = "fer.models.shallow_cnn"
    torch.save(checkpoint, tmp_path / "wrong_net.ckpt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_predictor(tmp_path / "wrong_net.ckpt")
    checkpoint["hyper_parameters"]["net"]["_target_"] = "fer.models.deep_cnn"
    checkpoint["hyper_parameters"]["class_names"] = ["a", "b", "c"]
    torch.save(checkpoint, tmp_path / "wrong_classes.ckpt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_predictor(tmp_path / "wrong_classes.ckpt")


@pytest.fixture
def random_face_alignment(tmp_path, monkeypatch):
    """face-alignment's S3FD and 2D-FAN with random weights under their real cache names."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = face_alignment_cache()
    assert cache == tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), cache / "s3fd-619a316812.pth")
    torch.save(FAN(4).state_dict(), cache / "2DFAN4-11f355bf06.pth.tar")
    return cache


def test_face_alignment_adapter_with_random_weights(random_face_alignment):
    image = __import__("cv2").imread(str(need(PHOTOS / "single_face.jpg")))
    boxes_only = make_detector("auto", "cpu")
    assert isinstance(boxes_only, FaceAlignmentDetector)
    found = boxes_only(image[::4, ::4].copy())  # random weights: any number of boxes, of the right kind
    assert all(d.box.shape == (4,) and d.landmarks is None for d in found)
    detector = FaceAlignmentDetector("cpu", landmarks=True)
    box = np.array([150, 100, 400, 400], dtype=np.float32)
    (points,) = detector.landmarker(image, [box])
    assert points.shape == (68, 2) and points.dtype == np.float32
    # random heatmaps put points anywhere in FAN's crop (about 2.3x the box around its centre),
    # in image pixels, not in the 64x64 heatmap's
    centre, side = np.array([275, 250]), 300
    assert (np.abs(points - centre) <= 1.2 * side).all()
    assert np.ptp(points[:, 0]) > 64 and np.ptp(points[:, 1]) > 64


def test_missing_face_alignment_weights_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"download=false[\s\S]*s3fd-619a316812.pth[\s\S]*2DFAN4"):
        FaceAlignmentDetector("cpu", landmarks=True, download=False)
    assert isinstance(make_detector("auto"), BlazeFaceDetector)  # never Haar


def test_first_use_download_with_the_fetch_replaced(tmp_path, monkeypatch):
    from face_alignment.detection.sfd.net_s3fd import s3fd

    import fer.face.fan_weights as fan_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fetched = []

    def offline(url, path, timeout):
        fetched.append((url, timeout))
        raise OSError("<urlopen error [Errno 101] Network is unreachable>")

    monkeypatch.setattr(fan_weights, "fetch", offline)
    with pytest.raises(FileNotFoundError, match=r"the download failed: .*unreachable[\s\S]*s3fd-619a316812.pth"):
        FaceAlignmentDetector("cpu")
    assert fetched == [(fan_weights.FACE_ALIGNMENT_FILES["sfd"]["s3fd-619a316812.pth"], 10.0)]

    def online(url, path, timeout):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(s3fd().state_dict(), path)  # what the address serves: S3FD's weights (random here)

    monkeypatch.setattr(fan_weights, "fetch", online)
    assert isinstance(make_detector("sfd"), FaceAlignmentDetector)
    assert not fan_weights.missing_face_alignment_files(("sfd",))
    assert isinstance(make_detector("auto"), FaceAlignmentDetector)  # cached now: auto takes S3FD


def test_detectors_count_the_faces_of_real_photos():
    import cv2

    counts = {"multi_face.jpg": 5, "two_people.jpg": 2, "obama.jpg": 1, "grass.jpg": 0, "BWPictureHuman.jpg": 1}
    detector = make_detector("blazeface")
    for name, expected in counts.items():
        found = detect_scaled(detector, cv2.imread(str(need(PHOTOS / name))))
        assert len(found) == expected, name
        scores = [d.score for d in found]
        assert scores == sorted(scores, reverse=True) and all(0.5 <= s <= 1 for s in scores)
    haar = HaarDetector()(cv2.imread(str(PHOTOS / "obama.jpg")))
    assert haar and all(d.score is None for d in haar)  # Haar gives no score, and none is made up


def test_one_person_keeps_one_track_and_scores_are_real(tmp_path):
    recognizer = EmotionRecognizer(device="cpu")  # auto: the shipped BlazeFace here
    summary = run(recognizer, need(VIDEOS / "single_face.mp4"), tmp_path, display=False)
    rows = _rows(tmp_path / "predictions.csv")
    assert summary["frames_with_face"] == 72 and {r["face"] for r in rows} == {"1"}
    assert all(0.5 <= float(r["score"]) <= 1 for r in rows)
    haar = EmotionRecognizer(detector="haar", device="cpu")
    run(haar, need(PHOTOS / "single_face.jpg"), tmp_path / "haar", display=False)
    assert [r["score"] for r in _rows(tmp_path / "haar" / "predictions.csv")] == [""]


def test_a_face_refound_near_where_it_was_lost_keeps_its_id():
    boxes = iter([[np.array([100, 100, 200, 200.0])]] * 3 + [[]] * 10 + [[np.array([130, 120, 240, 235.0])]])

    recognizer = EmotionRecognizer(detector=lambda image: [], device="cpu", detect_every=1)
    recognizer.detector = lambda image: [__import__("fer").face.detection.Detection(b, 0.9) for b in next(boxes)]
    image = np.zeros((360, 640, 3), np.uint8)
    ids = [tuple(f.track_id for f in recognizer.predict(image)) for _ in range(14)]
    # a 10-frame look-down: held at its last box for 2 frames, then not reported, then the same id again
    assert ids[0] == ids[2] == ids[3] == ids[4] == (1,) and ids[5:13] == [()] * 8 and ids[13] == (1,)


def test_a_small_face_near_a_lost_close_up_is_someone_else():
    boxes = iter([[np.array([300, 100, 500, 300.0])]] * 2 + [[]] * 5 + [[np.array([380, 180, 430, 230.0])]])
    recognizer = EmotionRecognizer(detector=lambda image: [], device="cpu", detect_every=1, hold=0)
    recognizer.detector = lambda image: [__import__("fer").face.detection.Detection(b, 0.9) for b in next(boxes)]
    image = np.zeros((360, 640, 3), np.uint8)
    ids = [tuple(f.track_id for f in recognizer.predict(image)) for _ in range(8)]
    assert ids[:2] == [(1,), (1,)] and ids[7] == (2,)  # a quarter of the close-up's side, at its centre


def _video_tracks(recognizer, video):
    import cv2

    capture, spans = cv2.VideoCapture(str(need(video))), {}
    for k in range(10_000):
        ok, frame = capture.read()
        if not ok:
            return spans
        for face in recognizer.predict(frame):
            first, _ = spans.get(face.track_id, (k, k))
            spans[face.track_id] = (first, k)
    raise AssertionError("video too long")


def test_scene_cuts_end_tracks_and_one_person_keeps_one_id():
    recognizer = EmotionRecognizer(device="cpu")  # infer.yaml's defaults
    spans = _video_tracks(recognizer, VIDEOS / "short_hamilton_clip.mp4")
    # the stage clip cuts at frames 20, 82 and 211 (found by eye); no track lives across a cut
    assert recognizer.tracker.cuts == 3
    shots = [(0, 19), (20, 81), (82, 210), (211, 274)]
    assert all(any(a <= first and last <= b for a, b in shots) for first, last in spans.values()), spans
    # the close-up of the singer (frames 82-210) is one track from its first frame to its last
    assert [span for span in spans.values() if span[0] <= 90 and span[1] >= 200] == [(82, 210)]
    recognizer.reset()
    assert _video_tracks(recognizer, VIDEOS / "single_face.mp4") == {1: (0, 71)} and recognizer.tracker.cuts == 0


def test_auto_takes_blazeface_front_for_streams_and_full_range_for_photos(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no S3FD weights cached
    recognizer = EmotionRecognizer(device="cpu")
    assert recognizer.detector.back_model is False
    assert recognizer.still_detector.back_model is True
    import cv2

    photo = cv2.imread(str(need(PHOTOS / "multi_face.jpg")))
    assert len(recognizer.predict(photo, track=False)) == 5  # the front model alone finds 4 (README table)


def test_landmarks_work_offline_with_dlib(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no 2D-FAN weights
    recognizer = EmotionRecognizer(device="cpu", landmarks=True, download=False)
    import cv2

    (face,) = recognizer.predict(cv2.imread(str(need(PHOTOS / "single_face.jpg"))), track=False)
    x1, y1, x2, y2 = face.box
    assert face.landmarks.shape == (68, 2)
    assert (face.landmarks[:, 0] > x1 - 20).all() and (face.landmarks[:, 0] < x2 + 20).all()
    assert (face.landmarks[:, 1] > y1 - 20).all() and (face.landmarks[:, 1] < y2 + 40).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the GPU path runs where one is")
def test_detection_and_classification_on_cuda():
    import cv2

    recognizer = EmotionRecognizer(device="cuda")
    assert next(recognizer.backend.model.parameters()).dtype == torch.float16  # half precision classifier
    faces = recognizer.predict(cv2.imread(str(need(PHOTOS / "multi_face.jpg"))), track=False)
    assert len(faces) == 5


@pytest.mark.slow
def test_infer_py_as_a_user_runs_it(tmp_path):
    result = run_infer(
        tmp_path, f"source={need(PHOTOS / 'two_people.jpg')}", "recognizer.detector=haar", "model_name=fer2013"
    )
    assert "1 frames, 1 with a face" in result.stdout
    assert (tmp_path / "predictions.csv").exists() and (tmp_path / "summary.json").exists()


def test_infer_py_reads_the_recognizer_settings_of_the_dataclass():
    from dataclasses import asdict

    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from fer.config import register_configs, register_resolvers
    from fer.inference.settings import RecognizerSettings

    register_resolvers()
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("infer", overrides=[f"paths.root_dir={ROOT}", "recognizer.smoothing=0.25"])
        with pytest.raises(ConfigCompositionException):  # a typo, or a wrong type, fails before anything runs
            compose("infer", overrides=["recognizer.smothing=0.25"])
        with pytest.raises(ConfigCompositionException):
            compose("infer", overrides=["recognizer.hold=soon"])
    settings = RecognizerSettings(**OmegaConf.to_container(cfg.recognizer, resolve=True))
    expected = asdict(RecognizerSettings()) | {"smoothing": 0.25, "onnx_cache": f"{ROOT}/outputs/cache/onnx"}
    assert asdict(settings) == expected
    with pytest.raises(ValueError, match="smoothing"):
        EmotionRecognizer(device="cpu", detector="haar", smoothing=1.5)
