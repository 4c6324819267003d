"""The control page of ``mimicam live --http``: who may ask, the page's files, the JSON API.

:class:`~live.io.sinks.MjpegHttpSink` serves the stream; every request first passes
:meth:`WebFront.refuse`, and everything but the stream itself is answered by
:class:`WebFront` (the page, its two static files, ``/api/...``). What the page drives is a
:class:`ControlApi` (:class:`live.jobs.control.LiveControl` in ``mimicam live``); without one
the page shows the stream alone.

Who may ask (:class:`Gate`):

- **Token**: a per-run secret (:func:`new_token`, 192 bits) in the start-up URL
  (``/?token=...``). Every request but the page's two static files (``/app.js``,
  ``/style.css``: no data) must carry it, as the ``token`` query parameter (the page, the
  stream, thumbnails) or the ``X-Mimicam-Token`` header (the page's API calls); without it the
  answer is 403. Compared in constant time.
- **Host**: must be an IP address, ``localhost`` or (with ``--allow-remote``) this machine's
  host name (and the server's port, when it names one). A web page cannot reach the server
  through a DNS name of its own that points at 127.0.0.1 (DNS rebinding).
- **Origin**: when a browser sends one (always for POST, and for cross-origin reads) it must
  be this server's own origin; ``Sec-Fetch-Site`` (sent by current browsers) must be
  ``same-origin`` or ``none`` except for a top-level navigation (a link, which still needs
  the token). Control requests are POSTs with a custom header, so a cross-site page gets no
  CORS pre-flight approval either; responses carry ``Cross-Origin-Resource-Policy:
  same-origin`` (another site cannot even embed the stream as an image),
  ``X-Frame-Options: DENY``, a strict ``Content-Security-Policy`` and ``Referrer-Policy:
  no-referrer`` (the token in the URL never leaks through a Referer).
- **Binding**: :func:`check_bind` refuses an address other than the loopback unless
  ``allow_remote`` is given (``--allow-remote``); the sink then warns that plain HTTP is
  unencrypted.
- **Uploads**: the body length must be declared (``Content-Length``) and at most the control's
  limit, or it is refused (413) before a byte is read; one upload at a time (429 otherwise).
  What is stored where is decided by the control (:mod:`live.face.upload`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from calibrate.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "TOKEN_HEADER",
    "ControlApi",
    "ControlError",
    "Gate",
    "Reply",
    "WebFront",
    "check_bind",
    "is_loopback_host",
    "new_token",
]

TOKEN_PARAM = "token"
TOKEN_HEADER = "X-Mimicam-Token"
MAX_JSON_BYTES = 4096
PUBLIC_PATHS = frozenset({"/app.js", "/style.css"})
_STATIC = {"/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/style.css": ("style.css", "text/css; charset=utf-8")}
_THUMB = re.compile(r"^/api/portraits/(\d{1,6})\.jpg$")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
"""Headers of every answer (the stream's too)."""


def new_token() -> str:
    """A fresh per-run secret for the URL (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(24)


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine: ``localhost`` or a
    loopback address (127.0.0.0/8, ::1). Any other name or address, and ``0.0.0.0`` or
    ``::`` (every interface), reaches the network."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse to serve on an address the network can reach unless ``allow_remote``."""
    if not allow_remote and not is_loopback_host(host):
        raise InputError(
            f"serving the page and stream on {host} would open them to the network",
            expected="a loopback address (127.0.0.1, the default: --http PORT), or "
            "--allow-remote to serve other devices (a phone) on a network you trust; the "
            "stream is not encrypted", got=host)


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` of a Host header (``[v6]:port`` too) -> (lower-case host, port)."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = value, ""
    if port_text:
        if not port_text.isdigit():
            return None
        return host, int(port_text)
    return host, None


class ControlError(Exception):
    """A control request that cannot be done: ``status`` and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


class ControlApi(Protocol):
    """What the page drives (:class:`live.jobs.control.LiveControl`). Called on the HTTP
    server's threads: every method must be thread-safe."""

    @property
    def upload_max_bytes(self) -> int:
        """Largest upload accepted; 0 when uploads are refused (``state()`` says why)."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything the page shows (portraits, toggles, statistics), JSON-ready."""
        ...

    def command(self, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Do ``action`` (``recalibrate``, ``portrait`` with ``index``, ...); raises
        :class:`ControlError`."""
        ...

    def thumbnail(self, index: int) -> bytes | None:
        """A JPEG thumbnail of portrait ``index``, or None when there is no such portrait."""
        ...

    def add_portrait(self, data: bytes) -> dict[str, Any]:
        """Check and store an uploaded picture and switch to it; raises
        :class:`ControlError` with the reason it was refused."""
        ...


@dataclass(frozen=True)
class Reply:
    """One answer: status, content type, body; ``close`` ends the connection afterwards
    (a request body that was not read)."""

    status: int
    ctype: str
    body: bytes
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, data: Mapping[str, Any], *, close: bool = False) -> Reply:
        return cls(status, "application/json; charset=utf-8",
                   json.dumps(data, separators=(",", ":")).encode(), close)

    @classmethod
    def text(cls, status: int, message: str, *, close: bool = False) -> Reply:
        return cls(status, "text/plain; charset=utf-8", (message + "\n").encode(), close)


@dataclass
class Gate:
    """The token, Host and Origin checks of every request (see the module docstring)."""

    token: str
    port: int
    remote: bool = False
    names: frozenset[str] = field(default_factory=frozenset)
    """Host names accepted besides IP addresses and ``localhost`` (with ``remote``: this
    machine's name and ``NAME.local``)."""

    def __post_init__(self) -> None:
        if self.remote and not self.names:
            name = socket.gethostname().lower()
            self.names = frozenset({name, f"{name}.local"} if name else set())

    def host_ok(self, host_header: str | None) -> bool:
        parsed = _split_host(host_header or "")
        if parsed is None:
            return False
        host, port = parsed
        if port is not None and port != self.port:
            return False
        if host == "localhost" or host in self.names:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None:
            return True
        return origin.strip().lower() == f"http://{(host_header or '').strip().lower()}"

    def token_ok(self, query: Mapping[str, list[str]], headers: Message) -> bool:
        given = headers.get(TOKEN_HEADER) or next(iter(query.get(TOKEN_PARAM, [])), "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def reason(self, path: str, query: Mapping[str, list[str]],
               headers: Message) -> str | None:
        """Why the request is refused, or None when it may be answered."""
        host = headers.get("Host")
        if not self.host_ok(host):
            return "unexpected Host header"
        if not self.origin_ok(headers.get("Origin"), host):
            return "request from another site"
        site = (headers.get("Sec-Fetch-Site") or "none").lower()
        navigate = (headers.get("Sec-Fetch-Mode") or "").lower() == "navigate"
        if site not in ("same-origin", "none") and not navigate:
            return "request from another site"
        if path not in PUBLIC_PATHS and not self.token_ok(query, headers):
            return "missing or wrong token"
        return None


class WebFront:
    """The page, its static files and the API, behind a :class:`Gate`; thread-safe."""

    def __init__(self, gate: Gate, control: ControlApi | None = None) -> None:
        self.gate = gate
        self.control = control
        self._upload_slot = threading.BoundedSemaphore(1)
        self._refusals: set[str] = set()
        self._files: dict[str, bytes] = {}
        self.refused = 0

    # -- files -------------------------------------------------------------------------------------
    def _file(self, name: str) -> bytes:
        data = self._files.get(name)
        if data is None:
            data = (resources.files("live.io") / "webui" / name).read_bytes()
            self._files[name] = data
        return data

    def page(self) -> bytes:
        mode = "control" if self.control is not None else "stream-only"
        return self._file("index.html").replace(b"<body>", f'<body class="{mode}">'.encode(), 1)

    # -- requests ----------------------------------------------------------------------------------
    def refuse(self, method: str, path: str, query_text: str, headers: Message) -> Reply | None:
        """A 403 answer when the request may not be served, else None."""
        why = self.gate.reason(path, parse_qs(query_text), headers)
        if why is None:
            return None
        self.refused += 1
        level = logging.INFO if why not in self._refusals else logging.DEBUG
        self._refusals.add(why)
        log.log(level, "http: refused %s %s (%s)", method, path, why)
        if why == "missing or wrong token":
            msg = ("forbidden: this address needs the token that 'mimicam live' printed when it "
                   "started; open the page from that link (http://HOST:PORT/?token=...)")
        elif why == "unexpected Host header":
            msg = (f"forbidden: unexpected Host header; open the page at "
                   f"http://127.0.0.1:{self.gate.port}/ (or the address 'mimicam live' printed)")
        else:
            msg = "forbidden: requests from other sites are refused"
        if path.startswith("/api/"):
            return Reply.json(403, {"error": msg}, close=method != "GET")
        return Reply.text(403, msg, close=method != "GET")

    def get(self, path: str, query_text: str) -> Reply:
        if path in ("/", "/index.html"):
            return Reply(200, "text/html; charset=utf-8", self.page(),
                         headers=(("Content-Security-Policy", _CSP),))
        static = _STATIC.get(path)
        if static is not None:
            return Reply(200, static[1], self._file(static[0]))
        if path == "/api/state":
            if self.control is None:
                return Reply.json(200, {"control": False})
            return Reply.json(200, {"control": True, **self.control.state()})
        thumb = _THUMB.match(path)
        if thumb is not None and self.control is not None:
            jpeg = self.control.thumbnail(int(thumb.group(1)))
            if jpeg is not None:
                return Reply(200, "image/jpeg", jpeg)
        return Reply.text(404, "not found; try / or /stream.mjpg or /frame.jpg")

    def post(self, path: str, headers: Message, read: Callable[[int], bytes]) -> Reply:
        """Answer a POST; ``read(n)`` reads ``n`` bytes of its body."""
        control = self.control
        if control is None:
            return Reply.json(404, {"error": "this stream has no controls"}, close=True)
        length_text = headers.get("Content-Length")
        if headers.get("Transfer-Encoding") or length_text is None \
                or not length_text.strip().isdigit():
            return Reply.json(411, {"error": "a request body needs a Content-Length"},
                              close=True)
        length = int(length_text)
        if path == "/api/command":
            if length > MAX_JSON_BYTES:
                return Reply.json(413, {"error": "command too long"}, close=True)
            try:
                body = json.loads(read(length) or b"{}")
            except (ValueError, UnicodeDecodeError):
                return Reply.json(400, {"error": "the command is not JSON"})
            if not isinstance(body, dict) or not isinstance(body.get("action"), str):
                return Reply.json(400, {"error": 'expected {"action": "..."}'})
            try:
                return Reply.json(200, {"ok": True, **control.command(body["action"], body)})
            except ControlError as exc:
                return Reply.json(exc.status, {"error": exc.message})
        if path == "/api/portraits":
            return self._upload(control, length, read)
        return Reply.json(404, {"error": "no such control"}, close=True)

    def _upload(self, control: ControlApi, length: int, read: Callable[[int], bytes]) -> Reply:
        limit = control.upload_max_bytes
        if limit <= 0:
            why = control.state().get("upload", {}).get("why_not") or "uploads are off"
            return Reply.json(409, {"error": why}, close=True)
        if length > limit:
            return Reply.json(413, {"error": f"the picture is too large: "
                                    f"{length / (1024 * 1024):.1f} MB; at most "
                                    f"{limit // (1024 * 1024)} MB"}, close=True)
        if not self._upload_slot.acquire(blocking=False):
            return Reply.json(429, {"error": "another picture is being added; try again in "
                                    "a moment"}, close=True)
        try:
            data = read(length)
            if len(data) != length:
                return Reply.json(400, {"error": "the upload was cut short"}, close=True)
            try:
                return Reply.json(201, {"ok": True, **control.add_portrait(data)})
            except ControlError as exc:
                return Reply.json(exc.status, {"error": exc.message})
        finally:
            self._upload_slot.release()
