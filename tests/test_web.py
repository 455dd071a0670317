"""The web app's API (fer/web/app.py) on real photos and videos, and a bounded load test on loopback."""

from __future__ import annotations

import csv
import io
import json
import time

import cv2
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from benchmarks.web_load import jpeg_frames, load, rss_mb, web_server
from fer.inference.settings import RecognizerSettings
from fer.web.app import create_app
from fer.web.recognizers import Recognizers, model_names
from fer.web.settings import WebSettings
from tests.conftest import DATA, need


@pytest.fixture(scope="module")
def recognizers():
    return Recognizers(model_names([None]), ["blazeface", "haar"])


@pytest.fixture
def client(recognizers, tmp_path):
    with TestClient(
        create_app(recognizers, tmp_path, WebSettings(max_upload_mb=2, allowed_hosts=["testserver"]))
    ) as client:
        yield client


def _frames(n: int) -> list[bytes]:
    return jpeg_frames(need(DATA / "videos" / "single_face.mp4"), n)


def test_config_offers_names_never_paths(client):
    config = client.get("/api/config").json()
    assert config == {
        "models": ["fer2013"],
        "detectors": ["blazeface", "haar"],
        "max_upload_mb": 2,
        "neutral_mark": True,
    }
    page = client.get("/")
    assert page.status_code == 200 and '<script src="app.js">' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert client.get("/app.js").status_code == client.get("/style.css").status_code == 200


def test_photo_upload_lists_every_face_and_serves_results(client, tmp_path):
    photo = need(DATA / "photos" / "multi_face.jpg").read_bytes()
    answer = client.post("/api/upload?name=../../multi_face.jpg", content=photo).json()
    assert answer["kind"] == "image" and answer["name"] == "multi_face.jpg"
    assert len(answer["faces"]) == 5
    assert all(0.5 <= f["score"] <= 1 and abs(sum(f["probabilities"].values()) - 1) < 1e-2 for f in answer["faces"])
    image = client.get(answer["annotated"])
    assert image.headers["content-type"] == "image/png"
    rows = list(csv.DictReader(io.StringIO(client.get(answer["predictions"]).text)))
    assert len(rows) == 5
    stored = list((tmp_path / "web").iterdir())
    assert [p.name for p in stored] == [answer["id"]]  # a generated name, never the client's
    assert sorted(p.name for p in stored[0].iterdir()) == ["annotated.png", "predictions.csv"]  # no original kept
    assert {r["source"] for r in rows} == {"multi_face.jpg"}


#: Bad uploads: content (a callable, so that a data file is read when the test runs, never at import), status, message.
BAD_UPLOADS = {
    "text": (lambda: b"just some text, not a picture\n", 415, "not an image or a video"),
    "corrupt-jpeg": (lambda: need(DATA / "photos" / "obama.jpg").read_bytes()[:300], 415, "not an image or a video"),
    "empty": (lambda: b"", 400, "empty"),
    "too-large": (lambda: b"x" * (3 * 2**20), 413, "larger than the limit of 2 MB"),
}


@pytest.mark.parametrize("kind", BAD_UPLOADS)
def test_bad_uploads_get_a_4xx_and_leave_nothing(client, tmp_path, kind):
    content, status, message = BAD_UPLOADS[kind]
    answer = client.post("/api/upload?name=photo.jpg", content=content())
    assert answer.status_code == status and message in answer.json()["detail"]
    assert not any((tmp_path / "web").glob("*"))
    assert client.get("/api/config").status_code == 200  # the server goes on


def test_an_upload_without_a_declared_size_is_cut_at_the_limit(client, tmp_path):
    chunks = (b"x" * 2**20 for _ in range(5))  # chunked: no Content-Length to refuse up front
    answer = client.post("/api/upload", content=chunks)
    assert answer.status_code == 413 and not any((tmp_path / "web").glob("*"))


def test_names_not_offered_and_paths_are_refused(client):
    assert client.post("/api/upload?model=/etc/passwd", content=b"x").status_code == 400
    assert client.post("/api/upload?detector=sfd", content=b"x").status_code == 400
    assert client.get("/api/results/../../etc/passwd").status_code == 404
    assert client.get(f"/api/results/{'0' * 32}/upload").status_code == 404
    with client.websocket_connect("/ws/live?model=other") as ws:
        assert "unknown model" in ws.receive_json()["error"]


def test_live_stream_tracks_one_face_and_answers_the_newest_frame_only(client):
    frames = _frames(40)
    with client.websocket_connect("/ws/live?detector=blazeface") as ws:
        assert ws.receive_json()["ready"]
        answers = []
        for frame in frames[:20]:  # as the page does: one frame in flight
            ws.send_bytes(frame)
            answers.append(ws.receive_json())
        assert all(len(a["faces"]) == 1 and a["faces"][0]["id"] == 1 for a in answers)
        assert answers[0]["width"] == 640 and answers[0]["dropped"] == 0
        for frame in frames[20:]:  # a burst: frames that arrive while one is processed replace each other
            ws.send_bytes(frame)
        time.sleep(3)
        ws.send_bytes(b"not a jpeg")
        burst = []
        while not burst or "error" not in burst[-1]:
            burst.append(ws.receive_json())
        assert len(burst) < 21 and burst[-1]["dropped"] == 21 - len(burst)
    with client.websocket_connect("/ws/live?detector=blazeface") as ws:  # a new connection, a new tracker
        ws.receive_json()
        ws.send_bytes(frames[0])
        assert ws.receive_json()["faces"][0]["id"] == 1


def _live(ws, frames: list[bytes], mark_before: int | None = None) -> list[dict]:
    """The answers to ``frames`` sent one at a time, with a neutral mark sent before frame ``mark_before``."""
    assert ws.receive_json()["ready"]
    answers = []
    for i, frame in enumerate(frames):
        if i == mark_before:
            ws.send_text(json.dumps({"mark": "neutral"}))
        ws.send_bytes(frame)
        answers.append(ws.receive_json())
    return answers


def test_a_neutral_mark_reads_later_frames_against_the_resting_face(client):
    frames = _frames(45)  # single_face.mp4: a resting face, then a smile from about frame 17
    with client.websocket_connect("/ws/live") as ws:
        marked = _live(ws, frames, mark_before=5)
    with client.websocket_connect("/ws/live") as ws:
        plain = _live(ws, frames)
    assert [a.get("marked") for a in marked] == [None] * 5 + [1] + [None] * 39  # the face of frame 4
    top = [[max(a["faces"][0]["probabilities"].values()) for a in answers] for answers in (marked, plain)]
    assert all(a["faces"][0]["label"] == "neutral" for a in plain[:12]) and min(top[1][:12]) > 0.8
    assert max(top[0][9:12]) < 0.3  # the same resting face divided by itself: no class stands out
    assert all(a["faces"][0]["label"] == "happy" for a in marked[30:] + plain[30:])  # the smile stays happy
    happy = [[a["faces"][0]["probabilities"]["happy"] for a in answers[30:]] for answers in (marked, plain)]
    assert sum(happy[0]) > sum(happy[1])  # and is surer against this person's rest
    with client.websocket_connect("/ws/live") as ws:
        ws.receive_json()
        ws.send_text("mark neutral")
        assert "only text message" in ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


def test_a_server_that_adapts_by_the_mean_offers_no_neutral_mark(tmp_path):
    recognizers = Recognizers(model_names([None]), ["blazeface"], RecognizerSettings(adapt="mean"))
    with TestClient(create_app(recognizers, tmp_path, WebSettings(allowed_hosts=["testserver"]))) as client:
        assert client.get("/api/config").json()["neutral_mark"] is False
        with client.websocket_connect("/ws/live") as ws:
            ws.receive_json()
            ws.send_text(json.dumps({"mark": "neutral"}))
            assert "'mean'" in ws.receive_json()["error"]


def test_video_upload_reports_progress_and_tracks(client, tmp_path):
    video = need(DATA / "videos" / "single_face.mp4").read_bytes()
    job = client.post("/api/upload?name=clip.mov", content=video).json()
    assert job["kind"] == "video"
    progress = []
    with client.websocket_connect(f"/ws/jobs/{job['id']}") as ws:
        while "done" not in (message := ws.receive_json()):
            progress.append(message["progress"])
    assert message["frames"] == 72 and [t["id"] for t in message["tracks"]] == [1]
    assert message["tracks"][0]["frames"] == 72 and len(message["tracks"][0]["probabilities"]) <= 400
    assert progress == sorted(progress) and message["annotated"].endswith(".webm")
    webm = tmp_path / "web" / job["id"] / "annotated.webm"
    assert sum(1 for _ in _read_all(webm)) == 72
    assert not (tmp_path / "web" / job["id"] / "upload").exists()


def _read_all(path):
    capture = cv2.VideoCapture(str(path))
    while (frame := capture.read())[0]:
        yield frame[1]


def test_a_client_leaving_mid_video_stops_its_job(client, tmp_path):
    long = (tmp_path / "long.mp4").as_posix()
    writer = cv2.VideoWriter(long, cv2.VideoWriter_fourcc(*"mp4v"), 24, (320, 180))  # 720 frames under 2 MB
    for _ in range(10):
        for frame in _read_all(need(DATA / "videos" / "single_face.mp4")):
            writer.write(cv2.resize(frame, (320, 180)))
    writer.release()
    job = client.post("/api/upload", content=(tmp_path / "long.mp4").read_bytes()).json()
    with client.websocket_connect(f"/ws/jobs/{job['id']}") as ws:
        while ws.receive_json().get("progress", 0) < 10:
            pass
    folder = tmp_path / "web" / job["id"]
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folder.exists()  # the job stopped and its files were freed
    with client.websocket_connect(f"/ws/jobs/{job['id']}") as ws:  # and it cannot be resumed
        assert "no such video job" in ws.receive_json()["error"]


@pytest.mark.slow
def test_four_clients_streaming_at_once_are_all_answered(tmp_path):
    frames = _frames(120)
    with web_server(tmp_path, "web.detectors=[blazeface]") as (url, server):
        load(url, 1, 3, frames)  # warm-up: the first frames allocate what every later one reuses
        before = rss_mb(server.pid)
        results = load(url, 4, 20, frames)
        after = rss_mb(server.pid)
    for r in results:
        assert not r["errors"] and len(r["latencies"]) >= 20 and r["faces"] >= len(r["latencies"]) - 2
    assert after - before < 100, f"server memory grew from {before:.0f} to {after:.0f} MiB"


def test_model_names_are_short_names_or_file_stems(tmp_path):
    names = model_names([None, "fer2013", str(tmp_path / "a" / "best.ckpt"), str(tmp_path / "b" / "best.ckpt")])
    assert list(names) == ["fer2013", "best", "best_2"]
    assert names["fer2013"].endswith("fer2013_resnet18.ckpt") and names["best_2"].endswith("b/best.ckpt")
