"""The web app under attack and under faults, through the real app: every input bounded, every stop clean."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from benchmarks.web_load import bomb_png, jpeg_frames, rss_mb, web_server
from fer.web.app import create_app
from fer.web.images import ImageLimits, Rejected, decode_image
from fer.web.jobs import Jobs, VideoJob
from fer.web.recognizers import Recognizers, model_names
from fer.web.settings import WebSettings
from tests.conftest import DATA, ROOT, need


def png(width: int, height: int) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png(14_000, 14_000)


@pytest.fixture(scope="module")
def recognizers():
    return Recognizers(model_names([None]), ["blazeface", "haar"])


def _client(recognizers, run_dir: Path, **settings) -> TestClient:
    return TestClient(create_app(recognizers, run_dir, WebSettings(allowed_hosts=["testserver"], **settings)))


@pytest.fixture
def client(recognizers, tmp_path):
    with _client(recognizers, tmp_path, max_upload_mb=2) as client:
        yield client


def _left(run_dir: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(run_dir)) for p in (run_dir / "web").rglob("*")) if (run_dir / "web").exists() else []
    )


def test_the_gate_reads_the_declared_size_before_decoding(bomb):
    assert len(bomb) < 400_000
    start = time.perf_counter()
    with pytest.raises(Rejected, match="far more pixels") as refused:
        decode_image(bomb, ImageLimits())
    assert refused.value.status == 413 and time.perf_counter() - start < 1  # no pixel was decoded
    with pytest.raises(Rejected, match="10000x10000 pixels; at most 50,000,000") as refused:
        decode_image(bomb_png(10_000, 10_000), ImageLimits())  # under Pillow's own bomb limit: ours holds
    with pytest.raises(Rejected, match="each side must be at least 16"):
        decode_image(png(1, 3841), ImageLimits())
    with pytest.raises(Rejected, match="not a JPEG, PNG"):
        decode_image(b"GIF89a" + bytes(40), ImageLimits())
    assert decode_image(png(64, 48), ImageLimits()).shape == (48, 64, 3)


def test_a_bomb_upload_is_refused_and_leaves_nothing(client, tmp_path, bomb):
    answer = client.post("/api/upload?name=bomb.png", content=bomb)
    assert answer.status_code == 413 and "pixels" in answer.json()["detail"]
    assert _left(tmp_path) == []


ODD_SHAPES = [(1, 3841, 422), (1, 20000, 422), (20000, 1, 422), (4, 4, 422), (20000, 16, 413)]


@pytest.mark.parametrize(("width", "height", "status"), ODD_SHAPES)
def test_odd_shapes_get_a_4xx_and_leave_nothing(client, tmp_path, width, height, status):
    answer = client.post("/api/upload?name=odd.png", content=png(width, height))
    assert answer.status_code == status and f"{width}x{height} pixels" in answer.json()["detail"]
    assert _left(tmp_path) == []


def test_live_frames_are_bounded_and_the_stream_goes_on(recognizers, tmp_path, bomb):
    frame = jpeg_frames(need(DATA / "videos" / "single_face.mp4"), 1)[0]
    with _client(recognizers, tmp_path, max_frame_mb=0.2) as client:
        for detector in ("blazeface", "haar"):
            with client.websocket_connect(f"/ws/live?detector={detector}") as ws:
                assert ws.receive_json()["ready"]
                for bad, message in [
                    (bomb, "far more pixels"),  # under 0.2 MB, but 196 Mpx declared
                    (b"", "the image is empty"),
                    (png(1, 1), "at least 16"),
                    (png(20000, 16), "at most 16,384"),
                    (bytes(300_000), "at most 209,715 are taken"),
                    (b"not a picture", "not a JPEG, PNG"),
                ]:
                    ws.send_bytes(bad)
                    assert message in ws.receive_json()["error"]
                ws.send_bytes(frame)  # the same connection still answers
                assert len(ws.receive_json()["faces"]) == 1


def test_other_origins_and_hosts_are_refused(client):
    evil = {"origin": "http://evil.example"}
    photo = png(64, 64)
    assert client.post("/api/upload", content=photo, headers={**evil, "content-type": "text/plain"}).status_code == 403
    assert client.get("/api/config", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/live", headers=evil) as ws:
        ws.receive_json()
    same = {"origin": "http://testserver"}
    assert client.get("/api/config", headers=same).status_code == 200
    with client.websocket_connect("/ws/live", headers=same) as ws:
        assert ws.receive_json()["ready"]


def test_a_token_guards_every_route_and_becomes_a_cookie(recognizers, tmp_path):
    with _client(recognizers, tmp_path, token="s3cret-token") as client:
        assert client.get("/api/config").status_code == 401
        assert client.get("/", params={"token": "wrong"}).status_code == 401
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/live") as ws:
            ws.receive_json()
        assert client.get("/api/config", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        page = client.get("/", params={"token": "s3cret-token"})
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert client.get("/api/config").status_code == 200  # the cookie now
        with client.websocket_connect("/ws/live") as ws:
            assert ws.receive_json()["ready"]


def test_uploads_and_results_expire(client, tmp_path):
    video = need(DATA / "videos" / "single_face.mp4").read_bytes()
    never_watched = client.post("/api/upload", content=video).json()["id"]
    photo = client.post("/api/upload", content=need(DATA / "photos" / "obama.jpg").read_bytes()).json()["id"]
    jobs: Jobs = client.app.state.web.jobs
    assert jobs.sweep() == [] and never_watched in jobs.videos  # an hour to go
    assert sorted(jobs.sweep(now=time.time() + 3601)) == sorted([never_watched, photo])
    assert _left(tmp_path) == [] and not jobs.videos
    with client.websocket_connect(f"/ws/jobs/{never_watched}") as ws:
        assert "no such video job" in ws.receive_json()["error"]


def test_the_sweeper_keeps_running_jobs(tmp_path):
    jobs = Jobs(tmp_path, keep_seconds=60)
    for job in ("a" * 32, "b" * 32):
        (tmp_path / job).mkdir()
    running = VideoJob(("fer2013", "haar"), "clip.mp4")
    running.worker = __import__("asyncio").new_event_loop().create_future()  # not done
    jobs.videos["a" * 32] = running
    assert jobs.sweep(now=time.time() + 61) == ["b" * 32]
    assert (tmp_path / ("a" * 32)).exists()


def test_the_model_cache_is_bounded_least_recently_used_first():
    recognizers = Recognizers(model_names([None, "fer2013_deep_cnn"]), ["haar"], max_loaded=1)
    first = weakref.ref(recognizers.get("fer2013", "haar").backend)
    recognizers.get("fer2013_deep_cnn", "haar")
    assert list(recognizers.loaded) == [("fer2013_deep_cnn", "haar")]
    gc.collect()
    assert first() is None  # the dropped model's weights are freed, not merely unlisted


def test_a_model_that_cannot_load_names_no_server_path(tmp_path):
    hidden = tmp_path / "private" / "x.ckpt"
    recognizers = Recognizers({"x": str(hidden)}, ["haar"])
    with pytest.raises(HTTPException) as refused:
        recognizers.get("x", "haar")
    assert refused.value.status_code == 503 and str(tmp_path) not in refused.value.detail


def test_onnxruntime_keeps_no_telemetry(tmp_path):
    script = "import fer.face.detection as d, numpy as np; d.BlazeFaceDetector()(np.zeros((64, 64, 3), np.uint8))"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(tmp_path.rglob("*")), "onnxruntime wrote into the user's home"


def _long_video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (320, 180))
    for _ in range(10):
        for frame in jpeg_frames(need(DATA / "videos" / "single_face.mp4"), 72):
            writer.write(cv2.resize(cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR), (320, 180)))
    writer.release()
    return path


@pytest.mark.slow
def test_a_server_under_bombs_stays_small_and_sigterm_mid_job_leaves_nothing(tmp_path, bomb):
    import urllib.request

    from websockets.sync.client import connect

    video = _long_video(tmp_path / "long.mp4").read_bytes()
    with web_server(tmp_path, "web.detectors=[haar]") as (url, server):
        before = rss_mb(server.pid)
        statuses = []

        def post() -> None:
            request = urllib.request.Request(f"{url}/api/upload", data=bomb, method="POST")
            try:
                urllib.request.urlopen(request, timeout=60)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)

        threads = [threading.Thread(target=post) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [413] * 3 and rss_mb(server.pid) - before < 200
        upload = urllib.request.Request(f"{url}/api/upload", data=video, method="POST")
        job = json.loads(urllib.request.urlopen(upload, timeout=60).read())["id"]
        with connect(url.replace("http", "ws") + f"/ws/jobs/{job}", open_timeout=30) as ws:
            while json.loads(ws.recv(timeout=60)).get("progress", 0) < 5:
                pass
            server.send_signal(signal.SIGTERM)
            assert server.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert _left(tmp_path) == []  # no upload, no .partial file, no job folder
