"""Sinks of ``mimicam live``: virtual camera (fake pyvirtualcam backend), MJPEG over HTTP read by
a Python client and by headless Chromium, the recorder, and the preview without a display."""

from __future__ import annotations

import http.client
import logging
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from _live_fakes import FAKE_BACKEND, fake_vcam_backend

from calibrate.errors import InputError
from live.io.sinks import (
    MjpegHttpSink,
    PreviewSink,
    RecorderSink,
    SinkUnavailable,
    VirtualCameraSink,
    vcam_setup_help,
)

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "test-token"  # every request needs the sink's token (live/io/web.py)
STREAM_REQUEST = f"GET /stream.mjpg?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _pattern(w: int = 320, h: int = 240, shade: int = 0) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)  # red top-left
    img[: h // 2, w // 2:] = (0, 255, 0)  # green top-right
    img[h // 2:, : w // 2] = (0, 0, 255)  # blue bottom-left
    img[h // 2:, w // 2:] = (shade, shade, shade)
    return img


# -- virtual camera --------------------------------------------------------------------------------


def test_virtual_camera_sends_rgb_frames_to_the_backend() -> None:
    with fake_vcam_backend() as backend:
        with VirtualCameraSink(320, 240, 30, backend=FAKE_BACKEND) as sink:
            assert sink.device == "fake-vcam0"
            for i in range(5):
                sink.send(_pattern(shade=i * 40), time.perf_counter())
            assert sink.frames_sent == 5
            with pytest.raises(ValueError, match="expected 320x240"):
                sink.send(_pattern(160, 120), 0.0)
        sink.close()  # idempotent
        cam = backend.instances[-1]
        assert cam.closed and cam.count == 5
        assert cam.last is not None
        assert tuple(cam.last[10, 10]) == (255, 0, 0)  # RGB order kept
        assert tuple(cam.last[-10, -10]) == (160, 160, 160)


def test_no_virtual_camera_gives_setup_instructions() -> None:
    with pytest.raises(SinkUnavailable) as info:
        VirtualCameraSink(320, 240, 30, backend="v4l2loopback")
    msg = str(info.value)
    assert "no virtual camera available" in msg
    assert "modprobe v4l2loopback" in msg  # this machine is Linux
    assert "OBS" in vcam_setup_help("Windows") and "OBS" in vcam_setup_help("Darwin")
    assert 'card_label="mimicam"' in vcam_setup_help("Linux")


def test_preview_without_a_display_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.system", lambda: "Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkUnavailable, match="no display"):
        PreviewSink()


# -- MJPEG over HTTP -------------------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"X-Mimicam-Token": TOKEN})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type") or "", body


def _read_parts(port: int, n: int, timeout: float = 20.0) -> list[np.ndarray]:
    """Read ``n`` JPEG parts of /stream.mjpg with a plain socket, parsing the multipart."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(STREAM_REQUEST)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert b"200" in head.split(b"\r\n")[0]
    ctype = next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-type"))
    assert b"multipart/x-mixed-replace" in ctype
    boundary = ctype.split(b"boundary=")[1].strip()
    images = []
    while len(images) < n and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while True:
            start = buf.find(b"--" + boundary + b"\r\n")
            if start < 0:
                break
            hdr_end = buf.find(b"\r\n\r\n", start)
            if hdr_end < 0:
                break
            headers = buf[start:hdr_end].split(b"\r\n")[1:]
            length = int(next(h for h in headers if h.lower().startswith(b"content-length"))
                         .split(b":")[1])
            body_start = hdr_end + 4
            if len(buf) < body_start + length:
                break
            jpeg = buf[body_start:body_start + length]
            images.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8),
                                                    cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            buf = buf[body_start + length:]
    sock.close()
    return images


def test_mjpeg_stream_page_and_frames() -> None:
    with MjpegHttpSink("127.0.0.1", 0, token=TOKEN) as sink:
        host, port = sink.address
        assert host == "127.0.0.1" and port > 0
        status, ctype, body = _get(port, "/")
        assert status == 200 and ctype.startswith("text/html")
        assert b'<img id="stream"' in body and b'class="stream-only"' in body
        assert _get(port, "/frame.jpg")[0] == 503  # nothing sent yet
        assert _get(port, "/nothing")[0] == 404

        stop = threading.Event()

        def feed() -> None:
            shade = 0
            while not stop.is_set():
                sink.send(_pattern(shade=shade % 256), time.perf_counter())
                shade += 10
                time.sleep(0.02)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            frames = _read_parts(port, 5)
            status, ctype, body = _get(port, "/frame.jpg")
        finally:
            stop.set()
            feeder.join()
        assert len(frames) == 5
        for f in frames:
            assert f.shape == (240, 320, 3)
            assert np.abs(f[30, 30].astype(int) - (255, 0, 0)).max() < 40  # red stays red
            assert np.abs(f[200, 60].astype(int) - (0, 0, 255)).max() < 40
        shades = [int(f[200, 280, 0]) for f in frames]
        assert len(set(shades)) > 1  # the stream moves on
        assert status == 200 and ctype == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)


def _wait(condition: Callable[[], bool], timeout: float, tick: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        tick()
        time.sleep(0.02)
    return condition()


def test_a_stalled_client_never_blocks_the_pipeline() -> None:
    threads_before = threading.active_count()
    sink = MjpegHttpSink("127.0.0.1", 0, quality=95, client_timeout=2.0, token=TOKEN)
    port = sink.address[1]
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(STREAM_REQUEST)  # and never reads
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2)]
    assert _wait(lambda: sink.clients == 1, 10.0, lambda: None)
    took: list[float] = []
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:  # 1 s of frames while the client reads nothing
        image = noisy[len(took) % 2]  # big JPEGs (~600 kB) fill the socket buffers
        t0 = time.perf_counter()
        sink.send(image, 0.0)
        took.append(time.perf_counter() - t0)
        time.sleep(0.01)
    # the client's server thread is stuck writing (it got a few frames out, then no more),
    # while send() kept returning at once: it only stores a reference
    assert 1 <= sink.frames_encoded < len(took) / 2, (sink.frames_encoded, len(took))
    assert len(took) > 40
    assert float(np.median(took)) < 0.005 and max(took) < 0.1, (np.median(took), max(took))
    assert sink.clients == 1
    # a client that reads nothing for client_timeout seconds is dropped
    assert _wait(lambda: sink.clients == 0, 2.0 + 8.0, lambda: sink.send(noisy[0], 0.0))
    t0 = time.perf_counter()
    sink.close()
    assert time.perf_counter() - t0 < 5.0
    stalled.close()
    sink.close()
    # every server and client thread was joined
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before


def test_clients_that_go_away_are_logged_at_debug_level_without_a_traceback(
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    noisy = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)

    def reset(conn: socket.socket) -> None:
        """Go away with a reset, as a killed browser tab or a lost network does."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with caplog.at_level(logging.DEBUG, logger="live.io.sinks"), \
            MjpegHttpSink("127.0.0.1", 0, token=TOKEN) as sink:
        sink.send(noisy, 0.0)
        # a viewer of the stream leaves while frames keep coming
        viewer = socket.create_connection(("127.0.0.1", sink.address[1]))
        viewer.sendall(STREAM_REQUEST)
        assert viewer.recv(64).startswith(b"HTTP/1.0 200")
        reset(viewer)
        # a client leaves in the middle of its request (the server is reading it)
        half = socket.create_connection(("127.0.0.1", sink.address[1]))
        half.sendall(b"GET /stream.mj")
        time.sleep(0.2)
        reset(half)

        def gone() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "went away" in r.getMessage()]

        assert _wait(lambda: len(gone()) >= 2, 10.0, lambda: sink.send(noisy, 0.0))
    assert all(r.levelno == logging.DEBUG for r in gone())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


def test_port_in_use_is_a_clear_error() -> None:
    with MjpegHttpSink("127.0.0.1", 0) as first, \
            pytest.raises(InputError, match="cannot serve the MJPEG stream"):
        MjpegHttpSink("127.0.0.1", first.address[1])


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's chromium at /usr/bin/chromium (scripts/test.sh "
                           "installs it: apt-get install chromium)")
@pytest.mark.fixtures
def test_headless_chromium_shows_the_stream(tmp_path: Path, portraits_dir: Path) -> None:
    from live.compose import letterbox
    from live.face.portraits import load_image

    frame = letterbox(load_image(portraits_dir / "lp_s42.jpg"), (1280, 720))
    with MjpegHttpSink("127.0.0.1", 0) as sink:
        stop = threading.Event()

        def feed() -> None:
            while not stop.is_set():
                sink.send(frame, time.perf_counter())
                time.sleep(1 / 30)

        feeder = threading.Thread(target=feed)
        feeder.start()
        shot = tmp_path / "shot.png"
        try:
            cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-quic", "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                   "--window-size=640,360", sink.url]
            result = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        finally:
            stop.set()
            feeder.join()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert shot.exists(), result.stderr.decode(errors="replace")[-2000:]
    got = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert got.shape[:2] == (360, 640)
    want = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)
    # the centre of the page shows the portrait (the stream scaled to fit the window)
    c_got = got[120:240, 220:420].astype(np.float64).ravel()
    c_want = want[120:240, 220:420].astype(np.float64).ravel()
    assert c_got.std() > 10  # not a blank or black page
    corr = float(np.corrcoef(c_got, c_want)[0, 1])
    assert corr > 0.9, corr


# -- recorder --------------------------------------------------------------------------------------


def test_recorder_writes_every_frame_and_renames_at_close(tmp_path: Path) -> None:
    from live.io.video import VideoReader, probe_video

    path = tmp_path / "rec.mp4"
    with RecorderSink(path, fps=25, size=(320, 240), realtime=False) as rec:
        for i in range(30):
            rec.send(_pattern(shade=i * 8), time.perf_counter())
        assert not path.exists()  # still under its temporary name
    assert path.exists()
    info = probe_video(path)
    assert info.frame_count == 30 and info.size == (320, 240)
    with VideoReader(path) as reader:
        first = next(iter(reader)).image
    assert np.abs(first[30, 30].astype(int) - (255, 0, 0)).max() < 40
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]


def test_realtime_recorder_keeps_wall_clock_timing(tmp_path: Path) -> None:
    from live.io.video import probe_video

    path = tmp_path / "rt.mp4"
    rec = RecorderSink(path, fps=20, size=(320, 240))
    t0 = time.perf_counter()
    for i in range(4):  # 4 frames over ~1 s: slots in between are filled by repeats
        rec.send(_pattern(shade=i * 50), time.perf_counter())
        time.sleep(0.3)
    elapsed = time.perf_counter() - t0 - 0.3
    rec.close()
    frames = probe_video(path).frame_count
    assert frames is not None
    # written frames cover the time the frames were sent over, at 20 fps
    assert abs(frames - (elapsed * 20 + 1)) <= 3, (frames, elapsed)
