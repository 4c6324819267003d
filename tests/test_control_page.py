"""The control page of ``mimicam live --http`` in a real browser: headless Chromium driven by
Selenium through Debian's chromedriver (``scripts/test.sh`` installs both). A running live
pipeline (built-in portraits, real tracker and mesh engine: ``_control_rig.py``) serves it.

Clicking a thumbnail changes the streamed image, recalibrate shows in the statistics, a
picture without a face is refused with the reason on the page, and requests without the
token (or from another site) are refused with 403.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _control_rig import Rig, running_live

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

needs_browser = pytest.mark.skipif(
    not (CHROMIUM.exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them: "
           "apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_live(tmp_path_factory.mktemp("portraits")) as rig:
        yield rig


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _stream_colour(driver: Any) -> np.ndarray:
    """Mean RGB of the streamed image as the page shows it."""
    png = driver.find_element("id", "stream").screenshot_as_png
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return image.reshape(-1, 3).mean(axis=0)[::-1]


def _open(driver: Any, rig: Rig) -> None:
    driver.get(rig.sink.url)
    _until(lambda: len(driver.find_elements("css selector", "#portraits .thumb")) == 2,
           what="the two portrait thumbnails")


@needs_browser
def test_the_page_shows_the_stream_portraits_and_live_statistics(browser: Any, rig: Rig) -> None:
    _open(browser, rig)
    thumbs = browser.find_elements("css selector", "#portraits .thumb")
    assert thumbs[0].get_attribute("aria-current") == "true"
    assert "astronaut.png" in thumbs[0].text
    # the thumbnails are real pictures (served with the token)
    _until(lambda: browser.execute_script(
        "return [...document.querySelectorAll('#portraits img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"), what="thumbnail images")
    # the stream plays, and the statistics move about once a second
    _until(lambda: _stream_colour(browser).std() > 0 and
           browser.find_element("id", "stat-fps").text not in ("–", "0.0"),
           what="frames and an fps reading")
    first = int(browser.find_element("id", "stat-sent").text)
    _until(lambda: int(browser.find_element("id", "stat-sent").text) > first + 10,
           what="the frame count to go up")
    assert re.fullmatch(r"\d+ ms \(p95 \d+\)", browser.find_element("id", "stat-latency").text)


@needs_browser
def test_clicking_a_thumbnail_switches_the_streamed_portrait(browser: Any, rig: Rig) -> None:
    _open(browser, rig)
    _until(lambda: rig.pipeline.calibrated, what="calibration")
    _until(lambda: _stream_colour(browser).sum() > 30, what="a streamed frame")
    before = _stream_colour(browser)
    browser.find_elements("css selector", "#portraits .thumb")[1].click()
    # the blue astronaut: the stream's blue rises against its red
    _until(lambda: rig.pipeline.portrait_index == 1, what="the switch")

    def bluer() -> bool:
        now = _stream_colour(browser)
        return bool((now[2] - now[0]) - (before[2] - before[0]) > 20)

    _until(bluer, what="the streamed image to change to the second portrait")
    _until(lambda: browser.find_elements("css selector", "#portraits .thumb")[1]
           .get_attribute("aria-current") == "true", what="the thumbnail to show it")
    browser.find_elements("css selector", "#portraits .thumb")[0].click()
    _until(lambda: rig.pipeline.portrait_index == 0, what="the switch back")


@needs_browser
def test_recalibrate_shows_in_the_statistics(browser: Any, rig: Rig) -> None:
    _open(browser, rig)
    before = rig.pipeline.stats.counters["recalibrations"]
    _until(lambda: browser.find_element("id", "stat-recalibrations").text == str(before),
           what="the recalibration count")
    browser.find_element("id", "recalibrate").click()
    _until(lambda: browser.find_element("id", "stat-recalibrations").text == str(before + 1),
           what="the page to count the recalibration")
    assert rig.pipeline.stats.counters["recalibrations"] == before + 1


@needs_browser
def test_a_picture_without_a_face_is_refused_with_the_reason(browser: Any, rig: Rig,
                                                            tmp_path: Path) -> None:
    blank = tmp_path / "sky.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), (235, 206, 135), np.uint8))
    _open(browser, rig)
    browser.find_element("id", "upload-input").send_keys(str(blank))
    message = _until(lambda: (t := browser.find_element("id", "upload-message").text)
                     and "no face" in t and t, what="the error text")
    assert "sky.png" in message and "no face found in the picture" in message
    assert "error" in browser.find_element("id", "upload-message").get_attribute("class")
    assert len(browser.find_elements("css selector", "#portraits .thumb")) == 2
    assert sorted(p.name for p in rig.folder.iterdir()) == ["astronaut.png",
                                                             "blue_astronaut.png"]


@needs_browser
def test_a_picture_with_a_face_is_added_and_shown(browser: Any, rig: Rig,
                                                  tmp_path: Path) -> None:
    from live.jobs.demo import builtin_portrait

    picture = tmp_path / "my photo.jpg"
    face = cv2.cvtColor(builtin_portrait(), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(picture), face)
    _open(browser, rig)
    browser.find_element("id", "upload-input").send_keys(str(picture))
    _until(lambda: len(browser.find_elements("css selector", "#portraits .thumb")) == 3,
           what="a third thumbnail")
    assert "Added my photo.jpg" in browser.find_element("id", "upload-message").text
    stored = [p for p in rig.folder.iterdir() if p.name.startswith("upload-")]
    assert len(stored) == 1 and stored[0].suffix == ".jpg"
    assert stored[0].read_bytes() == picture.read_bytes()
    _until(lambda: rig.pipeline.portrait_index == 2, what="the switch to the new portrait")
    # nothing else was left in the folder (no temporary file)
    assert len(list(rig.folder.iterdir())) == 3


# -- without a browser: what the server refuses ----------------------------------------------------


def _request(rig: Rig, method: str, path: str, *, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_requests_without_the_token_are_refused(rig: Rig) -> None:
    token = rig.sink.token
    for path in ("/", "/api/state", "/stream.mjpg", "/frame.jpg", "/api/portraits/0.jpg"):
        status, body = _request(rig, "GET", path)
        assert status == 403, path
        assert b"token" in body
        assert _request(rig, "GET", f"{path}?token=wrong{token}")[0] == 403
    before = rig.pipeline.stats.counters["recalibrations"]
    command = json.dumps({"action": "recalibrate"}).encode()
    assert _request(rig, "POST", "/api/command", body=command)[0] == 403
    assert _request(rig, "POST", "/api/portraits", body=b"\x89PNG\r\n\x1a\n")[0] == 403
    # the token is enough for a client without Origin (curl); not for another site
    ok = {"X-Mimicam-Token": token, "Content-Type": "application/json"}
    assert _request(rig, "GET", "/api/state", headers=ok)[0] == 200
    assert _request(rig, "POST", "/api/command", body=command,
                    headers={**ok, "Origin": "http://evil.example"})[0] == 403
    assert _request(rig, "GET", f"/stream.mjpg?token={token}",
                    headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                             "Sec-Fetch-Dest": "image"})[0] == 403
    # a DNS name pointing at 127.0.0.1 (rebinding): refused even with the token
    assert _request(rig, "GET", "/api/state",
                    headers={**ok, "Host": f"evil.example:{rig.port}"})[0] == 403
    time.sleep(0.5)
    assert rig.pipeline.stats.counters["recalibrations"] == before  # nothing got through
    assert _request(rig, "POST", "/api/command", body=command, headers={
        **ok, "Origin": f"http://127.0.0.1:{rig.port}"})[0] == 200
    status, _ = _request(rig, "GET", "/app.js")  # the page's code is public, no data
    assert status == 200


def test_uploads_are_bounded_before_they_are_read(rig: Rig) -> None:
    ok = {"X-Mimicam-Token": rig.sink.token}
    too_big = rig.control.upload_max_bytes + 1
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=20)
    conn.putrequest("POST", "/api/portraits")
    conn.putheader("X-Mimicam-Token", rig.sink.token)
    conn.putheader("Content-Length", str(too_big))
    conn.endheaders()  # the body is never sent: the answer comes at once
    resp = conn.getresponse()
    assert resp.status == 413 and b"too large" in resp.read()
    conn.close()
    status, body = _request(rig, "POST", "/api/portraits", headers=ok, body=b"GIF89a" * 10)
    assert status == 415 and b"JPEG, PNG, WebP or BMP" in body
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=20)
    conn.putrequest("POST", "/api/portraits", skip_accept_encoding=True)
    conn.putheader("X-Mimicam-Token", rig.sink.token)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411
    conn.close()
    assert not [p for p in rig.folder.iterdir() if p.name.startswith(".")]
