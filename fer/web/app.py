"""The web app around :class:`~fer.inference.recognizer.EmotionRecognizer`: ``python infer.py app=web``.

- ``GET /``: the page (``fer/web/static``: plain HTML, JS and CSS, nothing fetched from elsewhere).
- ``GET /api/config``: the models and detectors the page may choose (names only; paths
  stay on the server).
- ``WS /ws/live?model=&detector=``: the client sends JPEG or PNG frames (binary messages)
  and gets one JSON answer per processed frame; the server keeps only the newest frame that
  arrived while it was busy (the older ones are dropped and counted, never queued), and
  every connection has its own tracker. A frame it cannot take gets ``{"error": ...}`` and
  the stream goes on. The text message ``{"mark": "neutral"}`` takes the faces of the last
  answered frame as their person at rest (the recognizer's ``adapt="neutral"``, which a live
  connection uses unless the server adapts by ``mean``); the next answer says how many
  (``"marked"``). Any other text closes the connection with an error.
- ``POST /api/upload?model=&detector=&name=``: the raw bytes of an image or video (at
  most ``web.max_upload_mb``), judged by content; an image is recognised and answered at
  once (its original is not kept), a video is processed while a client watches
  ``WS /ws/jobs/{id}`` (progress, then the result); a watcher that leaves stops the job.
- ``GET /api/results/{id}/{file}``: a job's annotated image or video and its predictions CSV.

Every picture goes through one gate (:mod:`fer.web.images`: its declared size checked
before decoding, decoding inside the ``web.workers`` bound); every request through the
``Host``, ``Origin`` and token checks (:mod:`fer.web.guard`). Uploads and results live only
under ``<run dir>/web/<random id>/`` (:class:`~fer.web.jobs.Jobs`), expire after
``web.keep_minutes``, and a stop by SIGINT or SIGTERM cancels running jobs and deletes
their files. Routes are module-level functions over :class:`WebState` (``app.state.web``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import cv2
import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from fer.inference.loop import run
from fer.inference.outputs import PredictionWriter, draw
from fer.inference.recognizer import EmotionRecognizer, Face
from fer.inference.sources import Frame
from fer.web.guard import SameOrigin
from fer.web.images import ImageLimits, Rejected, decode_image, sniff
from fer.web.jobs import Jobs, VideoJob
from fer.web.recognizers import Recognizers
from fer.web.settings import LOOPBACK, WebSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: Files of a job the page may fetch.
RESULT_FILES = {"annotated.webm", "annotated.png", "predictions.csv"}
#: Points of a video's probability timeline sent to the page per track.
TIMELINE_POINTS = 400
#: Errors a picture the gate let through can still raise inside OpenCV or a detector.
RECOGNITION_ERRORS = (cv2.error, ValueError, RuntimeError, IndexError)


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


@dataclass
class WebState:
    """What the routes share (``app.state.web``); see :class:`~fer.web.settings.WebSettings`."""

    recognizers: Recognizers
    jobs: Jobs
    settings: WebSettings
    limiter: anyio.CapacityLimiter

    @property
    def limits(self) -> ImageLimits:
        s = self.settings
        return ImageLimits(s.max_pixels, s.max_side, s.min_side)

    async def in_worker(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a thread, at most ``web.workers`` of them at once over all clients."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)


router = APIRouter()


def _state(connection: Request | WebSocket) -> WebState:
    return connection.app.state.web


@router.get("/api/config")
def config(request: Request) -> dict[str, Any]:
    web = _state(request)
    recognizers = web.recognizers
    return {
        "models": list(recognizers.models),
        "detectors": recognizers.detectors,
        "max_upload_mb": web.settings.max_upload_mb,
        "neutral_mark": recognizers.settings.adapt != "mean",
    }


#: The one text message a live client may send: take the last answered frame's faces as at rest.
MARK_NEUTRAL = {"mark": "neutral"}


class LiveSession:
    """One live client: its own tracker, and a slot that keeps only the newest frame that arrived
    while the last one was processed (older ones are dropped and counted, never queued).

    A neutral mark (:data:`MARK_NEUTRAL`) is kept until the next frame is processed, in the worker
    that runs the recognizer; a text message of anything else ends the session with
    :attr:`refused` saying why."""

    def __init__(self, recognizer: EmotionRecognizer, limits: ImageLimits, max_bytes: int) -> None:
        self.recognizer, self.limits, self.max_bytes = recognizer, limits, max_bytes
        self.frame: bytes | None = None
        self.dropped, self.open, self.mark = 0, True, False
        self.refused: str | None = None
        self.arrived = asyncio.Event()

    async def receive(self, socket: WebSocket) -> None:
        """Put every frame the client sends into the slot, and note its neutral marks, until it leaves."""
        try:
            while (message := await socket.receive())["type"] != "websocket.disconnect":
                if message.get("bytes") is not None:
                    self.dropped += self.frame is not None  # a frame not yet processed is replaced
                    self.frame = message["bytes"]
                    self.arrived.set()
                elif not self._command(message.get("text") or ""):
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        self.open = False
        self.arrived.set()

    def _command(self, text: str) -> bool:
        """Take a text message; ``False`` (with :attr:`refused` set) when it is not one the session takes."""
        try:
            known = len(text) <= 100 and json.loads(text) == MARK_NEUTRAL
        except ValueError:
            known = False
        if not known:
            self.refused = f"the only text message taken is {json.dumps(MARK_NEUTRAL)}; frames are binary"
        elif self.recognizer.config.adapt != "neutral":
            self.refused = f"this server adapts each face by its {self.recognizer.config.adapt!r}; marks are not taken"
        else:
            self.mark = True
        return self.refused is None

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
        """The answer to one frame (an image): its faces, its size and the server's time, or an error."""
        start = time.perf_counter()
        if len(data) > self.max_bytes:
            return {"error": f"a frame of {len(data):,} bytes was skipped; at most {self.max_bytes:,} are taken"}
        try:
            image = decode_image(data, self.limits)
        except Rejected as error:
            return {"error": f"a frame was skipped: {error}"}
        marked = None
        if self.mark:  # the faces of the frame the client saw when it marked
            self.mark, marked = False, len(self.recognizer.mark_neutral())
        try:
            faces = self.recognizer.predict(image, track=True)
        except RECOGNITION_ERRORS as error:
            log.warning("live frame of %dx%d not recognised: %s", image.shape[1], image.shape[0], error)
            return {"error": "a frame was skipped: the server could not search it for faces"}
        return ({} if marked is None else {"marked": marked}) | {
            "faces": [face_json(f) for f in faces],
            "width": image.shape[1],
            "height": image.shape[0],
            "class_names": self.recognizer.class_names,
            "server_ms": round(1000 * (time.perf_counter() - start), 1),
        }


async def _refuse(socket: WebSocket, detail: str) -> None:
    """Tell an accepted socket's client why, then close it (policy violation)."""
    await socket.send_json({"error": detail})
    await socket.close(code=1008)


async def _recognizer(socket: WebSocket, names: tuple[str, str]) -> EmotionRecognizer | None:
    """The pair's recognizer for a socket; on a load error the client is told and the socket closed."""
    try:
        return await anyio.to_thread.run_sync(_state(socket).recognizers.get, *names)
    except HTTPException as error:
        await _refuse(socket, error.detail)
        return None


@router.websocket("/ws/live")
async def live(socket: WebSocket, model: str | None = None, detector: str | None = None) -> None:
    await socket.accept()
    web = _state(socket)
    try:
        names = web.recognizers.resolve(model, detector)
    except HTTPException as error:
        await _refuse(socket, error.detail)
        return
    recognizer = await _recognizer(socket, names)
    if recognizer is None:
        return
    if recognizer.config.adapt == "none":  # unchanged until the client marks a resting face
        recognizer.config = replace(recognizer.config, adapt="neutral")
    session = LiveSession(recognizer, web.limits, int(web.settings.max_frame_mb * 2**20))
    receiver = asyncio.create_task(session.receive(socket))
    await socket.send_json({"ready": True, "model": names[0], "detector": names[1]})
    try:
        while (data := await session.next_frame()) is not None:
            answer = await web.in_worker(session.process, data)
            await socket.send_json(answer | {"dropped": session.dropped})
        if session.refused:
            await _refuse(socket, session.refused)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


async def _store_upload(request: Request, folder: Path) -> Path:
    """The request's body in ``folder/upload``, refused with 413 past the size limit and 400 when empty."""
    web = _state(request)
    limit = int(web.settings.max_upload_mb * 2**20)
    too_large = HTTPException(413, f"the file is larger than the limit of {web.settings.max_upload_mb:g} MB")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    folder.mkdir(parents=True)
    path, size = folder / "upload", 0
    with path.open("wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            file.write(chunk)
    if size == 0:
        raise HTTPException(400, "the upload is empty")
    return path


def recognize_image(recognizer: EmotionRecognizer, image: np.ndarray, path: Path, name: str) -> dict[str, Any]:
    """The faces of an uploaded image (decoded from ``path`` by the gate): ``annotated.png`` and
    ``predictions.csv`` written beside it, the original removed; returns the faces and the
    milliseconds of each stage (``recognizer`` is a fresh fork, its stage timings this image's)."""
    folder = path.parent
    try:
        faces = recognizer.predict(image, track=False)
    except RECOGNITION_ERRORS as error:
        log.warning("uploaded image of %dx%d not recognised: %s", image.shape[1], image.shape[0], error)
        raise Rejected(422, "the server could not search this image for faces") from None
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
    job, folder = web.jobs.new()
    shown = Path(name).name[:120] or "upload"
    try:
        path = await _store_upload(request, folder)
        image = await web.in_worker(sniff, path, web.limits)
        if image is None:  # a video
            web.jobs.videos[job] = VideoJob(names, shown)
            return {"id": job, "kind": "video", "name": shown}
        recognizer = await anyio.to_thread.run_sync(web.recognizers.get, *names)
        result = await web.in_worker(recognize_image, recognizer, image, path, shown)
    except Rejected as error:
        web.jobs.remove(job)
        raise HTTPException(error.status, str(error)) from None
    except BaseException:
        web.jobs.remove(job)
        raise
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
    rows = read_predictions(_state(socket).jobs.root / job / "predictions.csv")
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
    entry = web.jobs.videos.get(job)
    if entry is None or entry.started:
        await _refuse(socket, "no such video job, or it is being watched already")
        return
    entry.started = True
    recognizer = await _recognizer(socket, entry.names)
    if recognizer is None:
        web.jobs.remove(job)
        return
    folder, progress = web.jobs.root / job, {"done": 0, "total": None}

    def work() -> dict[str, Any]:
        def report(done: int, total: int | None) -> None:
            progress.update(done=done, total=total)

        upload = folder / "upload"
        cancel = entry.cancel
        return run(recognizer, upload, folder, display=False, video_format="webm", progress=report, cancel=cancel)

    entry.worker = asyncio.ensure_future(web.in_worker(work))
    listener = asyncio.create_task(_until_left(socket))
    answered = False
    try:
        while not entry.worker.done() and not listener.done():
            await asyncio.wait({entry.worker, listener}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if not entry.worker.done() and not listener.done():
                await socket.send_json({"progress": progress["done"], "total": progress["total"]})
        if not listener.done():
            answered = await _video_result(socket, job, entry.worker, recognizer.class_names)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        listener.cancel()
        web.jobs.videos.pop(job, None)
        if answered:
            (folder / "upload").unlink(missing_ok=True)
        else:  # the watcher left (or the job failed): stop the job, then free its files
            entry.cancel.set()
            entry.worker.add_done_callback(lambda _: web.jobs.remove(job))
            log.info("video job %s stopped after %d frames: its client left", job, progress["done"])


@router.get("/api/results/{job}/{file}")
def result(request: Request, job: str, file: str) -> FileResponse:
    path = _state(request).jobs.path(job, file)
    if path is None or file not in RESULT_FILES or not path.is_file():
        raise HTTPException(404, "no such result")
    return FileResponse(path, filename=file if file.endswith(".csv") else None)


def create_app(recognizers: Recognizers, run_dir: str | Path, settings: WebSettings | None = None) -> FastAPI:
    """The FastAPI app; serve it with uvicorn (``infer.py app=web`` does).

    Args:
        recognizers: the models and detectors on offer.
        run_dir: uploads and results go to ``run_dir/web/<id>/``.
        settings: limits, expiry, allowed hosts and origins, token (``None``: the defaults).
    """
    settings = settings or WebSettings()
    jobs = Jobs(Path(run_dir) / "web", 60 * settings.keep_minutes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(jobs.sweep_every(min(60.0, 30 * settings.keep_minutes)))
        try:
            yield
        finally:  # SIGINT or SIGTERM: running jobs stop, their files go
            sweeper.cancel()
            await jobs.stop()

    app = FastAPI(title="fer", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.web = WebState(recognizers, jobs, settings, anyio.CapacityLimiter(settings.workers))
    app.include_router(router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    app.add_middleware(SameOrigin, origins=settings.allowed_origins, token=settings.token)
    hosts = [*LOOPBACK, settings.host.strip("[]"), *(h.rsplit(":", 1)[0] for h in settings.allowed_hosts)]
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["*"] if settings.token else hosts)
    return app


def serve(recognizers: Recognizers, run_dir: str | Path, settings: WebSettings) -> None:
    """Load the default model and detector, print the address, serve until Ctrl+C or SIGTERM.

    Beyond loopback the server requires a token (``web.token``, or a random one), printed in the address.
    """
    import uvicorn

    recognizers.get(*recognizers.resolve(None, None))  # errors now, not at the first client
    if not settings.loopback and settings.token is None:
        settings.token = secrets.token_urlsafe(24)
    if not settings.loopback:
        log.warning("serving beyond this machine (web.host=%s): every request needs the token", settings.host)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    query = f"?token={settings.token}" if settings.token else ""
    print(f"fer web app: http://{shown}:{settings.port}/{query}  (results in {Path(run_dir) / 'web'}; Ctrl+C stops)")
    app = create_app(recognizers, run_dir, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)
