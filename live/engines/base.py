"""The one engine interface every animation engine implements.

Life cycle::

    engine = create_engine("mesh", EngineOptions())   # or create_engine("mesh", size=512)
    prepared = engine.prepare(portrait_crop)   # heavy; may run on another thread
    engine.set_portrait(prepared)              # cheap swap on the hot path
    for tracked in frames:
        out = engine.process(tracked.face, t)  # face None -> hold, then ease back to neutral
    engine.recalibrate()                       # next driving face becomes the neutral pose

The neutral driving pose is taken from the first face given to :meth:`process` after
construction or :meth:`recalibrate`, unless :meth:`calibrate` is called with a chosen one
(``calibrate/`` picks a stable frame, or the best-matching one).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from calibrate.errors import InputError
from live.engines.options import FommOptions, MeshOptions, changed_options
from live.packets import FaceCrop

log = logging.getLogger(__name__)


@runtime_checkable
class Engine(Protocol):
    """Animates one portrait crop with the relative motion of a driving face crop."""

    name: str
    size: int
    # Optional (read with ``getattr(engine, "pastes_whole_crop", False)``): True for an engine
    # whose output keeps the crop's picture as it is away from the animated person (the mesh
    # engine's still background), so the whole crop can be pasted back
    # (:func:`live.compose.crop_mask`) instead of a feathered ellipse around the face.

    def prepare(self, portrait: np.ndarray, *,
                picture: tuple[int, int, int, int] | None = None,
                context: np.ndarray | Callable[[], np.ndarray | None] | None = None) -> Any:
        """Analyse a portrait face crop (RGB uint8, size x size); returns an opaque handle.

        ``picture``: ``(x0, y0, x1, y1)``, the crop's pixels that show its photo when the crop
        reaches past the photo (:func:`live.geometry.picture_box`; None: all of it). The rest
        is made-up border, which an engine must not move into the picture.

        ``context``: the crop's person mask (float32 (size, size) in [0, 1]) worked out on
        the whole photo (:func:`live.face.portraits.crop_person_context`), for an engine that
        segments its crop and would see too little of the scene in it, or a function giving
        it (or None), which such an engine calls only when it needs it; None: none.

        Raises :class:`calibrate.errors.NoFaceError` when the crop holds no usable face. Must not
        touch the engine's current state, so it can run off the hot path.
        """
        ...

    def set_portrait(self, prepared: Any) -> None:
        """Switch to a prepared portrait (keeps the calibration of the driving face)."""
        ...

    def calibrate(self, neutral: FaceCrop) -> None:
        """Use ``neutral`` as the driving face's neutral pose."""
        ...

    def recalibrate(self) -> None:
        """Forget the neutral pose; the next face given to :meth:`process` becomes it."""
        ...

    @property
    def calibrated(self) -> bool:
        """True once a neutral driving pose is known."""
        ...

    def process(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        """One animated portrait crop (RGB uint8, size x size) for this driving face.

        ``driving`` None means no face this frame: hold the last pose and ease back to
        neutral. ``t`` is the frame's time in seconds (capture time or video time), used
        for smoothing with real time steps.
        """
        ...

    def close(self) -> None:
        """Release resources; calling it twice is harmless."""
        ...


def crop_matte(engine: Any) -> np.ndarray | None:
    """The person matte of the crop ``engine`` returned last (uint8, the crop's size, 255 =
    person), when the engine has one: its ``last_matte`` attribute, which engines may offer
    beside the :class:`Engine` protocol (the mesh engine's matte warped with the head; the
    fomm engine segments its output crop when asked). None: unavailable (the caller keeps the
    portrait's still matte)."""
    matte = getattr(engine, "last_matte", None)
    if matte is None:
        return None
    return np.asarray(matte)


MESH_DRIVING_CROP = 256
"""The mesh engine's driving face crop (px) in ``mimicam live`` and the engine's speed bench
when the camera shows the face with no more pixels than this (up to
:data:`MESH_LIVE_DRIVING_CROP` when it shows more): it reads the crop's landmarks, and its
pixels for the driver's mouth, shading and body flow."""
MESH_LIVE_DRIVING_CROP = 384
"""... the largest crop live cuts at the face's own resolution (a 720p or 1080p webcam's
face; :func:`live.face.tracking.native_crop_size`: never an enlargement of the frame, which
would cost every frame and add nothing). 384 px kept most of what 512 px gave the
self-reconstructions at half its extra cost a frame (benchmarks/README "Round 49")."""
MESH_OFFLINE_DRIVING_CROP = 512
"""... and in the offline jobs (``animate``, the demo's ``--driving``, the quality benches):
their driving videos show the face at up to the clip's size, and the driver's mouth and
creases come across sharper from a crop that keeps it (benchmarks/README "Round 48")."""


def driving_crop_size(engine: Any, *, offline: bool = False) -> int:
    """The size (px) of the driving face crops ``engine`` animates from: fomm reads the crop
    as its network's input, at its own size; the mesh engine at :data:`MESH_DRIVING_CROP`
    at most, as ``mimicam live`` tracks a face no larger (:func:`driving_crop_limit` for a
    larger one), or :data:`MESH_OFFLINE_DRIVING_CROP` when ``offline`` (a file is written:
    quality before speed). A remote engine's by the engine on the server, at the live size
    for mesh offline too (four times the bytes a frame on the wire)."""
    remote = getattr(engine, "server_engine", None)
    name = remote or engine.name
    size = int(engine.size)
    if name == "fomm":
        return size
    return min(size, MESH_OFFLINE_DRIVING_CROP if offline and remote is None
               else MESH_DRIVING_CROP)


def driving_crop_limit(engine: Any) -> int:
    """The largest driving crop (px) ``mimicam live`` cuts for ``engine`` when the camera
    shows the face with more pixels than :func:`driving_crop_size` (the tracker's
    ``max_crop_size``): the local mesh engine's up to :data:`MESH_LIVE_DRIVING_CROP`; fomm's
    input and a remote engine's crops on the wire stay at :func:`driving_crop_size`."""
    if engine.name == "mesh":  # (a remote engine's name is "remote")
        return max(driving_crop_size(engine), min(int(engine.size), MESH_LIVE_DRIVING_CROP))
    return driving_crop_size(engine)


EngineFactory = Callable[..., Engine]
_FACTORIES: dict[str, str] = {
    # name -> "module:callable"; imported only when asked for (no heavy imports here).
    "mesh": "live.engines.mesh.engine:MeshEngine",
    "fomm": "live.engines.fomm:FommEngine",
}


def engine_names() -> list[str]:
    return sorted(_FACTORIES)


@dataclass(frozen=True)
class EngineOptions:
    """The options of every engine: a settings file's ``[engine.mesh]`` and ``[engine.fomm]``
    tables. The command uses the table of the engine it runs.

    :meth:`apply` gives the settings that ``mimicam live``, ``animate`` and ``demo`` share as
    flags (``live/cli/engine_flags.py``) their one meaning.
    """

    mesh: MeshOptions = field(default_factory=MeshOptions)
    fomm: FommOptions = field(default_factory=FommOptions)

    def of(self, name: str) -> MeshOptions | FommOptions:
        """The options of engine ``name``."""
        options: MeshOptions | FommOptions = getattr(self, _engine_name(name))
        return options

    def apply(self, *, crop_size: int | None = None, image_size: int | None = None,
              adapt_scale: bool | None = None, relative: bool | None = None,
              smoothing: bool | None = None, backend: str | None = None,
              mouth: str | None = None) -> EngineOptions:
        """These options with the shared settings that were given (None: not given) set in
        the engines they concern:

        * ``crop_size``: side of the face crops the engine animates (mesh ``size``; fomm
          ``size``, its output resized from the model's ``image_size``);
        * ``image_size``: the FOMM model's size (fomm ``image_size``, 256 or 512); the mesh
          engine, which has no model, animates crops of this size unless ``crop_size`` is given;
        * ``adapt_scale``: both engines (scale the motion by the faces' size ratio);
        * ``relative``: fomm (False: absolute keypoints; the mesh engine is always relative,
          so building it with ``fomm.relative`` False is refused);
        * ``smoothing``: mesh (One Euro filter on the driving landmarks);
        * ``backend``: fomm (the model runtime);
        * ``mouth``: mesh (where an opening mouth's interior comes from).
        """
        mesh: dict[str, Any] = {}
        fomm: dict[str, Any] = {}
        if image_size is not None:
            mesh["size"] = fomm["image_size"] = image_size
        if crop_size is not None:
            mesh["size"] = fomm["size"] = crop_size
        if adapt_scale is not None:
            mesh["adapt_scale"] = fomm["adapt_scale"] = adapt_scale
        if relative is not None:
            fomm["relative"] = relative
        if smoothing is not None:
            mesh["smoothing"] = smoothing
        if backend is not None:
            fomm["backend"] = backend
        if mouth is not None:
            mesh["mouth"] = mouth
        if not mesh and not fomm:
            return self
        return EngineOptions(mesh=dataclasses.replace(self.mesh, **mesh),
                             fomm=dataclasses.replace(self.fomm, **fomm))

    def changes(self, name: str) -> dict[str, Any]:
        """Engine ``name``'s options that differ from its defaults (for logs)."""
        return changed_options(self.of(name))


def _engine_name(name: str) -> str:
    if name not in _FACTORIES:
        raise InputError("unknown engine", expected=" or ".join(engine_names()),
                         got=repr(name))
    return name


def check_engine_options(name: str, options: EngineOptions) -> None:
    """Raise InputError when ``options`` ask engine ``name`` for something it cannot do."""
    if _engine_name(name) == "mesh" and not options.fomm.relative:
        raise InputError("absolute motion needs the fomm engine",
                         expected="--relative with the mesh engine (it always moves the "
                         "portrait relative to the neutral pose), or --engine fomm",
                         got="--absolute ([engine.fomm] relative = false)")


def create_engine(name: str, options: EngineOptions | None = None, *,
                  weights: str | Path | None = None, model_dir: str | Path | None = None,
                  remote: str | None = None, token: str | None = None,
                  fallback: str | None = None, **overrides: Any) -> Engine:
    """Build the engine called ``name``: from ``options`` (its table, ``options.mesh`` or
    ``options.fomm``), then keyword ``overrides`` of that engine
    (``create_engine("mesh", size=256)``).

    ``weights`` is a FOMM checkpoint, or a model directory written by ``mimicam export``
    (``model_dir`` names one explicitly); the mesh engine needs none and ignores them with a
    warning. The one place where every command builds its engine.

    ``remote`` (``grpc://HOST:PORT`` or ``http://HOST:PORT``): the engine runs on a ``mimicam
    serve`` server (:class:`live.engines.remote.RemoteEngine`, with the server's ``token``);
    ``fallback`` names a local engine that animates while the server is unreachable.
    """
    if remote is not None:
        from live.engines.remote import RemoteEngine

        if weights is not None or model_dir is not None:
            log.warning("--remote: the server's engine animates; ignoring %s",
                        weights or model_dir)
        engine = RemoteEngine(remote, token=token)
        if fallback is not None:
            try:
                engine.set_fallback(create_engine(fallback, options, size=engine.size))
            except BaseException:
                engine.close()
                raise
        return engine
    try:
        target = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown engine {name!r}; expected one of {', '.join(engine_names())}"
        ) from None
    kwargs: dict[str, Any] = dict(overrides)
    if options is not None:
        check_engine_options(name, options)
        kwargs["options"] = options.of(name)
    if name == "fomm":
        if weights is not None:
            path = Path(weights)
            kwargs["model_dir" if path.is_dir() else "weights"] = path
        if model_dir is not None:
            kwargs["model_dir"] = Path(model_dir)
    elif weights is not None or model_dir is not None:
        log.warning("the %s engine uses no weights; ignoring %s", name, weights or model_dir)
    module_name, _, attr = target.partition(":")
    import importlib

    factory: EngineFactory = getattr(importlib.import_module(module_name), attr)
    return factory(**kwargs)
