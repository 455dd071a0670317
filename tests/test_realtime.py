"""The realtime path at its cheapest: onnxruntime by default, int8 graphs, the mirror optional, classify_every."""

import cv2
import numpy as np
import onnx
import pytest

from fer.data import FER2013DataModule
from fer.export import calibration_faces, export_onnx, quantize_onnx
from fer.face.crops import preprocess
from fer.inference.backends import OnnxBackend, TorchBackend
from fer.inference.recognizer import EmotionRecognizer
from fer.shipped import shipped_model
from tests.conftest import DATA, need

SETTINGS = {"kind": "image", "channels": 1, "image_size": 48, "mean": 0.5077, "std": 0.255}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    fp32 = export_onnx(shipped_model(), folder / "fp32.onnx")
    return fp32, quantize_onnx(fp32, folder / "int8.onnx", calibration_faces(SETTINGS))


def test_int8_graph_of_the_shipped_model_agrees_with_float32_on_real_faces(graphs):
    dm = FER2013DataModule()  # the sample shipped in the package: calibration took its Training faces
    dm.setup()
    faces, labels = dm.splits["test"].tensors
    x = preprocess(faces)
    fp32, int8 = OnnxBackend(graphs[0])(x), OnnxBackend(graphs[1])(x)
    assert (fp32.argmax(1) == int8.argmax(1)).mean() >= 0.95
    assert abs((fp32.argmax(1) == labels.numpy()).mean() - (int8.argmax(1) == labels.numpy()).mean()) <= 0.02
    assert np.allclose(int8.sum(1), 1, atol=1e-4)
    assert len(np.unique(np.round(int8 * 255, 3) % 1)) > 10  # probabilities, not steps of 1/255
    meta = {p.key: p.value for p in onnx.load(str(graphs[1])).metadata_props}
    assert meta["precision"] == "int8" and meta["class_names"].startswith('["angry"')
    assert graphs[1].stat().st_size < graphs[0].stat().st_size / 2


def test_calibration_refuses_a_model_of_other_inputs():
    with pytest.raises(ValueError, match="48x48 grey"):
        calibration_faces(SETTINGS | {"image_size": 40})


def test_the_default_backend_on_a_cpu_is_the_int8_graph():
    recognizer = EmotionRecognizer(detector="haar", device="cpu")
    assert isinstance(recognizer.backend, OnnxBackend) and recognizer.backend.path.name.endswith("_int8.onnx")
    assert isinstance(EmotionRecognizer(detector="haar", device="cpu", backend="torch").backend, TorchBackend)


def test_flip_false_leaves_the_mirror_out_on_both_runtimes(tmp_path):
    faces = preprocess(_sample_faces(8))
    with_mirror = TorchBackend(None)(faces)
    alone = EmotionRecognizer(detector="haar", device="cpu", backend="torch", flip=False)
    assert alone.backend.model.tta_flip is False
    onnx_alone = EmotionRecognizer(detector="haar", device="cpu", flip=False, int8=False, onnx_cache=tmp_path)
    np.testing.assert_allclose(onnx_alone.backend(faces), alone.backend(faces), atol=1e-4)
    assert np.abs(alone.backend(faces) - with_mirror).max() > 0.01


def _sample_faces(n: int):
    dm = FER2013DataModule()
    dm.setup()
    return dm.splits["test"].tensors[0][:n]


def _frames(n: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(need(DATA / "videos" / "single_face.mp4")))
    return [capture.read()[1] for _ in range(n)]


class CountingBackend:
    """A backend that counts the faces it classifies."""

    def __init__(self, backend) -> None:
        self.backend, self.faces = backend, 0

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def __call__(self, x):
        self.faces += len(x)
        return self.backend(x)


def test_classify_every_classifies_a_track_every_nth_frame_and_holds_its_probabilities():
    frames = _frames(12)
    recognizer = EmotionRecognizer(detector="blazeface_front", device="cpu", classify_every=4, smoothing=0.5)
    recognizer.backend = counter = CountingBackend(recognizer.backend)
    faces = [recognizer.predict(frame) for frame in frames]
    assert [len(f) for f in faces] == [1] * 12 and {f[0].track_id for f in faces} == {1}
    assert counter.faces == 3  # frames 0, 4 and 8
    for k in range(12):
        held = faces[k][0].probabilities == faces[k - k % 4][0].probabilities
        assert held, k
    assert faces[3][0].probabilities != faces[4][0].probabilities
    # many frames in one call give the same faces as one call each
    recognizer.reset()
    batched = recognizer.predict_frames(frames)
    assert [[f.track_id for f in fs] for fs in batched] == [[f.track_id for f in fs] for fs in faces]
    one_each = np.array([list(fs[0].probabilities.values()) for fs in faces])
    np.testing.assert_allclose(np.array([list(fs[0].probabilities.values()) for fs in batched]), one_each, atol=1e-5)
    with pytest.raises(ValueError, match="classify_every"):
        EmotionRecognizer(detector="haar", device="cpu", classify_every=0)
