"""Many videos in one command: ``infer.py source=<folder | glob | manifest>`` analysed into one dataset.

A collection is a folder searched recursively for videos (by extension), a glob, or a
manifest (a ``.txt`` of one path a line, or a ``.csv`` with a ``path`` column whose other
columns, participant or condition say, are carried into every row of that video). Each
video gets its own folder ``videos/<video id>/`` with what ``infer.py`` writes for one video
(``predictions.csv``, ``summary.json``, the annotated video when ``save_media``), per-track
statistics (``tracks.json``) and a timeline figure (``timeline.png``); its rows go into one
Parquet dataset partitioned by video, ``dataset/video=<video id>/part-0.parquet``.

A video is done when its Parquet part exists (written last, under a hidden name, then
renamed), so a rerun of the same command skips finished videos and redoes the others; a
video that fails is recorded in ``failures/<video id>.json`` with its error and the
collection goes on. ``shard=I shards=N`` takes every Nth video from the I-th (the same split
on every machine: a SLURM array through Hydra's submitit launcher), ``workers=K`` runs K
processes here, each with its share of the thread budget. :func:`fer.inference.collect.collect`
then sums up the collection (``collection.json``).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import logging
import re
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fer.files import write_json_atomically
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer
from fer.inference.settings import RecognizerSettings
from fer.inference.sources import URL_PREFIXES

log = logging.getLogger(__name__)

#: File endings taken as videos when a folder is searched.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
#: Manifest file endings.
MANIFEST_SUFFIXES = frozenset({".txt", ".csv"})


@dataclass(frozen=True)
class Video:
    """One video of a collection: its path, its id (a folder and partition name) and the manifest's extra columns."""

    path: str
    id: str
    extra: dict[str, str] = field(default_factory=dict)


def _video_id(name: str) -> str:
    """A folder-safe id of a video's relative path: separators as ``__``, other odd characters as ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("/", "__").replace("\\", "__")).strip("._") or "video"
    return stem[:150]


def _with_ids(entries: list[tuple[str, str, dict[str, str]]]) -> list[Video]:
    """Videos of (path, name, extra) entries, ids unique (a short hash of the path where two names clash)."""
    ids = [_video_id(name) for _, name, _ in entries]
    clashes = {i for i in ids if ids.count(i) > 1}
    videos = []
    for (path, _, extra), video_id in zip(entries, ids):
        if video_id in clashes:
            video_id += "_" + hashlib.sha1(path.encode()).hexdigest()[:8]
        videos.append(Video(path, video_id, extra))
    return sorted(videos, key=lambda v: v.id)


def is_collection(source: str) -> bool:
    """Whether ``source`` names a collection: a glob, a manifest file, or a folder holding videos
    (never a camera index or a stream address, ``?`` and all)."""
    if source.isdigit() or source.startswith(URL_PREFIXES):
        return False
    path = Path(source).expanduser()
    if any(c in source for c in "*?[") and not path.exists():
        return True
    if path.is_file():
        return path.suffix.lower() in MANIFEST_SUFFIXES
    return path.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in path.rglob("*") if p.is_file())


def find_videos(source: str) -> list[Video]:
    """The videos of a collection (see the module's docstring), sorted by id.

    Raises:
        FileNotFoundError: a manifest or folder that does not exist. ValueError: a CSV manifest
            without a ``path`` column, or a collection without videos; the message names the source.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _manifest(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        entries = [(str(p), str(p.relative_to(path).with_suffix("")), {}) for p in found]
    else:
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        entries = [(str(p), str(p.with_suffix("")), {}) for p in found]
    if not entries:
        raise ValueError(f"{source}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) found")
    return _with_ids(entries)


def _manifest(path: Path) -> list[Video]:
    """The videos a manifest lists; relative paths are relative to the manifest's folder."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            if "path" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: a CSV manifest needs a 'path' column (it has {reader.fieldnames})")
            rows = [row for row in reader if (row.get("path") or "").strip()]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [{"path": line.strip()} for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise ValueError(f"{path}: the manifest lists no videos")
    entries = []
    for row in rows:
        given = Path(row["path"].strip()).expanduser()
        full = given if given.is_absolute() else path.parent / given
        extra = {k: (v or "") for k, v in row.items() if k != "path" and k is not None}
        entries.append((str(full), str(given.with_suffix("")), extra))
    return _with_ids(entries)


def write_video_list(out: Path, videos: list[Video]) -> None:
    """The whole collection's videos in ``videos.json`` (every shard writes the same list), for the merge."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "videos.json", [asdict(v) for v in videos])


def shard_of(videos: list[Video], shard: int | None, shards: int) -> list[Video]:
    """Every ``shards``-th video from the ``shard``-th (all of them for ``shard=None``).

    Raises:
        ValueError: ``shard`` outside ``[0, shards)``.
    """
    if shard is None:
        return videos
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, shards) = [0, {shards}), not {shard}")
    return videos[shard::shards]


def part_path(out: Path, video: Video) -> Path:
    """Where a video's rows go in the collection's Parquet dataset (its existence: the video is done)."""
    return out / "dataset" / f"video={video.id}" / "part-0.parquet"


def _table(predictions: Path, class_names: list[str], extra: dict[str, str]) -> pa.Table:
    """A video's ``predictions.csv`` as an Arrow table with fixed column types, plus the manifest's columns."""
    types = {"frame": pa.int32(), "time": pa.float64(), "source": pa.string(), "face": pa.int32()}
    types |= {k: pa.int32() for k in ("x1", "y1", "x2", "y2")} | {"score": pa.float32(), "label": pa.string()}
    types |= {f"p_{c}": pa.float32() for c in class_names}
    options = pa_csv.ConvertOptions(column_types=types, strings_can_be_null=False)
    table = pa_csv.read_csv(predictions, convert_options=options)
    for name, value in extra.items():
        table = table.append_column(name, pa.array([value] * len(table), pa.string()))
    return table


def track_statistics(table: pa.Table, class_names: list[str], fps: float) -> list[dict[str, Any]]:
    """Per track: frames, seconds seen, first and last time, share of its frames per label, mean
    probabilities, and onsets (the times its label changes to each class)."""
    faces = np.array(table.column("face").to_pylist(), dtype=np.int64)
    times = np.array(table.column("time").to_pylist(), dtype=np.float64)
    labels = np.array(table.column("label").to_pylist(), dtype=object)
    probabilities = np.stack([np.asarray(table.column(f"p_{c}").to_pylist()) for c in class_names], 1)
    tracks = []
    for track in np.unique(faces):
        rows = faces == track
        seen, t = labels[rows], times[rows]
        onsets: dict[str, list[float]] = {c: [] for c in class_names}
        for k in np.flatnonzero(np.r_[True, seen[1:] != seen[:-1]]):
            onsets[seen[k]].append(round(float(t[k]), 3))
        tracks.append(
            {
                "track": int(track),
                "frames": int(rows.sum()),
                "seconds": round(float(rows.sum()) / fps, 3),
                "first": round(float(t.min()), 3),
                "last": round(float(t.max()), 3),
                "label_share": {c: round(float((seen == c).mean()), 4) for c in class_names},
                "mean_probabilities": dict(zip(class_names, np.round(probabilities[rows].mean(0), 4).tolist())),
                "onsets": {c: v for c, v in onsets.items() if v},
            }
        )
    return tracks


def timeline_figure(table: pa.Table, class_names: list[str], path: Path, title: str) -> None:
    """The probabilities of every class over time, one row of axes a track (at most 12), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces = np.array(table.column("face").to_pylist(), dtype=np.int64)
    times = np.array(table.column("time").to_pylist(), dtype=np.float64)
    tracks = list(np.unique(faces))[:12] or [None]
    figure, axes = plt.subplots(len(tracks), 1, figsize=(10, 1.8 * len(tracks) + 0.6), sharex=True, squeeze=False)
    for ax, track in zip(axes[:, 0], tracks):
        rows = faces == track
        for c in class_names:
            ax.plot(times[rows], np.asarray(table.column(f"p_{c}").to_pylist())[rows], lw=1, label=c)
        ax.set_ylim(0, 1)
        ax.set_ylabel("no face" if track is None else f"track {track}")
    axes[0, 0].set_title(title, fontsize=10)
    axes[0, 0].legend(ncol=len(class_names), fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    partial = path.with_name(f".{path.stem}.partial.png")
    figure.savefig(partial, dpi=80)
    plt.close(figure)
    partial.replace(path)


def analyse_video(recognizer: EmotionRecognizer, video: Video, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """One video of a collection: ``infer.py``'s outputs, track statistics, the timeline, then its Parquet part.

    ``options``: :func:`~fer.inference.loop.run`'s ``predictions``-less keywords (``save_media``,
    ``batch_frames``, ``max_frames``). Returns the video's summary.

    Raises:
        Whatever :func:`~fer.inference.loop.run` raises for a broken video.
    """
    folder = out / "videos" / video.id
    summary = run(recognizer, video.path, folder, display=False, overwrite=True, live=False, **options)
    names = recognizer.class_names
    table = _table(folder / "predictions.csv", names, video.extra)
    write_json_atomically(folder / "tracks.json", track_statistics(table, names, summary["source_fps"] or 30.0))
    timeline_figure(table, names, folder / "timeline.png", video.id)
    part = part_path(out, video)
    part.parent.mkdir(parents=True, exist_ok=True)
    partial = part.with_name(f".{part.name}.partial")
    pq.write_table(table, partial)
    partial.replace(part)
    (out / "failures" / f"{video.id}.json").unlink(missing_ok=True)
    return summary | {"video": video.id, "path": video.path}


def _failed(out: Path, video: Video, error: BaseException) -> dict[str, Any]:
    """Record a video that failed (its error, never a stop of the collection)."""
    reason = "".join(traceback.format_exception_only(type(error), error)).strip()
    record = {"video": video.id, "path": video.path, "error": reason}
    write_json_atomically(out / "failures" / f"{video.id}.json", record)
    log.warning("%s failed: %s", video.path, reason)
    return record


_worker: dict[str, Any] = {}


def _start_worker(ckpt_path: str | None, settings: RecognizerSettings, threads: int) -> None:
    """A worker process's recognizer, built once, with its share of the thread budget."""
    from fer.device import set_thread_budget

    set_thread_budget(threads)
    _worker["recognizer"] = EmotionRecognizer(ckpt_path, settings)


def _analyse_in_worker(video: Video, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    try:
        return analyse_video(_worker["recognizer"], video, out, options)
    except Exception as error:  # recorded, reported, never a stop
        return _failed(out, video, error) | {"failed": True}


def analyse_collection(
    make_recognizer: Callable[[], EmotionRecognizer],
    videos: list[Video],
    out: str | Path,
    options: dict[str, Any],
    workers: int = 1,
    worker_setup: tuple[str | None, RecognizerSettings, int] | None = None,
) -> dict[str, int]:
    """Analyse every video not done yet (see :func:`part_path`); returns counts of done, skipped and failed.

    Args:
        make_recognizer: builds the recognizer of a single process.
        videos: this process's videos (a shard).
        out: the collection folder.
        options: see :func:`analyse_video`.
        workers: processes; more than 1 needs ``worker_setup`` (checkpoint, settings, threads each).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [v for v in videos if not part_path(out, v).exists()]
    counts = {"videos": len(videos), "skipped": len(videos) - len(todo), "done": 0, "failed": 0}
    if not todo:
        return counts
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("videos", total=len(todo))
        for result in _results(make_recognizer, todo, out, options, workers, worker_setup, bar):
            counts["failed" if result.get("failed") else "done"] += 1
            bar.advance(task)
    return counts


def _results(
    make_recognizer: Callable[[], EmotionRecognizer],
    todo: list[Video],
    out: Path,
    options: dict[str, Any],
    workers: int,
    worker_setup: tuple[str | None, RecognizerSettings, int] | None,
    bar: Progress,
) -> Iterator[dict[str, Any]]:
    """Each video's result as it finishes: here one after another, or from ``workers`` processes."""
    if workers <= 1:
        recognizer = make_recognizer()
        frames = bar.add_task("frames", total=None)
        for video in todo:
            bar.reset(frames, description=f"frames of {video.id[:40]}")
            report = {"progress": lambda done, total: bar.update(frames, completed=done, total=total)}
            try:
                yield analyse_video(recognizer, video, out, options | report)
            except Exception as error:
                yield _failed(out, video, error) | {"failed": True}
        return
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=worker_setup) as pool:
        futures = [pool.submit(_analyse_in_worker, video, out, options) for video in todo]
        for future in as_completed(futures):
            yield future.result()


def analyse_source(
    source: str,
    out: str | Path,
    ckpt_path: str | None,
    settings: RecognizerSettings,
    options: dict[str, Any],
    shard: int | None = None,
    shards: int = 1,
    workers: int = 1,
    threads: int = 2,
) -> dict[str, Any]:
    """``infer.py source=<collection>``: find the videos, analyse this shard's, sum up the collection.

    Returns the collection's summary (:func:`fer.inference.collect.collect`) with this run's
    counts under ``"run"``.

    Raises:
        FileNotFoundError, ValueError: see :func:`find_videos` and :func:`shard_of`.
    """
    from fer.inference.collect import collect

    out = Path(out)
    videos = find_videos(source)
    write_video_list(out, videos)
    mine = shard_of(videos, shard, shards)
    each = max(1, threads // max(workers, 1))
    counts = analyse_collection(
        lambda: EmotionRecognizer(ckpt_path, settings), mine, out, options, workers, (ckpt_path, settings, each)
    )
    return collect(out) | {"run": counts}
