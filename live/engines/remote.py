"""An engine that animates on a ``mimicam serve`` server (Triton Inference Server).

``RemoteEngine("grpc://HOST:8001", size=512)`` implements the :class:`~live.engines.base.Engine`
protocol: capture, tracking, calibration choice and compositing stay local; each frame sends
only the driving crop (and its landmarks) and gets the animated crop back. The server keeps
this client's engine state (neutral pose, smoothing, hold) in a session of its own.

* The portrait goes up once (``prepare``); when the server has forgotten it (its LRU, or a
  restarted server) the client sends it again by itself, and re-sends its neutral pose when the
  server does not know the session any more.
* Frames go as protocol 2 when the server has it (the driving crop and one packed ``frame``
  tensor; :func:`pack_frame`), else as the named tensors of protocol 1.
* The portrait goes with the crop's photo box (``picture``) when the server takes it, so the
  served mesh engine keeps the crop's made-up border out of the picture as a local one does; an
  older server gets the crop alone.
* Server absent at start: one :class:`~calibrate.errors.MimicamError` naming the URL.
* Server lost mid-run: :meth:`process` holds the last animated crop (or animates with the local
  ``fallback`` engine) and tries the server again with a growing back-off.

Needs ``tritonclient`` (``pip install 'mimicam[serve]'``), imported when the engine is built.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibrate.errors import InputError, MimicamError
from live.packets import FaceCrop, check_rgb

log = logging.getLogger(__name__)

# -- the wire protocol (shared with live/jobs/serve.py) ---------------------------------------
TOKEN_PARAMETER = "mimicam_token"
MAX_SIDE = 2048
MAX_LANDMARKS = 1024
OP_PROCESS, OP_CALIBRATE = 0, 1
FLAG_FACE, FLAG_RECALIBRATE, FLAG_NEW_SESSION = 1, 2, 4
STATUS_OK, STATUS_BAD_REQUEST, STATUS_UNKNOWN_PORTRAIT, STATUS_UNKNOWN_SESSION, \
    STATUS_UNAUTHORIZED = 0, 1, 2, 3, 4


# The packed frame (protocol 2): one UINT8 ``frame`` input carries everything of an animate
# request but the image, and one UINT8 ``reply`` output the status and the error text. Each
# tensor costs a shared-memory block on the server's side and protobuf handling on both, so 2
# inputs and 2 outputs instead of 8 and 3 took ~0.7 ms of CPU off every frame (measured
# behind PyTriton's proxy). Lossless: the floats travel as their bytes. Servers without a ``frame``
# input get the named tensors (protocol 1), which servers still take.
FRAME_INPUT, REPLY_OUTPUT = "frame", "reply"
PICTURE_INPUT = "picture"
"""The ``portrait`` model's optional INT32 ``(x0, y0, x1, y1)``: the crop's pixels that show its
photo (servers from 2026-12 on)."""
FRAME_VERSION = 2
_FRAME_HEAD = struct.Struct("<BBHId6dHHI")  # version, op, 0, flags, t, crop_to_frame, lengths
_REPLY_HEAD = struct.Struct("<iI")  # status, error length


@dataclass(frozen=True)
class FrameRequest:
    """The fields of one animate request but its image (see :func:`pack_frame`)."""

    session: str
    portrait_id: str
    op: int
    flags: int
    t: float
    crop_to_frame: np.ndarray
    """(2, 3) float64."""
    landmarks: np.ndarray | None
    """(N, 3) float32, or None: the engine finds them."""


def pack_frame(request: FrameRequest) -> np.ndarray:
    """``request`` as the UINT8 vector of the ``frame`` input (bit-exact floats)."""
    session, portrait = request.session.encode(), request.portrait_id.encode()
    lms = (np.zeros((0, 3), np.float32) if request.landmarks is None
           else np.ascontiguousarray(request.landmarks, dtype=np.float32).reshape(-1, 3))
    affine = np.asarray(request.crop_to_frame, dtype=np.float64).reshape(6)
    head = _FRAME_HEAD.pack(FRAME_VERSION, request.op, 0, request.flags, request.t, *affine,
                            len(session), len(portrait), len(lms))
    return np.frombuffer(b"".join((head, session, portrait, lms.tobytes())), np.uint8)


def unpack_frame(data: np.ndarray) -> FrameRequest:
    """The inverse of :func:`pack_frame`; :class:`ValueError` for anything malformed."""
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1).tobytes()
    if len(raw) < _FRAME_HEAD.size:
        raise ValueError(f"frame: {len(raw)} bytes, shorter than its header")
    version, op, _, flags, t, *rest = _FRAME_HEAD.unpack_from(raw)
    if version != FRAME_VERSION:
        raise ValueError(f"frame: version {version}, expected {FRAME_VERSION}")
    affine, (n_session, n_portrait, n_lms) = rest[:6], rest[6:]
    if n_lms > MAX_LANDMARKS:
        raise ValueError(f"too many landmarks: {n_lms} > {MAX_LANDMARKS}")
    start = _FRAME_HEAD.size
    end = start + n_session + n_portrait + 12 * n_lms
    if len(raw) != end:
        raise ValueError(f"frame: {len(raw)} bytes, its header says {end}")
    session = raw[start:start + n_session].decode("utf-8", "replace")
    portrait = raw[start + n_session:start + n_session + n_portrait].decode("utf-8", "replace")
    lms = np.frombuffer(raw, np.float32, count=3 * n_lms,
                        offset=start + n_session + n_portrait).reshape(-1, 3).copy()
    return FrameRequest(session=session, portrait_id=portrait, op=op, flags=flags, t=t,
                        crop_to_frame=np.array(affine, np.float64).reshape(2, 3),
                        landmarks=lms if n_lms else None)


def pack_replies(statuses: list[int], errors: list[str]) -> np.ndarray:
    """The ``reply`` output of a batch: (n, L) UINT8 rows (status, error), zero-padded."""
    rows = [_REPLY_HEAD.pack(s, len(e.encode())) + e.encode()
            for s, e in zip(statuses, errors, strict=True)]
    width = max(len(r) for r in rows)
    return np.frombuffer(b"".join(r.ljust(width, b"\0") for r in rows),
                         np.uint8).reshape(len(rows), width)


def unpack_reply(row: np.ndarray) -> tuple[int, str]:
    """(status, error) of one row of the ``reply`` output."""
    raw = np.ascontiguousarray(row, dtype=np.uint8).reshape(-1).tobytes()
    status, n = _REPLY_HEAD.unpack_from(raw)
    return int(status), raw[_REPLY_HEAD.size:_REPLY_HEAD.size + n].decode("utf-8", "replace")


class RemoteError(MimicamError):
    """The server refused a request (an error for this request, not a lost connection)."""


@dataclass(frozen=True, eq=False)
class RemotePortrait:
    """A portrait known to the server (returned by :meth:`RemoteEngine.prepare`)."""

    image: np.ndarray
    portrait_id: str
    picture: tuple[int, int, int, int] | None = None
    """The crop's pixels that show its photo (:meth:`RemoteEngine.prepare`)."""

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def parse_url(url: str) -> tuple[str, str]:
    """``grpc://HOST:PORT``, ``grpcs://HOST:PORT`` (gRPC over TLS) or ``http://HOST:PORT``
    -> (protocol, "HOST:PORT")."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("grpc", "grpcs", "http") or not rest:
        raise InputError("bad server URL",
                         expected="grpc://HOST:PORT, grpcs://HOST:PORT (TLS) or http://HOST:PORT",
                         got=repr(url))
    return scheme, rest.rstrip("/")


class RemoteEngine:
    """Animates on a ``mimicam serve`` server; see the module docstring."""

    name = "remote"

    def __init__(self, url: str, *, size: int | None = None, token: str | None = None,
                 timeout_s: float = 10.0, fallback: Any = None,
                 backoff_s: tuple[float, float] = (0.5, 8.0),
                 tls_ca: str | os.PathLike[str] | None = None) -> None:
        self.url = url
        self._tls_ca = tls_ca if tls_ca is not None else os.environ.get("MIMICAM_TLS_CA")
        self._protocol, self._address = parse_url(url)
        self._token = token if token is not None else os.environ.get("MIMICAM_TOKEN") or None
        self._timeout_s = timeout_s
        self._fallback = fallback
        self._backoff = backoff_s
        self._session = uuid.uuid4().hex
        self._session_open = False
        self._sequence = 0
        """Triton's sequence id for this session: Triton keeps the session's frames on the
        model instance that holds its engine state. A new one whenever Triton does not hold
        it (first frame, after an idle spell or a lost server)."""
        self._sequence_live = False
        self._portrait: RemotePortrait | None = None
        self._fallback_portrait: RemotePortrait | None = None
        self._neutral: FaceCrop | None = None
        self._calibrated = False
        self._pending_calibrate = False
        self._pending_flags = 0
        self._last: np.ndarray | None = None
        self._down = False
        self._delay = backoff_s[0]
        self._retry_at = 0.0
        self._closed = False
        self._client: Any = None
        # prepare() may run on another thread than process(); the HTTP client is not
        # thread-safe (gRPC's is)
        self._http_lock = threading.Lock()
        self.last_timings: dict[str, float] = {}
        self._client = self._connect()
        self.server_engine, server_size = self._info()
        self.packed = False
        """Whether frames go as protocol 2 (one ``frame`` tensor; see :func:`pack_frame`)."""
        self.sends_picture = False
        """Whether the server's ``portrait`` model takes the crop's photo box."""
        self._learn_server()
        if size is not None and int(size) != server_size:
            self.close()
            raise InputError("the server animates another crop size",
                             expected=f"--crop-size {server_size} (or none)", got=str(size))
        self.size = server_size

    def _info(self) -> tuple[str, int]:
        try:
            out = self._infer("info", {"probe": np.zeros((1, 1), np.int32)},
                              ("engine", "size", "status", "error"))
        except Exception as exc:
            self.close()
            raise MimicamError(f"the server at {self.url} did not answer: {_short(exc)}") \
                from None
        if int(out["status"].reshape(-1)[0]) != STATUS_OK:
            self.close()
            raise RemoteError(f"{self.url} refused this client: {_text(out['error'])}")
        return _text(out["engine"]), int(out["size"].reshape(-1)[0])

    def _learn_server(self) -> None:
        """What this server takes: the ``frame`` input (protocol 2, :attr:`packed`) and the
        portrait's ``picture`` (:attr:`sends_picture`)."""
        self.packed = FRAME_INPUT in self._model_inputs("animate")
        self.sends_picture = PICTURE_INPUT in self._model_inputs("portrait")

    def _model_inputs(self, model: str) -> frozenset[str]:
        """The input names of the server's ``model`` (none known: an old or odd server, which
        the named tensors and the crop alone work with)."""
        try:
            if self._protocol == "http":
                with self._http_lock:
                    meta = self._client.get_model_metadata(model)
            else:
                meta = self._client.get_model_metadata(model, as_json=True)
        except Exception as exc:
            log.debug("no metadata for %r (%s)", model, _short(exc))
            return frozenset()
        return frozenset(str(i.get("name")) for i in (meta or {}).get("inputs", []))

    def set_fallback(self, engine: Any) -> None:
        """A local engine that animates while the server is unreachable (same crop size)."""
        if int(engine.size) != self.size:
            raise InputError("the fallback engine animates another crop size",
                             expected=str(self.size), got=str(engine.size))
        self._fallback = engine

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            if self._protocol in ("grpc", "grpcs"):
                import tritonclient.grpc as tc
                keep = tc.KeepAliveOptions()
                # tritonclient's own channel settings, and a subchannel of this channel's
                # own: gRPC shares one per address between channels, and a shared one still
                # in its back-off after a lost server refuses a new channel at once
                args = [("grpc.max_send_message_length", tc.MAX_GRPC_MESSAGE_SIZE),
                        ("grpc.max_receive_message_length", tc.MAX_GRPC_MESSAGE_SIZE),
                        ("grpc.keepalive_time_ms", keep.keepalive_time_ms),
                        ("grpc.keepalive_timeout_ms", keep.keepalive_timeout_ms),
                        ("grpc.keepalive_permit_without_calls",
                         keep.keepalive_permit_without_calls),
                        ("grpc.http2.max_pings_without_data",
                         keep.http2_max_pings_without_data),
                        ("grpc.use_local_subchannel_pool", 1)]
                if self._protocol == "grpcs":
                    client = tc.InferenceServerClient(
                        url=self._address, ssl=True, channel_args=args,
                        root_certificates=str(self._tls_ca) if self._tls_ca else None)
                else:
                    client = tc.InferenceServerClient(url=self._address, channel_args=args)
            else:
                import tritonclient.http as tc
                client = tc.InferenceServerClient(url=self._address,
                                                  connection_timeout=self._timeout_s,
                                                  network_timeout=self._timeout_s)
        except ImportError as exc:
            raise MimicamError("--remote needs tritonclient: pip install 'mimicam[serve]' "
                               f"({exc})") from None
        self._tc = tc
        try:
            ready = client.is_server_ready() and client.is_model_ready("animate")
        except Exception as exc:  # connection refused, DNS, timeouts: all mean "not there"
            raise MimicamError(f"no mimicam server at {self.url}: {_short(exc)}; start one "
                               "with 'mimicam serve'") from None
        if not ready:
            raise MimicamError(f"the server at {self.url} is not ready (no 'animate' model): "
                               "is it a 'mimicam serve' server?")
        return client

    def _reconnect(self) -> None:
        old, self._client = self._client, None
        try:
            if old is not None:
                old.close()
        except Exception:  # a dead channel: nothing to release
            pass
        self._client = self._connect()

    def _infer(self, model: str, arrays: dict[str, np.ndarray],
               outputs: tuple[str, ...], *, sequence: dict[str, Any] | None = None
               ) -> dict[str, np.ndarray]:
        tc = self._tc
        inputs = []
        for name, value in arrays.items():
            dtype = "BYTES" if value.dtype == object else _TRITON_DTYPES[value.dtype.type]
            tensor = tc.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        requested = [tc.InferRequestedOutput(name) for name in outputs]
        params = {TOKEN_PARAMETER: self._token} if self._token else None
        seq = sequence or {}
        if self._protocol != "http":
            result = self._client.infer(model, inputs, outputs=requested, parameters=params,
                                        client_timeout=self._timeout_s, **seq)
        else:
            with self._http_lock:
                result = self._client.infer(model, inputs, outputs=requested,
                                            parameters=params, **seq)
        return {name: result.as_numpy(name) for name in outputs}

    # -- portrait ---------------------------------------------------------------------------

    def prepare(self, portrait: np.ndarray, *,
                picture: tuple[int, int, int, int] | None = None,
                context: np.ndarray | Callable[[], np.ndarray | None] | None = None
                ) -> RemotePortrait:
        """Upload the portrait crop and, when the server takes it, ``picture`` (the crop's
        pixels that show its photo; kept for the local fallback engine too). ``context`` is
        not sent: the server segments the crop it is given."""
        image = np.ascontiguousarray(check_rgb(portrait, "portrait"))
        if picture is not None:
            picture = (int(picture[0]), int(picture[1]), int(picture[2]), int(picture[3]))
        return RemotePortrait(image=image, portrait_id=self._upload(image, picture),
                              picture=picture)

    def _upload(self, image: np.ndarray, picture: tuple[int, int, int, int] | None) -> str:
        arrays = {"image": image[None]}
        if picture is not None and self.sends_picture:
            arrays[PICTURE_INPUT] = np.array([picture], np.int32)
        out = self._infer("portrait", arrays, ("portrait_id", "status", "error"))
        status = int(out["status"].reshape(-1)[0])
        if status != STATUS_OK:
            raise RemoteError(f"{self.url} refused the portrait: {_text(out['error'])}")
        return _text(out["portrait_id"])

    def set_portrait(self, prepared: Any) -> None:
        if not isinstance(prepared, RemotePortrait):
            raise TypeError(f"expected a RemotePortrait from RemoteEngine.prepare, "
                            f"got {type(prepared).__name__}")
        self._portrait = prepared

    # -- calibration ------------------------------------------------------------------------

    @property
    def calibrated(self) -> bool:
        return self._calibrated

    def calibrate(self, neutral: FaceCrop) -> None:
        self._neutral = neutral
        self._calibrated = True
        self._pending_calibrate = True
        self._pending_flags &= ~FLAG_RECALIBRATE
        if self._fallback is not None and self._fallback_portrait is not None:
            self._fallback.calibrate(neutral)
        if not self._down and self._portrait is not None:
            try:
                self._send_calibrate()
            except RemoteError:
                raise
            except Exception as exc:
                self._lost(exc)

    def recalibrate(self) -> None:
        self._neutral = None
        self._calibrated = False
        self._pending_calibrate = False
        self._pending_flags |= FLAG_RECALIBRATE
        if self._fallback is not None:
            self._fallback.recalibrate()

    def _send_calibrate(self) -> None:
        assert self._neutral is not None
        self._request(self._neutral, 0.0, OP_CALIBRATE)
        self._pending_calibrate = False

    # -- frames -----------------------------------------------------------------------------

    def _arrays(self, face: FaceCrop | None, t: float, op: int, flags: int) -> dict[str, Any]:
        assert self._portrait is not None
        if face is not None:
            flags |= FLAG_FACE
            image = np.ascontiguousarray(face.image)
            lms = (np.zeros((1, 3), np.float32) if face.landmarks is None
                   else np.ascontiguousarray(face.landmarks, dtype=np.float32))
            affine = np.asarray(face.crop_to_frame, dtype=np.float64)
        else:
            image = np.zeros((16, 16, 3), np.uint8)
            lms = np.zeros((1, 3), np.float32)  # one row: no landmarks
            affine = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if not self._session_open:
            flags |= FLAG_NEW_SESSION
        return {
            "session": np.array([[self._session.encode()]], dtype=object),
            "portrait_id": np.array([[self._portrait.portrait_id.encode()]], dtype=object),
            "image": image[None], "landmarks": lms[None], "crop_to_frame": affine[None],
            "t": np.array([[t]], np.float64), "op": np.array([[op]], np.int32),
            "flags": np.array([[flags]], np.int32),
        }

    def _packed_arrays(self, face: FaceCrop | None, t: float, op: int,
                       flags: int) -> dict[str, Any]:
        """An animate request as protocol 2: the ``image`` and the packed ``frame``."""
        assert self._portrait is not None
        if face is not None:
            flags |= FLAG_FACE
            image = np.ascontiguousarray(face.image)
            affine = np.asarray(face.crop_to_frame, dtype=np.float64)
            lms = face.landmarks
        else:
            image = np.zeros((16, 16, 3), np.uint8)
            affine = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
            lms = None
        if not self._session_open:
            flags |= FLAG_NEW_SESSION
        frame = pack_frame(FrameRequest(session=self._session,
                                        portrait_id=self._portrait.portrait_id, op=op,
                                        flags=flags, t=t, crop_to_frame=affine, landmarks=lms))
        return {"image": image[None], FRAME_INPUT: frame[None]}

    def _animate_call(self, face: FaceCrop | None, t: float, op: int,
                      flags: int) -> tuple[np.ndarray, int, str]:
        """One animate request: (image, status, error)."""
        start = not self._sequence_live
        if start:  # a new sequence may land on an instance without this session
            self._sequence = 1 + uuid.uuid4().int % (2**63 - 1)
            self._session_open = False
        sequence = {"sequence_id": self._sequence, "sequence_start": start}
        try:
            if self.packed:
                out = self._infer("animate", self._packed_arrays(face, t, op, flags),
                                  ("image", REPLY_OUTPUT), sequence=sequence)
                self._sequence_live = True
                status, error = unpack_reply(out[REPLY_OUTPUT][0])
                return out["image"], status, error
            out = self._infer("animate", self._arrays(face, t, op, flags),
                              ("image", "status", "error"), sequence=sequence)
            self._sequence_live = True
        except Exception as exc:
            if _SEQUENCE_GONE in str(exc):  # Triton let the idle session go
                self._sequence_live = False
                return np.zeros((1, 1, 1, 3), np.uint8), STATUS_UNKNOWN_SESSION, str(exc)
            raise
        status = int(out["status"].reshape(-1)[0])
        return out["image"], status, _text(out["error"]) if status != STATUS_OK else ""

    def _request(self, face: FaceCrop | None, t: float, op: int) -> np.ndarray:
        """One animate request, re-sending the portrait / neutral pose when the server lost
        them (at most twice). Transport failures propagate."""
        for _ in range(3):
            flags = self._pending_flags
            image, status, error = self._animate_call(face, t, op, flags)
            if status == STATUS_OK:
                self._session_open = True
                self._pending_flags &= ~flags
                return np.asarray(image[0])
            if status == STATUS_UNKNOWN_PORTRAIT:
                assert self._portrait is not None
                log.info("the server forgot the portrait; sending it again")
                old = self._portrait
                self._portrait = RemotePortrait(old.image, self._upload(old.image, old.picture),
                                                picture=old.picture)
            elif status == STATUS_UNKNOWN_SESSION:
                log.info("the server forgot this session; opening it again")
                self._session_open = False
                if self._neutral is not None and op != OP_CALIBRATE:
                    self._request(self._neutral, 0.0, OP_CALIBRATE)
            else:
                raise RemoteError(f"{self.url}: {error}")
        raise RemoteError(f"{self.url}: the server keeps forgetting this client's state")

    def process(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        if self._closed:
            raise RuntimeError("RemoteEngine.process: the engine is closed")
        if self._portrait is None:
            raise MimicamError("the remote engine has no portrait: call "
                               "set_portrait(prepare(image)) before process()")
        t0 = time.perf_counter()
        if driving is not None and not self._calibrated:
            self._neutral, self._calibrated = driving, True  # the server does the same
        if not self._down or time.perf_counter() >= self._retry_at:
            try:
                if self._down:  # a new channel: gRPC's own would wait out its back-off
                    self._reconnect()  # the server may have come back as another version
                    self._learn_server()
                if self._pending_calibrate and self._neutral is not None:
                    self._send_calibrate()
                out = self._request(driving, t, OP_PROCESS)
                if self._down:
                    log.warning("reconnected to %s", self.url)
                self._down, self._delay = False, self._backoff[0]
                self._last = out
                self.last_timings = {"remote": (time.perf_counter() - t0) * 1e3}
                return out
            except RemoteError:
                raise
            except Exception as exc:
                self._lost(exc)
        return self._offline(driving, t)

    def _lost(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("lost the server %s (%s); %s, retrying", self.url, _short(exc),
                        "animating locally" if self._fallback is not None
                        else "holding the last pose")
            self._pending_calibrate = self._neutral is not None
        else:
            log.debug("server %s still unreachable: %s", self.url, _short(exc))
        self._sequence_live = False  # a server that comes back holds no sequences
        self._down = True
        self._retry_at = time.perf_counter() + self._delay
        self._delay = min(self._delay * 2, self._backoff[1])

    def _offline(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        assert self._portrait is not None
        if self._fallback is not None:
            if self._fallback_portrait is not self._portrait:
                self._fallback.set_portrait(self._fallback.prepare(
                    self._portrait.image, picture=self._portrait.picture))
                self._fallback_portrait = self._portrait
                if self._neutral is not None:
                    self._fallback.calibrate(self._neutral)
            out: np.ndarray = self._fallback.process(driving, t)
            return out
        if self._last is not None:
            return self._last.copy()
        return np.array(self._portrait.image, copy=True)

    @property
    def connected(self) -> bool:
        return not self._down

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fallback is not None:
            self._fallback.close()
        try:
            if self._client is not None:
                self._client.close()
        except Exception:  # closing a dead channel: nothing to release
            pass


_SEQUENCE_GONE = "must specify the START flag"
"""Triton's answer to a frame of a session it no longer holds (idle too long)."""

_TRITON_DTYPES = {np.uint8: "UINT8", np.float32: "FP32", np.float64: "FP64", np.int32: "INT32"}


def _text(value: Any) -> str:
    v = np.asarray(value).reshape(-1)[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
