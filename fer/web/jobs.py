"""The web app's job folders: one a request, ``<run dir>/web/<random id>/``, swept when they expire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class VideoJob:
    """An uploaded video waiting for its one watcher, then processed while it watches."""

    names: tuple[str, str]
    name: str
    started: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    worker: asyncio.Future | None = None


class Jobs:
    """Job folders under ``root`` and the video jobs among them.

    A folder older than ``keep_seconds`` (by its last change) is deleted by :meth:`sweep`, with
    its video job if it was never watched; a running job's folder is never swept.
    """

    def __init__(self, root: Path, keep_seconds: float) -> None:
        self.root, self.keep_seconds = Path(root), keep_seconds
        self.videos: dict[str, VideoJob] = {}

    def new(self) -> tuple[str, Path]:
        """A fresh job id and its folder's path (not created yet)."""
        job = uuid.uuid4().hex
        return job, self.root / job

    def path(self, job: str, name: str) -> Path | None:
        """A job's file, or ``None`` for an id that is no job id (so no client path reaches the disk)."""
        return self.root / job / name if _JOB_ID.match(job) else None

    def remove(self, job: str) -> None:
        """Delete a job's folder and forget its video job."""
        self.videos.pop(job, None)
        shutil.rmtree(self.root / job, ignore_errors=True)

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete the folders older than ``keep_seconds`` (and stray files); returns the ids deleted."""
        now = time.time() if now is None else now
        running = {k for k, v in self.videos.items() if v.worker is not None and not v.worker.done()}
        swept = []
        for entry in self.root.iterdir() if self.root.is_dir() else []:
            with contextlib.suppress(OSError):  # gone meanwhile
                if entry.name not in running and now - entry.stat().st_mtime > self.keep_seconds:
                    if entry.is_dir():
                        self.remove(entry.name)
                    else:
                        entry.unlink()
                    swept.append(entry.name)
        for job in [k for k in self.videos if not (self.root / k).exists()]:
            self.videos.pop(job, None)
        return swept

    async def sweep_every(self, seconds: float) -> None:
        """:meth:`sweep` now and every ``seconds`` until cancelled."""
        while True:
            if swept := self.sweep():
                log.info("deleted %d expired job folder(s)", len(swept))
            await asyncio.sleep(seconds)

    async def stop(self, timeout: float = 20.0) -> None:
        """Cancel every running video job, wait for them (at most ``timeout`` s), delete their folders."""
        running = {k: v for k, v in self.videos.items() if v.worker is not None and not v.worker.done()}
        for job in running.values():
            job.cancel.set()
        if running:
            await asyncio.wait([v.worker for v in running.values()], timeout=timeout)
        for job in running:
            self.remove(job)
