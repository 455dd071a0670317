"""Video collections: manifests, folders and globs, the Parquet dataset, resume after SIGKILL, shards, workers."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from fer.inference.collect import collect, dataset
from fer.inference.collection import (
    Video,
    analyse_source,
    find_videos,
    is_collection,
    part_path,
    shard_of,
)
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer
from fer.inference.settings import RecognizerSettings
from tests.conftest import DATA, ROOT, need

VIDEOS = DATA / "videos"


def test_folders_globs_and_manifests_name_their_videos(tmp_path):
    for name in ("s01/a.mp4", "s01/b.MOV", "s02/a.mp4", "s02/notes.txt", "s02/still.jpg"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(b"x")
    assert is_collection(str(tmp_path / "data")) and not is_collection(str(tmp_path / "data" / "s02" / "still.jpg"))
    assert not any(map(is_collection, ["0", "https://cam.example/live.mp4?user=a", "rtsp://cam/stream?x=1"]))
    assert [v.id for v in find_videos(str(tmp_path / "data"))] == ["s01__a", "s01__b", "s02__a"]
    assert len(find_videos(str(tmp_path / "data" / "*" / "a.mp4"))) == 2
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,participant,condition\ndata/s01/a.mp4,P1,baseline\ndata/s02/a.mp4,P2,stress\n")
    videos = find_videos(str(manifest))
    assert [(v.id, v.extra) for v in videos] == [
        ("data__s01__a", {"participant": "P1", "condition": "baseline"}),
        ("data__s02__a", {"participant": "P2", "condition": "stress"}),
    ]
    assert Path(videos[0].path) == tmp_path / "data" / "s01" / "a.mp4"  # relative to the manifest
    (tmp_path / "list.txt").write_text("# two videos\ndata/s01/a.mp4\n\ndata/s01/b.MOV\n")
    assert [v.id for v in find_videos(str(tmp_path / "list.txt"))] == ["data__s01__a", "data__s01__b"]
    (tmp_path / "bad.csv").write_text("file\nx.mp4\n")
    with pytest.raises(ValueError, match=r"bad.csv: a CSV manifest needs a 'path' column"):
        find_videos(str(tmp_path / "bad.csv"))
    with pytest.raises(ValueError, match="no videos"):
        find_videos(str(tmp_path / "data" / "*.avi"))


def test_shards_split_the_videos_the_same_way_everywhere():
    videos = [Video(f"{k}.mp4", f"v{k:02d}") for k in range(11)]
    shards = [shard_of(videos, k, 3) for k in range(3)]
    assert sorted(v.id for s in shards for v in s) == [v.id for v in videos] and shards[1][0].id == "v01"
    with pytest.raises(ValueError, match=r"shard must be in \[0, shards\)"):
        shard_of(videos, 3, 3)


def test_throughput_mode_gives_the_faces_of_realtime_mode(tmp_path):
    video = need(VIDEOS / "short_hamilton_clip.mp4")  # three scene cuts, some inside a batch of 16
    recognizer = EmotionRecognizer(device="cpu")
    one = run(recognizer, video, tmp_path / "one", display=False, save_media=False)
    many = run(recognizer, video, tmp_path / "many", display=False, save_media=False, batch_frames=16)
    assert one["frames"] == many["frames"] == 275 and one["faces"] == many["faces"]
    assert (tmp_path / "one" / "predictions.csv").read_text() == (tmp_path / "many" / "predictions.csv").read_text()
    stopped = run(
        recognizer, video, tmp_path / "stopped", display=False, save_media=False, batch_frames=16, max_frames=20
    )
    assert stopped["frames"] == 20 and stopped["ended"] == "max_frames"


def _collection(tmp_path: Path) -> Path:
    """Five real videos in two participants' folders, one broken file, and a manifest with their columns."""
    root = tmp_path / "study"
    copies = [("P1/s1.mp4", "single_face.mp4"), ("P1/s2.mp4", "no_face.mp4"), ("P2/s1.mp4", "single_face.mp4")]
    copies += [("P2/s2.mov", "face_noface.mov"), ("P2/s3.mp4", "single_face.mp4")]
    for name, source in copies:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(need(VIDEOS / source), root / name)
    (root / "P2" / "broken.mp4").write_bytes(b"\x00" * 1000)
    rows = ["path,participant,session"] + [
        f"{p.relative_to(root)},{p.parent.name},{p.stem}" for p in sorted(root.rglob("*.m*"))
    ]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def _infer(out: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "infer.py", f"output_dir={out}", f"hydra.run.dir={out}/run", "save_media=false"]
    return subprocess.Popen(
        [*command, *overrides], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_a_collection_killed_and_rerun_ends_with_every_video_once(tmp_path):
    manifest, out = _collection(tmp_path), tmp_path / "out"
    first = _infer(out, f"source={manifest}", "recognizer.detector=haar")
    deadline = time.monotonic() + 300
    while len(list(out.glob("dataset/*/part-0.parquet"))) < 2 and time.monotonic() < deadline:
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("dataset/*/part-0.parquet")}
    assert 2 <= len(finished) < 6
    second = _infer(out, f"source={manifest}", "recognizer.detector=haar")
    log = second.communicate(timeout=600)[0]
    assert second.returncode == 0, log
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # finished videos are not redone
    summary = json.loads((out / "collection.json").read_text())
    assert (summary["videos"], summary["done"], summary["to_do"]) == (6, 5, 0)
    assert [f["video"] for f in summary["failed"]] == ["P2__broken"] and "not a readable video" in log
    import pandas as pd

    rows = pd.read_parquet(out / "dataset")  # one call: every face of every frame, with the manifest's columns
    for video in [v for v in find_videos(str(manifest)) if v.id != "P2__broken"]:
        written = (out / "videos" / video.id / "predictions.csv").read_text().count("\n") - 1
        assert (rows["video"] == video.id).sum() == written  # each video exactly once
        assert set(rows.loc[rows["video"] == video.id, "participant"]) <= {video.extra["participant"]}
    assert set(rows["session"]) == {"s1", "s2", "s3"} and len(rows) == summary["faces"]
    tracks = json.loads((out / "videos" / "P1__s1" / "tracks.json").read_text())
    assert len(tracks) == 1 and tracks[0]["frames"] == 72 and sum(tracks[0]["label_share"].values()) == pytest.approx(1)
    assert (out / "videos" / "P1__s1" / "timeline.png").stat().st_size > 5000


def test_two_shards_into_one_folder_equal_one_run(tmp_path):
    manifest, settings = _collection(tmp_path), RecognizerSettings(detector="haar", device="cpu")
    options = {"save_media": False, "batch_frames": 16, "max_frames": 30}
    whole = analyse_source(str(manifest), tmp_path / "whole", None, settings, options)
    for shard in (0, 1):
        halves = analyse_source(str(manifest), tmp_path / "shards", None, settings, options, shard, 2)
        assert halves["run"]["videos"] == 3
    assert halves["done"] == whole["done"] == 5 and halves["faces"] == whole["faces"]
    assert dataset(tmp_path / "shards").count_rows() == dataset(tmp_path / "whole").count_rows() == whole["faces"]
    assert collect(tmp_path / "shards", csv=True)["to_do"] == 0
    assert (tmp_path / "shards" / "predictions.csv").read_text().count("\n") == whole["faces"] + 1
    table = pq.read_table(part_path(tmp_path / "shards", find_videos(str(manifest))[0]))
    assert {"participant", "session", "p_happy", "score"} <= set(table.column_names)


@pytest.mark.slow
def test_two_worker_processes_analyse_a_collection(tmp_path):
    manifest, settings = _collection(tmp_path), RecognizerSettings(detector="haar", device="cpu")
    summary = analyse_source(str(manifest), tmp_path / "out", None, settings, {"save_media": False}, workers=2)
    assert summary["done"] == 5 and summary["run"]["failed"] == 1 and summary["to_do"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the GPU path runs where one is")
def test_throughput_mode_on_cuda(tmp_path):
    recognizer = EmotionRecognizer(device="cuda")
    summary = run(recognizer, need(VIDEOS / "single_face.mp4"), tmp_path, display=False, batch_frames=64)
    assert summary["frames_with_face"] == 72


@pytest.mark.slow
def test_a_multirun_over_shards_fills_one_folder_and_slurm_composes(tmp_path):
    from hydra import compose, initialize_config_dir

    from fer.config import register_configs, register_resolvers

    manifest, out = _collection(tmp_path), tmp_path / "out"
    sweep = ["-m", f"source={manifest}", f"output_dir={out}", "shard=range(0,2)", "shards=2"]
    command = [sys.executable, "infer.py", *sweep, f"hydra.sweep.dir={tmp_path / 'sweep'}", "save_media=false"]
    result = subprocess.run([*command, "recognizer.detector=haar", "max_frames=10"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "collection.json").read_text())  # the last shard's merge saw both
    assert (summary["done"], len(summary["failed"]), summary["to_do"]) == (5, 1, 0)
    register_resolvers()
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("infer", ["hydra/launcher=slurm", "shard=3", "shards=8"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and (cfg.shard, cfg.shards) == (3, 8)
