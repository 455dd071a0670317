"""The web app around :class:`~fer.inference.recognizer.EmotionRecognizer`: ``python infer.py app=web``.

- ``GET /``: the page (``fer/web/static``: plain HTML, JS and CSS, nothing fetched from elsewhere).
- ``GET /api/config``: the models and detectors the page may choose (names only; paths
  stay on the server).
- ``WS /ws/live?model=&detector=``: the client sends JPEG frames (binary messages) and
  gets one JSON answer per processed frame; the server keeps only the newest frame that
  arrived while it was busy (the older ones are dropped and counted, never queued), and
  every connection has its own tracker.
- ``POST /api/upload?model=&detector=&name=``: the raw bytes of an image or video (at
  most ``max_upload_mb``), checked by decoding; an image is recognised and answered at
  once (its original is not kept), a video is processed while a client watches
  ``WS /ws/jobs/{id}`` (progress, then the result); a watcher that leaves stops the job.
- ``GET /api/results/{id}/{file}``: a job's annotated image or video and its predictions CSV.

Uploads and results live only under ``<run dir>/web/<random id>/`` with fixed names. The
routes are module-level functions over the objects :func:`create_app` keeps in
``app.state.web`` (:class:`WebState`): the recognizers, the video-job registry and the
worker bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import re
import shutil
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import cv2
import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError

from fer.inference.loop import run
from fer.inference.outputs import PredictionWriter, draw
from fer.inference.recognizer import EmotionRecognizer, Face
from fer.inference.settings import RecognizerSettings
from fer.inference.sources import Frame
from fer.shipped import DEFAULT_MODEL, SHIPPED_MODELS, shipped_model

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: Files of a job the page may fetch.
RESULT_FILES = {"annotated.webm", "annotated.png", "predictions.csv"}
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
#: Largest image the server decodes, in pixels (a small PNG can declare a huge canvas).
MAX_IMAGE_PIXELS = 50_000_000
#: Points of a video's probability timeline sent to the page per track.
TIMELINE_POINTS = 400


class Recognizers:
    """The configured models and detectors, each pair loaded once on first use and forked per client.

    Args:
        models: page name -> checkpoint (see :func:`model_names`); the first is the default.
        detectors: detector names the page may choose; the first is the default.
        settings: the recognizers' settings (their ``detector`` is the pair's).
    """

    def __init__(
        self, models: dict[str, str], detectors: list[str], settings: RecognizerSettings | None = None
    ) -> None:
        if not models or not detectors:
            raise ValueError("the web app needs at least one model and one detector")
        self.models, self.detectors = dict(models), list(detectors)
        self.settings = settings or RecognizerSettings()
        self._loaded: dict[tuple[str, str], EmotionRecognizer] = {}
        self._lock = threading.Lock()

    def resolve(self, model: str | None, detector: str | None) -> tuple[str, str]:
        """Checked names (the defaults for ``None``). Raises HTTPException 400 for a name not offered."""
        model = model or next(iter(self.models))
        detector = detector or self.detectors[0]
        if model not in self.models:
            raise HTTPException(400, f"unknown model {model!r}; this server offers {list(self.models)}")
        if detector not in self.detectors:
            raise HTTPException(400, f"unknown detector {detector!r}; this server offers {self.detectors}")
        return model, detector

    def get(self, model: str, detector: str) -> EmotionRecognizer:
        """A fresh-tracker :meth:`~EmotionRecognizer.fork` of the loaded pair (blocking: call in a thread).

        Raises:
            HTTPException 503: the model or detector cannot be loaded here (the reason in the message).
        """
        with self._lock:
            if (model, detector) not in self._loaded:
                try:
                    settings = replace(self.settings, detector=detector)
                    self._loaded[model, detector] = EmotionRecognizer(self.models[model], settings)
                except (OSError, RuntimeError, ValueError, ImportError) as error:
                    message = f"cannot load model {model!r} with detector {detector!r}: {error}"
                    raise HTTPException(503, message) from error
            return self._loaded[model, detector].fork()


def face_json(face: Face) -> dict[str, Any]:
    """A :class:`Face` as the page reads it."""
    return {
        "id": face.track_id,
        "box": list(face.box),
        "label": face.label,
        "score": None if face.score is None else round(face.score, 3),
        "probabilities": {k: round(v, 4) for k, v in face.probabilities.items()},
    }


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """The rows of a predictions CSV written by :func:`~fer.inference.loop.run`, as the page reads them."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    faces = []
    for row in rows:
        probs = {k[2:]: float(v) for k, v in row.items() if k.startswith("p_")}
        box = [int(row[k]) for k in ("x1", "y1", "x2", "y2")]
        score = float(row["score"]) if row["score"] else None
        faces.append(
            {"frame": int(row["frame"]), "time": float(row["time"]), "id": int(row["face"]), "box": box}
            | {"label": row["label"], "score": score, "probabilities": probs}
        )
    return faces


def timelines(rows: list[dict[str, Any]], points: int = TIMELINE_POINTS) -> list[dict[str, Any]]:
    """Per track: frames seen, most frequent label, and its probabilities over time (at most ``points``)."""
    by_track: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_track[row["id"]].append(row)
    tracks = []
    for track_id, seen in sorted(by_track.items()):
        labels = [r["label"] for r in seen]
        step = max(1, len(seen) // points)
        tracks.append(
            {
                "id": track_id,
                "frames": len(seen),
                "label": max(set(labels), key=labels.count),
                "time": [r["time"] for r in seen[::step]],
                "probabilities": [r["probabilities"] for r in seen[::step]],
            }
        )
    return tracks


def sniff(path: Path) -> str:
    """``"image"`` or ``"video"`` by decoding the file's content (never its name).

    Raises:
        HTTPException 415: neither; 413: an image of more than :data:`MAX_IMAGE_PIXELS`.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise HTTPException(413, f"the image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} allowed")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        pass
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None:
        return "image"
    capture = cv2.VideoCapture(str(path))
    try:
        if capture.isOpened() and capture.read()[0]:
            return "video"
    finally:
        capture.release()
    raise HTTPException(415, "not an image or a video this server can decode")


@dataclass
class VideoJob:
    """An uploaded video waiting for (or being processed for) its one watcher."""

    names: tuple[str, str]
    name: str
    started: bool = False


@dataclass
class WebState:
    """What the routes share (``app.state.web``): see :func:`create_app` for the arguments."""

    recognizers: Recognizers
    jobs_dir: Path
    max_upload_mb: float
    limiter: anyio.CapacityLimiter
    jobs: dict[str, VideoJob] = field(default_factory=dict)

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    async def in_worker(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a thread, at most ``workers`` of them at once over all clients."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)


router = APIRouter()


def _state(connection: Request | WebSocket) -> WebState:
    return connection.app.state.web


@router.get("/api/config")
def config(request: Request) -> dict[str, Any]:
    web = _state(request)
    recognizers = web.recognizers
    return {"models": list(recognizers.models), "detectors": recognizers.detectors, "max_upload_mb": web.max_upload_mb}


class LiveSession:
    """One live client: its own tracker, and a slot that keeps only the newest frame that arrived
    while the last one was processed (older ones are dropped and counted, never queued)."""

    def __init__(self, recognizer: EmotionRecognizer) -> None:
        self.recognizer = recognizer
        self.frame: bytes | None = None
        self.dropped, self.open = 0, True
        self.arrived = asyncio.Event()

    async def receive(self, socket: WebSocket) -> None:
        """Put every frame the client sends into the slot until it leaves."""
        try:
            while True:
                data = await socket.receive_bytes()
                self.dropped += self.frame is not None  # a frame not yet processed is replaced
                self.frame = data
                self.arrived.set()
        except (WebSocketDisconnect, RuntimeError, KeyError):
            self.open = False
            self.arrived.set()

    async def next_frame(self) -> bytes | None:
        """The newest frame once one has arrived; ``None`` when the client has left."""
        while self.open:
            await self.arrived.wait()
            self.arrived.clear()
            data, self.frame = self.frame, None
            if data is not None and self.open:
                return data
        return None

    def process(self, data: bytes) -> dict[str, Any]:
        """The answer to one frame (a JPEG or PNG): its faces, its size and the server's time."""
        start = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return {"error": "a frame that is not a JPEG or PNG image was skipped"}
        faces = self.recognizer.predict(image, track=True)
        return {
            "faces": [face_json(f) for f in faces],
            "width": image.shape[1],
            "height": image.shape[0],
            "class_names": self.recognizer.class_names,
            "server_ms": round(1000 * (time.perf_counter() - start), 1),
        }


async def _recognizer(socket: WebSocket, names: tuple[str, str]) -> EmotionRecognizer | None:
    """The pair's recognizer for a socket; on a load error the client is told and the socket closed."""
    try:
        return await anyio.to_thread.run_sync(_state(socket).recognizers.get, *names)
    except HTTPException as error:
        await socket.send_json({"error": error.detail})
        await socket.close(code=1008)
        return None


@router.websocket("/ws/live")
async def live(socket: WebSocket, model: str | None = None, detector: str | None = None) -> None:
    await socket.accept()
    try:
        names = _state(socket).recognizers.resolve(model, detector)
    except HTTPException as error:
        await socket.send_json({"error": error.detail})
        await socket.close(code=1008)
        return
    recognizer = await _recognizer(socket, names)
    if recognizer is None:
        return
    session = LiveSession(recognizer)
    receiver = asyncio.create_task(session.receive(socket))
    await socket.send_json({"ready": True, "model": names[0], "detector": names[1]})
    try:
        while (data := await session.next_frame()) is not None:
            answer = await _state(socket).in_worker(session.process, data)
            await socket.send_json(answer | {"dropped": session.dropped})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


async def _store_upload(request: Request, folder: Path) -> Path:
    """The request's body in ``folder/upload``, refused with 413 past the size limit and 400 when empty."""
    web = _state(request)
    too_large = HTTPException(413, f"the file is larger than the limit of {web.max_upload_mb:g} MB")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > web.max_bytes:
        raise too_large
    folder.mkdir(parents=True)
    path, size = folder / "upload", 0
    with path.open("wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > web.max_bytes:
                raise too_large
            file.write(chunk)
    if size == 0:
        raise HTTPException(400, "the upload is empty")
    return path


def recognize_image(recognizer: EmotionRecognizer, path: Path, name: str) -> dict[str, Any]:
    """The faces of one image file: ``annotated.png`` and ``predictions.csv`` written beside it, the
    original removed; returns the faces and the milliseconds of each stage (``recognizer`` is a
    fresh fork, its stage timings this image's)."""
    folder = path.parent
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    faces = recognizer.predict(image, track=False)
    writer = PredictionWriter(folder / "predictions.csv", recognizer.class_names)
    writer.write(Frame(image, 0, 0.0, name), faces)
    writer.close()
    if not cv2.imwrite(str(folder / "annotated.png"), draw(image, faces)):
        raise OSError("could not write the annotated image")
    path.unlink()
    times = recognizer.times
    return {
        "faces": read_predictions(folder / "predictions.csv"),
        "ms_per_stage": {s: 1000 * t / max(times.calls[s], 1) for s, t in times.seconds.items()},
    }


@router.post("/api/upload")
async def upload(request: Request, model: str | None = None, detector: str | None = None, name: str = "") -> Any:
    web = _state(request)
    names = web.recognizers.resolve(model, detector)
    job = uuid.uuid4().hex
    folder = web.jobs_dir / job
    try:
        path = await _store_upload(request, folder)
        kind = await anyio.to_thread.run_sync(sniff, path)
    except HTTPException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shown = Path(name).name[:120] or "upload"
    if kind == "video":
        web.jobs[job] = VideoJob(names, shown)
        return {"id": job, "kind": "video", "name": shown}
    recognizer = await anyio.to_thread.run_sync(web.recognizers.get, *names)
    result = await web.in_worker(recognize_image, recognizer, path, shown)
    return {
        "id": job,
        "kind": "image",
        "name": shown,
        "class_names": recognizer.class_names,
        "annotated": f"/api/results/{job}/annotated.png",
        "predictions": f"/api/results/{job}/predictions.csv",
        **result,
    }


async def _until_left(socket: WebSocket) -> None:
    """Returns when the client closes the socket."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await socket.receive_text()


async def _video_result(socket: WebSocket, job: str, worker: asyncio.Future, class_names: list[str]) -> bool:
    """Send the finished job's result (or its error); returns whether a result was sent."""
    try:
        summary = await worker
    except (OSError, ValueError) as error:  # a video that breaks off mid-way, a full disk
        await socket.send_json({"error": str(error)})
        return False
    rows = read_predictions(_state(socket).jobs_dir / job / "predictions.csv")
    await socket.send_json(
        {
            "done": True,
            "frames": summary["frames"],
            "fps": round(summary["fps"], 1),
            "class_names": class_names,
            "tracks": timelines(rows),
            "annotated": f"/api/results/{job}/annotated.webm",
            "predictions": f"/api/results/{job}/predictions.csv",
        }
    )
    return True


@router.websocket("/ws/jobs/{job}")
async def watch(socket: WebSocket, job: str) -> None:
    await socket.accept()
    web = _state(socket)
    entry = web.jobs.get(job)
    if entry is None or entry.started:
        await socket.send_json({"error": "no such video job, or it is being watched already"})
        await socket.close(code=1008)
        return
    entry.started = True
    folder = web.jobs_dir / job
    recognizer = await _recognizer(socket, entry.names)
    if recognizer is None:
        web.jobs.pop(job, None)
        return
    cancel, progress = threading.Event(), {"done": 0, "total": None}

    def work() -> dict[str, Any]:
        def report(done: int, total: int | None) -> None:
            progress.update(done=done, total=total)

        upload = folder / "upload"
        return run(recognizer, upload, folder, display=False, video_format="webm", progress=report, cancel=cancel)

    worker = asyncio.ensure_future(web.in_worker(work))
    listener = asyncio.create_task(_until_left(socket))
    answered = False
    try:
        while not worker.done() and not listener.done():
            await asyncio.wait({worker, listener}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if not worker.done() and not listener.done():
                await socket.send_json({"progress": progress["done"], "total": progress["total"]})
        if not listener.done():
            answered = await _video_result(socket, job, worker, recognizer.class_names)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        listener.cancel()
        web.jobs.pop(job, None)
        if answered:
            (folder / "upload").unlink(missing_ok=True)
        else:  # the watcher left (or the job failed): stop the job, then free its files
            cancel.set()
            worker.add_done_callback(lambda _: shutil.rmtree(folder, ignore_errors=True))
            log.info("video job %s stopped after %d frames: its client left", job, progress["done"])


@router.get("/api/results/{job}/{file}")
def result(request: Request, job: str, file: str) -> FileResponse:
    path = _state(request).jobs_dir / job / file
    if not _JOB_ID.match(job) or file not in RESULT_FILES or not path.is_file():
        raise HTTPException(404, "no such result")
    return FileResponse(path, filename=file if file.endswith(".csv") else None)


def create_app(
    recognizers: Recognizers,
    run_dir: str | Path,
    max_upload_mb: float = 50,
    workers: int = 2,
) -> FastAPI:
    """The FastAPI app; serve it with uvicorn (``infer.py app=web`` does).

    Args:
        recognizers: the models and detectors on offer.
        run_dir: uploads and results go to ``run_dir/web/<id>/``.
        max_upload_mb: larger uploads get 413 without being stored whole.
        workers: frames and uploads processed at once, over all clients (the rest wait).
    """
    app = FastAPI(title="fer", docs_url=None, redoc_url=None)
    limiter = anyio.CapacityLimiter(workers)
    app.state.web = WebState(recognizers, Path(run_dir) / "web", max_upload_mb, limiter)
    app.include_router(router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def model_names(entries: list[str | None]) -> dict[str, str]:
    """Page name -> checkpoint of models to offer, in order, without repeats.

    An entry is a shipped model's short name (:data:`~fer.shipped.SHIPPED_MODELS`;
    ``None`` is the default one), kept as its name, or a checkpoint path, named by its file
    stem (numbered where two stems are the same). Shipped models whose file is absent are
    left out.
    """
    names: dict[str, str] = {}
    for entry in entries:
        entry = entry or DEFAULT_MODEL
        if entry in SHIPPED_MODELS:
            path = shipped_model(entry)
            if path.is_file() and entry not in names:
                names[entry] = str(path)
            continue
        if entry in names.values():
            continue
        stem = Path(entry).stem
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names[name] = entry
    return names


def serve(
    recognizers: Recognizers,
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 50,
    workers: int = 2,
) -> None:
    """Load the default model and detector, print the address, serve until Ctrl+C."""
    import uvicorn

    recognizers.get(*recognizers.resolve(None, None))  # errors now, not at the first client
    app = create_app(recognizers, run_dir, max_upload_mb, workers)
    shown = f"[{host}]" if ":" in host else host
    print(f"fer web app: http://{shown}:{port}/  (uploads and results in {Path(run_dir) / 'web'}; Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
