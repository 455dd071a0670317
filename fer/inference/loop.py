"""The realtime loop behind ``infer.py``: recognise every frame of a source, draw, write, sum up."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.progress import track

from fer.inference.outputs import Outputs, check_formats, draw
from fer.inference.recognizer import EmotionRecognizer, Face
from fer.inference.sources import Frame, Source, is_live
from fer.inference.timing import Clock

log = logging.getLogger(__name__)


def has_display() -> bool:
    """Whether a window can open: opencv-python's Qt build aborts the process without one."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


@contextmanager
def _stop_on_signals(state: dict[str, Any]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set ``state["stop"]`` to the signal's name (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        state["stop"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


#: Window keys: q / Esc end the run, space pauses and resumes, n marks the faces shown as neutral.
QUIT_KEYS, PAUSE_KEY, NEUTRAL_KEY = (ord("q"), 27), ord(" "), ord("n")


class Window:
    """The loop's OpenCV window: shows frames, reads q / Esc (quit), space (pause and resume) and n
    (the faces shown are at rest: their tracks' neutral reference, with ``recognizer.adapt=neutral``).

    Raises:
        RuntimeError: this OpenCV build has no GUI (``opencv-python-headless``, say); the
            message says what to install or to pass ``display=false``.
    """

    def __init__(self, name: str = "fer") -> None:
        self.name = name
        try:
            cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # the frame only, no toolbar
        except cv2.error as error:
            raise RuntimeError(
                "this OpenCV build cannot open a window (a headless build?): install opencv-python, "
                f"or run with display=false ({str(error).strip().splitlines()[-1]})"
            ) from None

    @staticmethod
    def key(wait_ms: int = 1) -> str | None:
        """``"quit"``, ``"pause"``, ``"neutral"`` or ``None`` after polling the window's keys for ``wait_ms``."""
        key = cv2.waitKey(wait_ms) & 0xFF
        keys = {PAUSE_KEY: "pause", NEUTRAL_KEY: "neutral"} | dict.fromkeys(QUIT_KEYS, "quit")
        return keys.get(key)

    def show(self, image: np.ndarray, state: dict[str, Any]) -> tuple[str | None, float]:
        """Show a frame; returns the key pressed (``"quit"``, ``"neutral"`` or ``None``) and the seconds
        it was held paused.

        A pause holds the frame until space (resume), q / Esc (quit), n or a signal (which
        ``state["stop"]`` names; the loop then ends after this frame).
        """
        cv2.imshow(self.name, image)
        key, paused_at = self.key(), time.perf_counter()
        if key != "pause":
            return key, 0.0
        while not state["stop"]:
            key = self.key(50)
            if key:
                return (None if key == "pause" else key), time.perf_counter() - paused_at
        return None, time.perf_counter() - paused_at

    def close(self) -> None:
        cv2.destroyAllWindows()


def _window(display: str | bool) -> Window | None:
    """The window ``display`` asks for: ``"auto"`` opens one where it can, else none.

    Raises:
        RuntimeError: ``display=true`` without a display or a GUI build of OpenCV.
    """
    show = has_display() if display == "auto" else bool(display) and str(display).lower() != "false"
    if show and not has_display():
        raise RuntimeError("display=true, but there is no display (DISPLAY unset); use display=false")
    if not show:
        return None
    try:
        return Window()
    except RuntimeError:
        if display != "auto":
            raise
        log.warning("no window: this OpenCV build cannot open one (a headless build?)")
        return None


def run(
    recognizer: EmotionRecognizer,
    source: str | int,
    output_dir: str | Path,
    display: str | bool = "auto",
    predictions: str = "csv",
    save_media: bool = True,
    overwrite: bool = False,
    max_frames: int | None = None,
    live: str | bool = "auto",
    video_format: str = "mp4",
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    batch_frames: int = 1,
) -> dict[str, Any]:
    """Recognise expressions in every frame of ``source``; write annotated media and predictions.

    The outputs in ``output_dir`` are those of :class:`~fer.inference.outputs.Outputs`
    (``predictions``, ``save_media``, ``overwrite``, ``video_format``): checked before any
    file is opened and published under their names only when the run ends. SIGINT and
    SIGTERM end the run after the current frame with every output finalised; in the window
    (``display``: ``"auto"``, true or false), q or Esc ends the run and space pauses it.

    Args:
        live: ``"auto"`` (cameras and rtsp/rtmp/udp/tcp streams are live), true or false; a
            live source drops the frames that arrive while one is processed (counted).
        progress: called after every frame with the frames done and the source's frame
            count (``None`` where unknown: cameras, streams).
        cancel: when set (by another thread), the run ends after the current frame.
        batch_frames: throughput mode for files: frames decoded ahead on a thread and this many
            recognised at a time (the same faces); 1 (and live sources): realtime.

    Returns:
        The summary: frames, frames with a face, faces, dropped frames, skipped inputs, FPS,
        per-stage milliseconds and how the run ended (``"end of source"``, ``"max_frames"``,
        ``"key"``, ``"cancelled"``, ``"SIGINT"`` or ``"SIGTERM"``).

    Raises:
        FileExistsError, FileNotFoundError, ValueError: see :class:`Source` and ``Outputs``.
        RuntimeError: ``display=true`` without a display or a GUI build of OpenCV. OSError: an
        output could not be written (what was written stays in the ``.partial`` files).
    """
    check_formats(predictions, video_format)
    window = _window(display)
    src = Source(source, live)
    loop = None
    try:
        outputs = Outputs(output_dir, src.is_video, predictions, save_media, overwrite, video_format)
        loop = _Loop(recognizer, src, outputs, window)
        ended = loop.frames(max_frames, progress, cancel, 1 if src.live else max(1, batch_frames))
    finally:
        src.close()
        if loop is not None:
            loop.outputs.close()
        if window is not None:
            window.close()
    # the run ended cleanly (end, key, signal, max_frames): publish the outputs under their names
    summary = loop.summary(ended, source, output_dir)
    loop.outputs.publish(summary)
    return summary


#: Frames of a source that AdaBN's first pass searches for faces, spread evenly over it.
ADABN_FRAMES = 600


def adapt_to_source(
    recognizer: EmotionRecognizer, source: str | int, live: str | bool = "auto", frames: int = ADABN_FRAMES
) -> int:
    """AdaBN over a source before it is recognised (``infer.py adabn=true``): a first pass finds the faces
    of up to ``frames`` of its frames (a folder's images or a video's frames, spread evenly, each
    searched as a still image) and re-estimates the recognizer's batch norms over them
    (:meth:`~fer.inference.recognizer.EmotionRecognizer.adapt_batchnorm`).

    Returns the number of faces the statistics came from.

    Raises:
        ValueError: a live source (a camera or stream has no collection to see first), no face
            found, or what ``adapt_batchnorm`` raises. FileNotFoundError: see :class:`Source`.
    """
    if is_live(str(source), live):
        raise ValueError(f"{source}: AdaBN needs a video file, an image or a folder first, not a live source")
    src = Source(source, live=False)
    total = len(src.images) or src.declared_frames or None
    step = max(1, math.ceil((total or frames) / frames))
    crops, seen = [], 0
    try:
        for frame in track(src, description="AdaBN: finding the faces", total=total):
            if frame.index % step == 0:
                crops.append(recognizer.crops(frame.image, [d.box for d in recognizer.detect_still(frame.image)]))
                seen += 1
    finally:
        src.close()
    faces = torch.cat(crops)
    if not len(faces):
        raise ValueError(f"{source}: no face found in {seen} frames; AdaBN has nothing to adapt to")
    layers = recognizer.adapt_batchnorm(faces)
    log.info("AdaBN: %d batch-norm layers re-estimated over %d faces of %d frames", layers, len(faces), seen)
    return len(faces)


@dataclass
class _Loop:
    """One run of :func:`run`: its collaborators, its clock and its counts."""

    recognizer: EmotionRecognizer
    src: Source
    outputs: Outputs
    window: Window | None
    clock: Clock = field(default_factory=Clock)
    counts: dict[str, int] = field(default_factory=lambda: {"frames": 0, "frames_with_face": 0, "faces": 0})

    def __post_init__(self) -> None:
        self.outputs.open(self.recognizer.class_names)
        self.recognizer.reset()

    def frames(
        self,
        max_frames: int | None,
        progress: Callable[[int, int | None], None] | None,
        cancel: threading.Event | None,
        batch_frames: int,
    ) -> str:
        """Recognise, draw, write and show every frame; returns how the run ended.

        With ``batch_frames`` > 1 frames are read ahead on a thread and recognised that many at a time.
        """
        src, state = self.src, {"stop": None}
        total = (src.declared_frames or None) if src.is_video else len(src.images)
        frames = iter(src) if batch_frames == 1 else prefetched(src, 2 * batch_frames)
        tick = time.perf_counter()
        with _stop_on_signals(state), contextlib.closing(frames):
            for batch in batched(frames, batch_frames, max_frames):
                tick = self.recognizer.times.add("decode", tick, calls=len(batch))
                images = [frame.image for frame in batch]
                if src.is_video:
                    found = self.recognizer.predict_frames(images)
                else:
                    found = [self.recognizer.predict(image, track=False) for image in images]
                tick = time.perf_counter()
                for frame, faces in zip(batch, found):
                    tick, quit_ = self._frame_done(frame, faces, tick, state)
                    if quit_:
                        return "key"
                    if progress is not None:
                        progress(self.counts["frames"], total)
                    if state["stop"] or (cancel is not None and cancel.is_set()):
                        return state["stop"] or "cancelled"
                    if max_frames and self.counts["frames"] >= max_frames:
                        return "max_frames"
        return "end of source"

    def _frame_done(self, frame: Frame, faces: list[Face], tick: float, state: dict[str, Any]) -> tuple[float, bool]:
        """Count, draw, write and show one recognised frame; returns the time and whether the user quit."""
        times = self.recognizer.times
        self.counts["frames"] += 1
        self.counts["frames_with_face"] += bool(faces)
        self.counts["faces"] += len(faces)
        draw(frame.image, faces, self.clock.fps if self.src.is_video else None)
        tick = times.add("draw", tick)
        self.outputs.write(frame, faces, self.src.fps)
        tick = times.add("write", tick)
        if self.window is not None:
            key, paused = self.window.show(frame.image, state)
            if key == "quit":
                return tick, True
            if key == "neutral":
                self._mark_neutral()
            self.clock.pause(paused)  # the pause counts neither in FPS nor in any stage
            tick += paused
        self.clock.frame_done(tick)
        return tick, False

    def _mark_neutral(self) -> None:
        """Key n: the faces shown become their tracks' neutral reference (``recognizer.adapt=neutral``)."""
        if self.recognizer.config.adapt != "neutral":
            log.warning("key n marks neutral faces only with recognizer.adapt=neutral (it is %s)",
                        self.recognizer.config.adapt)  # fmt: skip
            return
        log.info("neutral reference: tracks %s", self.recognizer.mark_neutral() or "none (no face)")

    def summary(self, ended: str, source: str | int, output_dir: str | Path) -> dict[str, Any]:
        """The run's summary (see :func:`run`), also logged in one line."""
        times, src, counts = self.recognizer.times, self.src, self.counts
        summary = {
            "source": str(source),
            "ended": ended,
            **counts,
            "dropped_frames": src.dropped,
            "skipped": src.skipped,
            "source_fps": src.fps if src.is_video else None,
            "fps": counts["frames"] / max(self.clock.elapsed(), 1e-9),
            "ms_per_stage": {s: 1000 * t / max(times.calls[s], 1) for s, t in times.seconds.items()},
            "output_dir": str(output_dir),
        }
        log.info(
            "%d frames, %d with a face, %d faces, %.1f FPS; per stage: %s; skipped: %s; ended: %s; outputs in %s",
            counts["frames"], counts["frames_with_face"], counts["faces"], summary["fps"], times.summary(),
            src.skipped or "none", ended, output_dir,
        )  # fmt: skip
        return summary


def batched(frames: Iterator[Frame], size: int, limit: int | None = None) -> Iterator[list[Frame]]:
    """Lists of ``size`` consecutive frames (the last may be shorter), at most ``limit`` frames in all."""
    batch: list[Frame] = []
    for k, frame in enumerate(frames):
        batch.append(frame)
        if len(batch) == size or (limit and k + 1 >= limit):
            yield batch
            batch = []
            if limit and k + 1 >= limit:
                return
    if batch:
        yield batch


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(frames: Iterable[Frame], depth: int) -> Generator[Frame, None, None]:
    """The frames, read on a background thread at most ``depth`` ahead, so that decoding overlaps
    recognition; an error of the reader is raised here. Closing the generator stops the thread."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(item: object) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                waiting.put(item, timeout=0.1)
                return True
        return False

    def read() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(end)
        except Exception as error:  # handed to the consumer, who raises it
            put(_Failed(error))

    reader = threading.Thread(target=read, name="fer-decode", daemon=True)
    reader.start()
    try:
        while (item := waiting.get()) is not end:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()
