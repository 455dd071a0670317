"""Sum up an analysed collection: ``python -m fer.inference.collect DIR [--csv]``.

Reads what :mod:`fer.inference.collection` left in ``DIR`` (from one process, several, or a
SLURM array of shards) and writes ``DIR/collection.json``: videos listed, done, failed (with
their errors), still to do, frames, frames with a face, faces, and the frames per second of
the analysis. The rows themselves are one Parquet dataset already,
``pandas.read_parquet(DIR / "dataset")``; ``--csv`` also writes them as ``DIR/predictions.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.dataset as ds

from fer.files import write_json_atomically


def dataset(folder: str | Path) -> ds.Dataset:
    """The collection's rows as a pyarrow dataset, the ``video`` column read from the partition folders."""
    return ds.dataset(Path(folder) / "dataset", format="parquet", partitioning="hive")


def collect(folder: str | Path, csv: bool = False) -> dict[str, Any]:
    """Write and return the collection's summary (see the module's docstring).

    Raises:
        FileNotFoundError: ``folder`` holds no ``videos.json`` (not an analysed collection).
    """
    folder = Path(folder)
    if not (folder / "videos.json").is_file():
        raise FileNotFoundError(f"{folder}: no videos.json; is it the output_dir of a collection run?")
    videos = json.loads((folder / "videos.json").read_text())
    done, failed, frames, seconds = [], [], {"frames": 0, "frames_with_face": 0, "faces": 0}, 0.0
    for video in videos:
        part = folder / "dataset" / f"video={video['id']}" / "part-0.parquet"
        failure = folder / "failures" / f"{video['id']}.json"
        if part.is_file():
            summary = json.loads((folder / "videos" / video["id"] / "summary.json").read_text())
            done.append(video["id"])
            for key in frames:
                frames[key] += summary[key]
            seconds += summary["frames"] / max(summary["fps"], 1e-9)
        elif failure.is_file():
            failed.append(json.loads(failure.read_text()))
    result = {
        "videos": len(videos),
        "done": len(done),
        "failed": failed,
        "to_do": len(videos) - len(done) - len(failed),
        **frames,
        "fps": frames["frames"] / seconds if seconds else None,
        "dataset": str(folder / "dataset"),
    }
    if csv and done:
        pa_csv.write_csv(dataset(folder).to_table(), folder / "predictions.csv")
    write_json_atomically(folder / "collection.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the output_dir of a collection run")
    parser.add_argument("--csv", action="store_true", help="also write every row as one predictions.csv")
    args = parser.parse_args(argv)
    try:
        result = collect(args.folder, args.csv)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = ", ".join(f["video"] for f in result["failed"]) or "none"
    print(
        f"{result['done']} of {result['videos']} videos done ({result['to_do']} to do; failed: {failed}); "
        f"{result['frames']} frames, {result['faces']} faces; {args.folder / 'collection.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
