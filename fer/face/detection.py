"""Face detectors behind one small interface: BlazeFace and S3FD from face-alignment, dlib's HOG, OpenCV's Haar.

Every detector maps a BGR ``uint8`` image ``(H, W, 3)`` to a list of :class:`Detection`
with boxes in pixels of that image. BlazeFace's weights (Bazarevsky et al. 2019,
MediaPipe; converted to PyTorch by M. Hollemans, Apache-2.0, licence beside them) ship
in ``fer/face/weights/blazeface``; S3FD's and 2D-FAN's are fetched into torch hub's cache
on first use where the network allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from fer.face.blazeface import BlazeFaceOnnx
from fer.face.fan_weights import ensure_face_alignment_files, missing_face_alignment_files
from fer.face.landmarks import FaceAlignmentLandmarks, make_landmarker

#: The BlazeFace files shipped with the package: the front-camera (128 px) and back-camera (256 px) models.
BLAZEFACE_DIR = resources.files("fer.face") / "weights" / "blazeface"
#: Detector names for :func:`make_detector`.
DETECTORS = ("auto", "blazeface", "blazeface_front", "sfd", "dlib", "haar")


@dataclass
class Detection:
    """One face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels of the image.
        score: detector confidence in [0, 1] (dlib: the logistic of its SVM margin), or ``None`` where the
            detector gives none (the Haar cascade).
        landmarks: ``(68, 2)`` float pixels in iBUG 68-point order, or ``None``.
    """

    box: np.ndarray
    score: float | None = None
    landmarks: np.ndarray | None = None


class FaceDetector(Protocol):
    def __call__(self, image_bgr: np.ndarray) -> list[Detection]: ...


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (Viola & Jones 2001), bundled with opencv-python 4.x. Gives no scores.

    Args:
        min_neighbors: cascade's ``minNeighbors`` (higher: fewer false positives, more
            missed faces; 4 finds all five faces of ``photos/multi_face.jpg``).

    Raises:
        FileNotFoundError: the cascade file is missing (OpenCV 5 no longer bundles it).
    """

    def __init__(self, min_neighbors: int = 4) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml" if hasattr(cv2, "data") else None
        if path is None or not path.exists():
            raise FileNotFoundError(
                f"OpenCV's Haar cascade is missing ({path}); install opencv-python>=4.10,<5, which bundles it"
            )
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_neighbors = min_neighbors

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
        boxes = self.cascade.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=self.min_neighbors)
        return [Detection(np.array([x, y, x + w, y + h], dtype=np.float32)) for x, y, w, h in boxes]


class DlibDetector:
    """dlib's HOG + linear SVM frontal-face detector (CPU, offline).

    Scores are the logistic of the SVM's margin, so 0.5 is dlib's own threshold (margin 0).

    Args:
        upsample: times the image is doubled first (finds faces under ~80 px; 4x slower each).
    """

    def __init__(self, upsample: int = 0) -> None:
        import dlib

        self.detector, self.upsample = dlib.get_frontal_face_detector(), upsample

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        rects, scores, _ = self.detector.run(rgb, self.upsample, 0.0)
        return [
            Detection(np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float32), 1 / (1 + np.exp(-s)))
            for r, s in zip(rects, scores)
        ]


class BlazeFaceDetector:
    """BlazeFace with the weights shipped in the package: on the CPU its ONNX graph with NumPy
    preparation and decoding (:class:`~fer.face.blazeface.BlazeFaceOnnx`), on CUDA face-alignment's
    PyTorch detector.

    face-alignment's BlazeFace sees only the centre square of an image; here the image is
    padded to a square first (below and right, so boxes keep their coordinates), so faces
    anywhere in a wide frame are found. Both runtimes give the same boxes (the graph, written
    by :func:`export_blazeface_onnx`, the same outputs to 1e-4; the decoding face-alignment's).

    Args:
        device: ``"cuda"`` or ``"cpu"``.
        back_model: the back-camera, full-range model (256 px input; faces far away) or
            the front-camera model (128 px; selfie range).
        min_score: detections below this confidence are dropped.
        runtime: ``"auto"`` (onnxruntime on the CPU, PyTorch on CUDA), ``"onnxruntime"``
            or ``"torch"``.

    Raises:
        ValueError: an unknown ``runtime``.
    """

    #: Video frames are searched at full resolution: the network sees a fixed square
    #: (256 or 128 px) whatever the frame's size, so shrinking first costs detail, not time.
    stream_scale = 1.0

    def __init__(
        self, device: str = "cpu", back_model: bool = True, min_score: float = 0.5, runtime: str = "auto"
    ) -> None:
        from face_alignment.detection.blazeface.blazeface_detector import BlazeFaceDetector as FABlazeFace

        if runtime not in ("auto", "onnxruntime", "torch"):
            raise ValueError(f"runtime must be auto, onnxruntime or torch, not {runtime!r}")
        weights, anchors, graph = blazeface_files(back_model)
        self.back_model = back_model
        self.runtime = "onnxruntime" if runtime == "onnxruntime" or (runtime == "auto" and device == "cpu") else "torch"
        if self.runtime == "onnxruntime":
            self.onnx = BlazeFaceOnnx(graph, np.load(anchors), min_score, torch.get_num_threads())
            return
        self.detector = FABlazeFace(
            device, back_model=back_model, path_to_detector=str(weights), path_to_anchor=str(anchors),
            min_score_thresh=min_score,
        )  # fmt: skip

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        if self.runtime == "onnxruntime":
            return [Detection(face[:4], float(face[4])) for face in self.onnx(image_bgr)]
        h, w = image_bgr.shape[:2]
        side = max(h, w)
        rgb = np.zeros((side, side, 3), np.uint8)
        rgb[:h, :w] = image_bgr[..., ::-1]
        with torch.inference_mode():
            found = [d for d in self.detector.detect_from_image(rgb) if len(d)]
        return [Detection(np.clip(np.asarray(d[:4], dtype=np.float32), 0, [w, h, w, h]), float(d[4])) for d in found]


def blazeface_files(back_model: bool = True) -> tuple[Path, Path, Path]:
    """The shipped BlazeFace weights (``.pth``), anchors (``.npy``) and ONNX graph of one model."""
    stem = "back" if back_model else ""
    folder = Path(str(BLAZEFACE_DIR))
    return folder / f"blazeface{stem}.pth", folder / f"anchors{stem}.npy", folder / f"blazeface{stem}.onnx"


def export_blazeface_onnx(back_model: bool, target: str | Path) -> Path:
    """Write BlazeFace's network (shipped weights) as an ONNX graph: input ``image`` float
    ``(B, 3, S, S)`` in [-1, 1] (S = 256 back, 128 front), outputs ``boxes`` ``(B, 896, 16)``
    and ``scores`` ``(B, 896, 1)`` (raw, before decoding). The shipped graphs were made by
    this function (torch's dynamo exporter, opset 18).

    Raises:
        ImportError: ``onnx``/``onnxscript`` missing (``pip install 'fer[onnx]'``).
    """
    net = BlazeFaceDetector(back_model=back_model, runtime="torch").detector.face_detector.eval()
    side = 256 if back_model else 128
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        net, (torch.zeros(1, 3, side, side),), str(target), dynamo=True, opset_version=18,
        input_names=["image"], output_names=["boxes", "scores"], dynamic_shapes=({0: batch},), external_data=False,
    )  # fmt: skip
    return Path(target)


class FaceAlignmentDetector:
    """face-alignment's S3FD (Zhang et al. 2017) and, optionally, its 2D-FAN 68 landmarks.

    Args:
        device: ``"cuda"`` or ``"cpu"``.
        landmarks: also predict the 68 iBUG landmarks of every face (2D-FAN, sharing its S3FD).
        download: fetch missing weights on first use (see
            :func:`~fer.face.fan_weights.ensure_face_alignment_files`).

    Raises:
        FileNotFoundError: see :func:`~fer.face.fan_weights.ensure_face_alignment_files`.
    """

    def __init__(self, device: str = "cpu", landmarks: bool = False, download: bool = True) -> None:
        self.landmarker = FaceAlignmentLandmarks(device, download) if landmarks else None
        if self.landmarker is not None:
            self.detector = self.landmarker.fa.face_detector
        else:
            ensure_face_alignment_files(("sfd",), download)
            from face_alignment.detection.sfd import FaceDetector as SFD

            self.detector = SFD(device=device)

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        with torch.inference_mode():
            found = [d for d in self.detector.detect_from_image(rgb.copy()) if len(d)]
        boxes = [np.asarray(d[:4], dtype=np.float32) for d in found]
        scores = [float(d[4]) for d in found]
        points = self.landmarker(image_bgr, boxes, scores) if self.landmarker and boxes else [None] * len(boxes)
        return [Detection(b, s, p) for b, s, p in zip(boxes, scores, points)]


class WithLandmarks:
    """A detector whose faces get 68 iBUG landmarks from a landmarker (2D-FAN or dlib's predictor)."""

    def __init__(self, detector: FaceDetector, landmarker) -> None:
        self.detector, self.landmarker = detector, landmarker
        if hasattr(detector, "stream_scale"):
            self.stream_scale = detector.stream_scale

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        found = self.detector(image_bgr)
        for d, points in zip(found, self.landmarker(image_bgr, [d.box for d in found]) if found else []):
            d.landmarks = points
        return found


def detect_scaled(
    detector: FaceDetector, image_bgr: np.ndarray, scale: float = 1.0, min_score: float = 0.0
) -> list[Detection]:
    """Faces of an image searched in a copy shrunk by ``scale``; boxes and landmarks in the image's pixels.

    Faces scoring below ``min_score`` are dropped (faces without a score are kept); the
    rest are ordered by score, highest first.
    """
    small = image_bgr if scale == 1.0 else cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found = [d for d in detector(small) if d.score is None or d.score >= min_score]
    if scale != 1.0:
        for d in found:
            d.box = d.box / scale
            d.landmarks = None if d.landmarks is None else d.landmarks / scale
    return sorted(found, key=lambda d: -1.0 if d.score is None else -d.score)


def make_detectors(
    name: str = "auto", device: str = "cpu", landmarks: bool = False, min_score: float = 0.5, download: bool = True
) -> tuple[FaceDetector, FaceDetector]:
    """The detectors of a name for video streams and for still images: one detector twice,
    except for ``auto`` without S3FD's weights, which takes BlazeFace's front-camera model
    for streams and its full-range model for still images: the front model fires less on
    faceless frames and takes a quarter of the input, the full-range one finds small and
    turned faces (measured by ``benchmarks/detectors.py``, figures in ``docs/benchmarks.md``).
    Arguments and errors as for :func:`make_detector`.
    """
    if name == "auto" and missing_face_alignment_files(("sfd",)):
        return (
            make_detector("blazeface_front", device, landmarks, min_score, download),
            make_detector("blazeface", device, landmarks, min_score, download),
        )
    detector = make_detector(name, device, landmarks, min_score, download)
    return detector, detector


def make_detector(
    name: str = "auto", device: str = "cpu", landmarks: bool = False, min_score: float = 0.5, download: bool = True
) -> FaceDetector:
    """A detector by name (:data:`DETECTORS`).

    ``auto`` takes S3FD where its weights are already cached (it is the most accurate),
    else the shipped BlazeFace back-camera (full-range) model; never Haar (for video
    streams see :func:`make_detectors`). With ``landmarks`` the
    faces get 68 iBUG points: 2D-FAN (fetched on first use, see ``download``) with S3FD,
    else 2D-FAN where its weights are cached and dlib's shape predictor (offline) where not.

    Raises:
        ValueError: unknown name. FileNotFoundError: weights missing and not fetched.
    """
    if name == "auto":
        name = "sfd" if not missing_face_alignment_files(("sfd",)) else "blazeface"
    if name == "sfd":
        return FaceAlignmentDetector(device, landmarks, download)
    if name in ("blazeface", "blazeface_front"):
        detector: FaceDetector = BlazeFaceDetector(device, back_model=name == "blazeface", min_score=min_score)
    elif name == "dlib":
        detector = DlibDetector()
    elif name == "haar":
        detector = HaarDetector()
    else:
        raise ValueError(f"unknown detector {name!r}; use one of {', '.join(DETECTORS)}")
    if not landmarks:
        return detector
    fan = not missing_face_alignment_files(("sfd", "landmarks"))
    return WithLandmarks(detector, make_landmarker("face_alignment" if fan else "dlib", device))
