"""Faces followed across the frames of a stream: ids, missed detections bridged, scene cuts, smoothed probabilities."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from fer.adaptation import Baseline

#: Side of the grey thumbnails compared to find scene cuts (width, height).
THUMBNAIL = (32, 18)


@dataclass
class Track:
    """One followed face: its last box (float pixels), the frame it was last matched in, its last
    crops (a clip model's window) and its last detector score."""

    box: np.ndarray
    last_seen: int
    window: deque = field(default_factory=deque)
    score: float | None = None


def match_cost(track: np.ndarray, box: np.ndarray) -> float:
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


def thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    """The ``float32 (18, 32)`` grey thumbnail of a frame that scene cuts are found on."""
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    return cv2.resize(grey, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)


class Tracker:
    """Ids for the faces of a stream, frame after frame.

    Args:
        max_age: frames a track survives without a matching box.
        hold: a track missed by the detector is still reported at its last box for this
            many frames (see :meth:`held`).
        cut_threshold: mean grey-level difference of consecutive thumbnails above which a
            frame is a scene cut and every track ends (0: never).
        smoothing: EMA factor of each track's probabilities (0: none).
        clip_length: crops a track keeps for a clip model (``None``: image model, one).

    Attributes:
        tracks: live tracks by id. cuts: scene cuts seen since :meth:`reset`.
        smoothed: each track's smoothed probabilities by id, kept apart from :attr:`tracks` so
            that frames located ahead (a batch) can still be smoothed after their track ended;
            ids are never reused, and :meth:`prune` drops those of ended tracks.
        classified: the frame each track's face was last classified in (see :meth:`due`).
        baselines, raw: each track's per-person baseline and its face's last unadapted probabilities
            (kept by the recognizer with ``adapt``; see :mod:`fer.adaptation`).
    """

    def __init__(
        self,
        max_age: int = 30,
        hold: int = 2,
        cut_threshold: float = 20.0,
        smoothing: float = 0.5,
        clip_length: int | None = None,
    ) -> None:
        self.max_age, self.hold, self.cut_threshold = max_age, hold, cut_threshold
        self.smoothing, self.clip_length = smoothing, clip_length
        self.reset()

    def reset(self) -> None:
        """Forget every track and the last frame; ids start at 1 again."""
        self.tracks: dict[int, Track] = {}
        self.smoothed: dict[int, np.ndarray] = {}
        self.classified: dict[int, int] = {}
        self.baselines: dict[int, Baseline] = {}
        self.raw: dict[int, np.ndarray] = {}
        self.next_id, self.cuts = 1, 0
        self._thumbnail: np.ndarray | None = None

    def scene_cut(self, image_bgr: np.ndarray) -> bool:
        """Whether this frame starts a new shot (see ``cut_threshold``); if so every track ends (ids go on)."""
        if self.cut_threshold <= 0:
            return False
        last, self._thumbnail = self._thumbnail, thumbnail(image_bgr)
        cut = last is not None and float(np.abs(self._thumbnail - last).mean()) > self.cut_threshold
        if cut:
            self.tracks.clear()
            self.cuts += 1
        return cut

    def associate(self, boxes: list[np.ndarray], frame: int) -> list[int]:
        """The track id of each box of frame number ``frame``: best pairs first (see :func:`match_cost`),
        new tracks for the rest; tracks unseen for more than ``max_age`` frames end."""
        pairs = sorted(
            (cost, i, k)
            for i, box in enumerate(boxes)
            for k, track in self.tracks.items()
            if (cost := match_cost(track.box, box)) < float("inf")
        )
        ids: list[int | None] = [None] * len(boxes)
        for _, i, k in pairs:
            if ids[i] is None and k not in ids:
                ids[i] = k
                self.tracks[k].box, self.tracks[k].last_seen = boxes[i], frame
        for i, box in enumerate(boxes):
            if ids[i] is None:
                self.tracks[self.next_id] = Track(box, frame, deque(maxlen=self.clip_length or 1))
                ids[i] = self.next_id
                self.next_id += 1
        for k in [k for k, t in self.tracks.items() if frame - t.last_seen > self.max_age]:
            del self.tracks[k]
        return [k for k in ids if k is not None]

    def held(self, ids: list[int], frame: int) -> list[int]:
        """Ids of tracks not in ``ids`` whose face was last seen at most ``hold`` frames before ``frame``."""
        return [k for k, t in self.tracks.items() if k not in ids and frame - t.last_seen <= self.hold]

    def clip(self, track_id: int, crop: torch.Tensor) -> torch.Tensor:
        """A track's window of its last ``clip_length`` crops ``(T, C, S, S)`` with ``crop`` added,
        padded with the oldest while the window fills."""
        window = self.tracks[track_id].window
        window.append(crop)
        return torch.stack([window[0]] * (self.clip_length - len(window)) + list(window))

    def smooth(self, track_id: int, probabilities: np.ndarray) -> np.ndarray:
        """The track's probabilities after this frame's (an EMA with factor ``smoothing``)."""
        previous = self.smoothed.get(track_id)
        if previous is not None:
            probabilities = self.smoothing * previous + (1 - self.smoothing) * probabilities
        self.smoothed[track_id] = probabilities
        return probabilities

    def due(self, track_id: int, frame: int, every: int) -> bool:
        """Whether a track's face is to be classified in frame number ``frame``: its first frame, then
        every ``every``-th (in between it keeps its smoothed probabilities); marks it classified if so."""
        last = self.classified.get(track_id)
        if last is not None and frame - last < every:
            return False
        self.classified[track_id] = frame
        return True

    def prune(self) -> None:
        """Forget the smoothed probabilities, classification frames and baselines of tracks that have ended."""
        for per_track in (self.smoothed, self.classified, self.baselines, self.raw):
            for k in [k for k in per_track if k not in self.tracks]:
                del per_track[k]
