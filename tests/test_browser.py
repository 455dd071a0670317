"""The web app's page in a real browser: Debian's Chromium driven by Playwright, a fake camera
playing ``single_face.mp4``, uploads of real photos and videos. Screenshots go to
``outputs/screenshots/``. See ``../shared/browser-testing.md``."""

from __future__ import annotations

import shutil

import cv2
import pytest

from benchmarks.web_load import web_server
from tests.conftest import DATA, need

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory):
    """single_face.mp4 as Motion-JPEG, the fake camera's input."""
    capture = cv2.VideoCapture(str(need(DATA / "videos" / "single_face.mp4")))
    path = tmp_path_factory.mktemp("camera") / "single_face.mjpeg"
    with path.open("wb") as file:
        while (frame := capture.read())[0]:
            file.write(cv2.imencode(".jpg", frame[1])[1].tobytes())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with web_server(tmp_path_factory.mktemp("web"), "web.detectors=[blazeface,haar]") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser(camera_file):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera_file}",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'", timeout=30_000)
    yield page
    page.close()
    assert not errors, f"the page raised {errors}"


def test_live_camera_shows_a_box_a_label_and_happy_during_the_smile(page, screenshots):
    page.click("#start")
    # the listed box and the overlay are read in one script (a newer answer can move the box between two
    # calls), once a face is listed
    box, alpha = page.wait_for_function(
        "() => { const li = document.querySelector('#live-faces li'); if (!li) return null;"
        " const box = li.dataset.box.split(',').map(Number);"
        " const [x, y1, , y2] = box; const c = document.querySelector('#overlay');"
        " const d = c.getContext('2d').getImageData(x, y1, 1, y2 - y1).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return [box, n / (d.length / 4)]; }",
        timeout=60_000,
    ).json_value()
    x1, y1, x2, y2 = box
    assert 150 < (x1 + x2) / 2 < 450 and 100 < (y1 + y2) / 2 < 300, "the box is not on the face"
    assert alpha > 0.8, "the overlay has no box edge where the listed box is"
    happy = page.wait_for_selector("#live-faces li[data-label='happy']", timeout=60_000)
    assert "happy" in happy.inner_text()  # the handle keeps this answer's item even when a newer one replaces it
    page.wait_for_function("parseFloat(document.querySelector('#fps').textContent) > 0")
    assert int(page.inner_text("#latency")) > 0
    page.wait_for_timeout(1500)  # a second of timeline
    page.screenshot(path=str(screenshots / "web_live.png"))
    page.click("#neutral")  # the face shown now taken as the person at rest
    page.wait_for_function("document.querySelector('#status').textContent === 'neutral reference: 1 face(s) marked'")
    page.click("#stop")
    assert page.is_disabled("#neutral")


def test_photo_upload_lists_five_faces(page, screenshots):
    page.set_input_files("#file", str(need(DATA / "photos" / "multi_face.jpg")))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.locator("#upload-faces tbody tr").count() == 5
    # the annotated image loads after the table shows: wait for it rather than race it (a loaded image has a width)
    page.wait_for_function("document.querySelector('#annotated-image').naturalWidth > 0", timeout=30_000)
    csv_text = page.request.get(page.evaluate("document.querySelector('#csv').href")).text()
    assert len(csv_text.strip().splitlines()) == 6  # header + 5 faces
    assert page.inner_text("#progress-text").endswith("5 face(s)")
    page.screenshot(path=str(screenshots / "web_upload_photo.png"), full_page=True)


def test_a_text_file_gets_the_pages_error_message(page, tmp_path, screenshots):
    text = tmp_path / "notes.jpg"  # an image by its name only
    text.write_text("not a picture at all\n")
    page.set_input_files("#file", str(text))
    error = page.locator("#upload-error")
    error.wait_for(state="visible", timeout=30_000)
    assert "notes.jpg" in error.inner_text() and "not an image or a video" in error.inner_text()
    assert page.locator("#result").is_hidden()
    page.screenshot(path=str(screenshots / "web_upload_error.png"))


def test_video_upload_shows_progress_the_annotated_video_and_a_timeline(page, screenshots):
    page.set_input_files("#file", str(need(DATA / "videos" / "single_face.mp4")))
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert "72 frames, 1 track(s)" in page.inner_text("#progress-text")
    assert page.locator("#track-timelines canvas").count() == 1
    page.wait_for_function("document.querySelector('#annotated-video').readyState >= 1", timeout=30_000)
    assert page.evaluate("document.querySelector('#annotated-video').duration") > 2  # Chromium plays the webm
    page.screenshot(path=str(screenshots / "web_upload_video.png"), full_page=True)
