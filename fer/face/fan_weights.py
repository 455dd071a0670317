"""face-alignment's S3FD and 2D-FAN weights in torch hub's cache: which are missing, and fetching them.

face-alignment would download missing weights itself, with no timeout; here they are
fetched first with a short one, so a closed network fails in seconds with a message
that names every file and where it goes.
"""

from __future__ import annotations

import logging
import shutil
import urllib.request
from pathlib import Path

import torch

log = logging.getLogger(__name__)


#: Weight files face-alignment reads from ``$TORCH_HOME/hub/checkpoints`` (file name -> address).
FACE_ALIGNMENT_FILES = {
    "sfd": {"s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"},
    "landmarks": {
        "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
    },
}


def face_alignment_cache() -> Path:
    """Where face-alignment looks for its weights: torch hub's ``checkpoints`` folder."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_face_alignment_files(kinds: tuple[str, ...] = ("sfd",)) -> list[Path]:
    """The weight files of ``kinds`` (``"sfd"``, ``"landmarks"``) not in the cache; empty when all are there."""
    names = [name for kind in kinds for name in FACE_ALIGNMENT_FILES[kind]]
    return [face_alignment_cache() / name for name in names if not (face_alignment_cache() / name).exists()]


def fetch(url: str, path: Path, timeout: float) -> None:
    """Download ``url`` to ``path`` (through a ``.partial`` file); a connection that does not
    answer within ``timeout`` seconds raises ``OSError`` (``URLError``, ``TimeoutError``)."""
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out)
    partial.replace(path)


def ensure_face_alignment_files(kinds: tuple[str, ...], download: bool = True, timeout: float = 10.0) -> None:
    """Make sure the weight files of ``kinds`` are in torch hub's cache, fetching the missing ones
    (face-alignment's own download is never reached, so a closed network fails in seconds).

    Raises:
        FileNotFoundError: a file is missing and ``download`` is false or the fetch failed;
            the message names every file, where it goes and its address.
    """
    missing = missing_face_alignment_files(kinds)
    urls = {name: url for kind in kinds for name, url in FACE_ALIGNMENT_FILES[kind].items()}
    reason = "download=false"
    if missing and download:
        try:
            for path in missing:
                log.info("fetching %s (first use)", urls[path.name])
                fetch(urls[path.name], path, timeout)
            return
        except OSError as error:
            reason = f"the download failed: {error}"
    if missing:
        listing = "\n".join(f"  {p}  <- {urls[p.name]}" for p in missing_face_alignment_files(kinds))
        raise FileNotFoundError(
            f"face-alignment weights are missing ({reason}); put them here (TORCH_HOME moves the cache):\n{listing}"
        )
