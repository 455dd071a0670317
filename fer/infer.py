"""The realtime loop behind ``infer.py``: sources, drawing, outputs and the run summary."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer.recognizer import EmotionRecognizer, Face

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LIVE_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class Frame:
    image: np.ndarray
    index: int
    time: float  # seconds from the start of the source
    name: str  # file name for images, else the source


class LiveReader:
    """Reads a camera or stream on a thread and keeps only the newest frame (stale ones are dropped)."""

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self.capture, self.frame, self.ended = capture, None, False
        self.fresh = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            ok, frame = self.capture.read()
            if not ok:
                self.ended = True
                self.fresh.set()
                return
            self.frame = frame
            self.fresh.set()

    def read(self) -> np.ndarray | None:
        self.fresh.wait()
        self.fresh.clear()
        return None if self.ended else self.frame

    def close(self) -> None:
        self.capture.release()


class Source:
    """Frames of a webcam index, a stream address, a video file, an image or a folder of images.

    Raises:
        FileNotFoundError: a path that does not exist. ValueError: a folder without
        images, a video or camera that cannot be opened or yields no frame.
    """

    def __init__(self, source: str | int) -> None:
        self.spec = str(source)
        self.skipped: dict[str, int] = {}
        self.fps = 30.0
        self.live = self.spec.isdigit() or self.spec.startswith(LIVE_PREFIXES)
        self.images: list[Path] = []
        self.capture: cv2.VideoCapture | None = None
        if self.live:
            self.capture = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec)
            if not self.capture.isOpened():
                what = f"no camera at index {self.spec}" if self.spec.isdigit() else f"cannot open stream {self.spec}"
                raise ValueError(f"{what}; give source=<video file, image or folder> instead")
            return
        path = Path(self.spec).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"source not found: {path}")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            self.images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if len(files) > len(self.images):
                self.skipped["not an image"] = len(files) - len(self.images)
            if not self.images:
                raise ValueError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            self.images = [path]
        else:
            self.capture = cv2.VideoCapture(str(path))
            if not self.capture.isOpened():
                raise ValueError(f"{path}: not a readable video or image")
            self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
            self.declared_frames = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))

    @property
    def is_video(self) -> bool:
        return self.capture is not None

    def __iter__(self) -> Iterator[Frame]:
        if self.images:
            for k, path in enumerate(self.images):
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    log.warning("%s: unreadable image, skipped", path)
                    self.skipped["unreadable image"] = self.skipped.get("unreadable image", 0) + 1
                    continue
                yield Frame(image, k, 0.0, path.name)
            return
        if self.live:
            reader, start, k = LiveReader(self.capture), time.perf_counter(), 0
            try:
                while (image := reader.read()) is not None:
                    yield Frame(image, k, time.perf_counter() - start, self.spec)
                    k += 1
            finally:
                reader.close()
            return
        k = 0
        while True:
            ok, image = self.capture.read()
            if not ok:
                break
            yield Frame(image, k, k / self.fps, Path(self.spec).name)
            k += 1
        self.capture.release()
        if k == 0:
            raise ValueError(f"{self.spec}: the video yields no frame (empty or truncated)")
        if self.declared_frames > 0 and k < self.declared_frames:
            log.warning("%s: read %d of %d frames its header declares (truncated?)", self.spec, k, self.declared_frames)


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
    probability per class (``p_<class>`` in CSV, a ``probabilities`` object in JSONL).
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
                row = [frame.index, f"{frame.time:.3f}", frame.name, f.track_id, *f.box, f"{f.score:.3f}", f.label]
                self.csv.writerow(row + probs)
            else:
                record = {
                    "frame": frame.index,
                    "time": round(frame.time, 3),
                    "source": frame.name,
                    "face": f.track_id,
                    "box": list(f.box),
                    "score": round(f.score, 3),
                    "label": f.label,
                    "probabilities": {c: round(f.probabilities[c], 4) for c in self.class_names},
                }
                self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()


def has_display() -> bool:
    """Whether a window can open: opencv-python's Qt build aborts the process without one."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _claim(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=true to replace it or choose another output_dir")
    return path


def run(
    recognizer: EmotionRecognizer,
    source: str | int,
    output_dir: str | Path,
    display: str | bool = "auto",
    predictions: str = "csv",
    save_media: bool = True,
    overwrite: bool = False,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Recognise expressions in every frame of ``source``; write annotated media and predictions.

    Writes into ``output_dir``: ``predictions.csv`` (or ``.jsonl``), ``annotated.mp4``
    for videos and streams or ``annotated/<image name>`` for images, ``summary.json``.
    Existing outputs are never replaced unless ``overwrite``.

    Returns:
        The summary: frames, frames with a face, faces, skipped inputs, FPS and
        per-stage milliseconds.

    Raises:
        FileExistsError, FileNotFoundError, ValueError: see :class:`Source` and above.
        RuntimeError: ``display=true`` without a display.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    show = has_display() if display == "auto" else bool(display) and str(display).lower() != "false"
    if show and not has_display():
        raise RuntimeError("display=true, but there is no display (DISPLAY unset); use display=false")
    src = Source(source)
    writer = PredictionWriter(
        _claim(out / f"predictions.{predictions}", overwrite), recognizer.class_names, predictions
    )
    video: cv2.VideoWriter | None = None
    if save_media and not src.is_video:
        _claim(out / "annotated", overwrite).mkdir(exist_ok=True)
    video_path = _claim(out / "annotated.mp4", overwrite) if save_media and src.is_video else None
    times, frames, with_face, faces_total, fps = recognizer.times, 0, 0, 0, None
    recognizer.reset()
    start = tick = last = time.perf_counter()
    try:
        for frame in src:
            tick = times.add("decode", tick)
            faces = recognizer.predict(frame.image, track=src.is_video)
            frames += 1
            with_face += bool(faces)
            faces_total += len(faces)
            tick = time.perf_counter()
            draw(frame.image, faces, fps)
            tick = times.add("draw", tick)
            writer.write(frame, faces)
            if video_path is not None:
                if video is None:
                    h, w = frame.image.shape[:2]
                    video = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), src.fps, (w, h))
                video.write(frame.image)
            elif save_media:
                cv2.imwrite(str(out / "annotated" / frame.name), frame.image)
            tick = times.add("write", tick)
            if show:
                cv2.imshow("fer", frame.image)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            fps = 1 / max(tick - last, 1e-6) if fps is None else 0.9 * fps + 0.1 / max(tick - last, 1e-6)
            last = tick
            if max_frames and frames >= max_frames:
                break
    finally:
        writer.close()
        if video is not None:
            video.release()
        if show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - start
    summary = {
        "source": str(source),
        "frames": frames,
        "frames_with_face": with_face,
        "faces": faces_total,
        "skipped": src.skipped,
        "fps": frames / max(seconds, 1e-9),
        "ms_per_stage": {s: 1000 * t / max(times.calls[s], 1) for s, t in times.seconds.items()},
        "output_dir": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "%d frames, %d with a face, %d faces, %.1f FPS; per stage: %s; skipped: %s; outputs in %s",
        frames, with_face, faces_total, summary["fps"], times.summary(), src.skipped or "none", out,
    )  # fmt: skip
    return summary
