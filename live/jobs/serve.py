"""``mimicam serve``: the animation engine on Triton Inference Server.

Triton (the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel) runs as a child process
on a model repository this module writes (:mod:`live.jobs.triton`); the models are Python-
backend models (:mod:`live.jobs.triton_models`) that build their part of this module's
:class:`AnimationService` from a pickled :class:`ServeSpec`. Every model instance is a
process of its own: the engine runs where Triton hands it the request (no proxy hop), and
instances compute on separate cores without sharing an interpreter lock.

Three models:

* ``info``: the engine's name and crop size (and whether the token is right).
* ``portrait``: a portrait face crop (``image`` UINT8 HxWx3) and, optionally, the crop's
  pixels that show its photo (``picture`` INT32 ``x0, y0, x1, y1``; the rest is made-up border,
  :func:`live.geometry.picture_box`) -> its ``portrait_id`` (BYTES).
  The portrait is prepared (encoded) once and kept, pickled, in the server's portrait spool
  (:class:`SpoolStore`: bounded, keyed by a hash of the image, its photo box, the engine and its
  weights/options) where every ``animate`` instance finds it; sending it again costs a hash.
* ``animate``: one driving frame of one client ``session``: the ``portrait_id``, the driving
  crop ``image``, its ``landmarks`` (FP32 Nx3; a single row means none: the engine finds
  them), the ``crop_to_frame`` affine, the frame time ``t``, an ``op`` (0 process, 1
  calibrate: this face is the neutral) and ``flags`` (1 face present, 2 recalibrate first, 4
  new session) -> the animated crop ``image``. Protocol 2 (this project's clients) sends all
  of that but the image as one packed UINT8 ``frame`` tensor and asks for one ``reply``
  (status and error) instead of ``status`` and ``error`` (:func:`live.engines.remote.pack_frame`);
  the named tensors (protocol 1) are still taken. Only the outputs a request asks for are
  made.

A session is one of Triton's sequences (the client sends a sequence id, and the start flag
when it opens one): Triton keeps all of a session's frames on the instance that holds its
engine state (neutral pose, smoothing, hold), batches frames of different sessions (the
sequence batcher's "oldest" strategy) and lets a session go after
``ServeOptions.session_idle_s`` without frames (the client then opens it again). Each
instance keeps its sessions in a bounded LRU. fomm's engines share one model runtime per
instance, used under a lock.

The ``animate`` instances run OpenBLAS on one thread: its idle workers spin and cost the mesh
engine about as much CPU again as its own work (:mod:`live.blas`; not for an engine whose
shared runtime runs one frame at a time, fomm).

Every response carries ``status`` (INT32, one of the ``STATUS_*`` codes) and ``error``
(BYTES, a message), or both in ``reply``: a bad request (unknown portrait, malformed or
oversized arrays, a wrong token) is answered with an error for that request only; the rest of
its batch goes on. Wrong dtypes and ranks never reach the models: Triton refuses them per
request, as it refuses an ``animate`` request without a sequence id.

The protocol (names, codes) is shared with the client, :mod:`live.engines.remote`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import pickle
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError, MimicamError
from live.blas import limit_openblas_threads, usable_cores
from live.engines.base import Engine
from live.engines.remote import (
    FLAG_FACE,
    FLAG_NEW_SESSION,
    FLAG_RECALIBRATE,
    FRAME_INPUT,
    MAX_LANDMARKS,
    MAX_SIDE,
    OP_CALIBRATE,
    PICTURE_INPUT,
    REPLY_OUTPUT,
    STATUS_BAD_REQUEST,
    STATUS_OK,
    STATUS_UNAUTHORIZED,
    STATUS_UNKNOWN_PORTRAIT,
    STATUS_UNKNOWN_SESSION,
    TOKEN_PARAMETER,
    pack_replies,
    unpack_frame,
)
from live.packets import FaceCrop

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    queue_delay_us: int = 500
    """How long Triton holds a request for a fuller batch: short, since a lone client waits
    it out on every frame (measured: 2000 us added ~2 ms a frame; the mesh engine animates
    each request of a batch on its own anyway, and batches still form while every instance
    is busy). On a GPU, where fomm's batches pay, a longer delay gives bigger ones."""
    token: str | None = None
    portrait_cache: int = 64
    max_sessions: int = 64
    tls_cert: Path | None = None
    """PEM server certificate: gRPC over TLS (with ``tls_key``); HTTP and metrics stay plain."""
    tls_key: Path | None = None
    instances: int = 1
    """``animate`` model instances: processes of Triton's Python backend, each with the
    engines of the sessions it was given."""
    session_idle_s: float = 5.0
    """A session without frames for this long is let go by Triton (its client opens it
    again when it comes back). Triton counts open sessions as work in flight: stopping the
    server waits up to this long for them."""


def default_instances() -> int:
    """The CPU cores this process may use (at least 1)."""
    return usable_cores()


class RequestError(Exception):
    """A request the service answers with an error (for that request only)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Session:
    """One client's engine state. ``lock`` is held while one of its frames runs (a service
    called from several threads takes a session's frames one at a time; Triton gives each
    instance, a process, one batch at a time); ``engine`` is made on its first frame."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.portrait_id: str | None = None
        self.lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()


_KEY = re.compile(r"[0-9a-f]{32}")


class PortraitStore:
    """Prepared portraits by key, the ``capacity`` most recently used kept (in memory)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[str, Any] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def touch(self, key: str) -> bool:
        """Whether ``key`` is kept (and now the most recently used)."""
        if key not in self._items:
            return False
        self._items.move_to_end(key)
        return True

    def get(self, key: str) -> Any | None:
        return self._items[key] if self.touch(key) else None

    def put(self, key: str, prepared: Any) -> None:
        self._items[key] = prepared
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


class SpoolStore(PortraitStore):
    """Prepared portraits shared by processes (Triton's model instances) through a directory:
    one pickle per key, the ``capacity`` most recently used kept (file modification times);
    each process keeps the ones it uses in memory too. A key whose file is gone is gone for
    every process (the client is told "unknown portrait" and sends it again)."""

    TOUCH_EVERY_S = 1.0

    def __init__(self, directory: Path, capacity: int) -> None:
        super().__init__(capacity)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._touched: dict[str, float] = {}

    def _path(self, key: str) -> Path | None:
        return self.directory / f"{key}.pkl" if _KEY.fullmatch(key) else None

    def __contains__(self, key: object) -> bool:
        path = self._path(key) if isinstance(key, str) else None
        return path is not None and path.exists()

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.pkl"))

    def clear(self) -> None:
        for path in self.directory.glob("*.pkl"):
            path.unlink(missing_ok=True)
        super().clear()

    def touch(self, key: str) -> bool:
        path = self._path(key)
        now = time.monotonic()
        try:
            if path is None:
                return False
            if now - self._touched.get(key, -1e9) >= self.TOUCH_EVERY_S:
                os.utime(path)  # the most recently used file: the last to be evicted
                self._touched[key] = now
            elif not path.exists():
                raise FileNotFoundError(path)
        except FileNotFoundError:
            self._items.pop(key, None)
            self._touched.pop(key, None)
            return False
        super().touch(key)
        return True

    def get(self, key: str) -> Any | None:
        if not self.touch(key):
            return None
        if key in self._items:
            return self._items[key]
        path = self._path(key)
        assert path is not None
        try:
            with path.open("rb") as f:
                prepared = pickle.load(f)  # written by this server's portrait model only
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            return None
        super().put(key, prepared)
        return prepared

    def put(self, key: str, prepared: Any) -> None:
        path = self._path(key)
        if path is None:
            raise ValueError(f"expected a 32-digit hex key, got {key!r}")
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(prepared, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)  # readers see the whole file or none
        self._touched[key] = time.monotonic()
        super().put(key, prepared)
        files = sorted(self.directory.glob("*.pkl"), key=_mtime)
        for old in files[:max(0, len(files) - self.capacity)]:
            old.unlink(missing_ok=True)
            self._items.pop(old.stem, None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


class AnimationService:
    """The models' logic, without Triton: portraits cache, sessions, per-request errors.

    ``make_engine()`` builds one engine (one per session; they may share a model runtime).
    ``identity`` names the engine, its weights and options (part of the portrait key).
    """

    def __init__(self, make_engine: Callable[[], Engine], identity: str, *,
                 portrait_cache: int = 64, max_sessions: int = 64,
                 token: str | None = None, serialize: bool = False,
                 store: PortraitStore | None = None) -> None:
        self._make_engine = make_engine
        self._identity = identity
        self.engine_name = identity.split("|", 1)[0]
        self._token = token
        self._max_sessions = max(1, max_sessions)
        self._portraits = store if store is not None else PortraitStore(portrait_cache)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._preparer = make_engine()  # prepares portraits; never animates
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()  # the preparer, one portrait at a time
        # its calls may come from several threads; engines that share one model runtime
        # (fomm) take turns on it
        self._compute: Any = threading.Lock() if serialize else nullcontext()
        self.serialized = serialize
        """Whether the engines take turns on one model runtime (fomm): its own threads are then
        the only compute running, so they keep every core."""

    # -- plain calls ---------------------------------------------------------------------------

    def portrait_key(self, image: np.ndarray,
                     picture: tuple[int, int, int, int] | None = None) -> str:
        h = hashlib.sha256()
        h.update(self._identity.encode())
        h.update(repr(image.shape).encode())
        if picture is not None:  # the same crop with another photo box is another portrait
            h.update(repr(tuple(picture)).encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return h.hexdigest()[:32]

    def add_portrait(self, image: np.ndarray,
                     picture: tuple[int, int, int, int] | None = None) -> str:
        """Prepare (once) the portrait crop ``image`` whose photo shows in ``picture``
        (``(x0, y0, x1, y1)``; None: all of it); its ``portrait_id``."""
        _check_image(image, "portrait image")
        key = self.portrait_key(image, picture)
        with self._lock:
            if self._portraits.touch(key):
                return key
        try:
            with self._prepare_lock, self._compute:
                prepared = self._preparer.prepare(np.ascontiguousarray(image), picture=picture)
        except MimicamError as exc:
            raise RequestError(STATUS_BAD_REQUEST, str(exc)) from None
        with self._lock:
            self._portraits.put(key, prepared)
        log.info("portrait %s prepared (%d cached)", key[:8], len(self._portraits))
        return key

    def animate(self, session_id: str, portrait_id: str, face: FaceCrop | None, t: float, *,
                op: int = 0, flags: int = 0) -> np.ndarray:
        with self._lock:
            prepared = self._portraits.get(portrait_id)
            if prepared is None:
                raise RequestError(STATUS_UNKNOWN_PORTRAIT, f"unknown portrait {portrait_id!r}")
            session = self._sessions.get(session_id)
            closing: list[_Session] = []
            if session is None:
                if not flags & FLAG_NEW_SESSION:
                    raise RequestError(STATUS_UNKNOWN_SESSION,
                                       f"unknown session {session_id!r}")
                session = _Session()
                self._sessions[session_id] = session
                while len(self._sessions) > self._max_sessions:
                    closing.append(self._sessions.popitem(last=False)[1])
                log.info("session %s opened (%d open)", session_id[:8], len(self._sessions))
            else:
                self._sessions.move_to_end(session_id)
        for old in closing:  # no session lock is held here: no lock-order cycle
            old.close()
        with session.lock:
            if session.closed:  # evicted while this frame waited
                raise RequestError(STATUS_UNKNOWN_SESSION, f"unknown session {session_id!r}")
            if session.engine is None:
                with self._compute:
                    session.engine = self._make_engine()
            with self._compute:
                return self._animate(session, session.engine, portrait_id, prepared, face, t,
                                     op, flags)

    def _animate(self, session: _Session, engine: Engine, portrait_id: str, prepared: Any,
                 face: FaceCrop | None, t: float, op: int, flags: int) -> np.ndarray:
        if session.portrait_id != portrait_id:
            engine.set_portrait(prepared)
            session.portrait_id = portrait_id
        if flags & FLAG_RECALIBRATE:
            engine.recalibrate()
        if op == OP_CALIBRATE:
            if face is None:
                raise RequestError(STATUS_BAD_REQUEST, "calibrate needs a face")
            try:
                engine.calibrate(face)
            except MimicamError as exc:
                raise RequestError(STATUS_BAD_REQUEST, str(exc)) from None
            return np.zeros((1, 1, 3), np.uint8)
        return engine.process(face, t)

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.close()
        self._preparer.close()

    # -- Triton infer functions (a list of requests, one response each) ------------------------

    def _authorize(self, request: Any) -> None:
        authorize(request, self._token)

    def infer_info(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return answer_info(requests, engine=self.engine_name, size=int(self._preparer.size),
                           token=self._token)

    def infer_portrait(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        out = []
        for request in requests:
            images = request["image"]
            boxes = request.get(PICTURE_INPUT)
            ids, statuses, errors = [], [], []
            for i, image in enumerate(images):
                try:
                    self._authorize(request)
                    picture = None if boxes is None else _picture(boxes[i])
                    ids.append(self.add_portrait(image, picture))
                    statuses.append(STATUS_OK)
                    errors.append("")
                except RequestError as exc:
                    ids.append("")
                    statuses.append(exc.status)
                    errors.append(str(exc))
                except Exception as exc:  # this request only; the batch goes on
                    log.warning("portrait request failed: %s: %s", type(exc).__name__, exc)
                    ids.append("")
                    statuses.append(STATUS_BAD_REQUEST)
                    errors.append(f"{type(exc).__name__}: {exc}")
            out.append({"portrait_id": _bytes(ids), "status": _status(statuses),
                        "error": _bytes(errors)})
        return out

    def infer_animate(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        out = []
        for request in requests:
            n = len(request["image"])
            images: list[np.ndarray | None] = []
            statuses, errors = [], []
            for i in range(n):
                try:
                    self._authorize(request)
                    images.append(self._animate_one(request, i))
                    statuses.append(STATUS_OK)
                    errors.append("")
                except RequestError as exc:
                    images.append(None)
                    statuses.append(exc.status)
                    errors.append(str(exc))
                except Exception as exc:  # this request only; the batch goes on
                    log.warning("animate request failed: %s: %s", type(exc).__name__, exc)
                    images.append(None)
                    statuses.append(STATUS_BAD_REQUEST)
                    errors.append(f"{type(exc).__name__}: {exc}")
            shape = next((im.shape for im in images if im is not None and im.size), (1, 1, 3))
            first = images[0]
            if n == 1 and first is not None and first.shape == shape:
                stacked = first[None]  # no copy: the backend copies it into shared memory
            else:
                stacked = np.zeros((n, *shape), np.uint8)
                for i, im in enumerate(images):
                    if im is not None and im.shape == shape:
                        stacked[i] = im
            # only what the client asked for: each output costs a shared-memory block
            wanted = getattr(request, "requested_output_names", None) or ANIMATE_OUTPUTS
            answer: dict[str, np.ndarray] = {}
            if "image" in wanted:
                answer["image"] = stacked
            if "status" in wanted:
                answer["status"] = _status(statuses)
            if "error" in wanted:
                answer["error"] = _bytes(errors)
            if REPLY_OUTPUT in wanted:
                answer[REPLY_OUTPUT] = pack_replies(statuses, errors)
            out.append(answer)
        return out

    def _animate_one(self, request: Any, i: int) -> np.ndarray:
        image = np.asarray(request["image"][i])
        _check_image(image, "driving image")
        names = request.keys()  # a dict, or a TritonRequest
        if FRAME_INPUT in names:  # protocol 2: one packed tensor
            try:
                frame = unpack_frame(request[FRAME_INPUT][i])
            except ValueError as exc:
                raise RequestError(STATUS_BAD_REQUEST, str(exc)) from None
            session, portrait_id = frame.session, frame.portrait_id
            landmarks, affine = frame.landmarks, frame.crop_to_frame
            flags, op, t = frame.flags, frame.op, frame.t
        else:  # protocol 1: named tensors
            missing = [k for k in _NAMED_INPUTS if k not in names]
            if missing:
                raise RequestError(STATUS_BAD_REQUEST, "animate: missing inputs "
                                   f"{', '.join(missing)} (or '{FRAME_INPUT}')")
            lms = np.asarray(request["landmarks"][i])
            if lms.shape[0] > MAX_LANDMARKS:
                raise RequestError(STATUS_BAD_REQUEST, f"too many landmarks: {lms.shape[0]} "
                                   f"> {MAX_LANDMARKS}")
            landmarks = np.ascontiguousarray(lms) if len(lms) > 1 else None
            affine = np.asarray(request["crop_to_frame"][i], dtype=np.float64)
            flags = int(request["flags"][i].reshape(-1)[0])
            op = int(request["op"][i].reshape(-1)[0])
            t = float(request["t"][i].reshape(-1)[0])
            session = _text(request["session"][i])
            portrait_id = _text(request["portrait_id"][i])
        if affine.shape != (2, 3) or not np.isfinite(affine).all():
            raise RequestError(STATUS_BAD_REQUEST, "crop_to_frame: expected a finite 2x3 affine")
        if landmarks is not None and (landmarks.ndim != 2 or landmarks.shape[1] != 3):
            raise RequestError(STATUS_BAD_REQUEST, "landmarks: expected Nx3")
        face = None
        if flags & 1 == FLAG_FACE:
            face = FaceCrop(image=np.ascontiguousarray(image), crop_to_frame=affine,
                            frame_index=0, t_capture=t, landmarks=landmarks)
        return self.animate(session, portrait_id, face, t, op=op, flags=flags)


def authorize(request: Any, token: str | None) -> None:
    """RequestError unless ``request`` carries ``token`` (when there is one)."""
    if token is None:
        return
    given = (getattr(request, "parameters", None) or {}).get(TOKEN_PARAMETER)
    if not isinstance(given, str) or not hmac.compare_digest(given, token):
        raise RequestError(STATUS_UNAUTHORIZED, "missing or wrong token")


def answer_info(requests: list[Any], *, engine: str, size: int,
                token: str | None) -> list[dict[str, np.ndarray]]:
    """The ``info`` model: the engine's name and crop size (and whether the token is right)."""
    out = []
    for request in requests:
        n = len(request["probe"])
        try:
            authorize(request, token)
            status, error = STATUS_OK, ""
        except RequestError as exc:
            status, error = exc.status, str(exc)
        out.append({"engine": _bytes([engine] * n), "size": _status([size] * n),
                    "status": _status([status] * n), "error": _bytes([error] * n)})
    return out


ANIMATE_OUTPUTS = ("image", "status", "error", REPLY_OUTPUT)
_NAMED_INPUTS = ("session", "portrait_id", "landmarks", "crop_to_frame", "t", "op", "flags")


def _check_image(image: np.ndarray, name: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise RequestError(STATUS_BAD_REQUEST, f"{name}: expected UINT8 HxWx3, got "
                           f"{image.dtype} {image.shape}")
    if max(image.shape[:2]) > MAX_SIDE or min(image.shape[:2]) < 16:
        raise RequestError(STATUS_BAD_REQUEST, f"{name}: side out of range 16..{MAX_SIDE}: "
                           f"{image.shape[1]}x{image.shape[0]}")


def _picture(value: np.ndarray) -> tuple[int, int, int, int]:
    """One row of the ``picture`` input as ``(x0, y0, x1, y1)`` (the engine checks that it fits
    the crop)."""
    row = np.asarray(value).reshape(-1)
    if row.shape != (4,) or not np.issubdtype(row.dtype, np.integer):
        raise RequestError(STATUS_BAD_REQUEST, "picture: expected 4 integers x0, y0, x1, y1, "
                           f"got {row.dtype} {tuple(np.asarray(value).shape)}")
    x0, y0, x1, y1 = (int(v) for v in row)
    return x0, y0, x1, y1


def _text(value: Any) -> str:
    v = np.asarray(value).reshape(-1)[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _bytes(values: list[str]) -> np.ndarray:
    return np.array([[v.encode()] for v in values], dtype=object)


def _status(values: list[int]) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.int32)


# -- the server ------------------------------------------------------------------------------------


def check_bind(options: ServeOptions) -> None:
    if options.host not in LOOPBACK and not options.token:
        raise InputError("serving beyond loopback needs a token",
                         expected=f"--token SECRET with --host {options.host} (or --host "
                         "127.0.0.1)", got="no --token")
    if (options.tls_cert is None) != (options.tls_key is None):
        raise InputError("TLS needs a certificate and its key",
                         expected="--tls-cert FILE --tls-key FILE", got="only one of them")
    for path in (options.tls_cert, options.tls_key):
        if path is not None and not Path(path).is_file():
            raise InputError("file not found", path=path)
    if options.host not in LOOPBACK:
        if options.tls_cert is None:
            log.warning("serving on %s: traffic (portraits, faces, the token) is UNENCRYPTED; "
                        "use --tls-cert/--tls-key (gRPC), put a TLS proxy in front, or keep it "
                        "on a trusted network", options.host)
        else:
            log.warning("serving on %s: gRPC is TLS-encrypted; the HTTP port %d and the "
                        "metrics are NOT (firewall them or put a TLS proxy in front)",
                        options.host, options.http_port)


@dataclass(frozen=True)
class ServeSpec:
    """What every model instance builds its part of the service from (pickled into the
    server's work directory; see :mod:`live.jobs.triton_models`)."""

    engine: str
    engine_options: Any
    weights: Path | None
    model_dir: Path | None
    options: ServeOptions
    size: int
    """The engine's crop size (the ``info`` model's answer)."""
    spool: Path
    """The portrait store's directory (:class:`SpoolStore`)."""
    log_level: int = logging.WARNING


def make_spec(engine_name: str, engine_options: Any, *, weights: str | Path | None = None,
              model_dir: str | Path | None = None, options: ServeOptions,
              spool: Path | None = None) -> ServeSpec:
    """The spec for engine ``engine_name``: the engine is built once here, so that bad weights
    or options are one clear error before Triton starts, and its crop size is known."""
    from live.engines.base import EngineOptions, create_engine

    eo: EngineOptions = engine_options or EngineOptions()
    engine = create_engine(engine_name, eo, weights=weights, model_dir=model_dir)
    try:
        size = int(engine.size)
    finally:
        engine.close()
    return ServeSpec(engine=engine_name, engine_options=eo,
                     weights=None if weights is None else Path(weights),
                     model_dir=None if model_dir is None else Path(model_dir),
                     options=options, size=size, spool=spool or Path("portraits"),
                     log_level=logging.getLogger("live").getEffectiveLevel())


def save_spec(spec: ServeSpec, path: Path) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        pickle.dump(spec, f)  # the token is in it: readable by this user only


def load_spec(path: str | Path) -> ServeSpec:
    with open(path, "rb") as f:
        spec = pickle.load(f)
    if not isinstance(spec, ServeSpec):
        raise TypeError(f"{path}: expected a ServeSpec, got {type(spec).__name__}")
    return spec


class ModelHandler:
    """One model instance's request handler (``infer``) and its ``close``."""

    def __init__(self, infer: Callable[[list[Any]], list[dict[str, np.ndarray]]],
                 close: Callable[[], None] | None = None) -> None:
        self.infer = infer
        self._close = close

    def __call__(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return self.infer(requests)

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()


def model_handler(name: str, spec: ServeSpec) -> ModelHandler:
    """The handler of model ``name`` (``info``, ``portrait`` or ``animate``) for ``spec``."""
    opts = spec.options
    if name == "info":
        def info(requests: list[Any]) -> list[dict[str, np.ndarray]]:
            return answer_info(requests, engine=spec.engine, size=spec.size, token=opts.token)
        return ModelHandler(info)
    if name not in ("portrait", "animate"):
        raise ValueError(f"expected a model named info, portrait or animate, got {name!r}")
    service = make_service(spec.engine, spec.engine_options, weights=spec.weights,
                           model_dir=spec.model_dir, options=opts,
                           store=SpoolStore(spec.spool, opts.portrait_cache))
    if name == "portrait":
        return ModelHandler(service.infer_portrait, service.close)
    cap_compute_threads(service)  # this instance is a process of its own
    return ModelHandler(service.infer_animate, service.close)


MODELS = ("info", "portrait", "animate")


def serve_models(options: ServeOptions) -> list[Any]:
    """The three models' repository entries (:class:`live.jobs.triton.ModelSpec`)."""
    from live.jobs.triton import ModelSpec, TensorSpec

    status = TensorSpec("status", "INT32", (1,))
    error = TensorSpec("error", "STRING", (1,))
    batch = max(1, options.max_batch)
    image = TensorSpec("image", "UINT8", (-1, -1, 3))
    return [
        ModelSpec("info", inputs=(TensorSpec("probe", "INT32", (1,)),),
                  outputs=(TensorSpec("engine", "STRING", (1,)),
                           TensorSpec("size", "INT32", (1,)), status, error),
                  max_batch=batch),
        ModelSpec("portrait", inputs=(image, TensorSpec(PICTURE_INPUT, "INT32", (4,), True)),
                  outputs=(TensorSpec("portrait_id", "STRING", (1,)), status, error),
                  max_batch=batch, queue_delay_us=options.queue_delay_us),
        # protocol 2 sends ``image`` and the packed ``frame`` and asks for ``image`` and
        # ``reply``; protocol 1 the named tensors, and ``status``/``error``. A session is a
        # sequence: Triton keeps it on one instance (its engine state lives there) and
        # batches frames of different sessions
        ModelSpec("animate",
                  inputs=(image, TensorSpec(FRAME_INPUT, "UINT8", (-1,), True),
                          TensorSpec("session", "STRING", (1,), True),
                          TensorSpec("portrait_id", "STRING", (1,), True),
                          TensorSpec("landmarks", "FP32", (-1, 3), True),
                          TensorSpec("crop_to_frame", "FP64", (2, 3), True),
                          TensorSpec("t", "FP64", (1,), True),
                          TensorSpec("op", "INT32", (1,), True),
                          TensorSpec("flags", "INT32", (1,), True)),
                  outputs=(image, status, error, TensorSpec(REPLY_OUTPUT, "UINT8", (-1,))),
                  max_batch=batch, instances=options.instances,
                  queue_delay_us=options.queue_delay_us, sequence=True,
                  sequence_idle_us=int(options.session_idle_s * 1e6),
                  max_sequences=max(1, options.max_sessions)),
    ]


class Server:
    """A running ``mimicam serve`` (see :func:`triton_server`)."""

    def __init__(self, process: Any, work: Path, spec: ServeSpec) -> None:
        self.process = process
        self.work = work
        self.spec = spec

    @property
    def pid(self) -> int | None:
        pid: int | None = self.process.pid
        return pid

    def forget_portraits(self) -> None:
        """Every prepared portrait forgotten, as after a restart (for tests)."""
        SpoolStore(self.spec.spool, 1).clear()

    def serve(self) -> None:
        """Until Triton exits: MimicamError, since only :meth:`stop` should end it."""
        code = self.process.wait()
        raise MimicamError(f"Triton exited by itself (code {code}): "
                           + " | ".join(list(self.process.tail)[-4:]))

    def stop(self) -> None:
        code = self.process.stop()
        tail = "\n".join(self.process.tail)
        if code not in (None, 0) or "Non-graceful" in tail:
            log.warning("Triton stopped uncleanly (code %s)", code)


@contextmanager
def triton_server(spec: ServeSpec, options: ServeOptions | None = None) -> Iterator[Server]:
    """Triton serving ``spec`` (its models run in Triton's Python-backend processes), started
    and ready; stopped on leaving (its work directory, with the portraits, removed)."""
    from live.jobs.triton import Endpoints, TritonProcess, write_repository

    options = options or spec.options
    check_bind(options)
    work = Path(tempfile.mkdtemp(prefix="mimicam-serve-"))  # mode 0700
    try:
        spec = replace(spec, options=options, spool=work / "portraits")
        spec_path = work / "spec.pkl"
        save_spec(spec, spec_path)
        repository = write_repository(work / "models", serve_models(options), spec_path)
        process = TritonProcess(
            repository, work,
            Endpoints(options.host, options.http_port, options.grpc_port,
                      options.metrics_port, tls_cert=options.tls_cert,
                      tls_key=options.tls_key,
                      # open sessions, then unloading the models (a few seconds here): with
                      # less, Triton gives up and its Python-backend stubs die uncleanly
                      exit_timeout_s=10 + math.ceil(options.session_idle_s)),
            # room for a batch of answers in the stubs' shared memory from the start
            backend_config={"shm-default-byte-size": str(16 << 20)})
        server = Server(process, work, spec)
        process.start()
        try:
            process.wait_ready(MODELS)
            log.info("serving on %s: http %d, grpc %d, metrics %d; %d animate instance(s)",
                     options.host, options.http_port, options.grpc_port,
                     options.metrics_port, options.instances)
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def make_service(engine_name: str, engine_options: Any, *, weights: str | Path | None = None,
                 model_dir: str | Path | None = None, options: ServeOptions,
                 store: PortraitStore | None = None) -> AnimationService:
    """The service for engine ``engine_name`` (one shared model runtime for fomm)."""
    from live.engines.base import EngineOptions, create_engine

    eo: EngineOptions = engine_options or EngineOptions()
    ident = f"{engine_name}|{eo.of(engine_name)!r}|{weights}|{model_dir}"
    if engine_name == "fomm":
        owner = create_engine("fomm", eo, weights=weights, model_dir=model_dir)
        shared = _SharedRuntime(owner._rt)  # type: ignore[attr-defined]
        made = [False]

        def make() -> Engine:
            if not made[0]:  # the first engine (the service's preparer) owns the runtime
                made[0] = True
                return owner
            return create_engine("fomm", eo, runtime=shared)
    else:
        def make() -> Engine:
            return create_engine(engine_name, eo, weights=weights, model_dir=model_dir)

    return AnimationService(make, ident, portrait_cache=options.portrait_cache,
                            max_sessions=options.max_sessions, token=options.token,
                            serialize=engine_name == "fomm", store=store)


class _SharedRuntime:
    """A model runtime shared by the sessions' engines: their close() leaves it open (the
    preparer's engine, closed last, owns it)."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def close(self) -> None:
        pass


def cap_compute_threads(service: AnimationService) -> dict[str, int]:
    """OpenBLAS at one thread (:func:`live.blas.limit_openblas_threads`) for this whole
    process (a model instance's). Not for a shared runtime that runs one frame at a time
    (fomm): its threads are all that computes. Returns what was set."""
    if service.serialized:
        return {}
    limited = limit_openblas_threads(1)
    log.info("OpenBLAS threads: %s", limited or "no OpenBLAS loaded")
    return limited


def serve_forever(spec: ServeSpec, options: ServeOptions | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM; then stop Triton (its models close their engines)."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with triton_server(spec, options) as server, suppress(KeyboardInterrupt):
            server.serve()
    finally:
        signal.signal(signal.SIGTERM, previous)
        log.info("server stopped")
