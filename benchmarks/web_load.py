"""Load on the web app's live WebSocket: N clients stream a real video at once, on loopback.

    python benchmarks/web_load.py                 # 1 client, then 4, 20 s each
    python benchmarks/web_load.py --clients 4 --seconds 60
    python benchmarks/web_load.py --clients 4 --bombs   # and one attacker sending decompression bombs

Starts ``python infer.py app=web`` on a free port, then each client sends JPEG frames of
``../shared/data/videos/single_face.mp4`` (looped) and waits for each answer before the
next frame, as the page does. Prints per-client answered FPS and p50/p95 round-trip
latency, errors, and the server's resident memory after a warm-up and at the end. With
``--bombs`` one more client sends, in turn, a 196-megapixel PNG of 190 KB as an upload and
as a live frame, as fast as the server answers, and its refusals are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "videos" / "single_face.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def web_server(run_dir: Path, *overrides: str, timeout: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """``infer.py app=web`` on a free loopback port; yields its address and process, stops it after."""
    port = free_port()
    log = (run_dir / "server.log").open("w")
    command = [sys.executable, str(ROOT / "infer.py"), "app=web", f"web.port={port}", f"hydra.run.dir={run_dir}"]
    server = subprocess.Popen([*command, *overrides], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"the web app exited with {server.returncode}: {(run_dir / 'server.log').read_text()}"
                )
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/api/config", timeout=2).read()
                break
            if time.monotonic() > end:
                raise TimeoutError(f"the web app did not answer within {timeout} s")
            time.sleep(0.5)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def jpeg_frames(video: Path = VIDEO, limit: int = 120) -> list[bytes]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < limit and (frame := capture.read())[0]:
        frames.append(cv2.imencode(".jpg", frame[1], [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    if not frames:
        raise FileNotFoundError(f"{video}: no frames")
    return frames


def bomb_png(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` grey pixels, all zero: a few hundred KB for 196 Mpx."""
    deflate, row = zlib.compressobj(9), bytes(width + 1)  # filter byte 0, then the row
    body = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def bombard(url: str, bomb: bytes, stop: threading.Event, result: dict) -> None:
    """An attacker: a bomb as an upload, then as a live frame, until ``stop``; counts the answers by kind."""
    from websockets.sync.client import connect

    answers: dict[str, int] = {}
    with connect(url.replace("http", "ws") + "/ws/live", open_timeout=30) as ws:
        json.loads(ws.recv(timeout=60))  # ready
        while not stop.is_set():
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}/api/upload", data=bomb), timeout=60)
                kind = "upload accepted"
            except urllib.error.HTTPError as error:
                kind = f"upload {error.code}"
            answers[kind] = answers.get(kind, 0) + 1
            ws.send(bomb)
            kind = "frame refused" if "error" in json.loads(ws.recv(timeout=60)) else "frame accepted"
            answers[kind] = answers.get(kind, 0) + 1
    result.update(answers)


def stream(url: str, frames: list[bytes], seconds: float, result: dict) -> None:
    """One client: send a frame, wait for its answer, repeat for ``seconds``; fills ``result``."""
    from websockets.sync.client import connect

    latencies, errors, faces = [], [], 0
    try:
        with connect(url.replace("http", "ws") + "/ws/live", open_timeout=30, close_timeout=5) as ws:
            json.loads(ws.recv(timeout=60))  # ready
            start = time.perf_counter()
            k = 0
            while time.perf_counter() - start < seconds:
                sent = time.perf_counter()
                ws.send(frames[k % len(frames)])
                answer = json.loads(ws.recv(timeout=30))
                latencies.append(1000 * (time.perf_counter() - sent))
                if "error" in answer:
                    errors.append(answer["error"])
                faces += len(answer.get("faces", []))
                k += 1
            result["seconds"] = time.perf_counter() - start
    except Exception as error:  # a client's failure is a result here, not a crash of the benchmark
        errors.append(repr(error))
    result.update(latencies=latencies, errors=errors, faces=faces)


def load(url: str, clients: int, seconds: float, frames: list[bytes], bomb: bytes | None = None) -> list[dict]:
    """``clients`` :func:`stream` s at once, and with ``bomb`` a :func:`bombard` beside them; one result
    dict each (the attacker's last)."""
    results = [{} for _ in range(clients)]
    threads = [threading.Thread(target=stream, args=(url, frames, seconds, r)) for r in results]
    stop, attacker = threading.Event(), {}
    if bomb is not None:
        threads.append(threading.Thread(target=bombard, args=(url, bomb, stop, attacker)))
    for t in threads:
        t.start()
    for t in threads[:clients]:
        t.join(seconds + 120)
    stop.set()
    for t in threads[clients:]:
        t.join(120)
    return results + ([attacker] if bomb is not None else [])


def report(clients: int, results: list[dict]) -> str:
    lines = []
    for k, r in enumerate(results):
        lat = np.array(r["latencies"]) if r["latencies"] else np.array([np.nan])
        fps = len(r["latencies"]) / r.get("seconds", float("nan"))
        lines.append(
            f"{clients} client(s), client {k}: {fps:5.1f} FPS, latency p50 {np.percentile(lat, 50):6.1f} ms, "
            f"p95 {np.percentile(lat, 95):6.1f} ms, {len(r['latencies'])} answers, {len(r['errors'])} errors"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--bombs", action="store_true", help="one more client sending decompression bombs")
    parser.add_argument("overrides", nargs="*", help="infer.py overrides, e.g. web.workers=1 threads=1")
    args = parser.parse_args()
    frames = jpeg_frames()
    bomb = bomb_png(14_000, 14_000) if args.bombs else None
    run_dir = ROOT / "outputs" / "benchmarks" / f"web_load_{time.strftime('%Y%m%d_%H%M%S')}"
    run_dir.mkdir(parents=True)
    with web_server(run_dir, *args.overrides) as (url, server):
        load(url, 1, 3, frames)  # warm-up
        for clients in args.clients:
            before = rss_mb(server.pid)
            results = load(url, clients, args.seconds, frames, bomb)
            print(report(clients, results[:clients]))
            if bomb is not None:
                print(f"attacker: {results[-1]}")
            print(f"server memory: {before:.0f} MiB before, {rss_mb(server.pid):.0f} MiB after")


if __name__ == "__main__":
    main()
