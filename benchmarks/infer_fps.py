"""End-to-end speed of the realtime recognizer on a real 640x360 face video.

    python benchmarks/infer_fps.py [--video ../shared/data/videos/single_face.mp4] [--repeat 3]

For each setting, every frame is decoded, searched for faces, classified (all faces of
a frame in one batch) and annotated, as ``infer.py`` does, without writing files.
Prints frames per second, per-stage milliseconds and the frames in which a
full-resolution detection finds a face that the setting misses. For comparison: the
``fer`` package (Haar + a TFLite mini-Xception) takes 44 ms a frame (about 23 FPS) on
this kind of machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from fer.inference.outputs import draw
from fer.inference.recognizer import EmotionRecognizer

FER_PACKAGE_FPS = 1000 / 44


def frames_of(video: Path) -> list:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    return frames


def measure(frames: list, repeat: int, **settings) -> tuple[float, list[bool], str]:
    recognizer = EmotionRecognizer(detector="haar", device="cpu", **{"detect_every": 1, **settings})
    found: list[bool] = []
    best = 0.0
    for _ in range(repeat):
        recognizer.reset()
        found = []
        start = time.perf_counter()
        for frame in frames:
            image = frame.copy()  # stands in for decoding, which is timed separately
            faces = recognizer.predict(image)
            draw(image, faces)
            found.append(bool(faces))
        best = max(best, len(frames) / (time.perf_counter() - start))
    return best, found, recognizer.times.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "single_face.mp4"
    parser.add_argument("--video", type=Path, default=default)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    frames = frames_of(args.video)
    decode_ms = 1000 * (time.perf_counter() - start) / len(frames)
    h, w = frames[0].shape[:2]
    print(f"{args.video.name}: {len(frames)} frames {w}x{h}, decode {decode_ms:.1f} ms a frame")

    _, reference, _ = measure(frames, 1, detect_scale=1.0)
    print(f"full-resolution detection finds a face in {sum(reference)}/{len(frames)} frames")
    for settings in ({"detect_scale": 1.0}, {"detect_scale": 0.5}, {"detect_scale": 0.5, "detect_every": 2}):
        fps, found, stages = measure(frames, args.repeat, **settings)
        fps = 1 / (1 / fps + decode_ms / 1000)  # decoding included
        missed = sum(r and not f for r, f in zip(reference, found))
        print(
            f"{settings}: {fps:5.1f} FPS end to end ({fps / FER_PACKAGE_FPS:.2f}x the fer package's 23 FPS), "
            f"missed {missed} frames; per stage: {stages}"
        )


if __name__ == "__main__":
    main()
