"""Face detectors behind one small interface: face-alignment (GPU) and OpenCV's Haar cascade.

Every detector maps a BGR ``uint8`` image ``(H, W, 3)`` to a list of
:class:`Detection` with boxes in pixels of that image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class Detection:
    """One face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels of the image.
        score: detector confidence (1.0 for the Haar cascade, which gives none).
        landmarks: ``(68, 2)`` float pixels in iBUG 68-point order, or ``None``.
    """

    box: np.ndarray
    score: float = 1.0
    landmarks: np.ndarray | None = None


class FaceDetector(Protocol):
    def __call__(self, image_bgr: np.ndarray) -> list[Detection]: ...


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (Viola & Jones 2001), bundled with opencv-python 4.x.

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


#: Weight files face-alignment fetches into ``$TORCH_HOME/hub/checkpoints`` (file name -> address).
FACE_ALIGNMENT_FILES = {
    "sfd": {"s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"},
    "blazeface": {
        "blazeface.pth": "https://github.com/hollance/BlazeFace-PyTorch/blob/master/blazeface.pth?raw=true",
        "anchors.npy": "https://github.com/hollance/BlazeFace-PyTorch/blob/master/anchors.npy?raw=true",
    },
    "landmarks": {
        "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
    },
}


def face_alignment_cache() -> Path:
    """Where face-alignment looks for its weights: torch hub's ``checkpoints`` folder."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_face_alignment_files(face_detector: str = "sfd", landmarks: bool = True) -> list[Path]:
    """The weight files face-alignment would have to download (it cannot here); empty when all are cached."""
    names = dict(FACE_ALIGNMENT_FILES[face_detector])
    if landmarks:
        names |= FACE_ALIGNMENT_FILES["landmarks"]
    return [face_alignment_cache() / name for name in names if not (face_alignment_cache() / name).exists()]


class FaceAlignmentDetector:
    """face-alignment's detector (S3FD or BlazeFace) and, optionally, its 2D-FAN 68 landmarks.

    Weights are only read from torch hub's cache: its download call can hang on a closed
    network, so missing files raise before face-alignment is touched.

    Args:
        device: ``"cuda"`` or ``"cpu"``.
        face_detector: ``"sfd"`` (accurate) or ``"blazeface"`` (fast, front camera).
        landmarks: also predict the 68 iBUG landmarks of every face.

    Raises:
        FileNotFoundError: a weight file is missing; the message names each file, where it
            goes and its address.
    """

    def __init__(self, device: str = "cpu", face_detector: str = "sfd", landmarks: bool = False) -> None:
        missing = missing_face_alignment_files(face_detector, landmarks)
        if missing:
            urls = {**FACE_ALIGNMENT_FILES[face_detector], **FACE_ALIGNMENT_FILES["landmarks"]}
            listing = "\n".join(f"  {p}  <- {urls[p.name]}" for p in missing)
            raise FileNotFoundError(
                f"face-alignment weights are missing (set TORCH_HOME to move the cache):\n{listing}"
            )
        import face_alignment

        self.landmarks = landmarks
        if landmarks:
            self.fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                face_detector=face_detector,
                flip_input=False,
                compile=device != "cpu",  # compiling costs minutes on a CPU
            )
            self.detector = self.fa.face_detector
        else:
            module = __import__(f"face_alignment.detection.{face_detector}", fromlist=["FaceDetector"])
            self.detector = module.FaceDetector(device=device)

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        with torch.inference_mode():
            found = [d for d in self.detector.detect_from_image(rgb.copy()) if len(d)]
        boxes = [np.asarray(d[:4], dtype=np.float32) for d in found]
        scores = [float(d[4]) if len(d) > 4 else 1.0 for d in found]
        points = self.landmarks_for(image_bgr, boxes, scores) if self.landmarks and boxes else [None] * len(boxes)
        return [Detection(b, s, p) for b, s, p in zip(boxes, scores, points)]

    def landmarks_for(self, image_bgr: np.ndarray, boxes: list[np.ndarray], scores: list[float] | None = None):
        """68 iBUG landmarks ``(68, 2)`` float32 pixels for each given face box (2D-FAN, one batch).

        For a pre-cropped face (FER-2013's 48x48) pass the whole image as the box.
        """
        if not self.landmarks:
            raise ValueError("this detector was made with landmarks=False")
        scores = scores or [1.0] * len(boxes)
        rgb = np.ascontiguousarray(image_bgr[..., ::-1]) if image_bgr.ndim == 3 else np.stack([image_bgr] * 3, -1)
        with torch.inference_mode():
            # face-alignment's crop maths needs float64 boxes
            faces = [np.r_[np.asarray(b, dtype=np.float64)[:4], s] for b, s in zip(boxes, scores)]
            result = self.fa.get_landmarks_from_image(rgb, detected_faces=faces)
        return [np.asarray(p[:, :2], dtype=np.float32) for p in result]


def detect_scaled(detector: FaceDetector, image_bgr: np.ndarray, scale: float = 1.0) -> list[Detection]:
    """Faces of an image searched in a copy shrunk by ``scale``; boxes and landmarks in the image's pixels."""
    if scale == 1.0:
        return detector(image_bgr)
    found = detector(cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    for d in found:
        d.box = d.box / scale
        d.landmarks = None if d.landmarks is None else d.landmarks / scale
    return found


def make_detector(name: str = "auto", device: str = "cpu", landmarks: bool = False) -> FaceDetector:
    """A detector by name: ``"face_alignment"``, ``"blazeface"``, ``"haar"`` or ``"auto"``.

    ``auto`` takes face-alignment's S3FD when its weights are cached, else the Haar
    cascade with a one-line warning.

    Raises:
        ValueError: unknown name. FileNotFoundError: see the detectors.
    """
    if name == "auto":
        if not missing_face_alignment_files("sfd", landmarks):
            return FaceAlignmentDetector(device, "sfd", landmarks)
        log.warning("face-alignment weights not in %s: using OpenCV's Haar cascade", face_alignment_cache())
        return HaarDetector()
    if name in ("face_alignment", "sfd", "blazeface"):
        return FaceAlignmentDetector(device, "blazeface" if name == "blazeface" else "sfd", landmarks)
    if name == "haar":
        return HaarDetector()
    raise ValueError(f"unknown detector {name!r}; use auto, face_alignment, blazeface or haar")
