"""The realtime loop behind ``infer.py``: recognise every frame of a source, draw, write, sum up."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2

from fer.files import write_json_atomically
from fer.inference.outputs import PredictionWriter, draw
from fer.inference.recognizer import EmotionRecognizer
from fer.inference.sources import Source

log = logging.getLogger(__name__)


def has_display() -> bool:
    """Whether a window can open: opencv-python's Qt build aborts the process without one."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Stop(Exception):
    """Raised by :func:`run`'s signal handlers between frames: SIGINT (Ctrl+C) or SIGTERM."""


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


#: Annotated video containers and their codecs: mp4 (MPEG-4 part 2, plays in desktop players) or
#: webm (VP8, plays in every browser; the web app's uploads).
VIDEO_CODECS = {"mp4": "mp4v", "webm": "VP80"}
#: Window keys: q / Esc end the run, space pauses and resumes.
QUIT_KEYS, PAUSE_KEY = (ord("q"), 27), ord(" ")


def open_window(name: str = "fer") -> None:
    """Open the OpenCV window of the loop.

    Raises:
        RuntimeError: this OpenCV build has no GUI (``opencv-python-headless``, say); the
            message says what to install or to pass ``display=false``.
    """
    try:
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # the frame only, no toolbar
    except cv2.error as error:
        raise RuntimeError(
            "this OpenCV build cannot open a window (a headless build?): install opencv-python, "
            f"or run with display=false ({str(error).strip().splitlines()[-1]})"
        ) from None


def _key(wait_ms: int = 1) -> str | None:
    """``"quit"``, ``"pause"`` or ``None`` after polling the window's keys for ``wait_ms``."""
    key = cv2.waitKey(wait_ms) & 0xFF
    return "quit" if key in QUIT_KEYS else "pause" if key == PAUSE_KEY else None


def _paused(state: dict[str, Any]) -> bool:
    """Hold the current frame on screen until space (resume, ``False``), q/Esc or a signal (``True``)."""
    while not state["stop"]:
        key = _key(50)
        if key:
            return key == "quit"
    return False


def _check_space(folder: Path, frame_bytes: int) -> None:
    """Raise before the disk is full: OpenCV's video writer fails silently when it is."""
    free = shutil.disk_usage(folder).free
    if free < max(2**20, frame_bytes):
        raise OSError(f"{folder}: no space left on device ({free} bytes free); outputs so far are in .partial files")


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
) -> dict[str, Any]:
    """Recognise expressions in every frame of ``source``; write annotated media and predictions.

    Writes into ``output_dir``: ``predictions.csv`` (or ``.jsonl``), ``annotated.mp4``
    (or ``.webm``) for videos and streams or ``annotated/<image name>`` for images, ``summary.json``.
    Every output is checked before any is opened: an existing one is never replaced
    unless ``overwrite``, and a refused run leaves nothing behind. Predictions and the
    video are written under hidden ``.partial`` names and renamed when the run ends, so a
    file under its real name is always complete. SIGINT (Ctrl+C) and SIGTERM end the run
    after the current frame with all outputs finalised and ``summary["ended"]`` naming
    the signal. In the window (``display``), q or Esc ends the run and space pauses it.

    Args:
        live: ``"auto"`` (cameras and rtsp/rtmp/udp/tcp streams are live), ``true`` or
            ``false``; a live source drops frames that arrive while one is processed
            (counted in the summary), any other source is read frame by frame.
        video_format: ``"mp4"`` or ``"webm"``, see :data:`VIDEO_CODECS`.
        progress: called after every frame with the frames done and the source's frame
            count (``None`` where unknown: cameras, streams).
        cancel: when set (by another thread), the run ends after the current frame with
            outputs finalised and ``summary["ended"] == "cancelled"``.

    Returns:
        The summary: frames, frames with a face, faces, dropped frames, skipped inputs,
        FPS, per-stage milliseconds and how the run ended (``"end of source"``,
        ``"max_frames"``, ``"key"``, ``"cancelled"``, ``"SIGINT"`` or ``"SIGTERM"``).

    Raises:
        FileExistsError, FileNotFoundError, ValueError: see :class:`Source` and above.
        RuntimeError: ``display=true`` without a display or a GUI build of OpenCV. OSError: an output could not be
        written, or less than a frame's worth (at least 1 MiB) of disk space is left; the
        message names the file or folder, and what was written stays in the hidden
        ``.partial`` files (never under the outputs' real names).
    """
    if predictions not in ("csv", "jsonl"):
        raise ValueError(f"predictions must be csv or jsonl, not {predictions!r}")
    if video_format not in VIDEO_CODECS:
        raise ValueError(f"video_format must be one of {sorted(VIDEO_CODECS)}, not {video_format!r}")
    show = has_display() if display == "auto" else bool(display) and str(display).lower() != "false"
    if show and not has_display():
        raise RuntimeError("display=true, but there is no display (DISPLAY unset); use display=false")
    src = Source(source, live)
    out = Path(output_dir)
    media = (out / f"annotated.{video_format}" if src.is_video else out / "annotated") if save_media else None
    targets = [out / f"predictions.{predictions}", out / "summary.json"] + ([media] if media else [])
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} exist(s); pass overwrite=true to replace or choose another output_dir"
        )
    if show:
        try:
            open_window()
        except RuntimeError:
            if display != "auto":
                src.close()
                raise
            log.warning("no window: this OpenCV build cannot open one (a headless build?)")
            show = False
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / f".predictions.{predictions}.partial"
    video_partial = out / f".annotated.partial.{video_format}"
    writer = PredictionWriter(pred_path, recognizer.class_names, predictions)
    video: cv2.VideoWriter | None = None
    if media is not None and not src.is_video:
        media.mkdir(exist_ok=True)
    times, frames, with_face, faces_total, fps = recognizer.times, 0, 0, 0, None
    state: dict[str, Any] = {"stop": None}
    ended = "end of source"
    total = (src.declared_frames or None) if src.is_video else len(src.images)
    recognizer.reset()
    start = tick = last = time.perf_counter()
    try:
        with _stop_on_signals(state):
            for frame in src:
                tick = times.add("decode", tick)
                faces = recognizer.predict(frame.image, track=src.is_video)
                frames += 1
                with_face += bool(faces)
                faces_total += len(faces)
                tick = time.perf_counter()
                draw(frame.image, faces, fps if src.is_video else None)
                tick = times.add("draw", tick)
                try:
                    writer.write(frame, faces)
                except OSError as error:
                    raise OSError(f"{pred_path}: could not write predictions ({error.strerror or error})") from None
                _check_space(out, frame.image.nbytes)
                if media is not None and src.is_video:
                    if video is None:
                        h, w = frame.image.shape[:2]
                        fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[video_format])
                        video = cv2.VideoWriter(str(video_partial), fourcc, src.fps, (w, h))
                        if not video.isOpened():
                            raise OSError(f"{video_partial}: cannot write the annotated video")
                    video.write(frame.image)
                elif media is not None and not cv2.imwrite(str(media / frame.name), frame.image):
                    raise OSError(f"{media / frame.name}: could not write the annotated image (disk full?)")
                tick = times.add("write", tick)
                if show:
                    cv2.imshow("fer", frame.image)
                    key, paused_at = _key(), time.perf_counter()
                    if key == "quit" or (key == "pause" and _paused(state)):
                        ended = "key"
                        break
                    if key == "pause":  # the pause counts neither in FPS nor in any stage
                        pause = time.perf_counter() - paused_at
                        start, last, tick = start + pause, last + pause, tick + pause
                if progress is not None:
                    progress(frames, total)
                fps = 1 / max(tick - last, 1e-6) if fps is None else 0.9 * fps + 0.1 / max(tick - last, 1e-6)
                last = tick
                if state["stop"]:
                    ended = state["stop"]
                    break
                if cancel is not None and cancel.is_set():
                    ended = "cancelled"
                    break
                if max_frames and frames >= max_frames:
                    ended = "max_frames"
                    break
    finally:
        src.close()
        writer.close()
        if video is not None:
            video.release()
        if show:
            cv2.destroyAllWindows()
    # the run ended cleanly (end, key, signal, max_frames): publish the outputs under their names
    pred_path.replace(out / f"predictions.{predictions}")
    if video is not None:
        video_partial.replace(media)
    seconds = time.perf_counter() - start
    summary = {
        "source": str(source),
        "ended": ended,
        "frames": frames,
        "frames_with_face": with_face,
        "faces": faces_total,
        "dropped_frames": src.dropped,
        "skipped": src.skipped,
        "fps": frames / max(seconds, 1e-9),
        "ms_per_stage": {s: 1000 * t / max(times.calls[s], 1) for s, t in times.seconds.items()},
        "output_dir": str(out),
    }
    write_json_atomically(out / "summary.json", summary)
    log.info(
        "%d frames, %d with a face, %d faces, %.1f FPS; per stage: %s; skipped: %s; ended: %s; outputs in %s",
        frames, with_face, faces_total, summary["fps"], times.summary(), src.skipped or "none", ended, out,
    )  # fmt: skip
    return summary
