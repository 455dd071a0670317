"""The one gate every picture the web app decodes goes through: uploads, live frames and videos.

A file is judged by its content, never its name. Its declared size is read from the header
(Pillow reads no pixels to tell it) and checked against :class:`ImageLimits` before OpenCV
decodes anything, so a small file declaring a huge canvas (a decompression bomb) costs
nothing; a video's frame size is checked from its container before its frames are read.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

#: Image formats decoded (what Pillow identifies the header as; OpenCV decodes the pixels).
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "TIFF"})


class Rejected(ValueError):
    """Input refused before (or instead of) decoding; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    """What a picture may declare: at most ``max_pixels`` pixels and ``max_side`` a side, at least ``min_side``."""

    max_pixels: int = 50_000_000
    max_side: int = 16_384
    min_side: int = 16

    def check(self, width: int, height: int, what: str = "the image") -> None:
        """Raises :class:`Rejected` (413 too large, 422 too small) for a ``width`` x ``height`` picture."""
        size = f"{what} is {width}x{height} pixels"
        if min(width, height) < self.min_side:
            raise Rejected(422, f"{size}; each side must be at least {self.min_side}")
        if max(width, height) > self.max_side:
            raise Rejected(413, f"{size}; each side must be at most {self.max_side:,}")
        if width * height > self.max_pixels:
            raise Rejected(413, f"{size}; at most {self.max_pixels:,} pixels are allowed")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an image's header, ``None`` where it is no image of :data:`IMAGE_FORMATS`.

    Raises:
        Rejected 413: the header declares so many pixels that Pillow refuses to open it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size if image.format in IMAGE_FORMATS else None
        except Image.DecompressionBombError:
            raise Rejected(413, "the image declares far more pixels than allowed") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """A BGR ``uint8 (H, W, 3)`` image of JPEG, PNG, BMP, WebP or TIFF bytes, checked before decoding.

    Raises:
        Rejected: 400 empty, 415 not such an image or corrupt, 413 / 422 see :meth:`ImageLimits.check`.
    """
    if not data:
        raise Rejected(400, "the image is empty")
    size = declared_size(data)
    if size is None:
        raise Rejected(415, "not a JPEG, PNG, BMP, WebP or TIFF image")
    limits.check(*size)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise Rejected(415, "the image could not be decoded (truncated or corrupt)")
    return image


def check_video(path: Path, limits: ImageLimits) -> None:
    """Whether OpenCV reads a video whose frames fit ``limits`` (declared size checked before any frame).

    Raises:
        Rejected: 415 not a video OpenCV can read, 413 / 422 frames too large or too small.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        width, height = (int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        if not capture.isOpened() or width <= 0 or height <= 0:
            raise Rejected(415, "not an image or a video this server can decode")
        limits.check(width, height, "a frame of the video")
        if not capture.read()[0]:
            raise Rejected(415, "not an image or a video this server can decode")
    finally:
        capture.release()


def sniff(path: Path, limits: ImageLimits) -> np.ndarray | None:
    """An uploaded file judged by its content (never its name) and checked against ``limits``:
    the decoded BGR image if it is an image, ``None`` if it is a video.

    Raises:
        Rejected: see :func:`decode_image` and :func:`check_video`.
    """
    data = path.read_bytes()  # at most web.max_upload_mb
    if declared_size(data) is not None:
        return decode_image(data, limits)
    check_video(path, limits)
    return None
