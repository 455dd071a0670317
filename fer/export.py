"""Slim a train.py checkpoint for shipping: ``python -m fer.export BEST.ckpt OUT.ckpt``.

Keeps the weights (as float16, half the size), the model's and data module's
hyper-parameters and the epoch; drops optimizer and scheduler states and callbacks.
The result loads with :func:`fer.recognizer.load_classifier` and
``EmotionClassifier.load_from_checkpoint``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def slim_checkpoint(source: str | Path, target: str | Path, overwrite: bool = False) -> Path:
    """Write the slim copy of ``source`` to ``target``; returns ``target``.

    Raises:
        FileExistsError: ``target`` exists and not ``overwrite``.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    keep = ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters", "datamodule_hyper_parameters")
    slim = {k: checkpoint[k] for k in keep if k in checkpoint}
    slim["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    path = slim_checkpoint(args.source, args.target, args.overwrite)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
