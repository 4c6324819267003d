"""The portrait library of ``mimicam live``: images, their faces, and engine-ready crops.

:func:`portrait_paths` lists a portrait file or a folder of them; :func:`load_image` reads
one as RGB (turned upright by its EXIF orientation; alpha composited on white; grey, 16-bit and
0..1 float pixels converted; optionally capped in size; the one image reader of ``mimicam
live``, ``demo`` and ``animate``); :func:`usable_portraits` keeps the files of a folder that
can be read and show a face (one warning for each other one); :func:`find_faces` finds the
largest face(s) of a picture (the one face finder of ``mimicam live``, ``demo`` and
``animate``, which animates several); :func:`find_portrait` finds the largest face and cuts
the square crop the engine animates, framed exactly like the tracker frames the driving face.
:class:`PortraitLibrary` prepares portraits (face search, ``engine.prepare``, the
:class:`~live.compose.Compositor`, with a background: the person matte and the
:class:`~live.background.BackgroundLayer`) on a background thread and keeps them, so switching
portraits or backgrounds never stalls the live loop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibrate.errors import InputError, MimicamError, NoFaceError
from live.background import Background, BackgroundLayer, build_layer, layer_backdrop
from live.compose import Compositor, crop_mask
from live.engines.base import Engine
from live.face.framing import PortraitOptions, portrait_framing
from live.face.segmentation import PortraitLayers, WiderView
from live.geometry import (
    Framing,
    FramingMode,
    Orientation,
    apply_affine,
    compose_affine,
    cover,
    fit_size,
    transform_points,
)
from live.packets import FaceCrop, check_rgb

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "Portrait",
    "PortraitLibrary",
    "PreparedPortrait",
    "crop_person_context",
    "crop_shows_picture",
    "exif_orientation",
    "find_faces",
    "find_portrait",
    "load_image",
    "portrait_paths",
    "reduced_portrait",
    "usable_portraits",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Floating-point pixels are taken as 0..1; lossy float formats (e.g. OpenCV's own float TIFF,
# LogLuv-compressed) overshoot that range a little, which is clipped.
_FLOAT_SLACK = 0.01


def portrait_paths(path: str | Path) -> list[Path]:
    """The portrait files named by ``path``: the file itself, or a folder's images sorted
    by name (hidden files skipped)."""
    p = Path(path)
    if not p.exists():
        raise InputError("portrait not found", path=p,
                         expected="an image file or a folder of images", got="no such path")
    if p.is_dir():
        files = sorted((f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                        and f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: f.name.lower())
        if not files:
            raise InputError("no portrait images in the folder", path=p,
                             expected=f"files ending in {', '.join(IMAGE_SUFFIXES)}",
                             got="none")
        return files
    return [p]


def load_image(path: str | os.PathLike[str], *, max_size: int | None = None,
               what: str = "portrait") -> np.ndarray:
    """Read a picture as RGB uint8 ``(H, W, 3)``, C-contiguous, upright.

    The EXIF orientation of JPEG, PNG and WebP files is applied (a phone photo stored
    sideways with Orientation 6 comes out upright; OpenCV turns TIFFs itself). Grey pictures
    become RGB; transparency is flattened onto white; 16-bit pixels are scaled to 8 bits;
    floating-point pixels (e.g. a 32-bit TIFF) are taken as 0..1 and scaled to 0..255 (a
    slight overshoot, as lossy float formats make, is clipped). ``max_size`` (pixels; None or
    0: no cap) scales the picture down so that its long side is at most that (a large JPEG is
    decoded at 1/2, 1/4 or 1/8 scale first, which saves most of the time and memory).

    Raises :class:`~calibrate.errors.InputError` naming the file (and ``what`` it is: the
    portrait, a background image) when it is missing, not a readable image, or has pixels of
    another kind (floats well outside 0..1, as in HDR images, or signed integers), saying
    what was expected and what it got.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"cannot read the {what}", path=p, expected="an image file",
                         got="a directory" if p.is_dir() else "no such file")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read the {what}", path=p, got=str(exc)) from None
    header = _image_header(data)
    flags = cv2.IMREAD_UNCHANGED
    if header.stored_size is not None and max_size:
        # JPEG: libjpeg scales while decoding (DCT scaling), to no less than max_size
        factor = 1
        while factor < 8 and max(header.stored_size) // (factor * 2) >= max_size:
            factor *= 2
        if factor > 1:
            flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                     8: cv2.IMREAD_REDUCED_COLOR_8}[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    del data
    if image is None:
        raise InputError(f"cannot read the {what}", path=p,
                         expected="an image file (JPEG, PNG, WebP, BMP, TIFF)",
                         got=f"{p.stat().st_size} bytes OpenCV cannot decode as an image")
    rgb = _to_rgb(_to_uint8(image, p, what), p, what)
    del image
    if not header.orientation.identity:
        log.debug("%s: EXIF orientation: %s", p, header.orientation.describe())
        rgb = header.orientation.apply(rgb)
    h, w = rgb.shape[:2]
    # the size the whole picture scales to (a reduced JPEG decode is a little off from it)
    full = header.orientation.size(*header.stored_size) if flags != cv2.IMREAD_UNCHANGED \
        and header.stored_size is not None else (w, h)
    target = fit_size(full, max_size)
    if target != (w, h):
        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
    if target != full:
        log.info("%s: %dx%d scaled to %dx%d (at most %d pixels on the long side)", p.name,
                 *full, *target, max_size)
    return np.ascontiguousarray(rgb)


def _to_rgb(image: np.ndarray, p: Path, what: str) -> np.ndarray:
    """Decoded OpenCV pixels (grey, BGR or BGRA uint8) as RGB."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        rgba = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA).astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        flat = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return flat.round().astype(np.uint8)
    if image.shape[2] != 3:
        raise InputError(f"unsupported {what} pixel format", path=p,
                         expected="grey, RGB or RGBA pixels", got=f"{image.shape[2]} channels")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------
# EXIF orientation (read from the file's bytes: OpenCV applies it only when it also drops
# alpha and 16-bit pixels, and never for WebP)


@dataclass(frozen=True)
class _Header:
    orientation: Orientation
    stored_size: tuple[int, int] | None  # (w, h) of a JPEG as stored; None for other formats


def _u16(buf: memoryview, at: int, big: bool) -> int:
    return int.from_bytes(buf[at:at + 2], "big" if big else "little")


def _u32(buf: memoryview, at: int, big: bool) -> int:
    return int.from_bytes(buf[at:at + 4], "big" if big else "little")


def _tiff_orientation(tiff: memoryview) -> int:
    """Tag 274 of the first IFD of an EXIF (TIFF-structured) block; 1 when absent."""
    if len(tiff) < 8 or bytes(tiff[:2]) not in (b"II", b"MM"):
        return 1
    big = bytes(tiff[:2]) == b"MM"
    if _u16(tiff, 2, big) != 42:
        return 1
    ifd = _u32(tiff, 4, big)
    if ifd + 2 > len(tiff):
        return 1
    for i in range(min(_u16(tiff, ifd, big), 1000)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        if _u16(tiff, entry, big) == 0x0112 and _u16(tiff, entry + 2, big) == 3:  # SHORT
            value = _u16(tiff, entry + 8, big)
            return value if 1 <= value <= 8 else 1
    return 1


def _exif_payload(block: memoryview) -> memoryview:
    """An EXIF block without the ``Exif\\0\\0`` prefix some writers put before the TIFF header."""
    return block[6:] if bytes(block[:6]) == b"Exif\x00\x00" else block


def _image_header(data: np.ndarray) -> _Header:
    """The EXIF orientation of a JPEG, PNG or WebP file's bytes (upright for anything else or
    anything unreadable) and, for a JPEG, its stored size."""
    buf = memoryview(data.tobytes() if data.size else b"")
    try:
        if bytes(buf[:2]) == b"\xff\xd8":
            return _jpeg_header(buf)
        if bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n":
            return _Header(Orientation.from_exif(_png_orientation(buf)), None)
        if bytes(buf[:4]) == b"RIFF" and bytes(buf[8:12]) == b"WEBP":
            return _Header(Orientation.from_exif(_webp_orientation(buf)), None)
    except (IndexError, ValueError):  # a damaged header: OpenCV will say what is wrong
        log.debug("unreadable image header", exc_info=True)
    return _Header(Orientation(), None)


def _jpeg_header(buf: memoryview) -> _Header:
    orientation = 1
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            break
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no header after it
            break
        length = _u16(buf, pos + 2, True)
        segment = buf[pos + 4:pos + 2 + length]
        if marker == 0xE1 and bytes(segment[:6]) == b"Exif\x00\x00":
            orientation = _tiff_orientation(segment[6:])
        elif marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                        0xCE, 0xCF) and len(segment) >= 5:
            height, width = _u16(segment, 1, True), _u16(segment, 3, True)
            return _Header(Orientation.from_exif(orientation),
                           (width, height) if width and height else None)
        pos += 2 + length
    return _Header(Orientation.from_exif(orientation), None)


def _png_orientation(buf: memoryview) -> int:
    pos = 8
    while pos + 8 <= len(buf):
        length = _u32(buf, pos, True)
        kind = bytes(buf[pos + 4:pos + 8])
        if kind == b"eXIf":
            return _tiff_orientation(_exif_payload(buf[pos + 8:pos + 8 + length]))
        if kind == b"IEND":
            break
        pos += 12 + length
    return 1


def _webp_orientation(buf: memoryview) -> int:
    pos = 12
    while pos + 8 <= len(buf):
        kind = bytes(buf[pos:pos + 4])
        length = _u32(buf, pos + 4, False)
        if kind == b"EXIF":
            return _tiff_orientation(_exif_payload(buf[pos + 8:pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return 1


def exif_orientation(path: str | os.PathLike[str]) -> Orientation:
    """The EXIF orientation of an image file (JPEG, PNG, WebP) as :func:`load_image` applies
    it; upright when the file has none."""
    return _image_header(np.fromfile(Path(path), dtype=np.uint8)).orientation


def _to_uint8(image: np.ndarray, path: Path, what: str) -> np.ndarray:
    """8-bit pixels as they are, 16-bit ones scaled down, 0..1 floats scaled up."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image / 257.0).round().astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = bool(np.isfinite(image).all())
        lo, hi = (float(image.min()), float(image.max())) if finite else (0.0, 0.0)
        if finite and lo >= -_FLOAT_SLACK and hi <= 1.0 + _FLOAT_SLACK:
            scaled = np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0
            return scaled.round().astype(np.uint8)
        got = (f"{image.dtype} pixels from {lo:g} to {hi:g}" if finite
               else f"{image.dtype} pixels that are not all finite numbers")
        raise InputError(f"unsupported {what} pixel format", path=path,
                         expected="8- or 16-bit pixels, or floating-point pixels in 0..1 "
                         "(an HDR picture needs tone mapping first)", got=got)
    raise InputError(f"unsupported {what} pixel format", path=path,
                     expected="8- or 16-bit pixels, or floating-point pixels in 0..1",
                     got=f"{image.dtype} pixels")


def usable_portraits(paths: Sequence[Path], *, folder: Path | None = None) -> list[Path]:
    """The files of ``paths`` that can be read and show a face, in their order.

    Every other file is skipped with one warning naming it and saying why (unreadable, not
    an image, no face). With ``folder`` (the folder ``paths`` came from), no usable file at
    all is an :class:`~calibrate.errors.InputError` listing each file's problem; without it
    (one file given by name) that file's own error is raised.
    """
    good: list[Path] = []
    problems: list[str] = []
    for path in paths:
        try:
            image = load_image(path)
            find_faces(image, max_faces=1, path=path, whole_picture_first=True)
        except MimicamError as exc:
            if folder is None and len(paths) == 1:
                raise
            why = str(exc)
            if why.startswith(f"{path}: "):
                why = why[len(f"{path}: "):]
            log.warning("skipping portrait %s: %s", path.name, why)
            problems.append(f"{path.name} ({why})")
            continue
        good.append(Path(path))
    if not good:
        raise InputError("no usable portrait", path=folder,
                         expected="at least one picture that can be read and shows a face",
                         got="; ".join(problems) or "no files")
    if problems:
        log.info("%d of %d portraits are usable", len(good), len(paths))
    return good


@dataclass(frozen=True, eq=False)
class Portrait:
    """A portrait and its face: the full image, the face crop (with its ``crop_to_frame``
    into the image and landmarks in crop pixels) and the landmarks in image pixels."""

    path: Path
    image: np.ndarray
    crop: FaceCrop
    landmarks: np.ndarray
    faces: int = 1
    """How many faces the picture was found to show (a face picked with ``face=`` from a
    group photo: all of them; 1 when only the largest was looked for)."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def picture_box(self) -> tuple[int, int, int, int]:
        """The crop's pixels that show the image (:func:`live.geometry.picture_box`)."""
        from live.geometry import picture_box

        return picture_box(self.crop.crop_to_frame, self.size, int(self.crop.image.shape[0]))

    @property
    def photo_box(self) -> tuple[int, int, int, int]:
        """The crop's pixels that show the image up to its own edge
        (:func:`live.geometry.photo_box`)."""
        from live.geometry import photo_box

        return photo_box(self.crop.crop_to_frame, self.size, int(self.crop.image.shape[0]))


def person_context(portrait: Portrait) -> np.ndarray | None:
    """The person mask of the whole picture (:func:`live.face.segmentation.segment_person`)
    cut into the portrait's face crop: float32 (size, size) in [0, 1], for
    ``Engine.prepare(context=)``; None when the crop shows the whole picture anyway or the
    segmentation finds nobody (:func:`crop_person_context`)."""
    return crop_person_context(portrait.image, portrait.crop)


def crop_shows_picture(crop: FaceCrop, size: tuple[int, int]) -> bool:
    """Whether a square ``crop`` of a picture of ``size`` (w, h) shows all of it."""
    n = int(crop.image.shape[0])
    (x0, y0), (x1, y1) = apply_affine(np.array([[-0.5, -0.5], [n - 0.5, n - 0.5]]),
                                      crop.crop_to_frame)
    return bool(x0 <= 0.0 and y0 <= 0.0 and x1 >= size[0] - 1.0 and y1 >= size[1] - 1.0)


def crop_person_context(image: np.ndarray, crop: FaceCrop, *,
                        whole: np.ndarray | None = None) -> np.ndarray | None:
    """The person mask of the whole ``image`` cut into ``crop`` (a square crop of it, its
    ``crop_to_frame`` mapping crop pixels to image pixels): float32 (size, size) in [0, 1];
    None when the crop shows the whole picture anyway or the segmentation finds nobody.
    ``whole`` is the picture's :func:`~live.face.segmentation.segment_person` mask when the
    caller already has it (several faces of one picture); otherwise it is worked out here,
    and only when the crop needs it."""
    n = int(crop.image.shape[0])
    h, w = image.shape[:2]
    if crop_shows_picture(crop, (w, h)):
        return None
    if whole is None:
        from live.face.segmentation import segment_person

        whole = segment_person(image)
        if whole is None:
            return None
    if whole.shape != (h, w):
        raise ValueError(f"whole: expected the picture's {w}x{h} mask, got "
                         f"{whole.shape[1::-1]}")
    return np.asarray(cv2.warpAffine(whole, crop.crop_to_frame, (n, n),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE), np.float32)


def find_faces(image: np.ndarray, *, max_faces: int = 1, path: str | Path | None = None,
               what: str = "portrait", whole_picture_first: bool = False) -> list[np.ndarray]:
    """Face-mesh landmarks ``(478, 3)`` (image pixels) of the ``max_faces`` largest faces of
    a still picture, largest first.

    MediaPipe's full-range search (both detectors, tiles, each face confirmed by the face
    mesh) finds small faces in big pictures; each face's landmarks come from the mesh run on
    a region around it. A face without usable landmarks is skipped with a warning.

    ``whole_picture_first`` (one face only) first runs the mesh on the whole picture and
    takes its largest face, searching as above only when that finds none: several times
    faster on a portrait that is mostly face (~8 vs ~50 ms), with landmarks that differ from
    the region-based ones by about 0.5 % of the face size (what ``mimicam live`` uses).

    Raises :class:`~calibrate.errors.NoFaceError` naming the picture (``path``, and ``what`` it
    is) when there is no face, or none with landmarks.
    """
    from live.face.tracking import detect_faces, face_landmarks

    if max_faces < 1:
        raise ValueError(f"max_faces: expected >= 1, got {max_faces}")
    check_rgb(image, what)
    no_face = NoFaceError(f"no face found in the {what}", path=path,
                          expected="a photo or painting with at least one clearly visible face",
                          got=f"a {image.shape[1]}x{image.shape[0]} image with no face")
    if whole_picture_first:
        if max_faces != 1:
            raise ValueError(f"whole_picture_first finds one face, got max_faces={max_faces}")
        lm = face_landmarks(image, refine=True)  # falls back to the largest detected face
        if lm is None:
            raise no_face
        return [lm]
    boxes = detect_faces(image, full_range=True, max_faces=max(max_faces, 20))
    if not boxes:
        raise no_face
    boxes = sorted(boxes, key=lambda b: b.area, reverse=True)[:max_faces]
    found: list[np.ndarray] = []
    for box in boxes:
        lm = face_landmarks(image, box=box)
        if lm is None:
            log.warning("the face at (%.0f, %.0f) of the %s has no usable landmarks; "
                        "skipping it", *box.center, what)
            continue
        found.append(lm)
    if not found:
        raise NoFaceError(f"no usable face in the {what}", path=path,
                          expected="a face clear enough for face-mesh landmarks",
                          got=f"{len(boxes)} detection(s) without landmarks")
    return found


def find_portrait(image: np.ndarray, crop_size: int, *, crop_scale: float = 1.8,
                  path: str | Path = "portrait", face: int | None = None) -> Portrait:
    """Find the largest face in ``image`` (:func:`find_faces`, whole picture first), or with
    ``face`` face N counted from the left (1 = the leftmost; a group photo), and cut its
    ``crop_size`` square crop, framed like :class:`live.face.tracking.FaceTracker` frames a
    driving face (``crop_scale`` face sizes). Raises :class:`~calibrate.errors.NoFaceError` when
    there is no face, :class:`~calibrate.errors.InputError` when there is no face N."""
    from live.face.framing import pick_face
    from live.face.tracking import square_box
    from live.geometry import crop_square

    if face is None:
        (lm,) = found = find_faces(image, max_faces=1, path=path, whole_picture_first=True)
    else:
        found = find_faces(image, max_faces=20, path=path)
        lm = pick_face(found, face, path=path)
    center, side = square_box(lm, scale=crop_scale)
    crop = crop_square(image, reach_photo_top(center, side), side, crop_size, landmarks=lm)
    return Portrait(path=Path(path), image=image, crop=crop, landmarks=lm, faces=len(found))


PHOTO_TOP_REACH = 0.06
"""A portrait's face crop whose top edge would cut into its photo by less than this share of
its side is moved up to take in the photo's top edge (:func:`reach_photo_top`)."""


def reach_photo_top(center: np.ndarray, side: float) -> np.ndarray:
    """The centre (x, y) of a square face crop of ``side`` (picture pixels), moved up so
    that the crop takes in the picture's top edge when it would otherwise cut into the
    picture by less than :data:`PHOTO_TOP_REACH` of its side.

    Such a crop held the hair at its top edge while a strip of the photo's own rows lay
    above it. The mesh engine then drew that hair down after a head that moved down, into a
    peak (pg_fom_source_image, 6.6 px into its photo). Told where the photo's top edge is
    (:func:`live.geometry.picture_box`), it closes the head's top there instead
    (:mod:`live.engines.mesh.crown`). The face moves down in the crop by as much, at most
    that share of its side."""
    c = np.array(center, np.float64, copy=True)
    inside = c[1] - side / 2.0 + 0.5  # the crop's top edge below the picture's (at -0.5)
    if 0.0 <= inside < PHOTO_TOP_REACH * side:
        c[1] -= inside + 1.0
    return c


def reduced_portrait(portrait: Portrait, scale: float) -> Portrait:
    """``portrait`` with its picture reduced by ``scale`` (in (0, 1); area averaging), its
    landmarks and its crop's ``crop_to_frame`` mapped onto the reduced picture. The crop's
    own pixels (what the engine animates) stay the full picture's."""
    if not 0.0 < scale < 1.0:
        raise ValueError(f"scale: expected a reduction in (0, 1), got {scale}")
    w, h = portrait.size
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    sx, sy = nw / w, nh / h
    # pixel centres onto pixel centres: x' = (x + 0.5) sx - 0.5
    to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    crop = dataclasses.replace(portrait.crop, crop_to_frame=compose_affine(
        to_small, portrait.crop.crop_to_frame))
    image = cv2.resize(portrait.image, (nw, nh), interpolation=cv2.INTER_AREA)
    return dataclasses.replace(portrait, image=np.asarray(image), crop=crop,
                               landmarks=transform_points(portrait.landmarks, to_small,
                                                          dtype=portrait.landmarks.dtype.type))


@dataclass(frozen=True, eq=False)
class PreparedPortrait:
    """A portrait ready to switch to: the engine's handle and the compositor (and, with a
    background, the person matte and the background layers built so far)."""

    index: int
    portrait: Portrait
    """The portrait as the compositor and the layers have it: its picture reduced when it is
    far larger than it is shown (:data:`PICTURE_DETAIL`), its face crop (the engine's) cut
    from the full picture."""
    handle: Any
    compositor: Compositor
    layers: PortraitLayers | None = None
    """The portrait's person matte and background plate (None: no background configured,
    or the segmentation found nobody, so the portrait keeps its background), at the size
    the segmentation worked at (:data:`SEGMENT_DETAIL`: about the size the picture is shown
    at, at most its own)."""
    backgrounds: dict[Background, BackgroundLayer | None] = field(default_factory=dict)
    """The background layers built for this portrait so far (:meth:`PortraitLibrary.layer`;
    None: nothing to paint, as for ``keep``)."""


SEGMENT_DETAIL = 1.0
"""A live portrait's person and background plate (for ``--background``) are worked out at
this many times the resolution its framing shows it at (at most its own): a 2048 px photo
framed into a 1280x720 call is shown at a quarter to a half of its size, and segmenting it
at its own size took 0.5 s of its preparation; at twice the size it is shown, 0.4-1.1 s
(benchmarks/README "Round 35" and "Round 55")."""


PICTURE_DETAIL = 2.0
"""A live portrait's picture, for all that shows the whole of it (the compositor's framed
picture, the person and plate for a background), is kept at this many times the largest
size its framings show it at, when that is at most half its own: a 12 MP phone photo in a
1280x720 call is shown at a fifth of its size. The engine's face crop is still cut from
the full picture. With ``--background blur`` a 6000 px photo prepares in 1.2-1.3 s instead
of 2.1-2.2, and four of them take 320 MB instead of 1.6 GB (benchmarks/README
"Round 58")."""


PICTURE_PLATE_SIDE = 256
"""The long side (px) at which a live portrait's whole-picture plate is filled (the engine's
own head plate: :data:`live.face.segmentation.PLATE_WORK_SIDE`). That plate is only ever
shown under ``--background blur`` (sigma at least 0.5 % of the output height, 3 % by
default), which leaves nothing of a finer fill; 256 instead of 512 px takes 0.08-0.11 s off
the layers of a 2048 px photo (benchmarks/README "Round 57")."""


CUT_GAP = 0.03
"""A framed photo ending more than this share of the output's height above its bottom ..."""
CUT_PERSON = 0.1
"""... with the person on at least this share of the photo's bottom row is said to cut the
person off in mid-air (:func:`cuts_person`; :meth:`PortraitLibrary.prepare` frames such a
photo down to the output's bottom, and warns once per picture where that cannot be done)."""


def cuts_person(matte: np.ndarray) -> bool:
    """Whether a picture's bottom edge cuts its person (``matte``: the picture's person
    matte, 0..1 or uint8): the person on at least :data:`CUT_PERSON` of its bottom row."""
    row = np.asarray(matte)[-1]
    half = 128 if row.dtype == np.uint8 else 0.5
    return float(np.mean(row >= half)) >= CUT_PERSON


def _picture_layers(image: np.ndarray, scale: float) -> PortraitLayers | None:
    """:func:`live.face.segmentation.prepare_layers` of a whole picture reduced by ``scale``
    (at most 1; area averaging), its plate filled at :data:`PICTURE_PLATE_SIDE`: the matte
    and the plate stay at that size. They are only ever framed into the output
    (:func:`live.geometry.frame_matte`, :func:`live.background.layer_backdrop`), where the
    picture is shown at about that scale: brought back to the picture's size first, they were
    resampled twice more for nothing (benchmarks/README "Round 64")."""
    from live.face.segmentation import prepare_layers

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return prepare_layers(image, plate_side=PICTURE_PLATE_SIDE)


class PortraitLibrary:
    """Portraits from a file or folder, prepared for one engine and output size.

    :meth:`prepare` does the heavy work (read, find the face, ``engine.prepare``, compositor)
    and caches the result (the ``max_cached`` most recently used, so a large folder does not
    fill memory); :meth:`prepare_async` runs it on the library's background thread. A
    portrait without a face raises :class:`~calibrate.errors.NoFaceError` from either.

    ``framing`` (``shoulders``, ``head`` or ``full``: :func:`live.geometry.framing_transform`)
    places each portrait in the output, around its face ``face`` (None: the largest; N: the
    N-th from the left); ``options`` (a folder's ``portraits.toml``,
    :func:`live.face.framing.read_portrait_options`) override both per file name.

    ``backgrounds`` (:mod:`live.background`; the first is :attr:`background` at start): when
    one of them is not ``keep``, each portrait's person is segmented once
    (:func:`live.face.segmentation.prepare_layers`; nobody found: one warning, the portrait
    keeps its background) and :meth:`prepare` builds the layer of :attr:`background`;
    :meth:`layer_async` builds another one off the hot path. Image backgrounds are read
    once, here (an unreadable one is an :class:`~calibrate.errors.InputError`).
    """

    def __init__(self, paths: Sequence[Path], engine: Engine, *,
                 output_size: tuple[int, int], crop_scale: float = 1.8,
                 feather: float = 0.03, color_transfer: bool = False,
                 max_cached: int = 10, framing: FramingMode = "full",
                 face: int | None = None,
                 options: Mapping[str, PortraitOptions] | None = None,
                 backgrounds: Sequence[Background] = ()) -> None:
        if not paths:
            raise InputError("no portraits given", expected="at least one image")
        self.framing: FramingMode = framing
        self.face = face
        self.options = dict(options or {})
        self._upscale_logged: set[Path] = set()
        self._cut_logged: set[Path] = set()
        self.paths = [Path(p) for p in paths]
        self.engine = engine
        self.crop_size = int(engine.size)
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.crop_scale = float(crop_scale)
        self.feather = float(feather)
        self.color_transfer = color_transfer
        self.max_cached = max(1, int(max_cached))
        self._cache: OrderedDict[int, PreparedPortrait] = OrderedDict()
        self._futures: dict[int, Future[PreparedPortrait]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self.backgrounds = tuple(backgrounds)
        self.background = self.backgrounds[0] if self.backgrounds else Background()
        """The background :meth:`prepare` builds a layer for (the live loop's current one)."""
        self._segment = any(b.needs_matte for b in self.backgrounds)
        self._images: dict[Path, np.ndarray] = {}
        for background in self.backgrounds:
            self._image(background)

    def _image(self, background: Background) -> np.ndarray | None:
        """An image background's picture, read once and scaled to cover the output."""
        if background.image is None:
            return None
        image = self._images.get(background.image)
        if image is None:
            image = cover(load_image(background.image, what="background image"),
                          self.output_size)
            self._images[background.image] = image
        return image

    @classmethod
    def from_path(cls, path: str | Path, engine: Engine, **options: Any) -> PortraitLibrary:
        return cls(portrait_paths(path), engine, **options)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def add(self, path: str | Path) -> int:
        """Append a portrait file (checked by the caller: readable, with a face; an upload
        from the control page) and return its index, or the index it already has. Safe
        from any thread: the live loop only reads ``paths``."""
        p = Path(path)
        with self._lock:
            if p in self.paths:
                return self.paths.index(p)
            self.paths.append(p)
            return len(self.paths) - 1

    def prepare(self, index: int) -> PreparedPortrait:
        """Prepare portrait ``index`` (0-based) now, or return it from the cache."""
        if not 0 <= index < len(self.paths):
            raise IndexError(f"portrait index: expected 0..{len(self.paths) - 1}, got {index}")
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
        if cached is not None:
            return cached
        path = self.paths[index]
        own = self.options.get(path.name, PortraitOptions())
        face = own.face if own.face is not None else self.face
        portrait = find_portrait(load_image(path), self.crop_size, crop_scale=self.crop_scale,
                                 path=path, face=face)
        mode = own.framing or self.framing
        # the engine animates the face crop cut from the full picture; what shows the whole
        # picture works on it reduced when it is far larger than it is shown
        shown = self._shown_picture(portrait, mode)
        # the picture's side (its person and plate for a background, the framing, the
        # compositor, the background's layer) on a thread of their own while the engine
        # prepares the face: OpenCV and MediaPipe release the GIL, so the two share a 2-core
        # machine's cores (benchmarks/README "Round 50" and "Round 55")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="portrait-layers") as helper:
            picture = helper.submit(self._picture_side, shown, mode)
            # (the whole picture's person mask, worked out only if the engine needs it; for
            # a face of a group photo, the mask the engine takes: benchmarks/README
            # "Round 65")
            context = functools.partial(person_context, shown)
            handle = self.engine.prepare(
                portrait.crop.image, picture=portrait.picture_box,
                context=WiderView(context) if portrait.faces > 1 else context)
            layers, compositor, first = picture.result()
        prepared = PreparedPortrait(index, shown, handle, compositor, layers)
        prepared.backgrounds[self.background] = first
        with self._lock:
            self._cache[index] = prepared
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            self._futures.pop(index, None)
        log.info("portrait %d/%d ready: %s", index + 1, len(self.paths), path.name)
        return prepared

    def _shown_picture(self, portrait: Portrait, mode: FramingMode) -> Portrait:
        """``portrait``, its picture reduced to about :data:`PICTURE_DETAIL` times the largest
        size its framings show it at (by a whole factor, no further) when that is at most
        half of it (:func:`reduced_portrait`)."""
        shown = portrait_framing(portrait.landmarks, portrait.size, self.output_size,
                                 mode).scale
        if self._segment:
            shown = max(shown, portrait_framing(portrait.landmarks, portrait.size,
                                                self.output_size, mode,
                                                reach_bottom=True).scale)
        keep = PICTURE_DETAIL * shown
        if keep > 0.5:
            return portrait
        # by a whole factor: at least what is kept, and area averaging's fast case when the
        # sides divide by it (a 6000 px photo to a third: 14 ms instead of 108 at 0.32)
        return reduced_portrait(portrait, 1.0 / math.floor(1.0 / keep))

    def _picture_side(self, portrait: Portrait, mode: FramingMode
                      ) -> tuple[PortraitLayers | None, Compositor, BackgroundLayer | None]:
        """A portrait's whole-picture layers (with a background; None without one or when
        the segmentation finds nobody), its compositor and the layer of :attr:`background`."""
        plain = portrait_framing(portrait.landmarks, portrait.size, self.output_size, mode)
        reaching, layers = plain, None
        if self._segment:
            # a person the photo's bottom edge cuts is framed down to the output's bottom
            # (no bust in mid-air in front of the background: benchmarks/README "Round 51")
            reaching = portrait_framing(portrait.landmarks, portrait.size, self.output_size,
                                        mode, reach_bottom=True)
            detail = SEGMENT_DETAIL * max(plain.scale, reaching.scale)
            layers = _picture_layers(portrait.image, min(1.0, detail))
            if layers is None:
                log.warning("portrait %s: the segmentation found no person in it; it keeps "
                            "its own background", portrait.name)
        cut = layers is not None and cuts_person(layers.matte)
        framing = reaching if cut else plain
        self._log_upscale(portrait, framing)
        if cut:
            self._warn_cut_person(portrait, framing)
        # the whole crop for an engine that keeps its picture still away from the head (no
        # faint copy of the hair where it was, outside an ellipse); else the ellipse
        mask = crop_mask(self.crop_size, portrait.photo_box, feather=self.feather) \
            if getattr(self.engine, "pastes_whole_crop", False) else None
        background = self.background
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="portrait-backdrop") as aside:
            # the background's picture (a blur of the framed plate) beside the compositor (the
            # framed picture and matte): each frames the whole picture, and the engine may be
            # done by now, leaving a core free (benchmarks/README "Round 64")
            backdrop = aside.submit(layer_backdrop, background, framing, plate=layers.plate,
                                    image=self._image(background)) \
                if background.paints and layers is not None else None
            compositor = Compositor(portrait.image, portrait.crop.crop_to_frame,
                                    self.crop_size, self.output_size, feather=self.feather,
                                    mask=mask, color_transfer=self.color_transfer,
                                    framing=framing,
                                    matte=layers.matte if layers is not None else None)
            first = None if backdrop is None else build_layer(background, compositor,
                                                              backdrop=backdrop.result())
        return layers, compositor, first

    def _build_layer(self, background: Background, compositor: Compositor,
                     layers: PortraitLayers | None) -> BackgroundLayer | None:
        if not background.needs_matte or layers is None:
            return None
        return build_layer(background, compositor, plate=layers.plate,
                           image=self._image(background))

    def _log_upscale(self, portrait: Portrait, framing: Framing) -> None:
        """Say once per picture that its framing upscales it."""
        if framing.scale > 1.01 and portrait.path not in self._upscale_logged:
            self._upscale_logged.add(portrait.path)
            log.info("portrait %s: %dx%d, upscaled %.2fx for the %s framing of the %dx%d "
                     "output%s; a larger picture would be sharper", portrait.name,
                     *portrait.size, framing.scale, framing.mode, *self.output_size,
                     "" if framing.mode == "full" else " (Lanczos)")

    def _warn_cut_person(self, portrait: Portrait, framing: Framing) -> None:
        """Say once per picture when its framing ends the photo above the output's bottom
        while the person goes on past the photo's bottom edge (:func:`cuts_person`, the
        caller's to ask): a background put behind them then shows a bust cut off in mid-air
        (:func:`live.geometry.frame_matte` fades the person out there)."""
        oh = self.output_size[1]
        bottom = framing.photo_rect[3]
        if framing.mode == "full" or bottom >= oh - CUT_GAP * oh \
                or portrait.path in self._cut_logged:
            return
        self._cut_logged.add(portrait.path)
        log.warning("portrait %s: framed %s, the photo ends %d%% of the way down the %dx%d "
                    "output and cuts the person off there, so a background behind them shows "
                    "a bust in mid-air; a picture showing more below the face fills the "
                    "frame (or --framing full: the whole picture)", portrait.name,
                    framing.mode, round(100 * bottom / oh), *self.output_size)

    def layer(self, prepared: PreparedPortrait,
              background: Background) -> BackgroundLayer | None:
        """``background``'s layer for a prepared portrait (built once, then kept in
        ``prepared.backgrounds``); None for ``keep`` and for a portrait without a person
        matte. Costs tens of milliseconds (a blur of the framed plate): use
        :meth:`layer_async` from the live loop."""
        if background in prepared.backgrounds:
            return prepared.backgrounds[background]
        layer = self._build_layer(background, prepared.compositor, prepared.layers)
        prepared.backgrounds[background] = layer
        return layer

    def layer_async(self, prepared: PreparedPortrait,
                    background: Background) -> Future[BackgroundLayer | None]:
        """:meth:`layer` on the library's background thread."""
        if self._closed:
            raise RuntimeError("PortraitLibrary: closed")
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="portrait-prepare")
            return self._executor.submit(self.layer, prepared, background)

    def prepare_async(self, index: int) -> Future[PreparedPortrait]:
        """Prepare portrait ``index`` on the background thread (one future per portrait)."""
        if self._closed:
            raise RuntimeError("PortraitLibrary: closed")
        with self._lock:
            if index in self._cache:
                done: Future[PreparedPortrait] = Future()
                done.set_result(self._cache[index])
                return done
            fut = self._futures.get(index)
            if fut is not None and not (fut.done() and fut.exception() is not None):
                return fut
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="portrait-prepare")
            fut = self._executor.submit(self.prepare, index)
            self._futures[index] = fut
            return fut

    def close(self) -> None:
        """Stop the background thread (waits for a preparation under way); idempotent."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PortraitLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
