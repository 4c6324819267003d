"""The First Order Motion Model engine: the portrait re-posed by the driving face's keypoints.

``FommEngine(weights=PATH)`` (or ``model_dir=DIR`` of ``mimicam export``) runs the three
exported FOMM graphs on a model runtime (``backend``, default auto):

* :meth:`FommEngine.prepare` encodes the portrait once (source features, keypoints);
* :meth:`FommEngine.process` detects the driving crop's keypoints (resized to the model's
  ``image_size``), moves the portrait's keypoints by the driving motion relative to the neutral
  driving pose (``relative``; ``adapt_scale`` scales it by the faces' size ratio), animates,
  and returns the frame resized to ``size``.

With weights and no model directory, the graphs are exported once into the user cache
(``<cache>/models/fomm-<sha256 prefix>-<size>``) and reused while the weights' hash matches.
Face lost: the last pose is held for ``hold_s``, then eased back to neutral; when the face
returns the shown pose eases to it. Times are the frames' real times, not an assumed rate.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError, MimicamError, WeightsError
from calibrate.hold import PoseHold
from calibrate.keypoints import Keypoints, normalize_kp
from calibrate.smoothing import exp_approach
from live.engines.options import FommOptions, with_overrides
from live.packets import FaceCrop, check_rgb

log = logging.getLogger(__name__)


FommEngineConfig = FommOptions
"""Older name of :class:`~live.engines.options.FommOptions` (the ``[engine.fomm]`` table)."""


@dataclass(frozen=True, eq=False)
class FommPortrait:
    """A portrait prepared for the FOMM engine (returned by :meth:`FommEngine.prepare`)."""

    state: Any  # model_export.fomm_runtime.SourceState
    image: np.ndarray

    @property
    def kp(self) -> Keypoints:
        kp: Keypoints = self.state.kp
        return kp


def model_cache_dir() -> Path:
    """Where exported model directories of fetched/given weights are kept."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mimicam", appauthor=False)) / "models"


def resolve_model_dir(weights: Path, image_size: int, *, cache_dir: Path | None = None,
                      config: Any = None) -> Path:
    """The exported model directory for ``weights``: reused from the cache when its manifest
    names the same weights (sha256), else exported there now (once)."""
    from model_export.export import export_fomm, load_manifest
    from model_export.manifest import ManifestError
    from model_export.weights import sha256_of

    if not weights.is_file():
        raise WeightsError(f"{weights}: FOMM weights not found; expected a checkpoint file "
                           "(vox-cpk.pdparams)")
    sha = sha256_of(weights)
    target = (cache_dir or model_cache_dir()) / f"fomm-{sha[:16]}-{image_size}"
    try:
        load_manifest(target, weights_sha256=sha)
        return target
    except ManifestError as exc:
        if target.exists():
            log.info("re-exporting %s: %s", target, exc)
    log.info("exporting the FOMM graphs of %s into %s (once; takes a minute)", weights, target)
    export_fomm(weights, target, image_size=image_size, config=config)
    return target


def _lerp_kp(current: Keypoints, target: Keypoints, dt: float, half_life: float) -> Keypoints:
    value = exp_approach(current.value, target.value, dt, half_life).astype(np.float32)
    jac = None
    if current.jacobian is not None and target.jacobian is not None:
        jac = exp_approach(current.jacobian, target.jacobian, dt, half_life).astype(np.float32)
    return Keypoints(value=value, jacobian=jac)


def _kp_distance(a: Keypoints, b: Keypoints) -> float:
    d = float(np.max(np.abs(a.value - b.value)))
    if a.jacobian is not None and b.jacobian is not None:
        d = max(d, float(np.max(np.abs(a.jacobian - b.jacobian))))
    return d


_CONVERGED = 1e-3  # keypoint units ([-1, 1] image span): well under a pixel
_STILL = 1e-4  # a pose that moved less than this since the last frame is not re-rendered


class FommEngine:
    """FOMM animation engine (see the module docstring).

    ``FommEngine(options=None, *, weights=None, model_dir=None, **overrides)``: ``options`` is
    a :class:`FommOptions` (the ``[engine.fomm]`` table), keyword overrides are its fields,
    e.g. ``FommEngine(weights=Path("vox-cpk.pdparams"), adapt_scale=False)``. ``options``
    (also ``config``) holds the options in use; ``last_timings`` the stage times (ms) of the
    last :meth:`process` call.
    """

    name = "fomm"

    def __init__(self, options: FommOptions | None = None, *,
                 weights: str | Path | None = None, model_dir: str | Path | None = None,
                 runtime: Any = None, **overrides: Any) -> None:
        base = options or FommOptions()
        self.options = cfg = with_overrides(base, overrides, "fomm")
        self.weights = Path(weights) if weights is not None else None
        self.model_dir = Path(model_dir) if model_dir is not None else None
        if runtime is None:
            from model_export.fomm_runtime import FommRuntime

            if self.model_dir is not None:
                directory = self.model_dir
            elif self.weights is not None:
                directory = resolve_model_dir(self.weights, cfg.image_size)
            else:
                raise WeightsError(
                    "the fomm engine needs weights; expected weights=PATH (vox-cpk.pdparams) "
                    "or model_dir=DIR from 'mimicam export', got neither")
            runtime = FommRuntime(directory, backend=cfg.backend, threads=cfg.threads,
                                  precision=cfg.precision)
        self._rt = runtime
        if int(runtime.image_size) != cfg.image_size:
            # asked for (a keyword, or options other than the default 256): a mismatch is an
            # error; else the model directory's own size is used
            if "image_size" in overrides or cfg.image_size != FommOptions().image_size:
                raise InputError("the model directory's image size differs from image_size",
                                 expected=str(cfg.image_size), got=str(runtime.image_size))
            self.options = cfg = dataclasses.replace(cfg, image_size=int(runtime.image_size))
        self.size = int(cfg.size or cfg.image_size)
        self._kp_lock = threading.Lock()  # prepare() may run on another thread
        self._prepare_lock = threading.Lock()
        self._portrait: FommPortrait | None = None
        self._rest: np.ndarray | None = None
        self._made = 0  # frames computed anew (a held pose repeats the last one)
        self._matte: tuple[int, np.ndarray | None] = (-1, None)  # (_made, its matte)
        self._closed = False
        self.last_timings: dict[str, float] = {}
        self._hold: PoseHold[Keypoints] = PoseHold.from_options(
            cfg, converged=_CONVERGED, approach=_lerp_kp, distance=_kp_distance)
        self._reset_driving()
        log.info("fomm engine: %d px model on %s, output %d px", cfg.image_size,
                 getattr(runtime, "backend", "?"), self.size)

    @property
    def config(self) -> FommOptions:
        """Same as :attr:`options` (its older name)."""
        return self.options

    # -- state ---------------------------------------------------------------------------------

    def _reset_driving(self) -> None:
        self._neutral: Keypoints | None = None
        self._hold.reset()
        self._last_frame: np.ndarray | None = None
        self._last_drive: Keypoints | None = None

    @property
    def calibrated(self) -> bool:
        return self._neutral is not None

    @property
    def backend(self) -> str:
        return str(getattr(self._rt, "backend", "?"))

    # -- portrait ------------------------------------------------------------------------------

    def prepare(self, portrait: np.ndarray, *,
                picture: tuple[int, int, int, int] | None = None,
                context: np.ndarray | Callable[[], np.ndarray | None] | None = None
                ) -> FommPortrait:
        """Encode a square portrait crop (resized to the model's size); heavy, thread-safe.
        ``picture`` is not used: the network was trained on crops with such borders; nor is
        ``context`` (the engine segments nothing)."""
        image = check_rgb(portrait, "portrait")
        h, w = image.shape[:2]
        if h != w:
            raise InputError("the portrait crop is not square",
                             expected="a square RGB crop around the face", got=f"{w}x{h}")
        with self._kp_lock:  # the keypoint detector is shared with process()
            kp = self._rt.detect(image)
        with self._prepare_lock:  # the source encoder is used by prepare() only
            state = self._rt.encode_source(image, kp=kp)
        return FommPortrait(state=state, image=image)

    def set_portrait(self, prepared: Any) -> None:
        if not isinstance(prepared, FommPortrait):
            raise TypeError(f"expected a FommPortrait from FommEngine.prepare, "
                            f"got {type(prepared).__name__}")
        self._portrait = prepared
        self._rest = None
        self._last_frame = None
        self._last_drive = None

    # -- driving -------------------------------------------------------------------------------

    def _detect(self, face: FaceCrop) -> Keypoints:
        image = check_rgb(face.image, "driving.image")
        with self._kp_lock:
            kp: Keypoints = self._rt.detect(image)
        return kp

    def calibrate(self, neutral: FaceCrop) -> None:
        """Use ``neutral`` as the driving face's neutral pose."""
        self._reset_driving()
        self._neutral = self._detect(neutral)

    def recalibrate(self) -> None:
        """The next driving face becomes the neutral pose."""
        self._reset_driving()

    def _on_face(self, kp: Keypoints, t: float) -> Keypoints:
        if self._neutral is None:
            self._neutral = kp
        return self._hold.on_face(kp, t)

    def _on_lost(self, t: float) -> Keypoints | None:
        return self._hold.on_lost(self._neutral, t)

    # -- frames --------------------------------------------------------------------------------

    def _animate(self, portrait: FommPortrait, drive: Keypoints) -> np.ndarray:
        assert self._neutral is not None
        kp = normalize_kp(portrait.kp, drive, self._neutral, relative=self.options.relative,
                          adapt_scale=self.options.adapt_scale and self.options.relative)
        return self._resize(self._rt.animate(portrait.state, kp))

    def _resize(self, image: np.ndarray) -> np.ndarray:
        if image.shape[0] == self.size:
            return image
        import cv2

        interp = cv2.INTER_AREA if image.shape[0] > self.size else cv2.INTER_CUBIC
        return np.ascontiguousarray(cv2.resize(image, (self.size, self.size),
                                               interpolation=interp))

    def _rest_frame(self, portrait: FommPortrait) -> np.ndarray:
        """The portrait re-posed onto its own keypoints (what neutral looks like)."""
        if self._rest is None:
            self._rest = self._resize(self._rt.animate(portrait.state, portrait.kp))
        return self._rest

    def process(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        """The portrait crop animated with ``driving`` (None: no face this frame)."""
        if self._closed:
            raise RuntimeError("FommEngine.process: the engine is closed")
        portrait = self._portrait
        if portrait is None:
            raise MimicamError("the fomm engine has no portrait: call "
                               "set_portrait(prepare(image)) before process()")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if driving is not None:
            kp = self._detect(driving)
            timings["kp_detector"] = (time.perf_counter() - t0) * 1e3
            drive: Keypoints | None = self._on_face(kp, t)
        else:
            drive = self._on_lost(t)
        if drive is None:
            frame = self._rest_frame(portrait).copy()
            self._made += 1
        elif (self._last_frame is not None and self._last_drive is not None
              and _kp_distance(drive, self._last_drive) < _STILL):
            frame = self._last_frame.copy()  # a held or settled pose: nothing to compute
        else:
            self._made += 1
            t1 = time.perf_counter()
            frame = self._animate(portrait, drive)
            timings["animator"] = (time.perf_counter() - t1) * 1e3
        self._last_frame, self._last_drive = frame, drive
        timings["total"] = (time.perf_counter() - t0) * 1e3
        self.last_timings = timings
        return frame

    @property
    def last_matte(self) -> np.ndarray | None:
        """The person matte of the crop :meth:`process` returned last (uint8, ``size``, 255 =
        person), or None (nothing processed yet, or nobody found). FOMM moves the head
        without a warp that could carry the portrait's matte, so the output crop is segmented
        (:func:`live.face.segmentation.quick_matte`, ~3 ms at 256 px), once per distinct
        frame and only when this is read (a background is on)."""
        frame = self._last_frame
        if frame is None:
            return None
        if self._matte[0] != self._made:
            from live.face.segmentation import quick_matte

            self._matte = (self._made, quick_matte(frame))
        return self._matte[1]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._rt.close()
