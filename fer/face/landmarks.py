"""68-point facial landmarks (iBUG 300-W order) and the pairwise-distance features built on them.

Two backends give the same 68 points in the same order (0-16 jaw, 17-26 brows, 27-35
nose, 36-47 eyes, 48-67 mouth):

* ``face_alignment``: 2D-FAN (Bulat & Tzimiropoulos 2017), batched, on the GPU when present;
* ``dlib``: dlib's ensemble-of-regression-trees shape predictor (Kazemi & Sullivan 2014),
  with the ``shape_predictor_68_face_landmarks.dat`` that the ``face-recognition-models``
  package ships; works offline on the CPU.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from rich.progress import track

from fer.face.fan_weights import ensure_face_alignment_files

NUM_LANDMARKS = 68
#: Unique unordered pairs of the 68 points: 68 * 67 / 2.
NUM_PAIRS = NUM_LANDMARKS * (NUM_LANDMARKS - 1) // 2
#: Outer eye corners in the iBUG 68 scheme (the subject's right eye, then left).
OUTER_EYE_CORNERS = (36, 45)


class Landmarker(Protocol):
    name: str

    def __call__(self, image_bgr: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def dlib_predictor_path() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` inside the installed ``face-recognition-models``.

    Raises:
        FileNotFoundError: the package or its file is missing; says what to install.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dlib's 68-point model is missing: pip install face-recognition-models (it ships "
            "shape_predictor_68_face_landmarks.dat)"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall face-recognition-models")
    return path


class DlibLandmarks:
    """dlib's 68-point shape predictor; ``(68, 2)`` float32 pixels per box, on the CPU."""

    name = "dlib"

    def __init__(self, predictor_path: str | Path | None = None) -> None:
        import dlib

        self.predictor = dlib.shape_predictor(str(predictor_path or dlib_predictor_path()))
        self._rectangle = dlib.rectangle

    def __call__(self, image_bgr: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
        points = []
        for x1, y1, x2, y2 in (np.asarray(b)[:4] for b in boxes):
            shape = self.predictor(grey, self._rectangle(int(x1), int(y1), int(x2), int(y2)))
            points.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
        return points


class FaceAlignmentLandmarks:
    """face-alignment's 2D-FAN; ``(68, 2)`` float32 pixels per box, all boxes of an image in one batch.

    Args:
        device: ``"cuda"`` or ``"cpu"``.
        download: fetch missing weights on first use (face-alignment also builds its S3FD,
            so both files are needed; see :func:`~fer.face.fan_weights.ensure_face_alignment_files`).

    Raises:
        FileNotFoundError: weights missing and not fetched.
    """

    name = "face_alignment"

    def __init__(self, device: str = "cpu", download: bool = True) -> None:
        ensure_face_alignment_files(("sfd", "landmarks"), download)
        import face_alignment

        self.fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=device,
            face_detector="sfd",
            flip_input=False,
            compile=device != "cpu",  # compiling costs minutes on a CPU
        )

    def __call__(
        self, image_bgr: np.ndarray, boxes: Sequence[np.ndarray], scores: Sequence[float] | None = None
    ) -> list[np.ndarray]:
        """Landmarks of each face box (for a pre-cropped face, FER-2013's 48x48, pass the whole image as the box)."""
        if not len(boxes):
            return []
        scores = scores or [1.0] * len(boxes)
        rgb = np.ascontiguousarray(image_bgr[..., ::-1]) if image_bgr.ndim == 3 else np.stack([image_bgr] * 3, -1)
        with torch.inference_mode():
            # face-alignment's crop maths needs float64 boxes
            faces = [np.r_[np.asarray(b, dtype=np.float64)[:4], s] for b, s in zip(boxes, scores)]
            result = self.fa.get_landmarks_from_image(rgb, detected_faces=faces)
        return [np.asarray(p[:, :2], dtype=np.float32) for p in result]


def make_landmarker(name: str = "dlib", device: str = "cpu") -> Landmarker:
    """``"dlib"`` or ``"face_alignment"``.

    Raises:
        ValueError: unknown name. FileNotFoundError: the backend's weights are missing.
    """
    if name == "dlib":
        return DlibLandmarks()
    if name == "face_alignment":
        return FaceAlignmentLandmarks(device)
    raise ValueError(f"unknown landmark backend {name!r}; use dlib or face_alignment")


def landmarks_of_crops(
    crops: torch.Tensor, landmarker: Landmarker, upsample: int = 192, cache: str | Path | None = None
) -> np.ndarray:
    """Landmarks ``float32 (N, 68, 2)`` of pre-cropped faces, in pixels of the crop.

    Each ``uint8 (N, 1, H, W)`` crop (FER-2013's 48x48, say) is upsampled to ``upsample``
    pixels and the whole image is taken as the face box. With ``cache`` (an ``.npz``
    path, one per data set and backend) finished points are stored every 1,000 images,
    so an interrupted run resumes where it stopped, and a finished one is reused.
    """
    n, _, h, w = crops.shape
    points = np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32)
    done = 0
    cache = Path(cache) if cache else None
    if cache is not None and cache.exists():
        stored = np.load(cache)
        if stored["points"].shape == points.shape:
            points, done = stored["points"], int(stored["done"])
    if done < n:
        box = np.array([0, 0, upsample - 1, upsample - 1], dtype=np.float32)
        for k in track(range(done, n), description=f"{landmarker.name} landmarks", transient=True):
            big = cv2.resize(crops[k, 0].numpy(), (upsample, upsample), interpolation=cv2.INTER_CUBIC)
            points[k] = landmarker(big, [box])[0] * np.array([w / upsample, h / upsample], dtype=np.float32)
            if cache is not None and ((k + 1) % 1000 == 0 or k + 1 == n):
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache.with_suffix(".tmp.npz"), points=points, done=k + 1)
                cache.with_suffix(".tmp.npz").replace(cache)
    return points


def pairwise_distances(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Scale-normalised distances between all 2,278 unordered pairs of the 68 landmarks.

    Args:
        points: ``(N, 68, 2)`` landmark coordinates in any unit.

    Returns:
        ``float32 (N, 2278)``: Euclidean distances for the pairs ``i < j`` in row-major
        order, divided by the distance between the outer eye corners (36, 45), so the
        features do not depend on the face's size.
    """
    p = torch.as_tensor(points, dtype=torch.float32)
    d = torch.cdist(p, p)
    i, j = torch.triu_indices(NUM_LANDMARKS, NUM_LANDMARKS, offset=1)
    ocular = d[:, OUTER_EYE_CORNERS[0], OUTER_EYE_CORNERS[1]].clamp_min(1e-6)
    return d[:, i, j] / ocular[:, None]


def eye_alignment(
    landmarks: np.ndarray, size: int = 48, across: float = 2.1, down: float = 3.2
) -> tuple[np.ndarray, int]:
    """The affine map ``(2, 3)`` and output height of :func:`eye_aligned_crop`.

    With ``d`` the distance between the eye centres (means of points 36-41 and 42-47),
    the crop is ``across * d`` wide, centred on the eyes' midpoint, and ``down * d``
    high, from ``0.6 d`` above the eyes; the map rotates the eyes level and scales the
    width to ``size``.
    """
    right, left = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    dx, dy = left - right
    d = float(np.hypot(dx, dy))
    centre = (right + left) / 2
    scale = size / (across * d)
    # rotate about the eyes' midpoint and scale, then put that midpoint at (size / 2, 0.6 d)
    warp = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(np.degrees(np.arctan2(dy, dx))), scale)
    warp[:, 2] += np.array([size / 2, 0.6 * d * scale]) - centre
    return warp, max(1, round(down * d * scale))


def eye_aligned_crop(
    image: np.ndarray, landmarks: np.ndarray, size: int = 48, across: float = 2.1, down: float = 3.2, blur: int = 3
) -> np.ndarray:
    """A face crop rotated so the eyes are level, framed by the inter-eye distance.

    The seed "Facial Emotion Recognition" (IIT Kanpur) crops ``across`` (2.1) eye
    distances wide and ``down`` (3.2) high (see :func:`eye_alignment`), smooths with a
    ``blur`` x ``blur`` Gaussian (0: none) and resizes to ``size`` x ``size``.

    Args:
        image: ``uint8`` grey ``(H, W)`` or BGR ``(H, W, 3)``.
        landmarks: ``(68, 2)`` pixels, iBUG order.

    Returns:
        ``uint8`` ``(size, size)`` or ``(size, size, 3)``.
    """
    warp, height = eye_alignment(landmarks, size, across, down)
    crop = cv2.warpAffine(image, warp, (size, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if blur:
        crop = cv2.GaussianBlur(crop, (blur, blur), 0)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
