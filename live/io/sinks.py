"""Where ``mimicam live`` sends its frames: virtual camera, preview window, MJPEG over HTTP, file.

Every sink takes RGB uint8 frames of the output size through ``send(image, t_capture)``, is a
context manager, and has an idempotent :meth:`Sink.close`. Slow work never blocks the
pipeline: the HTTP server encodes JPEG on its own threads (only while someone watches) and
the recorder encodes on its own thread.

A sink that cannot start for reasons of the machine (no virtual camera device, no display)
raises :class:`SinkUnavailable` with instructions; the pipeline warns once and goes on with
the other sinks.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from calibrate.errors import InputError, MimicamError
from live.io.web import (
    SECURITY_HEADERS,
    ControlApi,
    Gate,
    Reply,
    WebFront,
    check_bind,
    is_loopback_host,
    new_token,
)
from live.packets import check_rgb

log = logging.getLogger(__name__)

__all__ = [
    "MjpegHttpSink",
    "PreviewSink",
    "RecorderSink",
    "Sink",
    "SinkUnavailable",
    "VirtualCameraSink",
    "display_available",
    "lan_address",
    "preview_works",
    "vcam_setup_help",
]


class SinkUnavailable(MimicamError):
    """A sink cannot run on this machine; the message says how to set it up."""


class Sink:
    """Base class: ``send`` frames, ``close`` once (more calls are harmless)."""

    name = "sink"

    def send(self, image: np.ndarray, t_capture: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _check_frame(image: np.ndarray, size: tuple[int, int], who: str) -> None:
    check_rgb(image, f"{who} frame")
    if (image.shape[1], image.shape[0]) != size:
        raise ValueError(f"{who}: expected {size[0]}x{size[1]} frames, "
                         f"got {image.shape[1]}x{image.shape[0]}")


# ----------------------------------------------------------------------------------------------
# virtual camera


def vcam_setup_help(system: str | None = None) -> str:
    """How to get a virtual camera device on ``system`` (default: this OS)."""
    system = system or platform.system()
    if system == "Linux":
        return ("Linux needs the v4l2loopback kernel module: install it (Debian/Ubuntu: "
                "sudo apt install v4l2loopback-dkms) and load it with: sudo modprobe "
                'v4l2loopback devices=1 exclusive_caps=1 card_label="mimicam"')
    if system in ("Windows", "Darwin"):
        return ("install OBS Studio (28 or newer) and start its Virtual Camera once "
                "(Controls > Start Virtual Camera, then stop it and close OBS); mimicam then "
                "sends to 'OBS Virtual Camera'")
    return f"no virtual camera backend is known for {system}"


class VirtualCameraSink(Sink):
    """Frames to a virtual camera through pyvirtualcam (v4l2loopback, OBS Virtual Camera).

    Raises :class:`SinkUnavailable` (with setup instructions for this OS) when pyvirtualcam is
    not installed or no backend can open a device. ``backend``/``device`` pass through to
    ``pyvirtualcam.Camera``.
    """

    name = "vcam"

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None,
                 backend: str | None = None) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise SinkUnavailable(
                "virtual camera: pyvirtualcam is not installed (pip install 'mimicam[vcam]')"
            ) from None
        self.size = (int(width), int(height))
        try:
            self._cam: Any = pyvirtualcam.Camera(
                width=self.size[0], height=self.size[1], fps=float(fps),
                fmt=pyvirtualcam.PixelFormat.RGB, device=device, backend=backend)
        except RuntimeError as exc:
            why = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise SinkUnavailable(f"no virtual camera available ({why}). To set one up: "
                                  f"{vcam_setup_help()}") from None
        self.device = str(self._cam.device)
        self.backend = str(self._cam.backend)
        log.info("virtual camera: %s (%s) %dx%d", self.device, self.backend, *self.size)

    def send(self, image: np.ndarray, t_capture: float) -> None:
        cam = self._cam
        if cam is None:
            return
        _check_frame(image, self.size, "virtual camera")
        cam.send(np.ascontiguousarray(image))

    @property
    def frames_sent(self) -> int:
        return 0 if self._cam is None else int(self._cam.frames_sent)

    def close(self) -> None:
        cam, self._cam = getattr(self, "_cam", None), None
        if cam is not None:
            cam.close()


# ----------------------------------------------------------------------------------------------
# preview window


def display_available() -> bool:
    """Whether a desktop session is there to open a window in: always on Windows and macOS;
    elsewhere (Linux, BSD) when an X11 or Wayland display is announced (``DISPLAY`` or
    ``WAYLAND_DISPLAY``)."""
    if platform.system() in ("Windows", "Darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


_PREVIEW_PROBE = (
    "import cv2, numpy as np\n"
    "cv2.namedWindow('mimicam-probe', cv2.WINDOW_AUTOSIZE)\n"
    "cv2.imshow('mimicam-probe', np.zeros((8, 8, 3), np.uint8))\n"
    "cv2.waitKey(1)\n"
    "cv2.destroyAllWindows()\n"
)


def preview_works(timeout: float = 15.0) -> tuple[bool, str]:
    """Whether OpenCV can open a window here, and why not.

    OpenCV's Qt backend aborts the whole process (it cannot be caught) when the display in
    ``DISPLAY`` is unreachable, so the check opens a window in a child process first.
    """
    if not display_available():
        return False, "no display (DISPLAY / WAYLAND_DISPLAY not set)"
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", _PREVIEW_PROBE], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not test the display: {exc}"
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return False, lines[0] if lines else f"test window failed (exit {done.returncode})"
    return True, ""


class PreviewSink(Sink):
    """An OpenCV window showing the output (with an optional overlay drawn by the caller).

    The one preview window of mimicam (``live`` and ``demo``). Must be used from one thread
    (the caller's). :meth:`poll_key` returns the key pressed (``cv2.waitKeyEx`` code, -1 for
    none) and lets the window draw; closing the window reports ``ord("q")``. Raises
    :class:`SinkUnavailable` when there is no display (:func:`display_available`).
    """

    name = "preview"

    def __init__(self, title: str = "mimicam", *, max_width: int = 1280) -> None:
        if not display_available():
            raise SinkUnavailable("preview window: no display (DISPLAY/WAYLAND_DISPLAY is not "
                                  "set); use --no-preview, or --http to watch in a browser")
        self.title = title
        self.max_width = int(max_width)
        self._open = False

    def send(self, image: np.ndarray, t_capture: float) -> None:
        check_rgb(image, "preview frame")
        if image.shape[1] > self.max_width:
            h = round(image.shape[0] * self.max_width / image.shape[1])
            image = cv2.resize(image, (self.max_width, h), interpolation=cv2.INTER_AREA)
        if not self._open:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])
            self._open = True
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def poll_key(self, wait_ms: int = 1) -> int:
        if not self._open:
            return -1
        key = int(cv2.waitKeyEx(max(1, wait_ms)))
        try:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        except cv2.error:
            visible = 0
        if visible < 1:  # the user closed the window
            self._open = False
            return ord("q")
        return key

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:  # pragma: no cover - window already gone
                pass


# ----------------------------------------------------------------------------------------------
# MJPEG over HTTP

_BOUNDARY = "mimicamframe"


def lan_address() -> str | None:
    """This machine's address on its default route (what a phone on the same network
    reaches), or None. Sends nothing: connecting a UDP socket only picks the route."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never answered, nothing is sent
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith(("0.", "127.")) else address


class _LatestJpeg:
    """The newest frame, encoded to JPEG once, on demand, by whichever reader needs it."""

    def __init__(self, quality: int) -> None:
        self.quality = int(quality)
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._encode_lock = threading.Lock()
        self.closed = False
        self.encoded = 0

    def put(self, image: np.ndarray) -> None:
        with self._cond:
            self._image = image
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait(self, after: int, timeout: float) -> int:
        """Wait for a frame newer than ``after``; returns the newest sequence number."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self.closed, timeout)
            return self._seq

    def jpeg(self) -> tuple[bytes | None, int]:
        with self._cond:
            image, seq = self._image, self._seq
        if image is None:
            return None, 0
        with self._encode_lock:
            if self._jpeg_seq != seq:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:  # pragma: no cover - OpenCV cannot fail on a valid image
                    return self._jpeg, self._jpeg_seq
                self._jpeg, self._jpeg_seq = buf.tobytes(), seq
                self.encoded += 1
            return self._jpeg, self._jpeg_seq


# A client that closes its connection, resets it or stops reading (timeout) while being served.
_CLIENT_GONE = (ConnectionError, TimeoutError)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # handler threads are joined by server_close()
    block_on_close = True
    allow_reuse_address = True
    latest: _LatestJpeg
    web: WebFront
    clients: int
    clients_lock: threading.Lock
    client_timeout: float

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed: a client that went away (closed the page, lost the
        network) is routine and logged at debug level; anything else is logged as an error,
        with the traceback only at debug level. (The standard server prints a traceback.)"""
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE):
            log.debug("http: client %s went away (%s)", client_address[0],
                      type(exc).__name__)
            return
        log.error("http: a request from %s failed: %s: %s", client_address[0],
                  type(exc).__name__, exc)
        log.debug("http: request failure", exc_info=exc)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mimicam"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.client_timeout)  # drops a stalled client

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):  # never the token
            text = (format % args).replace(self.server.web.gate.token, "***")
            log.debug("http %s: %s", self.address_string(), text)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        web = self.server.web
        refused = web.refuse("GET", path, query, self.headers)
        if refused is not None:
            self._answer(refused)
        elif path == "/frame.jpg":
            jpeg, _ = self.server.latest.jpeg()
            if jpeg is None:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
                            b"no frame yet\n")
            else:
                self._reply(HTTPStatus.OK, "image/jpeg", jpeg)
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._answer(web.get(path, query))

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        web = self.server.web
        reply = web.refuse("POST", path, query, self.headers)
        self._answer(reply or web.post(path, self.headers, self.rfile.read))

    def _answer(self, reply: Reply) -> None:
        if reply.close:  # a request body left unread must not be taken for the next request
            self.close_connection = True
        self._reply(reply.status, reply.ctype, reply.body, reply.headers)

    def _reply(self, status: HTTPStatus | int, ctype: str, body: bytes,
               headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*SECURITY_HEADERS, *headers):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        latest = self.server.latest
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        for name, value in SECURITY_HEADERS:
            if name != "Cache-Control":
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-store, no-cache, private")
        self.send_header("Pragma", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        with self.server.clients_lock:
            self.server.clients += 1
        sent_seq = 0
        last_write = 0.0
        try:
            self.wfile.write(f"--{_BOUNDARY}\r\n".encode())
            while not latest.closed:
                seq = latest.wait(sent_seq, timeout=0.5)
                if latest.closed:
                    break
                stale = time.monotonic() - last_write > 1.0
                if seq == sent_seq and not stale:
                    continue
                jpeg, jseq = latest.jpeg()
                if jpeg is None:
                    continue
                # Each part is followed at once by the next boundary, so browsers show a
                # frame as soon as it arrives instead of one frame late.
                self.wfile.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + f"\r\n--{_BOUNDARY}\r\n".encode())
                self.wfile.flush()
                sent_seq = jseq
                last_write = time.monotonic()
        except _CLIENT_GONE as exc:
            log.debug("http: stream client %s went away (%s)", self.address_string(),
                      type(exc).__name__)
        finally:
            with self.server.clients_lock:
                self.server.clients -= 1


class MjpegHttpSink(Sink):
    """An MJPEG stream over HTTP for OBS's browser/media source or any browser.

    Serves ``/`` (the control page, :mod:`live.io.web`: the stream alone until
    :meth:`set_control` gives it something to drive), ``/stream.mjpg``
    (``multipart/x-mixed-replace`` JPEG frames) and ``/frame.jpg`` (the newest frame), each
    only with the per-run ``token`` (default: a fresh one) and the Host/Origin checks of
    :class:`~live.io.web.Gate`; :attr:`url` and :attr:`stream_url` carry the token. Bound to
    127.0.0.1 by default; another address needs ``allow_remote=True`` (else
    :class:`~calibrate.errors.InputError`) and logs a warning that plain HTTP is
    unencrypted. ``port=0`` picks a free port (see :attr:`address`). :meth:`send` only
    stores a reference to the frame: JPEG encoding happens on the client threads, once per
    frame however many clients there are, and not at all when nobody watches; a slow client
    only skips frames, one that stops reading is dropped after ``client_timeout`` seconds.
    A port in use raises :class:`~calibrate.errors.InputError`.
    """

    name = "http"

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, quality: int = 80,
                 client_timeout: float = 5.0, token: str | None = None,
                 allow_remote: bool = False) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"quality: expected 1..100, got {quality}")
        check_bind(host, allow_remote)
        self._latest = _LatestJpeg(quality)
        try:
            self._server = _Server((host, int(port)), _Handler)
        except OSError as exc:
            raise InputError(f"cannot serve the MJPEG stream on {host}:{port}",
                             expected="a free port on a local address",
                             got=exc.strerror or str(exc)) from None
        self._server.latest = self._latest
        self.remote = not is_loopback_host(host)
        self._server.web = WebFront(Gate(token or new_token(), self.address[1],
                                         remote=self.remote))
        self._server.client_timeout = float(client_timeout)
        self._server.clients = 0
        self._server.clients_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="mjpeg-http",
                                        daemon=True)
        self._thread.start()
        if self.remote:
            log.warning("the page and stream are served to the network (--allow-remote) over "
                        "plain HTTP: unencrypted, so anyone on this network can watch the video "
                        "and the token go by; use it only on a network you trust")
        log.info("MJPEG stream on %s", self.stream_url)
        log.info("control page: %s", self.url)
        lan = self.lan_url
        if lan is not None:
            log.info("on another device of this network: %s", lan)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def token(self) -> str:
        """The per-run secret every request must carry."""
        return self._server.web.gate.token

    @property
    def url(self) -> str:
        """The control page, with the token."""
        host, port = self.address
        if host in ("0.0.0.0", "::"):  # every interface: this machine's own loopback
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/?token={self.token}"

    @property
    def lan_url(self) -> str | None:
        """The page's address for another device, when served to the network (a guess:
        this machine's address on its default route)."""
        if not self.remote:
            return None
        host, port = self.address
        if host in ("0.0.0.0", "::"):
            host = lan_address() or host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/?token={self.token}"

    @property
    def stream_url(self) -> str:
        """The MJPEG stream, with the token (for OBS's media or browser source)."""
        return self.url.replace("/?token=", "/stream.mjpg?token=")

    def set_control(self, control: ControlApi | None) -> None:
        """Give the page something to drive (:class:`live.jobs.control.LiveControl`)."""
        self._server.web.control = control

    @property
    def refused(self) -> int:
        """Requests refused so far (no token, another site, unexpected Host)."""
        return self._server.web.refused

    @property
    def clients(self) -> int:
        return self._server.clients

    @property
    def frames_encoded(self) -> int:
        return self._latest.encoded

    def send(self, image: np.ndarray, t_capture: float) -> None:
        check_rgb(image, "http frame")
        self._latest.put(image)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._latest.close()
        self._server.shutdown()
        self._server.server_close()  # joins the client threads (they see `closed`)
        self._thread.join(timeout=5.0)


# ----------------------------------------------------------------------------------------------
# recorder


class RecorderSink(Sink):
    """Records the output to a video file (:class:`live.io.video.VideoWriter`: H.264 mp4, mov
    or mkv, VP9 webm, or an animated GIF, by the extension).

    Encoding runs on its own thread behind a bounded queue; when the encoder falls behind,
    frames are dropped and counted (:attr:`dropped`) rather than stalling the pipeline. With
    ``realtime=True`` the file keeps wall-clock timing at ``fps``: a frame is written as many
    times as output slots passed since the previous one (a slow pipeline repeats frames, a
    fast one skips), so the recording plays at the speed it was seen. ``realtime=False``
    writes every frame once. The file appears under its name only when :meth:`close`
    completes (temporary name until then); ``overwrite=False`` keeps an existing file
    (:class:`~calibrate.errors.InputError` at construction).
    """

    name = "record"

    def __init__(self, path: str | os.PathLike[str], *, fps: float, size: tuple[int, int],
                 realtime: bool = True, max_queue: int = 60, preset: str = "veryfast",
                 overwrite: bool = True) -> None:
        from live.io.threads import Worker
        from live.io.video import VideoWriter

        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps)
        self.realtime = realtime
        self.dropped = 0
        self._writer = VideoWriter(self.path, fps=self.fps, size=self.size, preset=preset,
                                   overwrite=overwrite)
        self._closed = False
        self._t0: float | None = None
        self._worker: Worker[tuple[np.ndarray, float]] = Worker(
            self._encode, max_queue=max(1, int(max_queue)), name="recorder")

    @property
    def frames_written(self) -> int:
        return int(self._writer.frames_written)

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the recording, or None."""
        return self._worker.error

    def send(self, image: np.ndarray, t_capture: float) -> None:
        if self._closed or self.failed is not None:
            return
        _check_frame(image, self.size, "recorder")
        if not self._worker.put((image, time.perf_counter()), block=False):
            self.dropped += 1

    def _encode(self, item: tuple[np.ndarray, float]) -> None:
        writer = self._writer
        image, t = item
        try:
            if not self.realtime:
                writer.write(image)
                return
            if self._t0 is None:
                self._t0 = t
            due = int((t - self._t0) * self.fps) + 1  # slots up to now
            for _ in range(max(0, due - writer.frames_written)):
                writer.write(image)
        except Exception as exc:
            log.error("recorder: writing %s failed: %s", self.path, exc)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._worker.close()
        if self.failed is not None:
            self._writer.abort()
            return
        try:
            self._writer.close()
        except ValueError as exc:  # nothing was written
            log.warning("recorder: %s", exc)
        if self.dropped:
            log.warning("recorder: %d frames dropped (the encoder fell behind)", self.dropped)
