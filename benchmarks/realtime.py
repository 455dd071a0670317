"""The realtime recognizer's cheaper paths: frames per second and labels changed, on the shared videos, in one run.

    python benchmarks/realtime.py [--videos DIR] [--threads 2] [--before ../old-checkout] [--models NAME[=CKPT] ...]

Every frame is decoded, searched (the default detector), classified and annotated, as
``infer.py`` does, without writing files; the best of ``--passes`` passes counts. Each
setting is compared with the full classifier on every frame (PyTorch, float32, the face and
its mirror): the share of faces whose label differs; ``--models`` adds each model's float32
and int8 graphs. With ``--before`` (another checkout of this repository), ``python infer.py``
with its defaults runs on each video in that tree and in this one, back to back, and their
own FPS figures (``summary.json``) are printed side by side. The CPU's name and vector
flags are printed with the figures (``benchmarks/avx2_only.py`` runs it as on an AVX2-only CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from frontier import cpu_line  # this folder is on the path when run as a script
from infer_fps import frames_of

from fer.device import set_thread_budget
from fer.inference.outputs import draw
from fer.inference.recognizer import EmotionRecognizer
from fer.shipped import shipped_model

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ("single_face.mp4", "short_hamilton_clip.mp4")
#: name -> recognizer settings; the first is the reference every other is compared with.
SETTINGS = {
    "full classifier: torch fp32, mirror, every frame": {"backend": "torch"},
    "onnxruntime fp32, mirror": {"int8": False},
    "onnxruntime int8, mirror (the default)": {},
    "int8, no mirror": {"flip": False},
    "int8, classify_every=2": {"classify_every": 2},
    "int8, classify_every=3": {"classify_every": 3},
    "int8, no mirror, classify_every=3": {"flip": False, "classify_every": 3},
}


def labels_and_fps(frames: list, cache: str, passes: int, **settings) -> tuple[list[list[str]], float]:
    """Each frame's labels, and the best FPS of ``passes`` passes over the video."""
    recognizer = EmotionRecognizer(device="cpu", onnx_cache=cache, **settings)
    recognizer.predict(frames[0].copy())  # warm-up
    best = 0.0
    for _ in range(passes):
        recognizer.reset()
        labels, start = [], time.perf_counter()
        for frame in frames:
            image = frame.copy()
            faces = recognizer.predict(image)
            draw(image, faces)
            labels.append([f.label for f in faces])
        best = max(best, len(frames) / (time.perf_counter() - start))
    return labels, best


def changed(labels: list[list[str]], reference: list[list[str]]) -> tuple[int, int]:
    """Faces whose label differs from the reference's, and faces compared (frames where both found the same count)."""
    pairs = [(a, b) for x, y in zip(labels, reference) if len(x) == len(y) for a, b in zip(x, y)]
    return sum(a != b for a, b in pairs), len(pairs)


def infer_fps(tree: Path, video: Path, threads: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "infer.py", f"source={video}", "display=false", f"threads={threads}",
                   f"output_dir={out}", f"hydra.run.dir={out}/run"]  # fmt: skip
        subprocess.run(command, cwd=tree, check=True, capture_output=True)
        return json.loads((Path(out) / "summary.json").read_text())["fps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3, help="passes over each video; the best FPS counts")
    parser.add_argument("--before", type=Path, help="another checkout: infer.py's FPS there and here")
    parser.add_argument("--models", nargs="*", default=[], help="shipped names or NAME=CKPT: rows fp32 and int8 each")
    args = parser.parse_args()
    settings = dict(SETTINGS)
    for item in args.models:
        name, _, ckpt = item.partition("=")
        path = str(Path(ckpt) if ckpt else shipped_model(name))
        settings[f"{name} fp32, mirror"] = {"ckpt_path": path, "int8": False}
        settings[f"{name} int8, mirror"] = {"ckpt_path": path}
    set_thread_budget(args.threads)
    print(f"{args.threads} threads; {cpu_line()}")
    print("| setting | video | FPS | faces whose label differs from the full classifier's |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        for name in VIDEOS:
            frames = frames_of(args.videos / name)
            reference = None
            for setting, values in settings.items():
                labels, fps = labels_and_fps(frames, cache, args.passes, **values)
                reference = reference or labels
                n, total = changed(labels, reference)
                share = 100 * n / max(total, 1)
                print(f"| {setting} | {name} | {fps:.1f} | {n} of {total} ({share:.1f} %) |", flush=True)
    if args.before:
        print("\n| video | infer.py FPS before | after |\n|---|---|---|")
        for name in VIDEOS:
            video = (args.videos / name).resolve()
            before, after = (infer_fps(tree, video, args.threads) for tree in (args.before, ROOT))
            print(f"| {name} | {before:.1f} | {after:.1f} |", flush=True)


if __name__ == "__main__":
    main()
