"""``mimicam animate``: a portrait (one face or several) driven by a video, written to an mp4.

The offline job of PaddleGAN's first-order demo, done as a small streaming pipeline::

    VideoReader --Frame--> FaceTracker --Tracked--> FaceAnimator --crops--> FacePaster
        --RGB frame--> VideoWriter (H.264, VP9 or GIF by the output's extension, the driving
                       video's exact fps and audio)

The output path is checked first (a supported extension, none of the inputs, not an existing
file unless ``overwrite``); the portrait is read upright (EXIF) and scaled to at most
``max_size`` pixels on its long side, the size of the output.

Decoding, tracking and encoding each run on their own thread, joined by bounded queues
(back-pressure, nothing dropped); animation and paste-back run on the caller's thread.

- :func:`find_portrait_faces` finds the face(s) of the source image (MediaPipe, full range);
  :func:`portrait_face` cuts each a generous square crop (with its own ``crop_to_frame``)
  and builds its paste mask.
- :class:`FaceAnimator` runs one engine over every face: each face is prepared once and the
  engine switches between the prepared portraits, so all faces share the driving face's
  neutral pose (its first face, or with ``best_frame`` the frame that best matches the
  portrait's pose, found in a first pass over the driving landmarks only).
- :class:`FacePaster` pastes each animated crop into the full-resolution source image through
  a feathered mask (the whole crop for one face; a disc of ``ratio`` crop sides around each
  face with ``multi_face``), matching colours for fomm, so no seam or box edge shows. With a
  ``background`` (:mod:`live.background`) the source image's people are segmented once (one
  matte for all of them), each face's matte follows its animated head, and the background
  is blurred, replaced, or (``transparent``) written as the video's alpha channel.

Frames stream through bounded queues: memory does not depend on the video's length. A
driving frame without a face holds the previous pose (counted in the report); a video with no
face at all, a portrait with no face, or any bad input raises a
:class:`~calibrate.errors.MimicamError` and leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from calibrate.errors import InputError, MimicamError, NoFaceError, WeightsError
from live.background import Background, BackgroundLayer, build_layer, rgba
from live.config import FRAMINGS, FramingMode
from live.engines.base import EngineOptions, check_engine_options, crop_matte
from live.geometry import Framing
from live.packets import FaceCrop, Tracked, check_rgb

if TYPE_CHECKING:
    from live.face.segmentation import PortraitLayers

log = logging.getLogger(__name__)

EngineChoice = Literal["auto", "fomm", "mesh"]
RATIO_RANGE = (0.2, 1.0)
IMAGE_SIZES = (256, 512)


@dataclass(frozen=True)
class AnimateConfig:
    """Everything ``mimicam animate`` needs; the one set of defaults (CLI flags override)."""

    source_image: Path
    """The portrait (photo, painting; several faces with ``multi_face``)."""
    driving_video: Path
    """The video whose face drives the portrait; its frame rate and audio are kept."""
    output: Path
    """The video to write (.mp4, .mov, .mkv, .webm or .gif; temporary name until complete)."""
    background: Background = field(default_factory=Background)
    """What goes behind the portrait's people (:mod:`live.background`): ``keep``, ``blur``,
    a colour, an image file, or ``transparent`` (an alpha channel: the output must end in
    ``.webm``, VP9 with alpha, or ``.mov``, ProRes 4444)."""
    overwrite: bool = False
    """Replace an existing ``output`` (else it is kept and the job refused before any work)."""
    max_size: int = 1920
    """Long side of the output in pixels: a larger portrait is scaled down to it before it
    is animated (0: keep the portrait's size)."""
    framing: FramingMode = "full"
    """``full``: the whole picture (at its size, up to ``max_size``). ``shoulders`` or
    ``head``: a 16:9 video framed around the largest face like a webcam picture (the face a
    third, or half, of the height; :func:`live.geometry.framing_transform`), as ``mimicam
    live`` shows it; its height is the framing's at the picture's own resolution (at least
    360, at most ``max_size`` wide)."""
    engine: EngineChoice = "auto"
    """``fomm`` (needs weights), ``mesh`` (weight-free), or ``auto``: fomm when weights are
    given or fetched, else mesh with a notice."""
    weights: Path | None = None
    """FOMM checkpoint (``vox-cpk.pdparams``); default: the fetched one, if any."""
    model_dir: Path | None = None
    """A FOMM model directory written by ``mimicam export`` (instead of ``weights``)."""
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    """The engines' options (``[engine.mesh]`` / ``[engine.fomm]`` of ``--config``, then the
    engine flags). A mesh ``size`` left unset is the largest face crop's own side in the
    picture (:func:`auto_mesh_size`).
    The four shorthands below, when given, are set in it (:meth:`EngineOptions.apply`)."""
    backend: str | None = None
    """Shorthand: FOMM runtime backend (``[engine.fomm] backend``; see ``mimicam export``)."""
    image_size: int | None = None
    """Shorthand: 256 or 512, the FOMM model's size and the mesh engine's crop size."""
    relative: bool | None = None
    """Shorthand: relative keypoint motion from the neutral driving frame (False: absolute,
    fomm only; ``[engine.fomm] relative``)."""
    adapt_scale: bool | None = None
    """Shorthand: scale the motion by the faces' size ratio (both engines' ``adapt_scale``)."""
    multi_face: bool = False
    """Animate every face of the source image (else the largest one)."""
    ratio: float = 0.4
    """With ``multi_face``: radius of each pasted disc as a share of its face crop's side
    (the seed's ``--ratio``, 0.4-0.5 there); above 0.5 the crop grows to hold the disc."""
    best_frame: bool = False
    """Start the relative motion from the driving frame whose pose best matches the portrait."""
    audio: Path | None = None
    """Take the audio from this file instead of the driving video."""
    keep_audio: bool = True
    """Copy the driving video's audio (when ``audio`` is None); False: a silent video."""
    max_faces: int = 20
    """At most this many faces with ``multi_face`` (the largest ones)."""
    crop_scale: float = 2.0
    """Side of the square face crops (portrait and driving), in face sizes."""
    crop_shift_y: float = -0.08
    """Crop centre moved down by this many face sizes (negative: up, more hair)."""
    feather: float = 0.08
    """Width of the soft edge of a single face's pasted crop, as a share of the crop side."""
    color_transfer: bool | None = None
    """Match the animated crops' colours to the picture around them before blending (None:
    for fomm, whose generator shifts colours; mesh warps the portrait's own pixels)."""
    lookahead: int = 3
    """Mesh engine: smooth the driving landmarks over this many frames before and after each
    one (a local quadratic fit: no lag, peaks kept; :mod:`live.jobs.lookahead`) instead of the
    engine's own One Euro filter, which live video needs; 0: that filter, as live. Nothing is
    smoothed when the engine's ``smoothing`` option is off."""
    max_frames: int | None = None
    """Only the first this many driving frames (a quick preview; None: all of them)."""
    crf: int | None = None
    """H.264 quality (lower is better; None: the writer's default)."""
    preset: str | None = "veryfast"
    """x264 preset: veryfast costs ~40 % of the CPU of medium per 512 px frame here at a
    similar size for the same quality (crf); None: the writer's default."""
    remote: str | None = None
    """Animate on a ``mimicam serve`` server (``grpc://HOST:8001`` or ``http://HOST:8000``)
    instead of in this process; capture, tracking and compositing stay here."""
    remote_token: str | None = None
    """The server's ``--token`` (also ``MIMICAM_TOKEN``)."""
    fallback: str | None = None
    """With ``remote``: the engine that animates locally while the server is unreachable
    (``mesh``; None: hold the last pose)."""

    def __post_init__(self) -> None:
        for name in ("source_image", "driving_video", "output"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        for name in ("weights", "model_dir", "audio"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.engine not in ("auto", "fomm", "mesh"):
            raise InputError("unknown engine", expected="fomm, mesh or auto",
                             got=repr(self.engine))
        if self.framing not in FRAMINGS:
            raise InputError("unknown framing", expected=" | ".join(FRAMINGS),
                             got=repr(self.framing))
        lo, hi = RATIO_RANGE
        if not (isinstance(self.ratio, int | float) and lo <= self.ratio <= hi):
            raise InputError("--ratio is out of range",
                             expected=f"a share of the face crop between {lo} and {hi} "
                             "(the seed used 0.4-0.5)", got=repr(self.ratio))
        if self.image_size is not None and self.image_size not in IMAGE_SIZES:
            raise InputError("unsupported --image-size",
                             expected=" or ".join(map(str, IMAGE_SIZES)),
                             got=repr(self.image_size))
        if not 0 <= self.lookahead <= 30:
            raise InputError("lookahead out of range", expected="0 to 30 frames",
                             got=repr(self.lookahead))
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError("max_frames out of range", expected=">= 1 frame",
                             got=repr(self.max_frames))
        if self.max_faces < 1:
            raise InputError("max_faces out of range", expected=">= 1", got=repr(self.max_faces))
        if not (isinstance(self.max_size, int) and (self.max_size == 0 or self.max_size >= 64)):
            raise InputError("--max-size out of range",
                             expected="0 (keep the portrait's size) or at least 64 pixels",
                             got=repr(self.max_size))
        if not 1.0 <= self.crop_scale <= 4.0:
            raise InputError("crop_scale out of range", expected="1.0 .. 4.0 face sizes",
                             got=repr(self.crop_scale))
        if not 0.0 <= self.feather <= 0.25:
            raise InputError("feather out of range", expected="0 .. 0.25 of the crop side",
                             got=repr(self.feather))
        object.__setattr__(self, "engine_options", self.engine_options.apply(
            image_size=self.image_size, adapt_scale=self.adapt_scale, relative=self.relative,
            backend=self.backend))
        if self.best_frame and not self.engine_options.fomm.relative:
            raise InputError("--best-frame needs relative motion",
                             expected="--relative (the default) with --best-frame",
                             got="--absolute")
        if self.weights is not None and self.model_dir is not None:
            raise InputError("conflicting model options",
                             expected="--weights PDPARAMS or --model-dir DIR", got="both")
        if self.audio is not None and not self.keep_audio:
            raise InputError("conflicting audio options", expected="--audio FILE or --no-audio",
                             got="both")
        object.__setattr__(self, "background", Background.parse(self.background))
        if self.background.transparent:
            from live.io.video import check_alpha_output

            check_alpha_output(self.output)


@dataclass(frozen=True)
class AnimateReport:
    """What :func:`run_animate` wrote."""

    frames: int
    """Frames written (= frames of the driving video)."""
    fps: float
    """Frame rate of the output (the driving video's)."""
    faces: int
    """Portrait faces animated."""
    lost_frames: int
    """Driving frames without a face (the previous pose was held)."""
    output: Path
    seconds: float
    """Wall-clock time of the whole job."""
    engine: str = ""
    audio: Path | None = None
    """Where the output's audio came from (None: silent)."""
    best_frame: int | None = None
    """Index of the driving frame used as the neutral pose with ``best_frame``."""
    size: tuple[int, int] = (0, 0)
    """(width, height) of the output."""
    stage_ms: dict[str, float] = field(default_factory=dict)
    """Median milliseconds per frame of each stage (track, animate, paste, encode)."""
    loop_seconds: float = 0.0
    """Wall-clock time of the frame loop alone (without loading, face search, set-up)."""

    @property
    def processing_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for the user."""
        audio = "with audio" if self.audio is not None else "no audio"
        best = f", neutral = driving frame {self.best_frame}" if self.best_frame is not None \
            else ""
        return (f"wrote {self.output}: {self.frames} frames at {self.fps:g} fps ({audio}), "
                f"{self.faces} face{'s' if self.faces != 1 else ''} ({self.engine}), "
                f"{self.lost_frames} driving frame{'s' if self.lost_frames != 1 else ''} "
                f"without a face (pose held){best}; {self.seconds:.1f} s, "
                f"{self.processing_fps:.1f} fps")


# ----------------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class EngineSpec:
    """The engine :func:`resolve_engine` chose, its options and the FOMM model's location."""

    name: str
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    weights: Path | None = None
    model_dir: Path | None = None
    remote: str | None = None
    remote_token: str | None = field(default=None, repr=False)
    fallback: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The chosen engine's options that differ from its defaults, and its weights."""
        options = self.engine_options.changes(self.name)
        if self.model_dir is not None:
            options["model_dir"] = self.model_dir
        elif self.weights is not None:
            options["weights"] = self.weights
        return options


def resolve_engine(config: AnimateConfig) -> EngineSpec:
    """Pick the engine and its options; raises before any heavy work when that cannot work
    (fomm without weights, absolute motion with mesh)."""
    name = config.engine
    if config.remote is not None:  # the server has the engine (and its weights)
        return EngineSpec("mesh" if name == "auto" else name, config.engine_options,
                          remote=config.remote, remote_token=config.remote_token,
                          fallback=config.fallback)
    weights = config.weights
    if weights is not None and not weights.is_file():
        raise WeightsError(f"{weights}: FOMM weights not found; expected a checkpoint file "
                           "(vox-cpk.pdparams), got " + ("a directory" if weights.is_dir()
                                                         else "no such file"))
    model_dir = config.model_dir
    if model_dir is not None and not model_dir.is_dir():
        raise WeightsError(f"{model_dir}: FOMM model directory not found; expected a folder "
                           "written by 'mimicam export'")
    if name in ("auto", "fomm") and weights is None and model_dir is None:
        from model_export.weights import find_weights

        weights = find_weights(config.engine_options.fomm.image_size)
    if name == "auto":
        if weights is not None or model_dir is not None:
            name = "fomm"
        else:
            name = "mesh"
            log.warning("no FOMM weights (pass --weights or run 'mimicam weights fetch'); "
                        "animating with the weight-free mesh engine")
    if name == "fomm":
        if weights is None and model_dir is None:
            raise WeightsError(
                "the fomm engine needs weights; expected --weights PATH (vox-cpk.pdparams) or "
                "weights fetched with 'mimicam weights fetch', got none (or use --engine mesh)")
        return EngineSpec("fomm", config.engine_options,
                          weights=weights if model_dir is None else None, model_dir=model_dir)
    check_engine_options("mesh", config.engine_options)  # e.g. absolute motion
    return EngineSpec("mesh", config.engine_options)


# --------------------------------------------------------------------------------- portrait


@dataclass(frozen=True, eq=False)
class PortraitFace:
    """One face of the source image: its landmarks (image pixels), face size, the square
    crop the engine animates (``crop.crop_to_frame`` maps it back into the image) and the
    paste mask (float32, crop size)."""

    landmarks: np.ndarray
    face_size: float
    crop: FaceCrop
    mask: np.ndarray
    picture_box: tuple[int, int, int, int] | None = None
    """The crop's pixels that show the image (:func:`live.geometry.picture_box`; None: all)."""
    context: np.ndarray | None = None
    """The whole picture's person mask cut into the crop, for ``Engine.prepare(context=)``
    (:func:`live.face.portraits.crop_person_context`; None: the crop shows all the picture,
    or it was not worked out)."""


def disc_mask(size: int, center_xy: Sequence[float], radius: float, *,
              softness: float = 0.3) -> np.ndarray:
    """A float32 (size, size) mask: 1 inside a disc, fading to ~0 at ``radius`` pixels from
    ``center_xy``; the fade covers the outer ``softness`` share of the radius."""
    if size < 2 or not radius > 0:
        raise ValueError(f"disc_mask: expected size >= 2 and radius > 0, got {size}, {radius}")
    sigma = max(softness * radius / 5.0, 0.0)  # the blur spans +-2.5 sigma
    core = max(radius - 2.5 * sigma, 0.5)
    canvas = np.zeros((size, size), np.float32)
    shift = 4
    cx, cy = (round(float(c) * (1 << shift)) for c in center_xy)
    cv2.circle(canvas, (cx, cy), round(core * (1 << shift)), (1.0,), thickness=-1,
               lineType=cv2.LINE_AA, shift=shift)
    mask: np.ndarray = canvas
    if sigma > 0.3:
        mask = cv2.GaussianBlur(canvas, (0, 0), sigmaX=sigma, sigmaY=sigma,
                                borderType=cv2.BORDER_CONSTANT)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def box_mask(size: int, *, feather: float) -> np.ndarray:
    """A float32 (size, size) mask: 1 inside, easing to 0 over the outer ``feather`` share of
    the side at every edge (a soft-edged square: the whole crop, no visible box edge;
    :func:`live.compose.eased_mask` of the whole crop)."""
    from live.compose import eased_mask

    if size < 2:
        raise ValueError(f"box_mask: expected size >= 2, got {size}")
    return eased_mask(size, (0, 0, size, size), ease=feather)


def find_portrait_faces(image: np.ndarray, *, multi_face: bool, max_faces: int = 20,
                        path: Path | None = None) -> list[np.ndarray]:
    """Face-mesh landmarks ``(478, 3)`` (image pixels) of the face(s) to animate, left to right.

    :func:`live.face.portraits.find_faces` (MediaPipe's full-range search, which finds small faces
    in big pictures) on the source image: without ``multi_face`` the largest face, with it the
    ``max_faces`` largest. Raises :class:`NoFaceError` when there is no usable face.
    """
    from live.face.portraits import find_faces

    found = find_faces(image, max_faces=max_faces if multi_face else 1, path=path,
                       what="source image")
    return sorted(found, key=lambda p: float(p[:, 0].mean()))


@dataclass(frozen=True)
class CropLayout:
    """How the portrait faces are cut and pasted back (see :func:`face_crop_square`)."""

    multi_face: bool = False
    ratio: float = 0.4
    crop_scale: float = 2.0
    crop_shift_y: float = -0.08
    feather: float = 0.08
    picture: tuple[int, int] | None = None
    """(width, height): cut the whole picture (a square around it) instead of a face crop;
    see :func:`whole_picture_layout`."""
    whole_pixels: bool = False
    """Snap each face's square to whole pixels (an integer side and corner): a crop cut at its
    own side is then an exact copy of the picture's pixels and pastes back onto the same
    pixels (see :func:`auto_mesh_size`)."""

    @classmethod
    def of(cls, config: AnimateConfig) -> CropLayout:
        return cls(config.multi_face, config.ratio, config.crop_scale, config.crop_shift_y,
                   config.feather)


MESH_MAX_SIZE = 1536
"""Largest face crop the mesh engine animates at the picture's own resolution
(:func:`auto_mesh_size`); a larger one is reduced to it. The engine's time grows with the
pixels: on the project's 2-core CPU ~14 ms a frame at 512 px, ~28 at 1024, ~49 at 1536."""

WHOLE_PICTURE_MAX = 1024
"""Largest picture side the mesh engine animates whole (see :func:`whole_picture_layout`)."""

MESH_MIN_SIZE = 256
"""Smallest crop the mesh engine animates when the size is chosen for it: a smaller face is
enlarged to this (the face mesh finds less in fewer pixels)."""


def whole_picture_layout(layout: CropLayout, landmarks: Sequence[np.ndarray],
                         picture: tuple[int, int]) -> CropLayout:
    """The mesh engine animates the whole picture when it holds one face that fills a good
    part of it (a face crop at least half the picture's long side) and the picture is
    :data:`MESH_MIN_SIZE` to :data:`WHOLE_PICTURE_MAX` px: the hair and shoulders then move
    with the head right up to the picture's edge instead of stopping at a crop's border, and
    the picture is not resampled on its way in and out. Otherwise ``layout`` unchanged (a
    smaller picture's face crop is enlarged to :data:`MESH_MIN_SIZE`, as any small face's)."""
    if layout.multi_face or len(landmarks) != 1:
        return layout
    side = max(picture)
    if not MESH_MIN_SIZE <= side <= WHOLE_PICTURE_MAX \
            or face_crop_square(landmarks[0], layout)[1] < 0.5 * side:
        return layout
    return dataclasses.replace(layout, picture=picture)


def face_crop_square(landmarks: np.ndarray, layout: CropLayout) -> tuple[np.ndarray, float]:
    """The square ``(center_xy, side)`` in image pixels cut around one portrait face: side
    ``crop_scale`` face sizes; with ``multi_face`` it grows when the pasted disc (radius
    ``ratio`` x that side, around the face centre) would not fit inside; with ``whole_pixels``
    the side and the square's corner are whole pixels."""
    from live.face.tracking import square_box

    if layout.picture is not None:
        w, h = layout.picture
        return np.array([w / 2.0, h / 2.0]), float(max(w, h))  # crop_transform: identity
    center, side = square_box(landmarks, scale=layout.crop_scale, shift_y=layout.crop_shift_y)
    if layout.multi_face:
        face_center, _ = square_box(landmarks, scale=1.0)
        offset = float(np.max(np.abs(face_center - center)))
        side = max(side, 2.0 * (layout.ratio * side + offset))
    if layout.whole_pixels:
        side = float(max(1, round(side)))
        center = np.floor(np.asarray(center, np.float64) - side / 2.0 + 0.5) + side / 2.0
    return center, side


def portrait_face(image: np.ndarray, landmarks: np.ndarray, crop_size: int,
                  layout: CropLayout) -> PortraitFace:
    """Cut one portrait face's crop (``crop_size`` px) and build its paste mask: the whole
    crop with a soft edge for a single face; with ``multi_face`` a soft disc of radius
    ``ratio`` crop sides (the crop side before any growth) around the face centre.
    (:func:`with_person_context` adds the whole picture's view of the person.)"""
    from live.face.tracking import square_box
    from live.geometry import apply_affine, crop_square, picture_box

    face_center, face_size = square_box(landmarks, scale=1.0)
    center, side = face_crop_square(landmarks, layout)
    crop = crop_square(image, center, side, crop_size, landmarks=landmarks)
    if layout.multi_face:
        scale = crop_size / side
        radius = layout.ratio * layout.crop_scale * face_size * scale
        disc_center = apply_affine(face_center[None], crop.frame_to_crop())[0]
        mask = disc_mask(crop_size, disc_center, radius)
    elif layout.picture is not None:  # the whole picture: nothing around it to blend into
        mask = np.ones((crop_size, crop_size), np.float32)
    else:
        mask = box_mask(crop_size, feather=layout.feather)
    mask.flags.writeable = False
    h, w = image.shape[:2]
    return PortraitFace(np.asarray(landmarks), face_size, crop, mask,
                        picture_box(crop.crop_to_frame, (w, h), crop_size))


def with_person_context(image: np.ndarray,
                        faces: Sequence[PortraitFace]) -> list[PortraitFace]:
    """``faces`` (of ``image``) with the whole picture's person mask cut into each crop that
    does not show all of it (:func:`live.face.portraits.crop_person_context`; the picture
    segmented once, only when some crop needs it). A tight crop shows the selfie model too
    little scene: the mesh engine's layers take the wider view where its own mask sees next
    to no background (benchmarks/README "Round 54" and "Round 56")."""
    from live.face.portraits import crop_person_context, crop_shows_picture
    from live.face.segmentation import segment_person

    h, w = image.shape[:2]
    whole: np.ndarray | None = None
    out: list[PortraitFace] = []
    for face in faces:
        if crop_shows_picture(face.crop, (w, h)):
            out.append(face)
            continue
        if whole is None:
            whole = segment_person(image)
            if whole is None:  # nobody found: no crop gets a context
                return list(faces)
        out.append(dataclasses.replace(
            face, context=crop_person_context(image, face.crop, whole=whole)))
    return out


def auto_mesh_size(faces: Sequence[np.ndarray], layout: CropLayout) -> int:
    """The mesh engine's crop size when none was asked for: the largest face crop's side in
    the picture's own pixels, so that face is animated pixel for pixel and keeps the photo's
    sharpness (with ``layout.whole_pixels`` its crop is an exact copy of the picture, pasted
    back onto the same pixels), between :data:`MESH_MIN_SIZE` and :data:`MESH_MAX_SIZE`."""
    side = max(face_crop_square(lm, layout)[1] for lm in faces)
    return int(min(MESH_MAX_SIZE, max(MESH_MIN_SIZE, math.ceil(side - 1e-6))))


# ------------------------------------------------------------------------------- the stages


class FaceAnimator:
    """One engine animating several portrait faces with the same driving face.

    Each face is prepared once (:meth:`Engine.prepare`); per frame the engine switches to each
    prepared face and animates it. Faces the engine cannot use (no face mesh in the crop) are
    dropped with a warning, unless none is left (:class:`NoFaceError`). With ``mattes`` the
    person matte of each animated crop is kept in :attr:`last_mattes` (the engine's, see
    :func:`live.engines.base.crop_matte`; None where it has none).
    """

    def __init__(self, engine: Any, faces: Sequence[PortraitFace], *,
                 mattes: bool = False) -> None:
        self.engine = engine
        self.mattes = mattes
        self.last_mattes: list[np.ndarray | None] = []
        self.faces: list[PortraitFace] = []
        self._handles: list[Any] = []
        for i, face in enumerate(faces):
            try:
                handle = engine.prepare(face.crop.image, picture=face.picture_box,
                                        context=face.context)
            except NoFaceError as exc:
                if len(faces) == 1:
                    raise
                log.warning("portrait face %d: %s; not animating it", i + 1, exc)
                continue
            self.faces.append(face)
            self._handles.append(handle)
        if not self.faces:
            raise NoFaceError("the engine found no usable face in the source image",
                              expected="faces clear enough for the engine",
                              got=f"{len(faces)} face crop(s) it could not use")
        self._current: int | None = None
        self._select(0)

    def _select(self, i: int) -> None:
        if self._current != i:
            self.engine.set_portrait(self._handles[i])
            self._current = i

    def calibrate(self, neutral: FaceCrop) -> None:
        """Use ``neutral`` as the neutral driving pose of every face."""
        self.engine.calibrate(neutral)

    def process(self, driving: FaceCrop | None, t: float) -> list[np.ndarray]:
        """The animated crop of every face for this driving face (None: hold the pose)."""
        out = []
        mattes: list[np.ndarray | None] = []
        for i in range(len(self._handles)):
            self._select(i)
            out.append(self.engine.process(driving, t))
            if self.mattes:
                mattes.append(crop_matte(self.engine))
        self.last_mattes = mattes
        return out


class FacePaster:
    """Paste animated face crops into the full-resolution source image.

    The first face goes through a :class:`~live.compose.Compositor` (its mask is warped into
    the picture once, off the per-frame path); further faces through
    :func:`~live.compose.paste_back` onto the same canvas. With ``framing`` (a
    :class:`~live.geometry.Framing` of the source image) the output is the framed picture.

    With a ``background`` other than ``keep`` and the source image's ``layers`` (its person
    matte and plate, :func:`live.face.segmentation.prepare_layers`; one matte for all its
    people), every face's animated matte (:meth:`process`'s ``mattes``) is pasted into that
    matte where its crop goes, and the background is put behind it (only in the regions the
    crops changed; the rest is built once); ``transparent`` returns RGBA frames with the
    matte as alpha (fully opaque when ``layers`` is None: nobody was found).
    """

    def __init__(self, source: np.ndarray, faces: Sequence[PortraitFace], *,
                 color_transfer: bool = True, framing: Framing | None = None,
                 background: Background | None = None, layers: PortraitLayers | None = None,
                 background_image: np.ndarray | None = None) -> None:
        from live.compose import Compositor
        from live.geometry import compose_affine, covered_region

        self.source = check_rgb(source, "source image")
        self.faces = list(faces)
        if not self.faces:
            raise ValueError("FacePaster: expected at least one face, got none")
        self.color_transfer = color_transfer
        first = self.faces[0]
        h, w = source.shape[:2]
        size = framing.output_size if framing is not None else (w, h)
        self.background = background if background is not None else Background()
        matte = layers.matte if layers is not None and self.background.needs_matte else None
        self._first = Compositor(source, first.crop.crop_to_frame, first.crop.size, size,
                                 mask=first.mask, color_transfer=color_transfer,
                                 framing=framing, matte=matte)
        # the further faces' crops -> output pixels
        self._placed = [f.crop.crop_to_frame if framing is None
                        else compose_affine(framing.affine, f.crop.crop_to_frame)
                        for f in self.faces]
        self._out = np.empty((size[1], size[0], 3), np.uint8)
        self.alpha = self.background.transparent
        """:meth:`process` returns RGBA frames (``transparent``)."""
        self.layer: BackgroundLayer | None = None
        if matte is not None and layers is not None:
            self.layer = build_layer(self.background, self._first, plate=layers.plate,
                                     image=background_image)
        self._matte = np.empty((size[1], size[0]), np.uint8)
        self._opaque = np.full((size[1], size[0]), 255, np.uint8) if self.alpha else None
        # the output regions the further faces change (the first one's: the compositor's)
        self._regions = [covered_region(p, f.crop.size, f.crop.size, *size)
                         for f, p in zip(self.faces[1:], self._placed[1:], strict=True)]

    def process(self, crops: Sequence[np.ndarray],
                mattes: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """The source image with every face replaced by its animated crop (and the
        background, given the crops' person ``mattes``: uint8, None where an engine has
        none, which keeps the still matte there). RGB, or RGBA with :attr:`alpha`. The
        returned array may be reused by the next call (copy it to keep it)."""
        from live.compose import paste_back, paste_matte

        if len(crops) != len(self.faces):
            raise ValueError(f"expected {len(self.faces)} crops, got {len(crops)}")
        out = self._first.compose(crops[0], out=self._out)
        for face, placed, crop in zip(self.faces[1:], self._placed[1:], crops[1:], strict=True):
            paste_back(out, crop, placed, feather=0.0, mask=face.mask,
                       color_transfer=self.color_transfer, out=out)
        if self._first.still_matte is None:  # keep, or nobody found: the picture as it is
            return rgba(out, self._opaque) if self._opaque is not None else out
        mattes = list(mattes) if mattes is not None else [None] * len(crops)
        if len(mattes) != len(crops):
            raise ValueError(f"expected {len(crops)} mattes, got {len(mattes)}")
        matte = self._first.compose_matte(mattes[0], out=self._matte)
        for face, placed, face_matte in zip(self.faces[1:], self._placed[1:], mattes[1:],
                                            strict=True):
            if face_matte is not None:
                paste_matte(matte, face_matte, placed, mask=face.mask)
        if self.alpha:
            return rgba(out, matte)
        if self.layer is None:
            return out
        return self.layer.apply(out, matte, [self._first.region, *self._regions])


def output_framing(source: np.ndarray, landmarks: Sequence[np.ndarray], mode: FramingMode, *,
                   max_size: int = 0, reach_bottom: bool = False) -> Framing:
    """The framing ``mode`` of the source image around its largest face, into a 16:9 output
    at the picture's own resolution (:func:`live.geometry.framed_output_size`; at most
    ``max_size`` wide, 0: no cap; ``reach_bottom``: :func:`live.geometry.framing_transform`'s).
    An upscaled picture is logged."""
    from live.face.framing import face_box, portrait_framing
    from live.geometry import framed_output_size

    if not landmarks:
        raise ValueError("output_framing: expected at least one face, got none")
    face = max(landmarks, key=lambda lm: float(np.ptp(np.asarray(lm)[:, :2], axis=0).max()))
    x0, y0, x1, y1 = face_box(face)
    size = framed_output_size(y1 - y0, mode, max_width=max_size or None)
    h, w = source.shape[:2]
    framing = portrait_framing(face, (w, h), size, mode, reach_bottom=reach_bottom)
    log.info("framing %s: %dx%d output around the face at (%.0f, %.0f)", mode, *size,
             (x0 + x1) / 2, (y0 + y1) / 2)
    if framing.scale > 1.01:
        log.info("the %dx%d picture is upscaled %.2fx for the %s framing (Lanczos); a larger "
                 "picture would be sharper", w, h, framing.scale, mode)
    return framing


def _total(frame_count: int | None, max_frames: int | None) -> int | None:
    if frame_count is None or max_frames is None:
        return frame_count if max_frames is None else max_frames
    return min(frame_count, max_frames)


def _driving_tracker(config: AnimateConfig, crop_size: int) -> Any:
    from live.face.tracking import FaceTracker

    # offline: look thoroughly for small faces whenever the face is (re)acquired
    return FaceTracker(crop_size=crop_size, crop_scale=config.crop_scale,
                       crop_shift_y=config.crop_shift_y, full_range=True)


def _no_driving_face(config: AnimateConfig, frames: int) -> NoFaceError:
    return NoFaceError("no face found in any frame of the driving video",
                       path=config.driving_video, expected="a video showing a face",
                       got=f"no face in all {frames} frames")


def find_best_frame(config: AnimateConfig, faces: Sequence[PortraitFace], crop_size: int, *,
                    show_progress: bool = True) -> tuple[int, FaceCrop]:
    """First pass over the driving video (landmarks only, nothing kept but the best frame):
    the index and face crop of the frame whose pose best matches the portrait face(s)."""
    from calibrate.best_frame import BestFrameSearch
    from live.io.video import VideoReader, progress

    search = BestFrameSearch([f.landmarks for f in faces])
    with VideoReader(config.driving_video) as reader, \
            _driving_tracker(config, crop_size) as tracker:
        bar = progress(_total(reader.info.frame_count, config.max_frames), desc="best frame",
                       disable=None if show_progress else True)
        try:
            for frame in itertools.islice(reader, config.max_frames):
                face = tracker.process(frame).face
                search.update(frame.index, face.landmarks if face is not None else None, face)
                bar.update(1)
        finally:
            bar.close()
    best = search.best
    if best is None:
        raise _no_driving_face(config, search.frames)
    log.info("best-matching driving frame: %d (pose distance %.3f IOD)", best.index,
             best.distance)
    return best.index, best.item


def find_first_face(config: AnimateConfig, crop_size: int) -> int:
    """Index of the first driving frame that shows a face (tracking only, nothing kept).

    Usually the first frame, so this costs one detection; a video without any face is found
    out by this pass, before anything is animated or encoded (:class:`NoFaceError`)."""
    from live.io.video import VideoReader

    frames = 0
    with VideoReader(config.driving_video) as reader, \
            _driving_tracker(config, crop_size) as tracker:
        for frame in itertools.islice(reader, config.max_frames):
            frames += 1
            if tracker.process(frame).face is not None:
                return frame.index
    if frames == 0:
        raise InputError("the driving video has no frames", path=config.driving_video,
                         expected="at least one decodable frame", got="0 frames")
    raise _no_driving_face(config, frames)


class _Encoder:
    """Feeds a :class:`~live.io.video.VideoWriter` from its own thread (a
    :class:`~live.io.threads.Worker`) through a bounded queue, so H.264 encoding overlaps
    tracking and animation (back-pressure, nothing dropped). An error on the thread is raised
    in the caller at the next :meth:`write` or at exit."""

    def __init__(self, writer: Any, timer: _Timer | None = None, max_queue: int = 4) -> None:
        from live.io.threads import Worker

        self.writer = writer
        self.timer = timer
        self._worker: Worker[np.ndarray] = Worker(self._encode, max_queue=max_queue,
                                                  name="animate-encode")

    def _encode(self, image: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.writer.write(image)
        if self.timer is not None:
            self.timer.add("encode", t0)

    def write(self, image: np.ndarray) -> None:
        self._worker.raise_error()
        self._worker.put(image.copy())

    def close(self) -> None:
        """Wait until everything queued is encoded; raises the thread's error, if any.
        Harmless to call again."""
        self._worker.close()
        self._worker.raise_error()

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        self._worker.close(drop=True)  # stop quickly: drop what is queued


def _audio_source(config: AnimateConfig, has_audio: bool) -> Path | None:
    if config.audio is not None:
        return config.audio
    if config.keep_audio and has_audio:
        return config.driving_video
    return None


class _Timer:
    """Per-stage latency histograms (constant memory) -> medians."""

    def __init__(self, *names: str) -> None:
        from live.stats import LatencyHistogram

        self.hists = {n: LatencyHistogram() for n in names}

    def add(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.hists[name].add((now - start) * 1e3)
        return now

    def medians(self) -> dict[str, float]:
        out = {}
        for name, h in self.hists.items():
            q = h.quantile(0.5)
            if q is not None:
                out[name] = round(q, 3)
        return out


def run_animate(config: AnimateConfig, *, progress: bool = True) -> AnimateReport:
    """Animate ``config.source_image`` with ``config.driving_video`` into ``config.output``.

    Checks the inputs first (output path: supported, none of the inputs, not an existing file
    unless ``overwrite``; video readable, portrait has a face, output folder writable, engine
    usable), then streams the video once (twice with ``best_frame``). Raises a
    :class:`~calibrate.errors.MimicamError` on bad input; the output file appears only when the
    job completed.
    """
    from live.engines import create_engine
    from live.engines.base import driving_crop_size
    from live.face.portraits import load_image
    from live.io.threads import Prefetch
    from live.io.video import VideoReader, VideoWriter, check_output, check_video_size, probe_video
    from live.io.video import progress as progress_bar
    from live.jobs.lookahead import smooth_landmarks

    t_start = time.perf_counter()
    output_format = check_output(config.output, overwrite=config.overwrite, inputs={
        "driving video": config.driving_video, "portrait": config.source_image,
        "audio file": config.audio})
    info = probe_video(config.driving_video)
    if info.frame_count == 0:
        raise InputError("the driving video has no frames", path=config.driving_video,
                         expected="at least one frame", got="0 frames")
    source = load_image(config.source_image, max_size=config.max_size or None)
    background = config.background
    background_image = None if background.image is None \
        else load_image(background.image, what="background image")
    spec = resolve_engine(config)
    fps = info.fps_fraction
    audio = _audio_source(config, info.has_audio)
    writer_opts: dict[str, Any] = {}
    if config.crf is not None:
        writer_opts["crf"] = config.crf
    if config.preset is not None:
        writer_opts["preset"] = config.preset
    size = (source.shape[1], source.shape[0])
    check_video_size(output_format, size, float(fps), path=config.output)

    layout = CropLayout.of(config)
    landmarks = find_portrait_faces(source, multi_face=config.multi_face,
                                    max_faces=config.max_faces, path=config.source_image)
    if spec.name == "mesh" and spec.engine_options.mesh.size is None and spec.remote is None:
        layout = whole_picture_layout(dataclasses.replace(layout, whole_pixels=True),
                                      landmarks, size)
        crop_size = max(size) if layout.picture is not None \
            else auto_mesh_size(landmarks, layout)
        spec = dataclasses.replace(spec, engine_options=spec.engine_options.apply(
            crop_size=crop_size))
    lookahead = 0
    if spec.name == "mesh" and spec.remote is None and spec.engine_options.mesh.smoothing:
        lookahead = config.lookahead  # the job smooths, with the future; the engine not
        if lookahead > 0:
            spec = dataclasses.replace(spec, engine_options=spec.engine_options.apply(
                smoothing=False))
    layers = None
    if background.needs_matte:  # one matte for all the picture's people, once
        from live.face.segmentation import prepare_layers

        layers = prepare_layers(source)
        if layers is None:
            log.warning("%s: the segmentation found no person in it; it keeps its own "
                        "background%s", config.source_image,
                        " (the alpha channel is opaque)" if background.transparent else "")
    framing = None
    if config.framing != "full":  # the output: the picture framed around its largest face
        from live.face.portraits import cuts_person

        # with a background, a person the picture's bottom edge cuts framed down to the
        # output's bottom, as mimicam live frames it (benchmarks/README "Round 51")
        framing = output_framing(source, landmarks, config.framing, max_size=config.max_size,
                                 reach_bottom=layers is not None and cuts_person(layers.matte))
        size = framing.output_size
        check_video_size(output_format, size, float(fps), path=config.output)

    with contextlib.ExitStack() as stack:
        if spec.remote is None:
            log.info("engine %s %s", spec.name,
                     ", ".join(f"{k}={v}" for k, v in spec.options.items()))
        try:
            engine = create_engine(spec.name, spec.engine_options, weights=spec.weights,
                                   model_dir=spec.model_dir, remote=spec.remote,
                                   token=spec.remote_token, fallback=spec.fallback)
        except TypeError as exc:  # an option this engine version does not know
            raise MimicamError(f"cannot create the {spec.name} engine: {exc}") from exc
        stack.callback(engine.close)
        if spec.remote is not None:  # the server's engine and crop size
            spec = dataclasses.replace(spec, name=getattr(engine, "server_engine", spec.name))
            log.info("animating on %s (%s engine, %d px)", spec.remote, spec.name,
                     engine.size)
        crop_size = int(engine.size)
        driving_size = driving_crop_size(engine, offline=True)
        faces = with_person_context(source, [portrait_face(source, lm, crop_size, layout)
                                             for lm in landmarks])
        animator = FaceAnimator(engine, faces, mattes=layers is not None)
        log.info("animating %d face(s) of %s", len(animator.faces), config.source_image)
        # The writer checks the output path and the audio file before any long work, and
        # deletes its temporary file if anything below fails.
        writer = stack.enter_context(VideoWriter(config.output, fps=fps, size=size,
                                                 audio_from=audio, overwrite=config.overwrite,
                                                 alpha=background.transparent, **writer_opts))
        audio = writer.audio_from  # None for a GIF (no sound)
        best_index: int | None = None
        if config.best_frame:
            best_index, neutral = find_best_frame(config, animator.faces, driving_size,
                                                  show_progress=progress)
            animator.calibrate(neutral)
        else:
            first = find_first_face(config, driving_size)
            if first:
                log.info("the first face is in driving frame %d; the frames before it show "
                         "the portrait as it is", first)
        color = config.color_transfer if config.color_transfer is not None \
            else spec.name == "fomm"
        paster = FacePaster(source, animator.faces, color_transfer=color, framing=framing,
                            background=background, layers=layers,
                            background_image=background_image)
        reader = stack.enter_context(VideoReader(config.driving_video))
        tracker = stack.enter_context(_driving_tracker(config, driving_size))
        timer = _Timer("track", "animate", "paste", "encode")
        encoder = stack.enter_context(_Encoder(writer, timer))
        total = _total(info.frame_count, config.max_frames)
        bar = progress_bar(total, desc="animate", disable=None if progress else True)
        stack.callback(bar.close)
        def track() -> Iterator[Tracked]:
            for frame in itertools.islice(reader, config.max_frames):
                t0 = time.perf_counter()
                tracked = tracker.process(frame)
                timer.add("track", t0)
                yield tracked

        tracked_frames = smooth_landmarks(
            stack.enter_context(Prefetch(track(), name="animate-track")), radius=lookahead)
        t_loop = time.perf_counter()
        frames = lost = 0
        for tracked in tracked_frames:
            face = tracked.face
            if face is None:
                lost += 1
            t1 = time.perf_counter()
            crops = animator.process(face, tracked.frame.time(info.fps))
            t2 = timer.add("animate", t1)
            picture = paster.process(crops, animator.last_mattes)
            timer.add("paste", t2)
            encoder.write(picture)  # waits while the encoder is behind
            frames += 1
            bar.update(1)
        if frames == 0:
            raise InputError("the driving video has no frames", path=config.driving_video,
                             expected="at least one decodable frame", got="0 frames")
        if lost == frames:
            raise _no_driving_face(config, frames)
        if total is not None and frames != total:
            log.info("%s: decoded %d frames, its header said %d", config.driving_video,
                     frames, total)
        encoder.close()  # the last frames are encoded before the loop's time is taken
        loop_seconds = time.perf_counter() - t_loop
        # leaving the block closes the writer: flush, audio, rename into place
    seconds = time.perf_counter() - t_start
    if lost:
        log.info("%d of %d driving frames had no face; the previous pose was held",
                 lost, frames)
    return AnimateReport(frames=frames, fps=float(fps), faces=len(animator.faces),
                         lost_frames=lost, output=config.output, seconds=seconds,
                         engine=spec.name, audio=audio, best_frame=best_index, size=size,
                         stage_ms=timer.medians(), loop_seconds=loop_seconds)


__all__ = [
    "AnimateConfig",
    "AnimateReport",
    "CropLayout",
    "EngineSpec",
    "FaceAnimator",
    "FacePaster",
    "PortraitFace",
    "auto_mesh_size",
    "box_mask",
    "disc_mask",
    "face_crop_square",
    "find_best_frame",
    "find_first_face",
    "find_portrait_faces",
    "output_framing",
    "portrait_face",
    "resolve_engine",
    "run_animate",
]
