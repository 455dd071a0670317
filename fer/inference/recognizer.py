"""Expression recognition on whole images: detect faces, classify them in one batch, track them."""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fer.checkpoint import CheckpointError
from fer.device import resolve_device
from fer.face.crops import crop_faces, preprocess
from fer.face.detection import Detection, FaceDetector, detect_scaled, make_detectors
from fer.inference.backends import make_backend
from fer.inference.timing import StageTimes

#: Detection scale of video frames for detectors whose cost grows with the image (Haar, dlib, S3FD).
DETECT_SCALE = 0.5


@dataclass
class Face:
    """One recognised face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` int pixels of the frame.
        label: the most probable class name.
        probabilities: class name -> probability (sums to 1).
        score: detector confidence; ``None`` where the detector gives none (Haar).
        track_id: the same number for the same face across frames of a stream.
        landmarks: ``(68, 2)`` pixels (iBUG order) when the detector gives them.
    """

    box: tuple[int, int, int, int]
    label: str
    probabilities: dict[str, float]
    score: float | None = None
    track_id: int = 0
    landmarks: np.ndarray | None = None


@dataclass
class _Track:
    box: np.ndarray
    last_seen: int
    window: deque  # the last crops, for clip models
    probabilities: np.ndarray | None = None
    score: float | None = None


def _match_cost(track: np.ndarray, box: np.ndarray) -> float:
    """How well a box continues a track, lower is better; ``inf`` where it cannot.

    Matches where the boxes overlap (IoU over 0.3) or where the box's centre lies within
    0.6 of the track's box side of the track's centre (a face re-found after a look-down
    or a missed detection has moved a little, its box often resized), and the box's side
    is between half and twice the track's (a small face in the background near where a
    close-up was lost is someone else).
    """
    iou = _iou(track, box)
    growth = np.sqrt(max(_area(box), 1e-6) / max(_area(track), 1e-6))
    if not 0.5 <= growth <= 2:  # a face does not halve or double in size while its track lives
        return float("inf")
    side = max(track[2] - track[0], track[3] - track[1], 1e-6)
    shift = float(np.hypot(*((box[:2] + box[2:4]) - (track[:2] + track[2:4])) / 2)) / side
    if iou <= 0.3 and shift >= 0.6:
        return float("inf")
    return (1 - iou) + shift


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / max(_area(a) + _area(b) - inter, 1e-6)


#: Side of the grey thumbnails compared to find scene cuts (width, height).
THUMBNAIL = (32, 18)


def _thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    return cv2.resize(grey, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)


class EmotionRecognizer:
    """Faces and their expressions in BGR frames.

    Args:
        ckpt_path: a train.py checkpoint of an image or clip model; ``None`` is the
            shipped FER-2013 model.
        detector: a name for :func:`~fer.face.detection.make_detectors` (``auto``: BlazeFace's
            front model for streams, its full-range model for still images, where S3FD's
            weights are not cached) or a detector object.
        device: ``"auto"``, ``"cuda"`` or ``"cpu"``.
        detect_scale: video frames are shrunk by this factor for detection only (single
            images are searched at full resolution); ``None``: the detector's own
            ``stream_scale`` (BlazeFace 1.0: its network sees a fixed square, so
            shrinking first only loses detail), else :data:`DETECT_SCALE`.
        detect_every: run the detector every N frames of a stream; in between, faces
            keep their tracked boxes and are classified again.
        smoothing: EMA factor of each tracked face's probabilities across frames
            (0: none; 0.6: the new frame counts 40 %).
        margin: crop margin, see :func:`~fer.face.crops.crop_faces`.
        landmarks: ask the detector for 68 landmarks (face-alignment only).
        max_age: frames a track survives without a matching detection (30: a second of
            video; a face that looks down and back keeps its id).
        hold: a tracked face the detector misses is still reported, at its last box and
            classified there, for this many frames (image models; bridges single missed
            detections, e.g. of a face scored just under ``min_score``).
        cut_threshold: a stream frame whose 32x18 grey thumbnail differs from the last
            one's by more than this mean absolute grey level (0-255) is a scene cut: every
            track ends and the frame is searched for faces (0: never). On the shared
            videos the cuts differ by 26-145 and consecutive frames of one shot by at
            most 13.
        min_score: detections scoring below this are dropped (detectors with scores).
        download: let S3FD and 2D-FAN fetch their weights on first use.
        backend: ``"torch"`` or ``"onnxruntime"`` (``ckpt_path`` an ``.onnx`` file, or a
            checkpoint exported on the fly into ``onnx_cache``); see
            :mod:`fer.inference.backends`.
        onnx_cache: folder of the graphs exported on the fly.
        max_image_side: a still image (``predict(track=False)``) is searched in a copy
            whose longest side is at most this many pixels (an 8000x6000 photo otherwise
            costs gigabytes and finds false faces in skin texture).

    Raises:
        ValueError: ``detect_scale`` or ``max_image_side`` out of range.
        FileNotFoundError, CheckpointError: see :func:`fer.checkpoint.load_classifier`; also
        a model of landmark features, which face crops cannot feed.
    """

    def __init__(
        self,
        ckpt_path: str | Path | None = None,
        detector: str | FaceDetector = "auto",
        device: str = "auto",
        detect_scale: float | None = None,
        detect_every: int = 1,
        smoothing: float = 0.5,
        margin: float = 0.1,
        landmarks: bool = False,
        max_age: int = 30,
        hold: int = 2,
        cut_threshold: float = 20.0,
        min_score: float = 0.5,
        download: bool = True,
        max_image_side: int = 1920,
        backend: str = "torch",
        onnx_cache: str | Path = "outputs/cache/onnx",
    ) -> None:
        if detect_scale is not None and not 0 < detect_scale <= 1:
            raise ValueError(f"detect_scale must be in (0, 1], not {detect_scale}")
        if max_image_side < 32:
            raise ValueError(f"max_image_side must be at least 32 pixels, not {max_image_side}")
        self.device = resolve_device(device)
        self.backend = make_backend(ckpt_path, backend, self.device, onnx_cache)
        self.settings = self.backend.settings
        if self.settings["kind"] == "features":
            raise CheckpointError(
                f"{ckpt_path}: this model classifies {self.settings['in_features']} landmark distances "
                "(data=*_landmarks), not face crops; give infer.py an image or clip model"
            )
        self.class_names = self.backend.class_names
        if isinstance(detector, str):
            self.detector, self.still_detector = make_detectors(detector, self.device, landmarks, min_score, download)
        else:
            self.detector = self.still_detector = detector
        self.detect_scale = detect_scale
        self.detect_every, self.smoothing, self.margin, self.max_age = max(1, detect_every), smoothing, margin, max_age
        self.min_score, self.hold, self.cut_threshold = min_score, hold, cut_threshold
        self.max_image_side = max_image_side
        self.times = StageTimes()
        self.reset()

    def reset(self) -> None:
        """Forget tracks (call between unrelated images or streams)."""
        self.frame_index, self.next_id = 0, 1
        self.tracks: dict[int, _Track] = {}
        self._detections: list[Detection] = []
        self._thumbnail: np.ndarray | None = None
        self.cuts = 0

    def fork(self) -> EmotionRecognizer:
        """A recognizer sharing this one's model and detector (loaded once), with its own
        tracks and stage timings: one per stream, e.g. per client of the web app."""
        other = copy.copy(self)
        other.times = StageTimes()
        other.reset()
        return other

    @property
    def clip_length(self) -> int | None:
        """Frames a clip model (C3D, CNN-LSTM) sees per prediction; ``None`` for image models."""
        return self.settings["clip_length"]

    def crops(self, image_bgr: np.ndarray, boxes: list[np.ndarray]) -> torch.Tensor:
        """``uint8 (len(boxes), C, S, S)`` face crops as the model's training data had them."""
        grey = image_bgr.ndim == 3 and self.settings["channels"] == 1
        image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if grey else image_bgr
        return crop_faces(image, boxes, self.settings["image_size"], self.margin)

    @torch.inference_mode()
    def probabilities(self, crops: torch.Tensor) -> np.ndarray:
        """Class probabilities ``float32 (B, num_classes)`` of ``uint8`` face crops, in one batch.

        ``crops`` is ``(B, C, S, S)`` for image models and ``(B, T, C, S, S)`` for clip models.
        """
        if len(crops) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        flat = crops.flatten(0, 1) if crops.ndim == 5 else crops
        x = preprocess(flat.to(self.device), None, self.settings["mean"], self.settings["std"])
        return self.backend(x.view(crops.shape))

    def classify(self, image_bgr: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        """Probabilities ``float32 (len(boxes), num_classes)`` of the faces in ``boxes`` of one image.

        A clip model sees each face as a still clip (the crop repeated).
        """
        crops = self.crops(image_bgr, boxes)
        if self.clip_length:
            crops = crops.unsqueeze(1).expand(-1, self.clip_length, -1, -1, -1)
        return self.probabilities(crops)

    def predict(self, image_bgr: np.ndarray, track: bool = True) -> list[Face]:
        """Every face of one BGR ``uint8`` frame ``(H, W, 3)`` with its expression.

        With ``track`` the frame continues a stream: detection may be skipped
        (``detect_every``), faces keep their ids, probabilities are smoothed, and a clip
        model classifies each face over a sliding window of its last ``clip_length``
        crops (padded with the oldest while the window fills).
        """
        start = time.perf_counter()
        if not track:
            self.reset()
        cut = track and self.cut_threshold > 0 and self._scene_cut(image_bgr)
        if cut:  # the faces of the last shot are gone; ids go on counting
            self.tracks.clear()
            self.cuts += 1
        if cut or self.frame_index % self.detect_every == 0:
            detector = self.detector if track else self.still_detector
            if track:
                scale = self.detect_scale or getattr(detector, "stream_scale", DETECT_SCALE)
            else:
                scale = min(1.0, self.max_image_side / max(image_bgr.shape[:2]))
            self._detections = detect_scaled(detector, image_bgr, scale, self.min_score)
            start = self.times.add("detect", start)
        detections = list(self._detections)
        boxes = [d.box for d in detections]
        ids = self._associate(boxes) if track else list(range(1, len(boxes) + 1))
        if track:
            for d, k in zip(detections, ids):
                self.tracks[k].score = d.score
            if not self.clip_length:  # missed faces held at their last box for a few frames
                for k, t in self.tracks.items():
                    if k not in ids and self.frame_index - t.last_seen <= self.hold:
                        detections.append(Detection(t.box, t.score))
                        boxes.append(t.box)
                        ids.append(k)
        if track and self.clip_length:
            for k, crop in zip(ids, self.crops(image_bgr, boxes)):
                self.tracks[k].window.append(crop)
            windows = [self.tracks[k].window for k in ids]
            clips = [torch.stack([w[0]] * (self.clip_length - len(w)) + list(w)) for w in windows]
            probs = self.probabilities(torch.stack(clips) if clips else torch.zeros(0))
        else:
            probs = self.classify(image_bgr, boxes)
        start = self.times.add("classify", start)
        self.frame_index += 1
        faces = []
        names = self.class_names
        for d, k, p in zip(detections, ids, probs):
            if track:
                t = self.tracks[k]
                t.probabilities = (
                    p if t.probabilities is None else self.smoothing * t.probabilities + (1 - self.smoothing) * p
                )
                p = t.probabilities
            box = tuple(int(round(v)) for v in d.box)
            faces.append(Face(box, names[int(p.argmax())], dict(zip(names, map(float, p))), d.score, k, d.landmarks))
        return faces

    def _scene_cut(self, image_bgr: np.ndarray) -> bool:
        """Whether this frame starts a new shot (see ``cut_threshold``)."""
        thumbnail, last = _thumbnail(image_bgr), self._thumbnail
        self._thumbnail = thumbnail
        return last is not None and float(np.abs(thumbnail - last).mean()) > self.cut_threshold

    def _associate(self, boxes: list[np.ndarray]) -> list[int]:
        """Match this frame's boxes to the tracks (best pairs first, see :func:`_match_cost`);
        new tracks for the rest; tracks unseen for more than ``max_age`` frames end."""
        pairs = sorted(
            (cost, i, k)
            for i, box in enumerate(boxes)
            for k, track in self.tracks.items()
            if (cost := _match_cost(track.box, box)) < float("inf")
        )
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for _, i, k in pairs:
            if ids[i] is None and k not in taken:
                ids[i] = k
                taken.add(k)
                self.tracks[k].box, self.tracks[k].last_seen = boxes[i], self.frame_index
        for i, box in enumerate(boxes):
            if ids[i] is None:
                self.tracks[self.next_id] = _Track(box, self.frame_index, deque(maxlen=self.clip_length or 1))
                ids[i] = self.next_id
                self.next_id += 1
        for k in [k for k, t in self.tracks.items() if self.frame_index - t.last_seen > self.max_age]:
            del self.tracks[k]
        return [k for k in ids if k is not None]
