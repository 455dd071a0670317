"""Writing result files so that a crash or a full disk never leaves one that looks complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, data: dict[str, Any] | list[Any]) -> None:
    """``data`` as indented JSON in ``path`` (its folder made if missing): written to a hidden
    ``.partial`` file, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)
