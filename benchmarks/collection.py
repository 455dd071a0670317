"""Throughput over a collection of videos, in one run: realtime mode, throughput mode, 2 shards.

    python benchmarks/collection.py [--videos 40] [--data ../shared/data] [--threads 2]

Builds a collection of ``--videos`` files from the shared videos (links, cycling through
``single_face.mp4``, ``short_hamilton_clip.mp4``, ``face_noface.mov`` and ``no_face.mp4``)
and analyses it as ``infer.py source=<folder> save_media=false`` does, three ways, each into a
fresh folder: realtime mode (``batch_frames=1``), throughput mode (``batch_frames=16``), and
throughput mode as two shards run at once (``shard=0/1 shards=2``, one thread each). Prints
frames per second of each (frames over wall time), the ratios, and for throughput mode the
FPS of the first and last four videos (one of each source) and the resident memory after the
first four and after all (cost linear in frames, memory flat).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from web_load import rss_mb  # this folder is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("single_face.mp4", "short_hamilton_clip.mp4", "face_noface.mov", "no_face.mp4")


def build(folder: Path, data: Path, count: int) -> Path:
    for k in range(count):
        source = data / "videos" / SOURCES[k % len(SOURCES)]
        (folder / f"v{k:03d}{source.suffix}").symlink_to(source)
    return folder


def infer(collection: Path, out: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "infer.py"), f"source={collection}", f"output_dir={out}"]
    command += [f"hydra.run.dir={out}/run", "save_media=false", *overrides]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(*processes: subprocess.Popen, watch: Path | None = None) -> tuple[float, list[float]]:
    """Seconds until every process ended, and (with ``watch``, a collection folder) the first process's
    resident memory in MiB each time a video of it finished."""
    start, memory, done = time.perf_counter(), [], 0
    while any(p.poll() is None for p in processes):
        if watch is not None and processes[0].poll() is None:
            finished = len(list(watch.glob("dataset/*/part-0.parquet")))
            if finished > done:
                done, memory = finished, [*memory, rss_mb(processes[0].pid)]
        time.sleep(0.05)
    if any(p.returncode != 0 for p in processes):
        raise RuntimeError(f"infer.py failed: {[p.args for p in processes]}")
    return time.perf_counter() - start, memory


def frames(out: Path) -> list[tuple[int, float]]:
    """Frames and FPS of every analysed video, by video id."""
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("videos/*/summary.json"))]
    return [(s["frames"], s["fps"]) for s in summaries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(f"{os.cpu_count()} cores; bf16: {'avx512_bf16' in flags or 'amx_bf16' in flags}; threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        collection = build(tmp / "videos", args.data.resolve(), args.videos)
        threads = f"threads={args.threads}"
        realtime, _ = timed(infer(collection, tmp / "a", threads, "batch_frames=1"))
        throughput, memory = timed(infer(collection, tmp / "b", threads), watch=tmp / "b")
        sharded, _ = timed(*(infer(collection, tmp / "c", "threads=1", f"shard={k}", "shards=2") for k in range(2)))
        total = sum(f for f, _ in frames(tmp / "a"))
        assert sum(f for f, _ in frames(tmp / "b")) == sum(f for f, _ in frames(tmp / "c")) == total
        for name, seconds in [
            ("realtime mode (batch_frames=1)", realtime),
            ("throughput mode (batch_frames=16)", throughput),
            ("throughput mode, 2 shards of 1 thread", sharded),
        ]:
            print(f"{name}: {total} frames in {seconds:.0f} s, {total / seconds:.1f} FPS ({realtime / seconds:.2f}x)")
        fps, n = [f for _, f in frames(tmp / "b")], len(SOURCES)  # the first and last n: one of each source
        first, last = sum(fps[:n]) / n, sum(fps[-n:]) / n
        print(f"throughput mode, mean FPS of the first / last {n} videos: {first:.1f} / {last:.1f}")
        if len(memory) > n:
            first, last = memory[n - 1], memory[-1]
            print(f"throughput mode, resident memory after the first {n} / all videos: {first:.0f} / {last:.0f} MiB")


if __name__ == "__main__":
    main()
