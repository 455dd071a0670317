"""ONNX export and the onnxruntime backend: parity with PyTorch on real faces and clips."""

import json

import cv2
import numpy as np
import pytest
import torch

from fer.checkpoint import CheckpointError, load_predictor
from fer.data import FER2013DataModule
from fer.export import export_onnx, quantized_onnx
from fer.export import main as export_main
from fer.face.crops import preprocess
from fer.face.detection import BlazeFaceDetector, blazeface_files, export_blazeface_onnx
from fer.inference.backends import OnnxBackend, TorchBackend
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer
from fer.shipped import shipped_model
from tests.conftest import DATA, FER2013_CSV, need
from tests.helpers import save_classifier

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory):
    return export_onnx(shipped_model(), tmp_path_factory.mktemp("onnx") / "shipped.onnx")


def test_parity_on_256_real_privatetest_faces(shipped_onnx):
    dm = FER2013DataModule()  # the real sample shipped in the package: 350 PrivateTest faces
    dm.setup()
    faces = dm.splits["test"].tensors[0][:256]
    x = preprocess(faces)
    torch_p, onnx_p = TorchBackend(None)(x), OnnxBackend(shipped_onnx)(x)
    assert onnx_p.shape == (256, 7) and np.abs(onnx_p - torch_p).max() < 1e-4
    assert (onnx_p.argmax(1) == torch_p.argmax(1)).all()


def test_shifted_and_rotated_views_export_with_parity_at_any_batch_size(tmp_path):
    net = {"_target_": "fer.models.CNN4", "num_classes": 7, "in_channels": 1, "input_size": 48}
    ckpt = save_classifier(tmp_path / "views.ckpt", net, 7, tta_flip=True, tta_shift=1, tta_rotate=10)
    graph = export_onnx(ckpt, tmp_path / "views.onnx")
    dm = FER2013DataModule()
    dm.setup()
    for n in (1, 33):  # the exporter traced a batch of 2
        x = preprocess(dm.splits["test"].tensors[0][:n])
        torch_p, onnx_p = TorchBackend(ckpt)(x), OnnxBackend(graph)(x)
        assert onnx_p.shape == (n, 7) and np.abs(onnx_p - torch_p).max() < 1e-4


def test_a_plain_onnxruntime_script_needs_nothing_from_fer(shipped_onnx):
    session = ort.InferenceSession(str(shipped_onnx), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names, size = json.loads(meta["class_names"]), int(meta["input_size"])
    assert names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"] and size == 48
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("faces", ["batch", 1, 48, 48])]
    face = cv2.resize(np.full((100, 100), 128, np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    x = ((face / 255.0 - float(meta["mean"])) / float(meta["std"])).astype(np.float32)[None, None]
    (p,) = session.run(["probabilities"], {"faces": np.concatenate([x, x, x])})
    assert p.shape == (3, 7) and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize(
    "net",
    [
        {"_target_": "fer.models.C3D", "num_classes": 8, "clip_length": 8, "width": 8},
        {"_target_": "fer.models.CNNLSTM", "frame_net": {"_target_": "fer.models.shallow_cnn"}, "num_classes": 8,
         "clip_length": 8},
        {"_target_": "fer.models.FrameAverage", "frame_net": {"_target_": "fer.models.shallow_cnn"},
         "num_classes": 8, "clip_length": 8},
    ],
    ids=["c3d", "cnn_lstm", "frame_average"],
)  # fmt: skip
def test_clip_models_export_with_parity_on_baum2_clips(tmp_path, net):
    from fer.data import BAUM2DataModule

    ckpt = save_classifier(tmp_path / "clip.ckpt", net, 8)
    graph = export_onnx(ckpt, tmp_path / "clip.onnx")
    dm = BAUM2DataModule(str(need(DATA / "baum2" / "Extracted")), clip_length=8)
    dm.setup()
    clips = dm.splits["test"].tensors[0][:6]
    x = preprocess(clips.flatten(0, 1), None, dm.mean, dm.std).view(*clips.shape)
    torch_p, onnx_p = TorchBackend(ckpt)(x), OnnxBackend(graph)(x)
    assert onnx_p.shape == (6, 8) and np.abs(onnx_p - torch_p).max() < 1e-4
    assert (onnx_p.argmax(1) == torch_p.argmax(1)).all()


def test_export_cli_refuses_what_it_cannot_export(tmp_path, capsys):
    net = {"_target_": "fer.models.LandmarkMLP", "num_classes": 7, "in_features": 2278}
    save_classifier(tmp_path / "mlp.ckpt", net, 7)
    assert export_main([str(tmp_path / "mlp.ckpt"), str(tmp_path / "mlp.onnx")]) == 2
    assert "landmark model" in capsys.readouterr().err and not (tmp_path / "mlp.onnx").exists()
    assert export_main([str(shipped_model()), str(tmp_path / "model.pt")]) == 2
    assert "must end in .ckpt or .onnx" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no class_names"):
        import onnx

        graph = onnx.load(str(export_onnx(shipped_model(), tmp_path / "plain.onnx")))
        del graph.metadata_props[:]
        onnx.save(graph, str(tmp_path / "plain.onnx"))
        OnnxBackend(tmp_path / "plain.onnx")


def test_recognizer_on_onnxruntime_gives_the_same_faces(tmp_path):
    video = need(DATA / "videos" / "single_face.mp4")
    cache = tmp_path / "cache"
    results = {}
    for backend in ("torch", "onnxruntime"):
        recognizer = EmotionRecognizer(detector="haar", device="cpu", backend=backend, onnx_cache=cache, int8=False)
        run(recognizer, video, tmp_path / backend, display=False, predictions="jsonl")
        lines = (tmp_path / backend / "predictions.jsonl").read_text().splitlines()
        results[backend] = [json.loads(line) for line in lines]
    assert len(list(cache.glob("fer2013_resnet18_*.onnx"))) == 1  # exported once, on the fly
    torch_rows, onnx_rows = results["torch"], results["onnxruntime"]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows] and len(torch_rows) >= 60
    worst = max(
        abs(a["probabilities"][c] - b["probabilities"][c])
        for a, b in zip(torch_rows, onnx_rows)
        for c in a["probabilities"]
    )
    assert worst <= 2e-4  # rows are rounded to 4 decimals


def _privatetest() -> tuple[torch.Tensor, torch.Tensor]:
    dm = FER2013DataModule(str(need(FER2013_CSV)), batch_size=512)
    dm.setup()
    return dm.splits["test"].tensors


def _onnx_labels(backend: OnnxBackend, images: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(
        np.concatenate([backend(preprocess(images[k : k + 512])).argmax(1) for k in range(0, len(images), 512)])
    )


@pytest.mark.slow
def test_shipped_model_on_the_full_privatetest_through_onnxruntime(shipped_onnx, tmp_path):
    images, labels = _privatetest()
    onnx_pred = _onnx_labels(OnnxBackend(shipped_onnx), images)
    model = load_predictor(shipped_model())[0]
    with torch.inference_mode():
        torch_pred = torch.cat(
            [model.predict_proba(preprocess(images[k : k + 512])).argmax(1) for k in range(0, len(labels), 512)]
        )
    assert len(labels) == 3589
    onnx_correct = int((onnx_pred == labels).sum())
    torch_correct = int((torch_pred == labels).sum())
    assert abs(onnx_correct - torch_correct) <= 1, (onnx_correct, torch_correct)
    int8 = OnnxBackend(quantized_onnx(shipped_model(), tmp_path / "int8.onnx"))  # the default on a CPU
    int8_correct = int((_onnx_labels(int8, images) == labels).sum())
    assert abs(int8_correct - torch_correct) <= 18, (int8_correct, torch_correct)  # within half a point
    assert 0.721 < torch_correct / 3589 < 0.731  # its model card: 2,607 of 3,589 (72.64 %); the deep CNN 69.46 %


@pytest.mark.slow
def test_the_shipped_ensemble_as_the_recognizer_runs_it_on_the_full_privatetest(tmp_path):
    """``model_name=fer2013_ensemble`` as its int8 onnxruntime graph (the recognizer's path on a CPU),
    its second member voting on five crops and their mirrors inside the graph."""
    images, labels = _privatetest()
    int8 = OnnxBackend(quantized_onnx(shipped_model("fer2013_ensemble"), tmp_path / "int8.onnx"))
    correct = int((_onnx_labels(int8, images) == labels).sum())
    assert len(labels) == 3589 and 0.727 < correct / 3589 < 0.735, correct  # its card: 73.03 %; fer2013: 72.56 %


def _frames(video, every: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(need(video)))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    return frames[::every]


@pytest.fixture(scope="module")
def real_images():
    images = [cv2.imread(str(need(DATA / "photos" / n))) for n in ("multi_face.jpg", "two_people.jpg", "obama.jpg")]
    return images + _frames(DATA / "videos" / "single_face.mp4", 12)


@pytest.mark.parametrize("back_model", [True, False])
def test_shipped_blazeface_graphs_find_what_pytorch_finds(real_images, back_model):
    fast = BlazeFaceDetector(back_model=back_model)
    reference = BlazeFaceDetector(back_model=back_model, runtime="torch")
    assert (fast.runtime, reference.runtime) == ("onnxruntime", "torch")  # onnxruntime is the default on a CPU
    found = 0
    for image in real_images:
        a, b = fast(image), reference(image)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert np.abs(x.box - y.box).max() < 0.5 and abs(x.score - y.score) < 1e-4
        found += len(a)
    assert found >= len(real_images) + 4  # a face in every photo and frame, five in multi_face.jpg


def test_export_blazeface_onnx_writes_the_shipped_graph(tmp_path):
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    path = export_blazeface_onnx(False, tmp_path / "front.onnx")
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 128, 128)).astype(np.float32)
    fresh = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    shipped_path = blazeface_files(back_model=False)[2]
    shipped = ort.InferenceSession(str(shipped_path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    assert [o.shape for o in fresh] == [(3, 896, 16), (3, 896, 1)]
    assert all(np.abs(f - s).max() < 1e-5 for f, s in zip(fresh, shipped))
