"""The weight-free ``mesh`` engine: the portrait follows the driving face's face-mesh motion.

Per frame: the driving landmarks (the tracker's, or the engine's own face mesh when the crop
has none) are smoothed with a One Euro filter on real time steps, their motion relative to
the neutral pose is carried into the portrait (:mod:`live.engines.mesh.motion`), rings around
the face follow the head, and the portrait is warped piecewise-affinely over MediaPipe's
face triangles plus rings out to the fixed image border (:mod:`live.engines.mesh.warp`). A
closed mouth that opens shows a dark interior in the portrait's own lip hue
(:mod:`live.engines.mesh.mouth`). When the driving face is lost the last pose is held, then eases
back to neutral; when it returns the pose eases to it instead of jumping.

Usage::

    engine = MeshEngine(size=512)
    engine.set_portrait(engine.prepare(portrait_crop))
    out = engine.process(face_crop, t)   # RGB uint8 (512, 512, 3)
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from calibrate import landmarks as lm
from calibrate.errors import InputError, MimicamError, NoFaceError
from calibrate.hold import PoseHold, max_abs_distance
from calibrate.smoothing import OneEuroFilter, exp_approach
from live.blas import usable_cores
from live.engines.mesh.band import BandSource
from live.engines.mesh.body import (
    BodyFlow,
    BodyMotion,
    StrainLinks,
    move_outside,
    nearest_outline,
    strain_links,
)
from live.engines.mesh.crown import Crown, crown_cap
from live.engines.mesh.eyes import (
    EyePatch,
    LashLine,
    keep_lash_bands,
    lash_lines,
    lid_lifts,
    lift_lash_source,
    prepare_eyes,
    render_eyes,
    smooth_closing_lids,
)
from live.engines.mesh.motion import (
    MotionOptions,
    affine_scale,
    fit_similarity,
    outside_motion,
    portrait_motion,
)
from live.engines.mesh.mouth import (
    LipSeam,
    MouthStyle,
    jaw_anchors,
    limit_lip_retraction,
    lip_seam,
    mouth_style,
    open_lip_seam,
    render_mouth,
    teeth_reference,
)
from live.engines.mesh.shading import (
    ExpressionDetail,
    ShadingReference,
    SkinMatch,
    apply_ratio,
    expression_detail,
    finish_ratio,
    glasses_triangles,
    shading_triangles,
)
from live.engines.mesh.topology import (
    N_MESH,
    STABLE_POINTS,
    FaceChains,
    MeshLayout,
    Unfolder,
    build_layout,
    face_chains,
    triangle_areas,
)
from live.engines.mesh.warp import (
    FoldSamples,
    PiecewiseAffineWarp,
    SeamSources,
    composite_head,
    enlarge_2x,
    triangle_affines,
    triangle_bounds,
)
from live.engines.options import MeshOptions, with_overrides
from live.face.segmentation import (
    STILL_GROW,
    PersonContext,
    PortraitLayers,
    change_context,
    prepare_layers,
    still_background,
)
from live.face.tracking import landmark_array
from live.geometry import normalized_to_pixels, transform_points
from live.packets import FaceCrop, check_rgb

log = logging.getLogger(__name__)

_CONVERGED_IOD = 0.01  # face back: the ease in ends within this many inter-ocular distances
BODY_CELLS = 16
"""The body-flow lattice: this many cells a side, on the driving crop and on the portrait."""
BAND_KEEPS: tuple[int, ...] = lm.RIGHT_EYE + lm.LEFT_EYE + lm.RIGHT_BROW + lm.LEFT_BROW \
    + lm.LIPS + lm.IRISES
"""Landmarks whose sources the outer band never moves (their own renderers rely on them)."""
SHADING_FULL_TURN = 15.0
"""Expression shading at full strength up to this head turn from neutral (degrees) ..."""
SHADING_NO_TURN = 35.0
"""... and none from this one: the light on a turned face changes with the turn (a nose's
shadow, a shine), which is not an expression."""


MeshEngineConfig = MeshOptions
"""Older name of :class:`~live.engines.options.MeshOptions` (the ``[engine.mesh]`` table)."""


STILL_MOVED = 0.02
"""How far the warp moves the picture (share of the crop's side) before the still background
behind it is wholly the still plate instead of the backdrop
(``MeshEngine._still_background``)."""


def motion_options(options: MeshOptions) -> MotionOptions:
    return MotionOptions(lip_gain=options.lip_gain, gaze_gain=options.gaze_gain,
                         blink_close_at=options.blink_close_at,
                         max_eye_open=options.max_eye_open, jaw_follow=options.jaw_follow)


@dataclass(frozen=True, eq=False)
class MeshPortrait:
    """A portrait prepared for the mesh engine (returned by :meth:`MeshEngine.prepare`)."""

    image: np.ndarray
    landmarks: np.ndarray
    layout: MeshLayout
    mouth: MouthStyle
    chains: FaceChains
    layers: PortraitLayers | None = None
    """Person matte and background plate (None: segmentation found nobody, or off)."""
    eyes: tuple[EyePatch, ...] = ()
    """The eyes cut out for :func:`~live.engines.mesh.eyes.render_eyes` (gaze)."""
    crown: Crown | None = None
    """The head above the photo's top edge, where the person touches it inside the crop
    and the border slides (:mod:`live.engines.mesh.crown`); None: nobody along that edge,
    or the crop's top edge is not the photo's."""

    @functools.cached_property
    def slide_limits(self) -> np.ndarray:
        """Where the warp's border sources may slide: the picture's border, and beyond its
        top edge as far as the :attr:`crown` reaches."""
        limits = self.layout.slide_limits
        return limits if self.crown is None else self.crown.limits(limits)

    @functools.cached_property
    def unfolder(self) -> Unfolder:
        """Puts the body flow's points back in order where they turned triangles over (built
        once, on the first frame that moves them)."""
        return Unfolder.of(self.layout)

    @functools.cached_property
    def lashes(self) -> tuple[LashLine, LashLine]:
        """Each eye's upper lash line (:func:`~live.engines.mesh.eyes.lash_lines`)."""
        return lash_lines(self.image, self.landmarks)

    @functools.cached_property
    def lid_lifts(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """How much each eye's closed lid is lightened
        (:func:`~live.engines.mesh.eyes.lid_lifts`)."""
        return lid_lifts(self.image, self.landmarks, self.lashes)

    @functools.cached_property
    def band(self) -> BandSource:
        """The face's outer band, which draws what a turn brings into view in order and
        shares out its stretch (:class:`~live.engines.mesh.band.BandSource`; eyes, brows and
        lips keep their sources)."""
        return BandSource(self.layout.src[:N_MESH], self.layout.face_tris, lm.FACE_OVAL,
                          BAND_KEEPS, depth_points=self.landmarks, size=self.size)

    @functools.cached_property
    def outline_nearest(self) -> tuple[np.ndarray, np.ndarray]:
        """Each vertex outside the face (rings, then lattice): its nearest point of the
        face's outline and the distance to it (for the body flow's hold to the outline)."""
        src = self.layout.src
        return nearest_outline(src[self.layout.outside_ids], src[list(lm.FACE_OVAL)])

    @functools.cached_property
    def strain_links(self) -> StrainLinks:
        """The warp's links below the chin that the body flow's strain limit holds
        (:func:`~live.engines.mesh.body.strain_links`; the border's too when it slides, with
        a head layer)."""
        return strain_links(self.layout, border=self.layers is not None)

    @functools.cached_property
    def seam(self) -> LipSeam | None:
        """The closed mouth with the dark line between its lips filled in
        (:func:`~live.engines.mesh.mouth.lip_seam`; None: open, or no line)."""
        return lip_seam(self.image, self.landmarks, self.mouth)

    @functools.cached_property
    def glasses_zone(self) -> np.ndarray:
        """The face triangles a driver's glasses would cover on this portrait (no expression
        shading there while the driving face wears glasses; :func:`glasses_triangles`)."""
        return glasses_triangles(self.landmarks)

    @functools.cached_property
    def image_matte(self) -> np.ndarray | None:
        """The image with the person matte as its fourth channel, (H, W, 4) uint8: one
        4-channel remap warps both (about as fast as the image's 3 channels alone); None
        without layers."""
        if self.layers is None:
            return None
        return np.ascontiguousarray(np.dstack([self.image, self.layers.matte_u8]))

    @property
    def still_plate(self) -> np.ndarray | None:
        """What the head layer shows where the head has left: the layers' plate, grown only
        :data:`~live.face.segmentation.STILL_GROW`; None without layers."""
        return None if self.layers is None else self.layers.plate

    @functools.cached_property
    def backdrop(self) -> np.ndarray | None:
        """The background each pixel carries as the warp moves it
        (:func:`~live.face.segmentation.still_background` of the picture without its loose
        strands of hair, :attr:`PortraitLayers.clean`: a strand's difference from the wall
        rides on the warp); None without layers."""
        if self.layers is None or self.still_plate is None:
            return None
        layers = self.layers
        return still_background(self.image if layers.clean is None else layers.clean,
                                layers.matte, self.still_plate)

    @functools.cached_property
    def backdrop_box(self) -> tuple[int, int, int, int] | None:
        """``(x, y, w, h)`` around the pixels where :attr:`backdrop` and :attr:`still_plate`
        differ (None: nowhere, or no layers)."""
        if self.still_plate is None or self.backdrop is None:
            return None
        differ = np.any(self.still_plate != self.backdrop, axis=-1)
        if not differ.any():
            return None
        x, y, w, h = cv2.boundingRect(differ.astype(np.uint8))
        return int(x), int(y), int(w), int(h)

    @functools.cached_property
    def backdrop_rgba(self) -> np.ndarray | None:
        """:attr:`backdrop` with a padding fourth channel: one 4-channel remap is faster than
        three channels."""
        if self.backdrop is None:
            return None
        return np.asarray(cv2.cvtColor(self.backdrop, cv2.COLOR_RGB2RGBA))

    @property
    def head_layered(self) -> bool:
        """Whether the warp puts a head layer over a still background (the portrait has
        layers: :attr:`image_matte` and :attr:`backdrop_rgba`)."""
        return self.image_matte is not None and self.backdrop_rgba is not None

    def fine(self, name: str) -> np.ndarray:
        """The picture ``name`` (``"image"``, ``"image_matte"`` or ``"backdrop_rgba"``)
        enlarged 2x (:func:`~live.engines.mesh.warp.enlarge_2x`), made on first use and
        kept: the warp samples these, at twice its map."""
        kept = self._fine.get(name)
        if kept is None:
            picture = getattr(self, name)
            if picture is None:
                raise ValueError(f"the portrait has no {name} to enlarge")
            kept = self._fine[name] = enlarge_2x(picture)
        return kept

    @functools.cached_property
    def _fine(self) -> dict[str, np.ndarray]:
        return {}

    @property
    def matte(self) -> np.ndarray:
        """The person matte as uint8 (255 = person); all 255 without layers."""
        if self.layers is None:
            return np.full(self.image.shape[:2], 255, np.uint8)
        return self.layers.matte_u8

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def with_solid_face(layers: PortraitLayers, landmarks: np.ndarray) -> PortraitLayers:
    """``layers`` with the matte made whole inside the portrait's face outline (FACE_OVAL of
    ``landmarks``, anti-aliased along it); the plate as it was.

    Where the outline runs along the face's silhouette (a jaw against the wall), the matte's
    soft edge lies inside it, and a turn that brings that side into view draws the sliver out
    over the cheek: a pale block with the wall showing through (the demo's turn). At rest the
    head layer gives the portrait back whatever its matte, so nothing changes there."""
    oval = np.round(landmarks[list(lm.FACE_OVAL), :2] * 16.0).astype(np.int32)
    inside = np.zeros(layers.matte.shape, np.uint8)
    cv2.fillPoly(inside, [oval], (255,), cv2.LINE_AA, shift=4)
    matte = np.maximum(layers.matte, inside.astype(np.float32) / 255.0)
    return replace(layers, matte=matte)


def _body_pose(body: np.ndarray) -> np.ndarray:
    """The body lattice's points (count, 2) as a part of the pose: z 0, (count, 3)."""
    return np.column_stack([body, np.zeros(len(body))])


def _timed(job: Callable[..., np.ndarray], *args: Any) -> tuple[np.ndarray, float]:
    """``job(*args)`` and its time in ms (on the worker's clock)."""
    t0 = time.perf_counter()
    found = job(*args)
    return found, (time.perf_counter() - t0) * 1e3


class InlineWorker(Executor):
    """An executor that runs each job at once, in the caller's thread: the engine's worker
    on one core, where a thread only adds its switches (measured ~0.5 ms a frame)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller by result(), as a thread's is
            done.set_exception(exc)
        return done


def _edge_samples(warp: PiecewiseAffineWarp, index: np.ndarray, first: int,
                  affines: np.ndarray, bounds: np.ndarray, dst: np.ndarray, tris: np.ndarray,
                  source: np.ndarray) -> tuple[list[SeamSources], FoldSamples | None]:
    """Where the last :meth:`~PiecewiseAffineWarp.source_map` (of ``index``, drawn from
    ``tris``, face rows from ``first`` on) tears at the silhouette, and where it shows a
    staircase inside the face: the seams' parts' sources and the folds' sub-samples (None:
    no fold), to be drawn over the warped picture."""
    seams = warp.silhouette_seams(index, first)
    parts = [] if seams is None else warp.seam_sources(seams, index, first, affines, bounds,
                                                       dst, tris)
    folds = warp.fold_seams(index, first)
    fold = None if folds is None else warp.fold_samples(folds, source, affines, bounds, dst,
                                                        tris)
    return parts, fold


def driving_points(face: FaceCrop, landmarks: np.ndarray) -> np.ndarray:
    """Crop-pixel landmarks (N, 3) -> frame pixels (z scaled alike), float64."""
    return transform_points(np.asarray(landmarks)[:, :3], face.crop_to_frame, dtype=np.float64)


class MeshEngine:
    """Weight-free engine: warps the portrait along the driving face's mesh motion.

    ``MeshEngine(options=None, **overrides)``: ``options`` is a :class:`MeshOptions` (the
    ``[engine.mesh]`` table), keyword overrides are its fields, e.g.
    ``MeshEngine(size=256, smoothing=False)``. ``options`` (also ``config``) holds the options
    in use; ``last_timings`` the stage times (ms) of the last :meth:`process` call;
    ``last_matte`` the person matte of its output crop (uint8, 255 = person: the portrait's
    matte warped with the head, at no extra cost; None without a head layer).
    """

    name = "mesh"
    pastes_whole_crop = True
    """Away from the person the output is the crop's picture as it is (with a head layer, a
    still background): the whole crop is pasted back (:func:`live.compose.crop_mask`)."""

    def __init__(self, options: MeshOptions | None = None, **overrides: Any) -> None:
        self.options = with_overrides(options or MeshOptions(), overrides, "mesh")
        self.size = self.options.crop_size
        self._motion = motion_options(self.options)
        self._warp = PiecewiseAffineWarp(self.size, grid=min(self.options.grid, self.size))
        self._portrait: MeshPortrait | None = None
        self._own_mesh: Any = None
        self._closed = False
        self._worker: Executor | None = None  # the worker thread (made on first use)
        self._driver: tuple[np.ndarray, np.ndarray] | None = None  # crop image, crop landmarks
        self.last_timings: dict[str, float] = {}
        self.last_matte: np.ndarray | None = None
        self._same_skin = SkinMatch()
        self._hold: PoseHold[np.ndarray] = PoseHold.from_options(
            self.options, converged=_CONVERGED_IOD, approach=exp_approach,
            distance=max_abs_distance)
        self._reset_driving()

    @property
    def config(self) -> MeshOptions:
        """Same as :attr:`options` (its older name)."""
        return self.options

    # -- state ---------------------------------------------------------------------------------

    def _reset_driving(self) -> None:
        self._neutral: np.ndarray | None = None
        """The driving points at the neutral pose: the landmarks, then (body = "flow") the
        body lattice's points, z 0; smoothed and held together."""
        self._n_landmarks = 0
        self._body: BodyFlow | None = None
        self._body_ms: float | None = None  # the body flow's time in this frame
        self._body_wait_ms: float | None = None  # ... and how long the frame waited for it
        self._shading: ShadingReference | None = None
        self._neutral_image: np.ndarray | None = None  # a copy: the caller may reuse its buffer
        self._driver_teeth: np.ndarray | None = None  # its teeth colour (mouth = "driver")
        self._still = False  # this frame's driving picture is the neutral one (scripted motion)
        self._shade_face: ShadingReference | None = None  # the last driving face's shading
        self._shade_extent: float | None = None  # the held pose's extent when the face went
        self._same_skin.reset()  # the portrait's skin against this neutral face's, anew
        self._neutral_side = 1.0  # driving crop side in frame pixels (for adapt_scale=False)
        self._unit = 1.0
        self._origin = np.zeros(3)
        self._filters: dict[str, OneEuroFilter] = {}  # by part of the pose: "face", "body"
        self._hold.reset()

    @property
    def calibrated(self) -> bool:
        return self._neutral is not None

    @property
    def portrait(self) -> MeshPortrait | None:
        return self._portrait

    # -- portrait ------------------------------------------------------------------------------

    def prepare(self, portrait: np.ndarray, *,
                picture: tuple[int, int, int, int] | None = None,
                context: PersonContext = None) -> MeshPortrait:
        """Find the face mesh of a square portrait crop (resized to ``size`` if needed).
        ``picture`` (``(x0, y0, x1, y1)`` in the crop's pixels, :func:`live.geometry.
        picture_box`): where the crop shows its photo; the warp's border runs along the
        photo's edge, so the made-up border beyond it never moves into the picture, and only
        the photo is segmented for the head layer. ``context``: the crop's person mask from
        the whole photo (float32 (h, w) in [0, 1]; or a function giving it, called only
        then), used where the crop's own sees almost no background
        (``prepare_layers(context=)``)."""
        image = check_rgb(portrait, "portrait")
        h, w = image.shape[:2]
        if h != w:
            raise InputError("the portrait crop is not square",
                             expected="a square RGB crop around the face", got=f"{w}x{h}")
        box = None
        if picture is not None:
            x0, y0, x1, y1 = (int(v) for v in picture)
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise InputError("the portrait's picture box does not fit its crop",
                                 expected=f"0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}",
                                 got=str(tuple(picture)))
            k = self.size / w
            box = (math.ceil(x0 * k), math.ceil(y0 * k), math.floor(x1 * k), math.floor(y1 * k))
        if isinstance(context, np.ndarray) and context.shape != (h, w):
            raise InputError("the portrait's context mask is not the crop's size",
                             expected=f"a {w}x{h} mask", got=f"{context.shape}")
        if w != self.size:
            interp = cv2.INTER_AREA if w > self.size else cv2.INTER_CUBIC
            image = cv2.resize(image, (self.size, self.size), interpolation=interp)
            context = change_context(context, lambda mask: np.asarray(cv2.resize(
                np.asarray(mask, np.float32), (self.size, self.size),
                interpolation=cv2.INTER_LINEAR), np.float32))
        image = np.ascontiguousarray(image)
        from live.face.tracking import face_landmarks

        pts = face_landmarks(image, refine=True)
        if pts is None:
            raise NoFaceError(
                "no face found in the portrait",
                expected="a portrait showing one face clearly enough for MediaPipe's face mesh",
                got=f"a {w}x{h} image in which no face was detected")
        if pts.shape != (N_MESH, 3):
            raise NoFaceError("the portrait's face mesh is incomplete",
                              expected=f"{N_MESH} landmarks with irises", got=str(pts.shape))
        pts64 = pts.astype(np.float64)
        layout = build_layout(pts64, self.size, grid_step=self.size / BODY_CELLS
                              if self.config.body == "flow" else None, picture=box)
        layers = None
        if self.config.head_layer:
            layers = prepare_layers(image, grow=STILL_GROW, strands=True, picture=box,
                                    context=context)
            if layers is None:
                log.warning("no person found by the segmentation in the portrait: its "
                            "background moves with the head (no head layer)")
            else:
                layers = with_solid_face(layers, pts64)
        crown = None
        # a crown above the photo's own top edge (the border slides there with the body
        # flow); where the crop's top cuts into its photo (or nobody says), the photo goes on
        # above it, and the edge is held as before
        if layers is not None and self.config.body == "flow" and box is not None and box[1] > 0:
            crown = crown_cap(layers.matte, layout.slide_limits)
        prepared = MeshPortrait(image=image, landmarks=pts64, layout=layout,
                                mouth=mouth_style(image, pts64), chains=face_chains(pts64),
                                layers=layers, crown=crown,
                                eyes=prepare_eyes(image, pts64) if self.config.gaze else ())
        if self.config.mouth_fill:
            _ = prepared.seam  # measured with the rest, not on the first frame that opens
        if self.config.body == "flow":  # (not on the first frame either)
            _ = prepared.outline_nearest, prepared.strain_links
        # the warp's 2x copies too, not on the first frame (:meth:`_picture`)
        if prepared.head_layered:
            prepared.fine("image_matte"), prepared.fine("backdrop_rgba")
        else:
            prepared.fine("image")
        return prepared

    def set_portrait(self, prepared: Any) -> None:
        if not isinstance(prepared, MeshPortrait):
            raise TypeError(f"expected a MeshPortrait from MeshEngine.prepare, "
                            f"got {type(prepared).__name__}")
        if prepared.size != self.size:
            raise ValueError(f"portrait prepared for size {prepared.size}, engine size {self.size}")
        if prepared is not self._portrait:
            self._same_skin.reset()
        self._portrait = prepared

    # -- driving -------------------------------------------------------------------------------

    def _own_landmarks(self, image: np.ndarray) -> np.ndarray | None:
        if self._own_mesh is None:
            from mediapipe.python.solutions import face_mesh

            self._own_mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                                refine_landmarks=True)
        img = np.ascontiguousarray(check_rgb(image, "driving.image"))
        result = self._own_mesh.process(img)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        h, w = img.shape[:2]
        return normalized_to_pixels(landmark_array(faces[0]).astype(np.float64), w, h)

    def _points(self, face: FaceCrop) -> np.ndarray | None:
        raw = face.landmarks
        if raw is None:
            raw = self._own_landmarks(face.image)
            if raw is None:
                return None
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[0] < lm.NUM_LANDMARKS or raw.shape[1] != 3:
            raise ValueError(f"driving landmarks: expected (468|478, 3), got {raw.shape}")
        self._driver = (face.image, raw)
        return driving_points(face, raw)

    def calibrate(self, neutral: FaceCrop) -> None:
        """Use ``neutral`` as the driving face's neutral pose."""
        pts = self._points(neutral)
        if pts is None:
            raise NoFaceError("no face in the neutral driving frame",
                              expected="a driving crop showing the face",
                              got="a crop in which no face was found")
        self._set_neutral(pts, neutral)

    def recalibrate(self) -> None:
        """The next driving face becomes the neutral pose."""
        self._reset_driving()

    def _set_neutral(self, pts: np.ndarray, face: FaceCrop) -> None:
        self._reset_driving()
        self._n_landmarks = int(pts.shape[0])
        self._unit = max(float(lm.inter_ocular_distance(pts)), 1e-6)
        self._hold.converged = _CONVERGED_IOD * self._unit
        self._origin = np.array([*pts[:, :2].mean(axis=0), 0.0])
        self._neutral_image = np.array(face.image, copy=True)
        if self.config.mouth == "driver" and self._driver is not None:
            # the driver's teeth colour, on its neutral frame (eyes open)
            self._driver_teeth = teeth_reference(*self._driver)
        if self.config.shading > 0 and self._driver is not None:
            self._shading = ShadingReference.of(*self._driver, detect_glasses=True)
            if self._shading.glasses:
                log.info("the driving face wears glasses: no expression shading around "
                         "the portrait's eyes")
        if self.config.body == "flow":
            self._body = BodyFlow(face.image, face.crop_to_frame, cells=BODY_CELLS,
                                  landmarks=pts)
            pts = self._with_body(pts, self._body.neutral_points)
        self._neutral = pts.copy()
        self._neutral_side = face.size * float(
            np.sqrt(abs(np.linalg.det(np.asarray(face.crop_to_frame)[:, :2]))))

    @staticmethod
    def _with_body(landmarks: np.ndarray, body: np.ndarray) -> np.ndarray:
        return np.concatenate([landmarks, _body_pose(body)])

    def _drop_landmarks(self, points: np.ndarray, n: int) -> np.ndarray:
        return np.concatenate([points[:n], points[self._n_landmarks:]])

    def _on_face(self, pts: np.ndarray, face: FaceCrop,
                 t: float) -> tuple[np.ndarray, Callable[[], np.ndarray] | None]:
        """The landmarks to show and, with the body flow, a function giving the body lattice's
        points to show, (count, 3): the flow is measured on the engine's worker meanwhile.
        Both parts of the pose are smoothed and held alike (one filter's and one hold's
        numbers, element by element); the hold's step ends when the function is called."""
        if self._neutral is None:
            self._set_neutral(pts, face)
        assert self._neutral is not None
        if pts.shape[0] != self._n_landmarks:  # irises in one and not the other: drop them
            n = min(pts.shape[0], self._n_landmarks)
            pts = pts[:n]
            if self._n_landmarks != n:
                self._neutral = self._drop_landmarks(self._neutral, n)
                self._filters.clear()
                if self._hold.shown is not None:
                    self._hold.shown = self._drop_landmarks(self._hold.shown, n)
                self._n_landmarks = n
        # A driving picture that is the neutral one while its landmarks move (a scripted
        # performance over a still portrait, as `mimicam demo` plays) says nothing about
        # hair or creases: neither the body flow nor the shading is used.
        ref = self._neutral_image
        self._still = ref is not None and face.image.shape == ref.shape \
            and np.array_equal(face.image, ref)
        flow = self._body_points(pts, face)  # first: the flow runs while the face is done
        n = self._n_landmarks
        step = self._hold.face_step(t)
        before = self._hold.shown
        shown = step.show(None if before is None else before[:n], self._smooth("face", pts, t))
        if flow is None:
            step.end(shown)
            return shown, None

        def body() -> np.ndarray:
            points = self._smooth("body", _body_pose(flow()), t)
            held = step.show(None if before is None else before[n:], points)
            step.end(np.concatenate([shown, held]))
            return held

        if self._still:  # nothing of the body is drawn: the step ends now
            body()
            return shown, None
        return shown, body

    def _body_points(self, pts: np.ndarray,
                     face: FaceCrop) -> Callable[[], np.ndarray] | None:
        """The body lattice's points in this frame, (count, 2) frame pixels, as a function;
        None without the body flow. The crop is aligned here, Farneback's flow (most of the
        time, without the GIL) runs on the engine's worker, the function waits for it."""
        if self._body is None:
            return None
        assert self._neutral is not None
        if self._still:
            neutral = self._neutral[self._n_landmarks:, :2]
            return lambda: neutral
        t0 = time.perf_counter()
        stable = list(STABLE_POINTS)
        head = fit_similarity(self._neutral[stable, :2], pts[stable, :2])
        flow = self._body
        aligned = flow.align(face.image, face.crop_to_frame, head=head)
        align_ms = (time.perf_counter() - t0) * 1e3
        future = self._helper().submit(_timed, flow.flow, aligned)

        def points() -> np.ndarray:
            t1 = time.perf_counter()
            measured, flow_ms = future.result()
            t2 = time.perf_counter()
            found = flow.place(measured, head=head)
            self._body_wait_ms = (t2 - t1) * 1e3
            self._body_ms = align_ms + flow_ms + (time.perf_counter() - t2) * 1e3
            return found

        return points

    def _helper(self) -> Executor:
        """The engine's worker thread (made on first use, ended by :meth:`close`): the body
        flow runs there while the face's motion is worked out, the seams' and folds' samples
        while the picture is remapped. OpenCV and numpy's large steps release the GIL, so
        the two overlap on another core. On one core the jobs run in line."""
        if self._worker is None:
            self._worker = InlineWorker() if usable_cores() < 2 else ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="mesh-engine-worker")
        return self._worker

    def _smooth(self, part: str, points: np.ndarray, t: float) -> np.ndarray:
        """``points``, one part of the pose ("face", "body"), through its One Euro filter
        (in inter-ocular units); as they are without smoothing. The filter works element by
        element: one filter a part gives what one filter over the whole pose gives."""
        if not self.config.smoothing:
            return points
        smoother = self._filters.get(part)
        if smoother is None:
            smoother = self._filters[part] = OneEuroFilter(
                self.config.min_cutoff, self.config.beta, self.config.d_cutoff)
        norm = smoother((points - self._origin) / self._unit, t)
        return norm * self._unit + self._origin

    def _on_lost(self, t: float) -> np.ndarray | None:
        was_lost = self._hold.lost
        shown = self._hold.on_lost(self._neutral, t)
        if self._hold.lost and not was_lost:
            for smoother in self._filters.values():
                smoother.reset()  # the filters start afresh when the face comes back
        return shown

    # -- frames --------------------------------------------------------------------------------

    def process(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        """The portrait crop animated with ``driving`` (None: no face this frame)."""
        if self._closed:
            raise RuntimeError("MeshEngine.process: the engine is closed")
        portrait = self._portrait
        if portrait is None:
            raise MimicamError("the mesh engine has no portrait: call "
                               "set_portrait(prepare(image)) before process()")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        self._driver = None
        pts = self._points(driving) if driving is not None else None
        if driving is not None and driving.landmarks is None:
            timings["landmarks"] = (time.perf_counter() - t0) * 1e3
        self._body_ms = self._body_wait_ms = None
        self._still = False
        shown: np.ndarray | None = None
        held_body = None
        if pts is not None and driving is not None:
            shown, held_body = self._on_face(pts, driving, t)
        else:
            shown = self._on_lost(t)
        if shown is None or self._neutral is None:
            self.last_timings = timings
            self.last_matte = portrait.layers.matte_u8 if portrait.layers is not None else None
            return portrait.image.copy()
        n = self._n_landmarks
        body: BodyMotion | Callable[[], BodyMotion] | None = None
        if self._body is not None and not self._still:
            lattice, neutral_body = self._body.lattice, self._neutral[n:, :2]
            if held_body is None:  # held or easing back: the whole pose is there
                body = BodyMotion(lattice, neutral_body, shown[n:, :2])
            else:
                later = held_body

                def body_motion() -> BodyMotion:
                    return BodyMotion(lattice, neutral_body, later()[:, :2])

                body = body_motion
        # While the face is lost the last driving face's shading stays, fading as the pose
        # eases back to neutral (no jump on the held frame).
        fade = 1.0
        if pts is not None:
            # its own arrays: a caller (the serve model) may reuse its buffers
            self._shade_face = None if self._still or self._driver is None \
                or self._shading is None else ShadingReference.of(*self._driver)
            self._shade_extent = None
        elif self._shade_face is not None:
            extent = float(np.max(np.abs(shown[:n, :2] - self._neutral[:n, :2])))
            if self._shade_extent is None:
                self._shade_extent = extent
            fade = extent / self._shade_extent if self._shade_extent > 1e-6 else 0.0
        out = self.render(portrait, self._neutral[:n], shown[:n], timings,
                          driver=self._driver if pts is not None else None, body=body,
                          shading=None if self._shade_face is None else self._shading,
                          shading_face=self._shade_face, shading_fade=fade,
                          same_skin=functools.partial(self._same_skin, t=t),
                          driver_teeth=self._driver_teeth)
        if self._body_ms is not None:
            timings["body"] = self._body_ms
        if self._body_wait_ms is not None:
            timings["body_wait"] = self._body_wait_ms
        self.last_timings = timings
        return out

    def render(self, portrait: MeshPortrait, neutral: np.ndarray, current: np.ndarray,
               timings: dict[str, float] | None = None, *,
               driver: tuple[np.ndarray, np.ndarray] | None = None,
               body: BodyMotion | Callable[[], BodyMotion] | None = None,
               shading: ShadingReference | None = None,
               shading_face: ShadingReference | None = None,
               shading_fade: float = 1.0,
               same_skin: Callable[[float], float] | None = None,
               driver_teeth: np.ndarray | None = None) -> np.ndarray:
        """The portrait with the motion ``neutral -> current`` (driving frame pixels, (N, 3))
        applied, without smoothing or state. ``driver`` is the driving crop and its landmarks
        in crop pixels (the mouth interior of ``mouth = "driver"``); ``body`` the body lattice's
        motion (``body = "flow"``; None: hair, neck and shoulders follow the head), or a function
        giving it, called once when the warp needs it (the engine's flow runs meanwhile);
        ``shading`` the neutral driving face for the expression shading, of the driving face
        ``shading_face`` (default: made from ``driver``) at ``shading_fade`` of its strength;
        ``same_skin`` turns this frame's reading of how alike the portrait's skin and the
        driver's are into the one used (the engine's :class:`SkinMatch` average; None: the
        reading as it is); ``driver_teeth`` the driving face's teeth colour
        (:func:`~live.engines.mesh.mouth.teeth_reference`; None: its teeth take its skin's
        colour match). Stage times (ms) go into ``timings``."""
        clock = time.perf_counter
        t0 = clock()
        scale = None if self.config.adapt_scale else self.size / self._neutral_side
        motion = portrait_motion(portrait.landmarks, neutral, current, scale=scale,
                                 options=self._motion, chains=portrait.chains)
        jaws = None  # where the teeth hang: a portrait's own, or the synthetic ones
        if self.config.mouth_fill and self.config.mouth != "off":
            jaws = jaw_anchors(portrait.landmarks, motion.points)
            if portrait.mouth.own_teeth:
                limit_lip_retraction(motion.points, jaws)
        layout = portrait.layout
        dst = outside_motion(layout, motion.points, motion.head, self.config.outline_follow)
        # Draw order: the outside first, then face triangles that flipped (turned away),
        # then the rest from far to near. The face is done before the body's motion, which
        # moves no face point and no face point's source: the body flow may still be
        # running meanwhile (on the engine's worker).
        face = layout.face_tris
        flipped = np.sign(triangle_areas(dst, face)) != layout.face_sign
        depth = motion.points[face, 2].mean(axis=1)
        order = np.lexsort((-depth, ~flipped))
        n_outer = len(layout.outer_tris)
        tris = np.concatenate([layout.outer_tris, face[order]])
        face_src = portrait.band.sources(dst, layout.src)
        face_src = lift_lash_source(face_src, portrait.landmarks, motion.points, motion.head,
                                    portrait.lashes)
        warp = self._warp
        ta = clock()
        warp.draw_top(dst, tris, n_outer)
        t1 = clock()
        src = face_src
        if body is not None:
            body_motion = body() if callable(body) else body
            src = move_outside(layout, dst, motion, body_motion, neutral, current,
                               slide=portrait.layers is not None,
                               nearest=portrait.outline_nearest, links=portrait.strain_links,
                               limits=portrait.slide_limits)
            portrait.unfolder(dst)
            if src is layout.src:
                src = face_src
            else:  # move_outside's own copy (border sources moved): the face's sources in it
                src[:N_MESH] = face_src[:N_MESH]
        tb = clock()
        index = warp.index_map(dst, tris, top=n_outer)
        t2 = clock()
        buffers = warp.buffers
        affines, bounds = triangle_affines(dst, src, tris), triangle_bounds(dst, src, tris)
        source = warp.source_map(index, affines, bounds,
                                 out=buffers.get("source", (self.size, self.size, 2), np.float32))
        keep_lash_bands(source, motion.points, portrait.landmarks, motion.head, portrait.lashes)
        t3 = clock()
        # the torn silhouette's and the folds' samples need the maps only: worked out on the
        # engine's worker while this thread remaps and composites
        edges = self._helper().submit(_edge_samples, warp, index, n_outer, affines,
                                      bounds, dst, tris, source)
        detail: Future[ExpressionDetail | None] | None = None
        mode = self.config.mouth if self.config.mouth_fill else "off"
        try:
            # ... and then the expression shading's ratio, as far as it goes without the
            # picture
            strength = self.config.shading * shading_fade * float(np.clip(
                (SHADING_NO_TURN - motion.turn_deg) / (SHADING_NO_TURN - SHADING_FULL_TURN),
                0.0, 1.0))
            if shading_face is None and shading is not None and driver is not None:
                shading_face = ShadingReference.of(*driver)
            if shading is not None and shading_face is not None and strength > 0.01:
                # skin facing the camera (a triangle turned away shows nothing of its own)
                shaded = shading_triangles() & ~flipped
                if shading.glasses:  # not where the driver's glasses slide over the face
                    shaded &= ~portrait.glasses_zone
                skin = np.concatenate([np.zeros(len(layout.outer_tris), bool),
                                       shaded[order]])
                detail = self._helper().submit(expression_detail, warp, index, tris, skin,
                                               dst, shading, shading_face.gray,
                                               shading_face.landmarks)
            out, still = self._picture(portrait, source)
            seam_parts, fold = edges.result()
            for part in seam_parts:
                self._draw_seam(portrait, out, part, still)
            if fold is not None:
                self._draw_mixed(portrait, out, fold.ys, fold.xs, fold.sources, None, still)
            if portrait.crown is not None and still is not None \
                    and self.last_matte is not None \
                    and portrait.crown.reached(src[layout.border_ids]):
                # the head's top, moved down from under the photo's top edge
                portrait.crown.draw(out, self.last_matte, source,
                                    portrait.fine("image_matte"), still)
            if mode != "off" and portrait.seam is not None:
                # parted lips show their own colour where the closed mouth's seam was
                open_lip_seam(out, source, portrait.seam, motion.points,
                              own_height=portrait.mouth.own_height,
                              head=affine_scale(motion.head))
            t4 = clock()
            expression = None if detail is None else detail.result()
        finally:
            # (on an error too: the worker is done with this frame's maps before the next
            # frame draws over them)
            jobs: list[Future[Any]] = [edges] if detail is None else [edges, detail]
            wait(jobs)
        if expression is not None:
            apply_ratio(out, *finish_ratio(warp, expression, strength=strength, base=out,
                                           same_skin=same_skin))
        t5 = clock()
        if portrait.eyes:
            render_eyes(out, motion.points, portrait.eyes, scale=affine_scale(motion.head))
        smooth_closing_lids(out, motion.points, portrait.landmarks, motion.head, portrait.image,
                            portrait.lashes, lifts=portrait.lid_lifts)
        if mode != "off":
            drv_image, drv_points = driver if driver is not None else (None, None)
            render_mouth(out, motion.points, portrait.mouth, mode=mode,
                         driver_image=drv_image, driver_points=drv_points,
                         area_scale=affine_scale(motion.head) ** 2,
                         anchors=jaws, driver_teeth=driver_teeth)
        t6 = clock()
        if timings is not None:
            timings.update(motion=(ta - t0 + tb - t1) * 1e3, raster=(t1 - ta + t2 - tb) * 1e3,
                           affine=(t3 - t2) * 1e3, remap=(t4 - t3) * 1e3,
                           shading=(t5 - t4) * 1e3, mouth=(t6 - t5) * 1e3)
        return out

    def _picture(self, portrait: MeshPortrait,
                 source: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The portrait sampled at ``source`` (the warp's source map; from the portrait's 2x
        copies, :func:`~live.engines.mesh.warp.enlarge_2x`: about bicubic's sharpness at
        bilinear's cost) and, with a head layer, the head put over the still background
        (:meth:`_still_background`, returned too; None without a head layer) and its matte
        into :attr:`last_matte`."""
        warp, buffers = self._warp, self._warp.buffers
        self.last_matte = None
        backdrop = portrait.backdrop
        doubled = warp.doubled(source)
        if not portrait.head_layered or backdrop is None:  # (backdrop: None with no layer)
            return warp.remap(portrait.fine("image"), doubled), None
        # 4-channel remaps (image + matte, backdrop + padding): bit for bit what 3 + 1 + 3
        # channels give, in about half the time; the temporaries in reused buffers
        side = (self.size, self.size)
        both = warp.remap(portrait.fine("image_matte"), doubled,
                          dst=buffers.get("both", (*side, 4)))
        out = cv2.cvtColor(both, cv2.COLOR_RGBA2RGB)
        self.last_matte = cv2.extractChannel(both, 3)
        moved = cv2.cvtColor(
            warp.remap(portrait.fine("backdrop_rgba"), doubled,
                       dst=buffers.get("moved", (*side, 4))),
            cv2.COLOR_RGBA2RGB, dst=buffers.get("moved rgb", (*side, 3)))
        still = self._still_background(portrait, backdrop)
        composite_head(out, self.last_matte, still, moved, buffers=buffers)
        return out, still

    def _draw_seam(self, portrait: MeshPortrait, out: np.ndarray, sides: SeamSources,
                   still: np.ndarray | None) -> None:
        """In place: a torn silhouette drawn at full resolution: each of its pixels the face's
        picture where the face covers it and the outside's elsewhere, mixed by the cover (the
        matte alike), as :meth:`render` draws the rest (``still``: the still background the
        head was put over, None without a head layer)."""
        cover = sides.cover[:, None]
        weights = np.concatenate([cover, 1.0 - cover], axis=1)
        sources = np.stack([sides.face, sides.outside], axis=1)  # (N, 2, 2): a pixel's two
        self._draw_mixed(portrait, out, sides.ys, sides.xs, sources, weights, still)

    def _draw_mixed(self, portrait: MeshPortrait, out: np.ndarray, ys: np.ndarray,
                    xs: np.ndarray, sources: np.ndarray, weights: np.ndarray | None,
                    still: np.ndarray | None) -> None:
        """In place: pixels ``ys``, ``xs`` drawn as a mix of the picture at several source
        positions each, ``sources`` (N, k, 2), by ``weights`` (N, k; None: the mean), each
        sample put over the still background as :meth:`render` puts the head (``still``:
        None without a head layer); the matte alike."""
        warp = self._warp
        n, k = sources.shape[:2]
        flat = sources.reshape(n * k, 2)
        image_matte, plate = portrait.image_matte, portrait.backdrop_rgba
        matte: np.ndarray | None = None
        if still is None or image_matte is None or plate is None:
            rgb = warp.remap_points(portrait.image, flat).astype(np.float32)
        else:
            both = warp.remap_points(image_matte, flat)[None]
            drawn = cv2.cvtColor(both, cv2.COLOR_RGBA2RGB)
            matte_u8 = cv2.extractChannel(both, 3)
            # the background share of the samples that have one (on the face, none: the
            # composite leaves those as they are)
            part = np.flatnonzero(matte_u8[0] < 255)
            if len(part):
                moved = cv2.cvtColor(warp.remap_points(plate, flat[part])[None],
                                     cv2.COLOR_RGBA2RGB)
                behind = still[ys[part // k], xs[part // k]][None]
                some = np.ascontiguousarray(drawn[:, part])
                composite_head(some, np.ascontiguousarray(matte_u8[:, part]), behind, moved)
                drawn[0, part] = some[0]
            rgb, matte = drawn[0].astype(np.float32), matte_u8[0].astype(np.float32)
        w = (np.full((n, k), 1.0 / k, np.float32) if weights is None
             else np.asarray(weights, np.float32))
        mixed = np.einsum("nkc,nk->nc", rgb.reshape(n, k, 3), w)
        out[ys, xs] = np.clip(mixed + 0.5, 0.0, 255.0).astype(np.uint8)
        if matte is not None and self.last_matte is not None:
            m = (matte.reshape(n, k) * w).sum(axis=1)
            self.last_matte[ys, xs] = np.clip(m + 0.5, 0.0, 255.0).astype(np.uint8)

    def _still_background(self, portrait: MeshPortrait, backdrop: np.ndarray) -> np.ndarray:
        """The still background behind the warped head: the backdrop where the picture has
        not moved, turning into the still plate (nothing of the person in it) as the warp
        moves the picture by up to :data:`STILL_MOVED` of the side: at rest the portrait
        comes back exactly; where the head has left, no strand of hair at the matte's edge
        stays behind. The result may be a buffer the next frame overwrites."""
        box, plate = portrait.backdrop_box, portrait.still_plate
        if box is None or plate is None:
            return backdrop
        share = self._warp.moved_share(STILL_MOVED * self.size)
        moved = self._warp.moved_box()  # (of the share just made)
        if moved is None:
            return backdrop
        # where nothing moved (share 0) the blend is the backdrop exactly: blend only the
        # part of the box where something did
        x0, y0 = max(box[0], moved[0]), max(box[1], moved[1])
        x1 = min(box[0] + box[2], moved[0] + moved[2])
        y1 = min(box[1] + box[3], moved[1] + moved[3])
        if x1 <= x0 or y1 <= y0:
            return backdrop
        still = self._warp.buffers.get("still", backdrop.shape)
        np.copyto(still, backdrop)
        rows, cols = slice(y0, y1), slice(x0, x1)
        part = share[rows, cols]
        blended = still[rows, cols]  # a view: the blend is written in place
        cv2.blendLinear(plate[rows, cols], backdrop[rows, cols], part, 1.0 - part, dst=blended)
        return still

    # -- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the engine's own face mesh and its worker thread (if it made them);
        harmless twice."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        if self._own_mesh is not None:
            self._own_mesh.close()
            self._own_mesh = None

    def __enter__(self) -> MeshEngine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
