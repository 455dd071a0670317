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
#: Addresses of true streams: live by default (``live=auto``).
STREAM_PREFIXES = ("rtsp://", "rtmp://", "udp://", "tcp://")
#: Every address OpenCV opens; an http(s) address is a video file unless ``live=true``.
URL_PREFIXES = (*STREAM_PREFIXES, "http://", "https://")


@dataclass
class Frame:
    image: np.ndarray
    index: int
    time: float  # seconds from the start of the source
    name: str  # file name for images, else the source


class LiveReader:
    """Reads a camera or stream on a thread and keeps only the newest frame (stale ones are dropped)."""

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self.capture, self.frame, self.ended, self.dropped = capture, None, False, 0
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
            self.dropped += self.fresh.is_set()  # the previous frame was never read
            self.frame = frame
            self.fresh.set()

    def read(self) -> np.ndarray | None:
        self.fresh.wait()
        self.fresh.clear()
        return None if self.ended else self.frame

    def close(self) -> None:
        self.capture.release()


def is_live(spec: str, live: str | bool = "auto") -> bool:
    """Whether a source drops stale frames: ``auto`` says yes for a camera index and an
    rtsp/rtmp/udp/tcp address, no for http(s) addresses (video files) and paths."""
    if live == "auto":
        return spec.isdigit() or spec.startswith(STREAM_PREFIXES)
    return bool(live) and str(live).lower() != "false"


class Source:
    """Frames of a webcam index, a stream address, a video file, an image or a folder of images.

    Args:
        source: camera index, address (``rtsp://``, ``http://`` ...), or path.
        live: ``"auto"``: cameras and rtsp/rtmp/udp/tcp streams are live, http(s)
            addresses and files are not; a live source keeps only the newest frame and
            counts the ones it drops (:attr:`dropped`).

    Raises:
        FileNotFoundError: a path that does not exist. ValueError: a folder without
        images, a video, stream or camera that cannot be opened or yields no frame.
    """

    def __init__(self, source: str | int, live: str | bool = "auto") -> None:
        self.spec = str(source)
        self.skipped: dict[str, int] = {}
        self.fps, self.dropped, self.declared_frames = 30.0, 0, 0
        camera, url = self.spec.isdigit(), self.spec.startswith(URL_PREFIXES)
        self.live = is_live(self.spec, live)
        self.images: list[Path] = []
        self.capture: cv2.VideoCapture | None = None
        if camera or url:
            self.capture = cv2.VideoCapture(int(self.spec) if camera else self.spec)
            if not self.capture.isOpened():
                what = f"no camera at index {self.spec}" if camera else f"cannot open stream {self.spec}"
                raise ValueError(f"{what}; give source=<video file, image or folder> instead")
            self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
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

    def close(self) -> None:
        """Release the camera, stream or video (idempotent)."""
        if self.capture is not None:
            self.capture.release()

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
        name = self.spec if self.spec.isdigit() or self.spec.startswith(URL_PREFIXES) else Path(self.spec).name
        k = 0
        if self.live:
            reader, start = LiveReader(self.capture), time.perf_counter()
            try:
                while (image := reader.read()) is not None:
                    yield Frame(image, k, time.perf_counter() - start, name)
                    k += 1
            finally:
                self.dropped = reader.dropped
                reader.close()
        else:
            while True:
                ok, image = self.capture.read()
                if not ok:
                    break
                yield Frame(image, k, k / self.fps, name)
                k += 1
            self.capture.release()
        if k == 0:
            raise ValueError(f"{self.spec}: the video or stream yields no frame (empty or truncated)")
        if self.declared_frames > 0 and k < self.declared_frames:
            log.warning("%s: read %d of %d frames its header declares (truncated?)", self.spec, k, self.declared_frames)
