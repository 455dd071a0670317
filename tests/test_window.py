"""infer.py's OpenCV window, opened for real on a virtual X display (Debian's ``xvfb``).

Keys reach the window through ``xdotool`` and the screen is read with ImageMagick's
``import``; ``.ci/run`` installs all three where they are missing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.inference.loop import run
from fer.inference.outputs import _COLOURS
from tests.conftest import DATA, ROOT, need

TOOLS = ("Xvfb", "xdotool", "import")
MISSING = [t for t in TOOLS if not shutil.which(t)]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING} (apt-get install xvfb xdotool imagemagick)")


@pytest.fixture
def display():
    """A fresh virtual X display; yields the environment that points at it."""
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    number = server.stdout.readline().strip()
    yield {**os.environ, "DISPLAY": f":{number}"}
    server.terminate()
    server.wait(10)


def _until(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """single_face.mp4 six times over (432 frames), so the window stays open while keys are sent."""
    source = cv2.VideoCapture(str(need(DATA / "videos" / "single_face.mp4")))
    frames = []
    while (frame := source.read())[0]:
        frames.append(frame[1])
    path = tmp_path_factory.mktemp("window") / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, frames[0].shape[1::-1])
    for frame in frames * 6:
        writer.write(frame)
    writer.release()
    return path


def _start(video: Path, out: Path, env: dict[str, str], *overrides: str) -> tuple[subprocess.Popen, str, Path]:
    """infer.py with its window on ``env``'s display, once the window shows; its output goes to a file
    (a pipe nobody reads while it runs could fill and stall it)."""
    command = [sys.executable, str(ROOT / "infer.py"), f"source={video}", "display=true", f"output_dir={out}"]
    command += [f"hydra.run.dir={out / 'hydra'}", *overrides]
    log = out.parent / f"{out.name}.log"
    with log.open("wb") as file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=file, stderr=subprocess.STDOUT)

    def window() -> str | None:
        if process.poll() is not None:  # ended before showing a window: say why instead of waiting on
            raise AssertionError(f"infer.py exited with {process.returncode}: {log.read_text()[-2000:]}")
        found = subprocess.run(["xdotool", "search", "--name", "^fer$"], env=env, capture_output=True, text=True)
        return found.stdout.split()[0] if found.stdout.strip() else None

    try:
        window_id = _until(window, 120, "infer.py's window")
    except AssertionError as error:
        process.kill()
        raise AssertionError(f"{error}; infer.py printed: {log.read_text()[-2000:]}") from None
    subprocess.run(["xdotool", "windowfocus", "--sync", window_id], env=env, check=True, capture_output=True)
    return process, window_id, log


def _key(name: str, env: dict[str, str]) -> None:
    subprocess.run(["xdotool", "key", name], env=env, check=True, capture_output=True)


def test_window_shows_boxes_pauses_on_space_and_quits_on_q(display, long_video, tmp_path, screenshots):
    out = tmp_path / "run"
    partial = out / ".predictions.csv.partial"
    process, window_id, log = _start(long_video, out, display)
    _until(lambda: len(_rows(partial)) >= 10, 60, "ten frames of predictions")
    _key("space", display)
    time.sleep(0.5)
    paused = len(_rows(partial))
    shot = screenshots / "desktop_window.png"
    subprocess.run(["import", "-window", "root", str(shot)], env=display, check=True)
    time.sleep(1.5)
    rows = _rows(partial)
    assert len(rows) == paused, "frames were processed while paused"
    # the screen shows the last processed frame with its face's box in its label's colour
    screen = cv2.imread(str(shot))
    geometry = subprocess.run(["xdotool", "getwindowgeometry", window_id], env=display, capture_output=True, text=True)
    x0, y0 = (int(v) for v in geometry.stdout.split("Position: ")[1].split()[0].split(","))
    last = rows[-1]
    x1, y1, x2, _ = (int(last[k]) for k in ("x1", "y1", "x2", "y2"))
    edge = screen[y0 + y1, x0 + x1 + 5 : x0 + x2 - 5].astype(int)
    colour = np.array(_COLOURS[last["label"]])
    assert (np.abs(edge - colour).max(axis=1) < 40).mean() > 0.8, "no box in the label's colour on screen"

    _key("space", display)  # resume
    _until(lambda: len(_rows(partial)) > paused, 30, "frames after resuming")
    _key("q", display)
    assert process.wait(60) == 0, log.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ended"] == "key" and 10 <= summary["frames"] < 432
    assert len(_rows(out / "predictions.csv")) == summary["faces"]
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]


def test_escape_quits_the_window(display, long_video, tmp_path):
    out = tmp_path / "run"
    process, _, log = _start(long_video, out, display)
    _until(lambda: len(_rows(out / ".predictions.csv.partial")) >= 3, 60, "three frames of predictions")
    _key("Escape", display)
    assert process.wait(60) == 0, log.read_text()
    assert json.loads((out / "summary.json").read_text())["ended"] == "key"


def test_key_n_makes_the_faces_shown_their_neutral_reference(display, long_video, tmp_path):
    out = tmp_path / "run"
    process, _, log = _start(long_video, out, display, "recognizer.adapt=neutral", "recognizer.smoothing=0")
    partial = out / ".predictions.csv.partial"
    _until(lambda: len(_rows(partial)) >= 5, 60, "five frames of predictions")
    marked = len(_rows(partial))
    _key("n", display)
    _until(lambda: len(_rows(partial)) >= marked + 10, 60, "frames after the mark")
    _key("q", display)
    assert process.wait(60) == 0, log.read_text()
    printed = log.read_text()
    assert "neutral reference: tracks [1]" in printed, printed
    # before the mark the faces are as the model reads them; after it, divided by a frame much like
    # them, no class stands out as much
    rows = _rows(out / "predictions.csv")
    top = [max(float(v) for k, v in row.items() if k.startswith("p_")) for row in rows]
    assert np.mean(top[marked + 3 : marked + 8]) < np.mean(top[:marked]) - 0.2, top


def test_an_opencv_without_a_gui_gets_a_clear_message(monkeypatch, tmp_path):
    from fer.inference.recognizer import EmotionRecognizer

    def headless(*args, **kwargs):
        raise cv2.error("OpenCV(4.10) error: (-2:Unspecified error) The function is not implemented.")

    monkeypatch.setenv("DISPLAY", ":12345")
    monkeypatch.setattr(cv2, "namedWindow", headless)
    image = need(DATA / "photos" / "obama.jpg")
    recognizer = EmotionRecognizer(detector="blazeface")
    with pytest.raises(RuntimeError, match="cannot open a window.*display=false"):
        run(recognizer, image, tmp_path / "true", display=True)
    assert not (tmp_path / "true").exists()  # refused before any output
    summary = run(recognizer, image, tmp_path / "auto", display="auto")  # auto: goes on without a window
    assert summary["faces"] == 1
