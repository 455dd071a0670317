"""Slim a train.py checkpoint for shipping: ``python -m fer.export BEST.ckpt OUT.ckpt [--overwrite]``.

See :func:`fer.checkpoint.slim_checkpoint`: float16 weights, the model's
hyper-parameters and the input settings; no optimizer state, no data paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer.checkpoint import CheckpointError, slim_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a checkpoint written by train.py")
    parser.add_argument("target", type=Path, help="where to write the slim .ckpt")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    args = parser.parse_args(argv)
    try:
        path = slim_checkpoint(args.source, args.target, args.overwrite)
    except (FileNotFoundError, FileExistsError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
