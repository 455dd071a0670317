"""Expression recognition on whole images: detect faces, classify them in one batch, track them."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer.adaptation import Baseline, adapt_batchnorm, divide
from fer.checkpoint import CheckpointError
from fer.device import resolve_device
from fer.face.crops import crop_faces, preprocess
from fer.face.detection import Detection, FaceDetector, detect_scaled, make_detectors
from fer.inference.backends import TorchBackend, make_backend
from fer.inference.settings import RecognizerSettings
from fer.inference.timing import StageTimes
from fer.inference.tracking import Tracker

#: Detection scale of video frames for detectors whose cost grows with the image (Haar, dlib, S3FD).
DETECT_SCALE = 0.5
#: The label of a face whose top probability is below ``uncertain_below``.
UNCERTAIN = "uncertain"


@dataclass
class Face:
    """One recognised face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` int pixels of the frame.
        label: the most probable class name, or :data:`UNCERTAIN` where its probability is
            below the recognizer's ``uncertain_below``.
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


class EmotionRecognizer:
    """Faces and their expressions in BGR frames.

    Args:
        ckpt_path: a train.py checkpoint of an image or clip model, or an ``.onnx`` graph
            (``backend="onnxruntime"``); ``None`` is the default shipped model.
        settings: see :class:`~fer.inference.settings.RecognizerSettings` (``None``: its defaults).
        detector: a detector object (any callable of :class:`~fer.face.detection.FaceDetector`'s
            shape) used for streams and still images alike, or a name that replaces
            ``settings.detector``.
        **overrides: further settings by name, replacing those of ``settings``
            (``EmotionRecognizer(device="cpu", smoothing=0.3)``).

    Raises:
        ValueError: settings out of range, or an unknown name among ``overrides``.
        FileNotFoundError, CheckpointError: see :func:`fer.checkpoint.load_predictor`; also
        a model of landmark features, which face crops cannot feed.
    """

    def __init__(
        self,
        ckpt_path: str | Path | None = None,
        settings: RecognizerSettings | None = None,
        detector: str | FaceDetector | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(detector, str):
            overrides["detector"] = detector
        self.config = s = dataclasses.replace(settings or RecognizerSettings(), **overrides)
        self.device = resolve_device(s.device)
        views = None if s.flip is None else {"tta_flip": s.flip}
        self.backend = make_backend(ckpt_path, s.backend, self.device, s.onnx_cache, views, s.int8)
        self.settings = self.backend.settings
        if self.settings["kind"] == "features":
            raise CheckpointError(
                f"{ckpt_path}: this model classifies {self.settings['in_features']} landmark distances "
                "(data=*_landmarks), not face crops; give infer.py an image or clip model"
            )
        self.class_names = self.backend.class_names
        if detector is None or isinstance(detector, str):
            self.detector, self.still_detector = make_detectors(
                s.detector, self.device, s.landmarks, s.min_score, s.download
            )
        else:
            self.detector = self.still_detector = detector
        self.tracker = Tracker(s.max_age, s.hold, s.cut_threshold, s.smoothing, self.clip_length)
        self.times = StageTimes()
        self.reset()

    def reset(self) -> None:
        """Forget tracks (call between unrelated images or streams)."""
        self.frame_index = 0
        self.tracker.reset()
        self._detections: list[Detection] = []

    def fork(self) -> EmotionRecognizer:
        """A recognizer sharing this one's model and detector (loaded once), with its own
        tracks and stage timings: one per stream, e.g. per client of the web app."""
        other = copy.copy(self)
        other.times = StageTimes()
        other.tracker = copy.copy(self.tracker)
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
        return crop_faces(image, boxes, self.settings["image_size"], self.config.margin, self.config.crop_shift)

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

        With ``track`` the frame continues a stream (see :meth:`predict_frames`). Without it
        the image stands alone: faces are numbered 1, 2, ... by detector score.
        """
        if track:
            return self.predict_frames([image_bgr])[0]
        start = time.perf_counter()
        self.reset()
        detections = self.detect_still(image_bgr)
        start = self.times.add("detect", start)
        probabilities = self.classify(image_bgr, [d.box for d in detections])
        self.times.add("classify", start)
        return self._faces(detections, range(1, len(detections) + 1), probabilities)

    def detect_still(self, image_bgr: np.ndarray) -> list[Detection]:
        """The faces of a still BGR image, by the still-image detector, in a copy of at most
        ``max_image_side`` pixels a side (boxes in the image's own pixels)."""
        scale = min(1.0, self.config.max_image_side / max(image_bgr.shape[:2]))
        return detect_scaled(self.still_detector, image_bgr, scale, self.config.min_score)

    def predict_frames(self, images_bgr: list[np.ndarray]) -> list[list[Face]]:
        """The faces of consecutive frames of one stream, every face of them classified in one batch.

        Detection may be skipped (``detect_every``), faces keep their ids across frames and
        calls, a tracked face may be classified every few frames only (``classify_every``),
        probabilities are smoothed per track in frame order, and a clip model
        classifies each face over a sliding window of its last ``clip_length`` crops (padded
        with the oldest while the window fills). Predicting frames one call each or many in
        one call gives the same faces; many at once is faster where the classifier batches.
        """
        located, inputs, spent = [], [], 0.0
        every = 1 if self.clip_length else self.config.classify_every
        for image in images_bgr:
            detections, ids, start = self._locate(image)
            due = [self.tracker.due(k, self.frame_index, every) for k in ids]
            inputs.append(self._inputs(image, [d for d, x in zip(detections, due) if x], ids))
            located.append((detections, ids, due))
            spent += time.perf_counter() - start
            self.frame_index += 1
        start = time.perf_counter() - spent  # the stage counts each frame's locating and cropping too
        present = [x for x in inputs if len(x)]
        probabilities = iter(self.probabilities(torch.cat(present) if present else torch.zeros(0)))
        self.times.add("classify", start, calls=len(images_bgr))
        faces = []
        for detections, ids, due in located:  # in frame order: a face skipped keeps what its last frame gave
            smoothed = [
                self.tracker.smooth(k, self._adapted(k, next(probabilities))) if x else self.tracker.smoothed[k]
                for k, x in zip(ids, due)
            ]
            faces.append(self._faces(detections, ids, smoothed))
        self.tracker.prune()
        return faces

    def adapt_batchnorm(self, crops: torch.Tensor, batch_size: int = 256) -> int:
        """AdaBN (Li et al. 2016): the network's batch-norm statistics re-estimated over one collection's
        face crops, ``uint8 (N, C, S, S)`` as :meth:`crops` cuts them, so that whatever the recognizer
        classifies afterwards is normalised as that collection (a camera, a lighting) is.

        Returns the number of batch-norm layers adapted.

        Raises:
            ValueError: the backend is not PyTorch (an exported graph has its batch norms folded
                into its convolutions), a clip model, no crops, or a network without batch norm.
        """
        if not isinstance(self.backend, TorchBackend):
            raise ValueError("AdaBN re-estimates a PyTorch network's batch norms: use backend=torch")
        if self.clip_length or crops.ndim != 4 or not len(crops):
            raise ValueError(f"AdaBN takes an image model's face crops (N, C, S, S), not {tuple(crops.shape)}")
        model, s = self.backend.model, self.settings
        x = preprocess(crops.to(self.device), None, s["mean"], s["std"])
        dtype = next(model.parameters()).dtype
        if not (adapted := adapt_batchnorm(model, (b.to(dtype) for b in x.split(batch_size)))):
            raise ValueError("this network has no batch-norm layer to adapt")
        return adapted

    def mark_neutral(self, track_ids: list[int] | None = None) -> list[int]:
        """Take the faces of the last frame (those of ``track_ids``; ``None``: every live track) as showing
        their person at rest: with ``adapt="neutral"`` each such face's probabilities join its track's
        baseline (see :mod:`fer.adaptation`). Returns the ids marked.

        Raises:
            ValueError: the recognizer's ``adapt`` is not ``"neutral"``.
        """
        if self.config.adapt != "neutral":
            raise ValueError(f"mark_neutral needs adapt='neutral', not {self.config.adapt!r}")
        raw, baselines = self.tracker.raw, self.tracker.baselines
        marked = [k for k in (raw if track_ids is None else track_ids) if k in raw]
        for k in marked:
            baselines[k].add(raw[k])
        return marked

    def _adapted(self, track_id: int, probabilities: np.ndarray) -> np.ndarray:
        """A tracked face's probabilities divided by its person's baseline (``adapt``; see :mod:`fer.adaptation`)."""
        mode = self.config.adapt
        if mode == "none":
            return probabilities
        self.tracker.raw[track_id] = probabilities
        baseline = self.tracker.baselines.get(track_id)
        if baseline is None:  # a new track
            prior = self.config.adapt_prior if mode == "mean" else 0
            baseline = self.tracker.baselines[track_id] = Baseline(len(self.class_names), prior)
        if mode == "mean":
            baseline.add(probabilities)
        return divide(probabilities, baseline.value, self.config.adapt_strength)

    def _locate(self, image_bgr: np.ndarray) -> tuple[list[Detection], list[int], float]:
        """A stream frame's faces and their track ids (missed faces held at their last box for image
        models), and the time detection ended."""
        start = time.perf_counter()
        cut = self.tracker.scene_cut(image_bgr)
        if cut or self.frame_index % self.config.detect_every == 0:
            scale = self.config.detect_scale or getattr(self.detector, "stream_scale", DETECT_SCALE)
            self._detections = detect_scaled(self.detector, image_bgr, scale, self.config.min_score)
            start = self.times.add("detect", start)
        detections = list(self._detections)
        ids = self.tracker.associate([d.box for d in detections], self.frame_index)
        for d, k in zip(detections, ids):
            self.tracker.tracks[k].score = d.score
        if not self.clip_length:
            for k in self.tracker.held(ids, self.frame_index):
                detections.append(Detection(self.tracker.tracks[k].box, self.tracker.tracks[k].score))
                ids.append(k)
        return detections, ids, start

    def _inputs(self, image_bgr: np.ndarray, detections: list[Detection], ids: list[int]) -> torch.Tensor:
        """The model's inputs for a frame's faces: crops ``(n, C, S, S)``, or clips ``(n, T, C, S, S)``
        of each track's window for clip models."""
        crops = self.crops(image_bgr, [d.box for d in detections])
        if not self.clip_length or not len(crops):
            return crops
        return torch.stack([self.tracker.clip(k, c) for k, c in zip(ids, crops)])

    def _faces(self, detections: list[Detection], ids: Any, probabilities: Any) -> list[Face]:
        """:class:`Face` records of detections, their ids and their probabilities ``(num_classes,)`` each."""
        names, floor = self.class_names, self.config.uncertain_below
        return [
            Face(tuple(int(round(v)) for v in d.box), names[int(p.argmax())] if p.max() >= floor else UNCERTAIN,
                 dict(zip(names, map(float, p))), d.score, k, d.landmarks)
            for d, k, p in zip(detections, ids, probabilities)
        ]  # fmt: skip
