"""What the realtime loop leaves: faces drawn on frames, and per-face predictions as CSV or JSON Lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from fer.inference.recognizer import Face
from fer.inference.sources import Frame

_COLOURS = {  # BGR
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (0, 200, 255),
    "sad": (200, 120, 40),
    "surprise": (220, 200, 0),
    "neutral": (200, 200, 200),
}


def draw(image: np.ndarray, faces: list[Face], fps: float | None = None, top_k: int = 3) -> np.ndarray:
    """Boxes, labels and the ``top_k`` probabilities of every face drawn on ``image`` (in place)."""
    thickness = max(1, round(min(image.shape[:2]) / 300))
    for face in faces:
        x1, y1, x2, y2 = face.box
        colour = _COLOURS.get(face.label, (0, 255, 0))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        best = sorted(face.probabilities.items(), key=lambda kv: -kv[1])[:top_k]
        lines = [f"#{face.track_id} {face.label} {best[0][1]:.0%}"] + [f"{n} {p:.0%}" for n, p in best[1:]]
        for k, text in enumerate(lines):
            y = max(12, y1 - 6) + 14 * k if k else max(12, y1 - 6)
            org = (x1, y if k == 0 else y2 + 14 * k)
            cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        if face.landmarks is not None:
            for x, y in face.landmarks.astype(int):
                cv2.circle(image, (int(x), int(y)), 1, colour, -1)
    if fps is not None:
        cv2.putText(image, f"{fps:.1f} FPS", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2, cv2.LINE_AA)
    return image


class PredictionWriter:
    """Per-face predictions as CSV or JSON Lines.

    Columns / keys: ``frame, time, source, face, x1, y1, x2, y2, score, label`` and one
    probability per class (``p_<class>`` in CSV, a ``probabilities`` object in JSONL). A
    detector without scores (Haar) leaves ``score`` empty (CSV) or ``null`` (JSONL).
    """

    def __init__(self, path: Path, class_names: list[str], fmt: str = "csv") -> None:
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"predictions must be csv or jsonl, not {fmt!r}")
        self.fmt, self.class_names = fmt, class_names
        self.file = path.open("w", newline="")
        if fmt == "csv":
            self.csv = csv.writer(self.file)
            head = ["frame", "time", "source", "face", "x1", "y1", "x2", "y2", "score", "label"]
            self.csv.writerow(head + [f"p_{c}" for c in class_names])

    def write(self, frame: Frame, faces: list[Face]) -> None:
        for f in faces:
            if self.fmt == "csv":
                probs = [f"{f.probabilities[c]:.4f}" for c in self.class_names]
                row = [
                    frame.index,
                    f"{frame.time:.3f}",
                    frame.name,
                    f.track_id,
                    *f.box,
                    "" if f.score is None else f"{f.score:.3f}",
                    f.label,
                ]
                self.csv.writerow(row + probs)
            else:
                record = {
                    "frame": frame.index,
                    "time": round(frame.time, 3),
                    "source": frame.name,
                    "face": f.track_id,
                    "box": list(f.box),
                    "score": None if f.score is None else round(f.score, 3),
                    "label": f.label,
                    "probabilities": {c: round(f.probabilities[c], 4) for c in self.class_names},
                }
                self.file.write(json.dumps(record) + "\n")
        self.file.flush()  # each frame's rows reach the file at once (a live run can be stopped any time)

    def close(self) -> None:
        self.file.close()
