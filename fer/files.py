"""Writing result files so that a crash or a full disk never leaves one that looks complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON in ``path``: written to a hidden ``.partial`` file, then renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)
