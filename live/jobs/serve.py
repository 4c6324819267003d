"""``mimicam serve``: the animation engine on Triton Inference Server (through PyTriton).

Two models:

* ``portrait``: a portrait face crop (``image`` UINT8 HxWx3) -> its ``portrait_id`` (BYTES).
  The portrait is prepared (encoded) once and kept in a bounded LRU keyed by a hash of the
  image, the engine and its weights/options; sending it again costs a hash.
* ``animate``: one driving frame of one client ``session``: the ``portrait_id``, the driving
  crop ``image``, its ``landmarks`` (FP32 Nx3; a single row means none: the engine finds
  them; PyTriton cannot carry empty tensors), the ``crop_to_frame`` affine, the frame time
  ``t``, an ``op`` (0 process, 1 calibrate: this face is the neutral) and ``flags`` (1 face
  present, 2 recalibrate first, 4 new session) -> the
  animated crop ``image``. Each session has its own engine state (neutral pose, smoothing,
  hold), kept in a bounded LRU. Protocol 2 (this project's clients, when the server has it)
  sends all of that but the image as one packed UINT8 ``frame`` tensor and asks for one
  ``reply`` (status and error) instead of ``status`` and ``error``
  (:func:`live.engines.remote.pack_frame`): fewer tensors, less work per frame in PyTriton;
  the named tensors (protocol 1) are still taken. Only the outputs a request asks for are
  made.

``animate`` runs as ``instances`` model instances (threads; default one per CPU core): Triton
hands each batch to a free instance, so batches run side by side (numpy/OpenCV release the
GIL). A session's frames are taken in turn (a per-session lock); the engines are per session,
never shared between two running frames; a shared model runtime (fomm) is used under a lock.

``mimicam serve`` (:func:`serve_forever`) runs OpenBLAS on one thread: its idle workers spin
and cost the mesh engine about as much CPU again as its own work (:mod:`live.blas`;
not for an engine whose shared runtime runs one frame at a time, fomm).

Every response carries ``status`` (INT32, one of the ``STATUS_*`` codes) and ``error``
(BYTES, a message), or both in ``reply``: a bad request (unknown portrait, malformed or
oversized arrays, a wrong token) is answered with an error for that request only; the rest of
its batch goes on.
Wrong dtypes and ranks never reach the models: Triton refuses them per request.

The protocol (names, codes) is shared with the client, :mod:`live.engines.remote`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import signal
import sysconfig
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError, MimicamError
from live.blas import limit_openblas_threads
from live.engines.base import Engine
from live.engines.remote import (
    FLAG_FACE,
    FLAG_NEW_SESSION,
    FLAG_RECALIBRATE,
    FRAME_INPUT,
    MAX_LANDMARKS,
    MAX_SIDE,
    OP_CALIBRATE,
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
    """``animate`` model instances (threads running batches side by side)."""


def default_instances() -> int:
    """The CPU cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class RequestError(Exception):
    """A request the service answers with an error (for that request only)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Session:
    """One client's engine state. ``lock`` is held while one of its frames runs (two model
    instances may hold frames of the same session); ``engine`` is made on its first frame."""

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


class AnimationService:
    """The models' logic, without Triton: portraits cache, sessions, per-request errors.

    ``make_engine()`` builds one engine (one per session; they may share a model runtime).
    ``identity`` names the engine, its weights and options (part of the portrait key).
    """

    def __init__(self, make_engine: Callable[[], Engine], identity: str, *,
                 portrait_cache: int = 64, max_sessions: int = 64,
                 token: str | None = None, serialize: bool = False) -> None:
        self._make_engine = make_engine
        self._identity = identity
        self.engine_name = identity.split("|", 1)[0]
        self._token = token
        self._portrait_cache = max(1, portrait_cache)
        self._max_sessions = max(1, max_sessions)
        self._portraits: OrderedDict[str, Any] = OrderedDict()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._preparer = make_engine()  # prepares portraits; never animates
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()  # the preparer, one portrait at a time
        # the portrait and animate models run on threads of their own; engines that share one
        # model runtime (fomm) take turns on it
        self._compute: Any = threading.Lock() if serialize else nullcontext()
        self.serialized = serialize
        """Whether the engines take turns on one model runtime (fomm): its own threads are then
        the only compute running, so they keep every core."""

    # -- plain calls ---------------------------------------------------------------------------

    def portrait_key(self, image: np.ndarray) -> str:
        h = hashlib.sha256()
        h.update(self._identity.encode())
        h.update(repr(image.shape).encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return h.hexdigest()[:32]

    def add_portrait(self, image: np.ndarray) -> str:
        _check_image(image, "portrait image")
        key = self.portrait_key(image)
        with self._lock:
            if key in self._portraits:
                self._portraits.move_to_end(key)
                return key
        try:
            with self._prepare_lock, self._compute:
                prepared = self._preparer.prepare(np.ascontiguousarray(image))
        except MimicamError as exc:
            raise RequestError(STATUS_BAD_REQUEST, str(exc)) from None
        with self._lock:
            self._portraits[key] = prepared
            while len(self._portraits) > self._portrait_cache:
                self._portraits.popitem(last=False)
        log.info("portrait %s prepared (%d cached)", key[:8], len(self._portraits))
        return key

    def animate(self, session_id: str, portrait_id: str, face: FaceCrop | None, t: float, *,
                op: int = 0, flags: int = 0) -> np.ndarray:
        with self._lock:
            prepared = self._portraits.get(portrait_id)
            if prepared is None:
                raise RequestError(STATUS_UNKNOWN_PORTRAIT, f"unknown portrait {portrait_id!r}")
            self._portraits.move_to_end(portrait_id)
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
        if self._token is None:
            return
        given = (getattr(request, "parameters", None) or {}).get(TOKEN_PARAMETER)
        if not isinstance(given, str) or not hmac.compare_digest(given, self._token):
            raise RequestError(STATUS_UNAUTHORIZED, "missing or wrong token")

    def infer_info(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        out = []
        for request in requests:
            n = len(request["probe"])
            try:
                self._authorize(request)
                status, error = STATUS_OK, ""
            except RequestError as exc:
                status, error = exc.status, str(exc)
            out.append({"engine": _bytes([self.engine_name] * n),
                        "size": _status([int(self._preparer.size)] * n),
                        "status": _status([status] * n), "error": _bytes([error] * n)})
        return out

    def infer_portrait(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        out = []
        for request in requests:
            images = request["image"]
            ids, statuses, errors = [], [], []
            for image in images:
                try:
                    self._authorize(request)
                    ids.append(self.add_portrait(image))
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
                stacked = first[None]  # no copy: PyTriton copies it into shared memory
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
        names = request.keys()  # a dict, or PyTriton's Request (no get())
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


ANIMATE_OUTPUTS = ("image", "status", "error", REPLY_OUTPUT)
_NAMED_INPUTS = ("session", "portrait_id", "landmarks", "crop_to_frame", "t", "op", "flags")


def _check_image(image: np.ndarray, name: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise RequestError(STATUS_BAD_REQUEST, f"{name}: expected UINT8 HxWx3, got "
                           f"{image.dtype} {image.shape}")
    if max(image.shape[:2]) > MAX_SIDE or min(image.shape[:2]) < 16:
        raise RequestError(STATUS_BAD_REQUEST, f"{name}: side out of range 16..{MAX_SIDE}: "
                           f"{image.shape[1]}x{image.shape[0]}")


def _text(value: Any) -> str:
    v = np.asarray(value).reshape(-1)[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _bytes(values: list[str]) -> np.ndarray:
    return np.array([[v.encode()] for v in values], dtype=object)


def _status(values: list[int]) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.int32)


# -- the server ------------------------------------------------------------------------------------


def _python_lib_path() -> None:
    """Triton's Python backend stub loads ``libpython3.X.so``; make it find this interpreter's
    own (a pyenv build), not an older system one of the same minor version."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir).is_dir():
        paths = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in paths.split(":"):
            os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{paths}" if paths else libdir


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


@contextmanager
def triton_server(service: AnimationService, options: ServeOptions) -> Iterator[Any]:
    """Triton with the ``portrait`` and ``animate`` models bound to ``service``, started."""
    check_bind(options)
    _python_lib_path()
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise MimicamError("mimicam serve needs PyTriton: pip install 'mimicam[serve]' "
                           f"({exc})") from None

    config = TritonConfig(http_address=options.host, http_port=options.http_port,
                          grpc_address=options.host, grpc_port=options.grpc_port,
                          metrics_address=options.host, metrics_port=options.metrics_port,
                          # unloading the three models takes ~4 s here: with less,
                          # Triton gives up and its Python-backend stubs die uncleanly
                          exit_timeout_secs=10)
    if options.tls_cert is not None and options.tls_key is not None:
        config.grpc_use_ssl = True
        config.grpc_server_cert = Path(options.tls_cert)
        config.grpc_server_key = Path(options.tls_key)
    batching = ModelConfig(max_batch_size=max(1, options.max_batch),
                           batcher=DynamicBatcher(
                               max_queue_delay_microseconds=options.queue_delay_us))
    status = Tensor(name="status", dtype=np.int32, shape=(1,))
    error = Tensor(name="error", dtype=bytes, shape=(1,))
    triton = Triton(config=config)
    try:
        triton.bind(model_name="info", infer_func=service.infer_info,
                    inputs=[Tensor(name="probe", dtype=np.int32, shape=(1,))],
                    outputs=[Tensor(name="engine", dtype=bytes, shape=(1,)),
                             Tensor(name="size", dtype=np.int32, shape=(1,)), status, error],
                    config=ModelConfig(max_batch_size=max(1, options.max_batch)), strict=False)
        triton.bind(model_name="portrait", infer_func=service.infer_portrait,
                    inputs=[Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3))],
                    outputs=[Tensor(name="portrait_id", dtype=bytes, shape=(1,)), status, error],
                    config=batching, strict=False)
        # one callable per instance: PyTriton runs each on a thread of its own
        # (instance_group count = len(infer_func))
        animate = [service.infer_animate for _ in range(max(1, options.instances))]
        # protocol 2 sends ``image`` and the packed ``frame`` and asks for ``image`` and
        # ``reply``; protocol 1 (older clients) the named tensors, and ``status``/``error``
        triton.bind(model_name="animate", infer_func=animate,
                    inputs=[Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3)),
                            Tensor(name=FRAME_INPUT, dtype=np.uint8, shape=(-1,),
                                   optional=True),
                            Tensor(name="session", dtype=bytes, shape=(1,), optional=True),
                            Tensor(name="portrait_id", dtype=bytes, shape=(1,), optional=True),
                            Tensor(name="landmarks", dtype=np.float32, shape=(-1, 3),
                                   optional=True),
                            Tensor(name="crop_to_frame", dtype=np.float64, shape=(2, 3),
                                   optional=True),
                            Tensor(name="t", dtype=np.float64, shape=(1,), optional=True),
                            Tensor(name="op", dtype=np.int32, shape=(1,), optional=True),
                            Tensor(name="flags", dtype=np.int32, shape=(1,), optional=True)],
                    outputs=[Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3)),
                             status, error,
                             Tensor(name=REPLY_OUTPUT, dtype=np.uint8, shape=(-1,))],
                    config=batching, strict=False)
        triton.run()
        log.info("serving on %s: http %d, grpc %d, metrics %d; %d animate instance(s)",
                 options.host, options.http_port, options.grpc_port, options.metrics_port,
                 len(animate))
        yield triton
    finally:
        triton.stop()


def make_service(engine_name: str, engine_options: Any, *, weights: str | Path | None = None,
                 model_dir: str | Path | None = None, options: ServeOptions) -> AnimationService:
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
                            serialize=engine_name == "fomm")


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
    """OpenBLAS at one thread (:func:`live.blas.limit_openblas_threads`) for this whole process, the
    server's. Not for a shared runtime that runs one frame at a time (fomm): its threads are
    all that computes. Returns what was set."""
    if service.serialized:
        return {}
    limited = limit_openblas_threads(1)
    log.info("OpenBLAS threads: %s", limited or "no OpenBLAS loaded")
    return limited


def serve_forever(service: AnimationService, options: ServeOptions) -> None:
    """Serve until Ctrl-C or SIGTERM; then stop Triton and close the engines."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    cap_compute_threads(service)  # a process of its own
    try:
        with triton_server(service, options) as triton, suppress(KeyboardInterrupt):
            triton.serve()
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.close()
        log.info("server stopped")
