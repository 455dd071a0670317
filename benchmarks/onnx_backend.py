"""PyTorch eager against onnxruntime for the shipped classifier, in one run.

    python benchmarks/onnx_backend.py [--video ../shared/data/videos/single_face.mp4] [--repeat 200]

Prints the classifier's latency (median and p90 over ``--repeat`` calls, after a warm-up)
for 1 and 8 faces with each backend, and the end-to-end FPS of the recognizer (Haar
detection at half resolution every 2nd frame, classification, drawing) on the video with
each backend. Both backends use the machine's
default thread settings.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from infer_fps import frames_of  # this folder is on the path when run as a script

from fer.export import export_onnx
from fer.face.crops import preprocess
from fer.inference.backends import OnnxBackend, TorchBackend
from fer.inference.outputs import draw
from fer.inference.recognizer import EmotionRecognizer


def latency_ms(backend, x: torch.Tensor, repeat: int) -> tuple[float, float]:
    for _ in range(10):
        backend(x)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        backend(x)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times))]


def end_to_end_fps(frames: list, **settings) -> float:
    recognizer = EmotionRecognizer(detector="haar", device="cpu", detect_every=2, smoothing=0.5, **settings)
    recognizer.predict(frames[0].copy())  # warm-up
    recognizer.reset()
    start = time.perf_counter()
    for frame in frames:
        image = frame.copy()
        draw(image, recognizer.predict(image))
    return len(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "single_face.mp4"
    parser.add_argument("--video", type=Path, default=default)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_onnx(None, Path(tmp) / "shipped.onnx")
        backends = {"torch eager": TorchBackend(None), "onnxruntime": OnnxBackend(graph)}
        torch.manual_seed(0)
        for faces in (1, 8):
            x = preprocess(torch.randint(0, 256, (faces, 1, 48, 48), dtype=torch.uint8))
            cells = []
            for name, backend in backends.items():
                median, p90 = latency_ms(backend, x, args.repeat)
                cells.append(f"{name} {median:.2f} ms (p90 {p90:.2f})")
            print(f"classifier, {faces} face(s): " + "; ".join(cells))
        frames = frames_of(args.video)
        for name, settings in (("torch eager", {}), ("onnxruntime", {"backend": "onnxruntime", "onnx_cache": tmp})):
            fps = end_to_end_fps(frames, **settings)
            print(f"end to end on {args.video.name} ({len(frames)} frames), {name}: {fps:.1f} FPS")


if __name__ == "__main__":
    main()
