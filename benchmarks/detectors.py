"""Every face detector on the shared photos and videos, and the realtime loop with the default one, in one run.

    python benchmarks/detectors.py [--data ../shared/data] [--threads 2]

Photos: faces found against the faces a person counts in each (``photos/``; too few is
a miss, too many a false detection), milliseconds per image (median of 3, after a
warm-up), at the recognizer's still-image size (longest side at most 1,920 px). Videos:
the share of frames in which the detector finds exactly the faces a person counts (the
stage clip: frames with any face), at each detector's default scale for streams (BlazeFace
full resolution, the others half), and ms a frame. Then end to end, as ``infer.py`` runs
(default detector for streams, detection every frame, classification, tracking,
drawing; no files), on
``single_face.mp4`` and ``short_hamilton_clip.mp4``: FPS, frames in which the same
detector at full resolution finds a face that the loop misses, track ids and scene cuts,
for the thread budget given and for torch's and OpenCV's defaults; then the budget again
with the faster shipped model (``model_name=fer2013_deep_cnn``) in place of the default.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import torch
from infer_fps import frames_of  # this folder is on the path when run as a script

from fer.device import set_thread_budget
from fer.face.detection import detect_scaled, make_detector, make_detectors
from fer.inference.outputs import draw
from fer.inference.recognizer import DETECT_SCALE, EmotionRecognizer
from fer.shipped import shipped_model

PHOTOS = {
    "multi_face.jpg": 5,
    "two_people.jpg": 2,
    "obama.jpg": 1,
    "obama_small.jpg": 1,
    "single_face.jpg": 1,
    "aflw-test.jpg": 1,
    "BWPictureHuman.jpg": 1,
    "grass.jpg": 0,
    "free-mountain-vector-01.jpg": 0,
}
#: Faces a person counts in each frame of a video (frame index -> count); the stage clip is
#: several shots of one to three people, so it is scored by frames with any face instead.
VIDEOS = {
    "single_face.mp4": lambda k: 1,
    "face_noface.mov": lambda k: 1 if k < 72 else 0,  # the face, then a cut to a cartoon title
    "no_face.mp4": lambda k: 0,
    "short_hamilton_clip.mp4": None,
}
DETECTORS = ("blazeface", "blazeface_front", "dlib", "haar")


def capped(image, side: int = 1920):
    scale = min(1.0, side / max(image.shape[:2]))
    return image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def photo_table(data: Path) -> None:
    print("| detector | " + " | ".join(f"{n} ({k})" for n, k in PHOTOS.items()) + " | misses | false |")
    print("|---" * (len(PHOTOS) + 3) + "|")
    images = {n: capped(cv2.imread(str(data / "photos" / n))) for n in PHOTOS}
    for name in DETECTORS:
        detector = make_detector(name)
        detector(images["single_face.jpg"])  # warm-up
        cells, misses, false = [], 0, 0
        for photo, expected in PHOTOS.items():
            times, found = [], []
            for _ in range(3):
                start = time.perf_counter()
                found = detect_scaled(detector, images[photo], 1.0, 0.5)
                times.append(1000 * (time.perf_counter() - start))
            misses += max(0, expected - len(found))
            false += max(0, len(found) - expected)
            cells.append(f"{len(found)}, {statistics.median(times):.0f} ms")
        print(f"| {name} | " + " | ".join(cells) + f" | {misses} | {false} |")


def video_table(data: Path, videos: dict[str, list]) -> None:
    heads = [f"{n} ({'frames with a face' if c is None else 'frames exact'})" for n, c in VIDEOS.items()]
    print("\n| detector | " + " | ".join(heads) + " |")
    print("|---" * (len(VIDEOS) + 1) + "|")
    for name in DETECTORS:
        detector = make_detector(name)
        cells = []
        for video, count in VIDEOS.items():
            frames = videos[video]
            start = time.perf_counter()
            found = [
                len(detect_scaled(detector, f, getattr(detector, "stream_scale", DETECT_SCALE), 0.5)) for f in frames
            ]
            ms = 1000 * (time.perf_counter() - start) / len(frames)
            right = [n > 0 if count is None else n == count(k) for k, n in enumerate(found)]
            cells.append(f"{sum(right) / len(frames):.0%}, {ms:.0f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")


def end_to_end(frames: list, reference: list[bool], model: str | None = None) -> tuple[float, int, int, int]:
    """FPS, frames where ``reference`` has a face and the loop none, track ids, scene cuts;
    ``model``: a shipped model's short name (``None``: the default one)."""
    ckpt = shipped_model(model) if model else None
    recognizer = EmotionRecognizer(ckpt, device="cpu")  # infer.yaml's defaults
    recognizer.predict(frames[0].copy())
    recognizer.reset()
    found, ids = [], set()
    start = time.perf_counter()
    for frame in frames:
        image = frame.copy()
        faces = recognizer.predict(image)
        draw(image, faces)
        found.append(bool(faces))
        ids |= {f.track_id for f in faces}
    fps = len(frames) / (time.perf_counter() - start)
    return fps, sum(r and not f for r, f in zip(reference, found)), len(ids), recognizer.tracker.cuts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    default_threads = torch.get_num_threads(), cv2.getNumThreads()
    set_thread_budget(args.threads)
    photo_table(args.data)
    videos = {v: frames_of(args.data / "videos" / v) for v in VIDEOS}
    video_table(args.data, videos)
    print()
    detector = make_detectors("auto")[0]  # the loop's own detector, at full resolution, every frame
    for video in ("single_face.mp4", "short_hamilton_clip.mp4"):
        frames = videos[video]
        reference = [bool(detect_scaled(detector, f, 1.0, 0.5)) for f in frames]
        for label, threads in ((f"{args.threads} thread(s)", args.threads), ("library defaults", None)):
            if threads is None:
                torch.set_num_threads(default_threads[0])
                cv2.setNumThreads(default_threads[1])
            else:
                set_thread_budget(threads)
            fps, missed, tracks, cuts = end_to_end(frames, reference)
            print(
                f"{video}, {label}: {fps:.1f} FPS, {missed} frames missed vs full resolution, "
                f"{tracks} track id(s), {cuts} scene cut(s)"
            )
        set_thread_budget(args.threads)
        fps, missed, tracks, cuts = end_to_end(frames, reference, "fer2013_deep_cnn")
        print(f"{video}, {args.threads} thread(s), model_name=fer2013_deep_cnn: {fps:.1f} FPS, {missed} missed")


if __name__ == "__main__":
    main()
