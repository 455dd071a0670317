"""The web app's settings: one dataclass, the structured config ``web:`` of ``conf/infer.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Host names that reach this machine only.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class WebSettings:
    """Settings of ``python infer.py app=web`` (:func:`fer.web.app.create_app`).

    Attributes:
        host: the address to bind: ``127.0.0.1`` serves this machine only; any other
            address (``0.0.0.0``: every network) requires a token (see ``token``).
        port: the TCP port.
        models: checkpoints the page offers besides the shipped models and ``ckpt_path``
            (named by file stem).
        detectors: detectors the page offers; the first is the default.
        workers: frames, uploads and decodes processed at once over all clients.
        max_upload_mb: larger uploads are refused (413) before they are stored whole.
        max_frame_mb: larger live frames are refused with a message.
        max_pixels: images (uploads, live frames) and videos declaring more pixels a frame
            are refused before anything is decoded.
        max_side, min_side: the same for each side, in pixels (a 1x20000 image is refused).
        keep_minutes: uploads and results older than this are deleted, at start and while
            serving; a video never watched goes with them.
        max_loaded: model-detector pairs kept loaded; the least recently used goes first.
        token: a secret every request must carry (``?token=`` once, then a cookie; or an
            ``Authorization: Bearer`` header); ``None``: none on loopback, a random one
            printed with the address when ``host`` is not a loopback address.
        allowed_hosts: ``Host`` values served besides the loopback names and ``host`` (with
            the port, e.g. ``fer.lab:8000``).
        allowed_origins: page origins allowed besides the served one
            (e.g. ``http://fer.lab:8000``).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    models: list[str] = field(default_factory=list)
    detectors: list[str] = field(default_factory=lambda: ["auto", "blazeface", "blazeface_front", "dlib", "haar"])
    workers: int = 2
    max_upload_mb: float = 50.0
    max_frame_mb: float = 8.0
    max_pixels: int = 50_000_000
    max_side: int = 16_384
    min_side: int = 16
    keep_minutes: float = 60.0
    max_loaded: int = 4
    token: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if min(self.workers, self.max_loaded, self.min_side) < 1 or self.max_side < self.min_side:
            raise ValueError("web.workers, web.max_loaded and web.min_side must be >= 1, web.max_side >= web.min_side")
        if min(self.max_upload_mb, self.max_frame_mb, self.keep_minutes) <= 0 or self.max_pixels < 1:
            raise ValueError("web.max_upload_mb, web.max_frame_mb, web.keep_minutes and web.max_pixels must be > 0")

    @property
    def loopback(self) -> bool:
        """Whether the server is reachable from this machine only."""
        return self.host.strip("[]") in LOOPBACK
