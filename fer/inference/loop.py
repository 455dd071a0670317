"""The realtime loop behind ``infer.py``: recognise every frame of a source, draw, write, sum up."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from fer.inference.outputs import PredictionWriter, draw
from fer.inference.recognizer import EmotionRecognizer
from fer.inference.sources import Source

log = logging.getLogger(__name__)


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
