"""The control page's server side without a browser: the request gate (token, Host, Origin),
binding only the loopback unless ``--allow-remote``, uploads (type, size, pixels, face, disk,
names chosen by the server), the control's commands, and the live statistics."""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import struct
import zlib
from email.message import Message
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate.errors import InputError
from live.face.upload import (
    UploadLimits,
    UploadRejected,
    image_dimensions,
    remove_stale_uploads,
    sniff_image,
    store_portrait,
)
from live.io.hotkeys import Action, Command
from live.io.sinks import MjpegHttpSink
from live.io.web import ControlError, Gate, check_bind, is_loopback_host
from live.jobs.control import LiveControl
from live.stats import LiveStats

# -- the gate -------------------------------------------------------------------------------------


def _headers(**values: str) -> Message:
    msg = Message()
    for name, value in values.items():
        msg[name.replace("_", "-")] = value
    return msg


def test_gate_checks_host_origin_and_token() -> None:
    gate = Gate("secret", 8080)
    good = {"token": ["secret"]}
    assert gate.reason("/", good, _headers(Host="127.0.0.1:8080")) is None
    assert gate.reason("/", good, _headers(Host="localhost:8080")) is None
    assert gate.reason("/", good, _headers(Host="[::1]:8080")) is None
    assert gate.reason("/", good, _headers(Host="127.0.0.1")) is None
    # DNS rebinding: a name of the attacker's pointing at 127.0.0.1
    assert gate.reason("/", good, _headers(Host="evil.example:8080")) == "unexpected Host header"
    assert gate.reason("/", good, _headers(Host="127.0.0.1:9999")) == "unexpected Host header"
    assert gate.reason("/", good, _headers()) == "unexpected Host header"
    assert gate.reason("/", {}, _headers(Host="127.0.0.1:8080")) == "missing or wrong token"
    assert gate.reason("/", {"token": ["Secret"]},
                       _headers(Host="127.0.0.1:8080")) == "missing or wrong token"
    assert gate.reason("/api/state", {}, _headers(Host="127.0.0.1:8080",
                                                  X_Mimicam_Token="secret")) is None
    # the page's own files need no token (no data in them)
    assert gate.reason("/app.js", {}, _headers(Host="127.0.0.1:8080")) is None
    # Origin must be this server's own
    same = _headers(Host="127.0.0.1:8080", Origin="http://127.0.0.1:8080")
    assert gate.reason("/api/command", good, same) is None
    for origin in ("http://evil.example", "null", "http://127.0.0.1:8081",
                   "https://127.0.0.1:8080"):
        assert gate.reason("/api/command", good, _headers(Host="127.0.0.1:8080",
                                                          Origin=origin)) is not None
    # another site embedding the stream as an image; a link to the page is a navigation
    embed = _headers(Host="127.0.0.1:8080", Sec_Fetch_Site="cross-site",
                     Sec_Fetch_Mode="no-cors")
    assert gate.reason("/stream.mjpg", good, embed) == "request from another site"
    link = _headers(Host="127.0.0.1:8080", Sec_Fetch_Site="cross-site",
                    Sec_Fetch_Mode="navigate")
    assert gate.reason("/", good, link) is None
    assert gate.reason("/", {}, link) == "missing or wrong token"
    # a machine name only for --allow-remote
    assert Gate("t", 80, remote=True, names=frozenset({"mybox.local"})).host_ok("MyBox.local")
    assert not Gate("t", 80).host_ok("mybox.local")


def test_binding_the_network_needs_allow_remote(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert is_loopback_host("localhost") and is_loopback_host("127.8.9.10")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("192.168.1.5")
    check_bind("127.0.0.1", False)
    with pytest.raises(InputError, match=r"--allow-remote.*not encrypted"):
        check_bind("0.0.0.0", False)
    with pytest.raises(InputError, match="would open them to the network"):
        MjpegHttpSink("0.0.0.0", 0)
    # allowed: served on every interface, with a warning; reached here through 127.0.0.1
    monkeypatch.setattr("live.io.sinks.lan_address", lambda: "192.0.2.10")
    with caplog.at_level(logging.INFO, logger="live.io.sinks"), \
            MjpegHttpSink("0.0.0.0", 0, allow_remote=True) as sink:
        port = sink.address[1]
        assert sink.url == f"http://127.0.0.1:{port}/?token={sink.token}"
        assert sink.lan_url == f"http://192.0.2.10:{port}/?token={sink.token}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"/?token={sink.token}")
        assert conn.getresponse().status == 200
        conn.close()
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and "unencrypted" in warning[0].getMessage()
    assert any(sink.lan_url in r.getMessage() for r in caplog.records)


def test_the_token_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="live.io.sinks"), \
            MjpegHttpSink("127.0.0.1", 0) as sink:
        conn = http.client.HTTPConnection("127.0.0.1", sink.address[1], timeout=10)
        conn.request("GET", f"/nothing?token={sink.token}")
        assert conn.getresponse().status == 404
        conn.close()
        token = sink.token
    http_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("http")]
    assert any("/nothing?token=***" in line for line in http_lines), http_lines
    # only the start-up lines carry it (the link the user opens)
    assert all(token not in line for line in http_lines)


def test_answers_carry_the_security_headers() -> None:
    with MjpegHttpSink("127.0.0.1", 0) as sink:
        conn = http.client.HTTPConnection("127.0.0.1", sink.address[1], timeout=10)
        conn.request("GET", f"/?token={sink.token}")
        resp = conn.getresponse()
        resp.read()
        conn.close()
    assert resp.getheader("X-Frame-Options") == "DENY"
    assert resp.getheader("Cross-Origin-Resource-Policy") == "same-origin"
    assert resp.getheader("Referrer-Policy") == "no-referrer"
    csp = resp.getheader("Content-Security-Policy") or ""
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


# -- uploads --------------------------------------------------------------------------------------


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    from live.jobs.demo import builtin_portrait

    return _encode(builtin_portrait(), ".jpg")


def test_sniffing_and_header_sizes() -> None:
    rgb = np.zeros((30, 40, 3), np.uint8)
    for ext, kind in ((".jpg", "jpeg"), (".png", "png"), (".webp", "webp"), (".bmp", "bmp")):
        data = _encode(rgb, ext)
        assert sniff_image(data) == kind
        assert image_dimensions(data, kind) == (40, 30), ext
    lossless = cv2.imencode(".webp", rgb, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert image_dimensions(lossless, "webp") == (40, 30)
    assert sniff_image(b"GIF89a....") is None and sniff_image(b"") is None
    assert sniff_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert image_dimensions(_png_header(70000, 70000), "png") == (70000, 70000)


def test_a_face_is_stored_under_a_name_of_the_servers(tmp_path: Path, face_jpeg: bytes) -> None:
    stored = store_portrait(face_jpeg, tmp_path)
    assert stored.added and stored.kind == "jpeg" and stored.size == (512, 512)
    assert stored.path.parent == tmp_path
    assert stored.path.name.startswith("upload-") and stored.path.suffix == ".jpg"
    assert stored.path.read_bytes() == face_jpeg
    again = store_portrait(face_jpeg, tmp_path)  # the same picture twice: stored once
    assert not again.added and again.path == stored.path
    assert [p.name for p in tmp_path.iterdir()] == [stored.path.name]


@pytest.mark.parametrize("case", ["too big", "not a picture", "bomb", "damaged", "no face",
                                  "disk full", "no folder"])
def test_uploads_that_are_refused(tmp_path: Path, face_jpeg: bytes, case: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    limits = UploadLimits()
    folder = tmp_path / "portraits"
    folder.mkdir()
    data = face_jpeg
    if case == "too big":
        limits = UploadLimits(max_bytes=1000)
    elif case == "not a picture":
        data = b"<html><script>alert(1)</script></html>"
    elif case == "bomb":  # a small file that would decode to 15 GB
        data = _png_header(70000, 70000) + b"\0" * 100
    elif case == "damaged":
        data = face_jpeg[:2000]
    elif case == "no face":
        data = _encode(np.full((200, 300, 3), 180, np.uint8), ".png")
    elif case == "disk full":
        usage = shutil._ntuple_diskusage(total=1 << 40, used=(1 << 40) - (100 << 20),
                                         free=100 << 20)  # 100 MB left
        monkeypatch.setattr("shutil.disk_usage", lambda path: usage)
    elif case == "no folder":
        folder = tmp_path / "gone"
    with pytest.raises(UploadRejected) as info:
        store_portrait(data, folder, limits=limits)
    want = {"too big": (413, "too large"), "not a picture": (415, "JPEG, PNG, WebP or BMP"),
            "bomb": (413, "too many pixels"), "damaged": (422, "cannot be decoded"),
            "no face": (422, "no face found in the picture"),
            "disk full": (507, "not enough free disk space"),
            "no folder": (409, "folder is gone")}[case]
    assert info.value.status == want[0] and want[1] in str(info.value), str(info.value)
    if folder.exists():
        assert list(folder.iterdir()) == []  # nothing left behind, no temporary file


def test_stale_temporary_uploads_are_removed(tmp_path: Path) -> None:
    old = tmp_path / ".mimicam-upload-0123456789abcdef.partial"
    fresh = tmp_path / ".mimicam-upload-fedcba9876543210.partial"
    mine = tmp_path / "portrait.jpg"
    for p in (old, fresh, mine):
        p.write_bytes(b"x")
    os.utime(old, (1, 1))
    assert remove_stale_uploads(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, mine.name])


# -- the control ----------------------------------------------------------------------------------


class _Library:
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, path: Path) -> int:
        self.paths.append(path)
        return len(self.paths) - 1


class _Pipeline:
    """What LiveControl reads and calls of a LivePipeline."""

    def __init__(self, paths: list[Path]) -> None:
        self.library = _Library(paths)
        self.stats = LiveStats()
        self.submitted: list[Command] = []
        self.engine = type("E", (), {"name": "mesh"})()
        self.source = type("S", (), {"lost": False})()
        self.passthrough = self.frozen = False
        self.overlay = self.calibrated = True
        self.portrait_index = 0
        self.dropped_input = 3

    def submit(self, cmd: Command) -> None:
        self.submitted.append(cmd)


def test_commands_go_through_the_pipelines_queue(tmp_path: Path) -> None:
    pipe = _Pipeline([tmp_path / "a.jpg", tmp_path / "b.jpg"])
    control = LiveControl(pipe, portrait_dir=tmp_path)  # type: ignore[arg-type]
    for action in ("recalibrate", "passthrough", "freeze", "overlay", "next", "previous"):
        assert control.command(action, {}) == {}
    assert control.command("portrait", {"index": 1}) == {"index": 1}
    assert [c.action for c in pipe.submitted] == [
        Action.RECALIBRATE, Action.PASSTHROUGH, Action.FREEZE, Action.OVERLAY, Action.NEXT,
        Action.PREVIOUS, Action.PORTRAIT]
    assert pipe.submitted[-1].index == 1
    for bad in ({"index": 2}, {"index": -1}, {"index": "1"}, {"index": True}, {}):
        with pytest.raises(ControlError) as info:
            control.command("portrait", bad)
        assert info.value.status == 400
    with pytest.raises(ControlError, match="unknown action 'quit'") as info:
        control.command("quit", {})  # the page cannot stop mimicam
    assert "expected one of portrait, background, recalibrate" in str(info.value)
    state = control.state()
    assert state["portraits"] == [{"index": 0, "name": "a.jpg"}, {"index": 1, "name": "b.jpg"}]
    assert state["stats"]["dropped_input"] == 3 and state["upload"]["enabled"]
    json.dumps(state)


def test_one_picture_given_means_no_uploads(tmp_path: Path, face_jpeg: bytes) -> None:
    picture = tmp_path / "me.jpg"
    picture.write_bytes(face_jpeg)
    pipe = _Pipeline([picture])
    control = LiveControl.for_portrait(pipe, picture)  # type: ignore[arg-type]
    assert control.upload_max_bytes == 0
    state = control.state()
    assert not state["upload"]["enabled"]
    assert "--portrait FOLDER" in state["upload"]["why_not"]
    with pytest.raises(ControlError) as info:
        control.add_portrait(face_jpeg)
    assert info.value.status == 409 and "needs a portrait folder" in info.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["me.jpg"]


def test_an_upload_is_added_and_switched_to(tmp_path: Path, face_jpeg: bytes) -> None:
    pipe = _Pipeline([tmp_path / "a.jpg"])
    control = LiveControl(pipe, portrait_dir=tmp_path, max_uploads=1)  # type: ignore[arg-type]
    result = control.add_portrait(face_jpeg)
    assert result["index"] == 1 and result["added"]
    assert pipe.submitted == [Command(Action.PORTRAIT, 1)]
    assert pipe.library.paths[1] == tmp_path / result["name"]
    assert control.thumbnail(1) is not None and control.thumbnail(7) is None
    with pytest.raises(ControlError) as info:  # the run's upload budget is spent
        control.add_portrait(face_jpeg[:-10] + b"\xff\xd9" * 5)
    assert info.value.status == 429


def test_live_statistics_for_the_page() -> None:
    stats = LiveStats()
    assert stats.live()["capture_to_send_ms"] == {"median": None, "p95": None}
    for i in range(40):  # 30 fps, 20 ms from capture to send, 200 ms for the last two
        sent = 10.0 + i / 30
        stats.frame_sent(t_capture=sent - (0.02 if i < 38 else 0.2), t_sent=sent)
    live = stats.live()
    assert live["fps"] == pytest.approx(30.0, abs=0.1)
    assert live["capture_to_send_ms"]["median"] == pytest.approx(20.0, abs=0.1)
    assert live["capture_to_send_ms"]["p95"] > 20.0
    assert live["frames_sent"] == 40 and live["recalibrations"] == 0

