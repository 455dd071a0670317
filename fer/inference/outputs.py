"""What the realtime loop leaves: faces drawn on frames, per-face predictions as CSV or JSON Lines,
annotated media, all under hidden ``.partial`` names until the run publishes them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer.files import write_json_atomically
from fer.inference.recognizer import Face
from fer.inference.sources import Frame

#: Annotated video containers and their codecs: mp4 (MPEG-4 part 2, plays in desktop players) or
#: webm (VP8, plays in every browser; the web app's uploads).
VIDEO_CODECS = {"mp4": "mp4v", "webm": "VP80"}
PREDICTION_FORMATS = ("csv", "jsonl")

_COLOURS = {  # BGR
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (0, 200, 255),
    "sad": (200, 120, 40),
    "surprise": (220, 200, 0),
    "neutral": (200, 200, 200),
    "uncertain": (150, 150, 150),  # below the recognizer's uncertain_below: drawn grey
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
        check_formats(fmt)
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


def check_formats(predictions: str = "csv", video_format: str = "mp4") -> None:
    """Raises ValueError for predictions not csv or jsonl, or a video format not in :data:`VIDEO_CODECS`."""
    if predictions not in PREDICTION_FORMATS:
        raise ValueError(f"predictions must be csv or jsonl, not {predictions!r}")
    if video_format not in VIDEO_CODECS:
        raise ValueError(f"video_format must be one of {sorted(VIDEO_CODECS)}, not {video_format!r}")


class Outputs:
    """The files of one run in ``folder``: ``predictions.csv`` (or ``.jsonl``), ``annotated.mp4``
    (or ``.webm``) for videos and streams or ``annotated/<image name>`` for images, ``summary.json``.

    Every output is checked when this is made, before any file is opened: an existing one is
    never replaced unless ``overwrite``. Predictions and the video go to hidden ``.partial``
    files, renamed by :meth:`publish`, so a file under its real name is always complete.

    Raises:
        ValueError: see :func:`check_formats`. FileExistsError: an output exists and not ``overwrite``.
    """

    def __init__(
        self,
        folder: str | Path,
        is_video: bool,
        predictions: str = "csv",
        save_media: bool = True,
        overwrite: bool = False,
        video_format: str = "mp4",
    ) -> None:
        check_formats(predictions, video_format)
        self.folder, self.is_video, self.video_format = Path(folder), is_video, video_format
        media = f"annotated.{video_format}" if is_video else "annotated"
        self.media = self.folder / media if save_media else None
        self.predictions = self.folder / f"predictions.{predictions}"
        self.summary = self.folder / "summary.json"
        existing = [str(t) for t in (self.predictions, self.summary, self.media) if t is not None and t.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{', '.join(existing)} exist(s); pass overwrite=true to replace or choose another output_dir"
            )
        self._predictions_partial = self.folder / f".predictions.{predictions}.partial"
        self._video_partial = self.folder / f".annotated.partial.{video_format}"
        self._format = predictions
        self.writer: PredictionWriter | None = None
        self.video: cv2.VideoWriter | None = None

    def open(self, class_names: list[str]) -> None:
        """Create the folder and the predictions file (under its ``.partial`` name)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = PredictionWriter(self._predictions_partial, class_names, self._format)
        if self.media is not None and not self.is_video:
            self.media.mkdir(exist_ok=True)

    def write(self, frame: Frame, faces: list[Face], fps: float) -> None:
        """One frame's predictions and its annotated image (a video frame at ``fps``).

        Raises:
            OSError: a file could not be written, or less than a frame's worth (at least 1 MiB)
                of disk space is left (OpenCV's video writer fails silently on a full disk).
        """
        try:
            self.writer.write(frame, faces)
        except OSError as error:
            raise OSError(
                f"{self._predictions_partial}: could not write predictions ({error.strerror or error})"
            ) from None
        free = shutil.disk_usage(self.folder).free
        if free < max(2**20, frame.image.nbytes):
            raise OSError(
                f"{self.folder}: no space left on device ({free} bytes free); outputs so far are in .partial files"
            )
        if self.media is None:
            return
        if not self.is_video:
            if not cv2.imwrite(str(self.media / frame.name), frame.image):
                raise OSError(f"{self.media / frame.name}: could not write the annotated image (disk full?)")
            return
        if self.video is None:
            h, w = frame.image.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.video_format])
            self.video = cv2.VideoWriter(str(self._video_partial), fourcc, fps, (w, h))
            if not self.video.isOpened():
                raise OSError(f"{self._video_partial}: cannot write the annotated video")
        self.video.write(frame.image)

    def close(self) -> None:
        """Close the files (what was written stays under the ``.partial`` names)."""
        if self.writer is not None:
            self.writer.close()
        if self.video is not None:
            self.video.release()

    def publish(self, summary: dict[str, Any]) -> None:
        """Rename the closed ``.partial`` files to their real names and write ``summary.json``."""
        self._predictions_partial.replace(self.predictions)
        if self.video is not None:
            self._video_partial.replace(self.media)
        write_json_atomically(self.summary, summary)
