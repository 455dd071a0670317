"""Export a train.py checkpoint: ``python -m fer.export BEST.ckpt OUT.{ckpt,onnx} [--overwrite] [--int8]``.

The format follows the target's suffix: ``.ckpt`` is a slim checkpoint
(:func:`fer.checkpoint.slim_checkpoint`: float16 weights, or with ``--int8`` int8
convolution and linear weights with a scale per channel; the model's hyper-parameters
and input settings; no optimizer state, no data paths), ``.onnx`` an ONNX graph for
onnxruntime with its preprocessing and class names in the metadata
(:func:`fer.checkpoint.export_onnx`; needs ``pip install 'fer[onnx]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer.checkpoint import CheckpointError, export_onnx, slim_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a checkpoint written by train.py")
    parser.add_argument("target", type=Path, help="where to write: a slim .ckpt or an .onnx graph")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    parser.add_argument("--int8", action="store_true", help="slim .ckpt: int8 weights, a quarter of float32")
    args = parser.parse_args(argv)
    if args.target.suffix not in (".ckpt", ".onnx"):
        print(f"error: {args.target}: the target must end in .ckpt or .onnx", file=sys.stderr)
        return 2
    if args.int8 and args.target.suffix == ".onnx":
        print("error: --int8 is for slim .ckpt targets", file=sys.stderr)
        return 2
    try:
        if args.target.suffix == ".onnx":
            path = export_onnx(args.source, args.target, args.overwrite)
        else:
            path = slim_checkpoint(args.source, args.target, args.overwrite, int8=args.int8)
    except (FileNotFoundError, FileExistsError, CheckpointError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
