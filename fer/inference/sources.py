"""Frames from a webcam, a stream, a video file, an image or a folder of images."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

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
