"""The portrait library of ``mimicam live``: images, their faces, and engine-ready crops.

:func:`portrait_paths` lists a portrait file or a folder of them; :func:`load_image` reads
one as RGB (alpha composited on white; grey, 16-bit and 0..1 float pixels converted; the one
image reader of ``mimicam live``, ``demo`` and ``animate``); :func:`find_faces` finds the
largest face(s) of a picture (the one face finder of ``mimicam live``, ``demo`` and
``animate``, which animates several); :func:`find_portrait` finds the largest face and cuts
the square crop the engine animates, framed exactly like the tracker frames the driving face.
:class:`PortraitLibrary` prepares portraits (face search, ``engine.prepare``, the
:class:`~live.compose.Compositor`) on a background thread and keeps them, so switching
portraits never stalls the live loop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibrate.errors import InputError, NoFaceError
from live.compose import Compositor
from live.engines.base import Engine
from live.packets import FaceCrop, check_rgb

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "Portrait",
    "PortraitLibrary",
    "PreparedPortrait",
    "find_faces",
    "find_portrait",
    "load_image",
    "portrait_paths",
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


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a picture as RGB uint8 ``(H, W, 3)``, C-contiguous.

    Grey pictures become RGB; transparency is flattened onto white; 16-bit pixels are scaled
    to 8 bits; floating-point pixels (e.g. a 32-bit TIFF) are taken as 0..1 and scaled to
    0..255 (a slight overshoot, as lossy float formats make, is clipped). Raises
    :class:`~calibrate.errors.InputError` naming the file when it is missing, not a readable
    image, or has pixels of another kind (floats well outside 0..1, as in HDR images, or
    signed integers), saying what was expected and what it got.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("cannot read the portrait", path=p, expected="an image file",
                         got="a directory" if p.is_dir() else "no such file")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise InputError("cannot read the portrait", path=p, got=str(exc)) from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError("cannot read the portrait", path=p,
                         expected="an image file (JPEG, PNG, WebP, BMP, TIFF)",
                         got=f"{data.size} bytes OpenCV cannot decode as an image")
    image = _to_uint8(image, p)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    if image.shape[2] == 4:
        rgba = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA).astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        flat = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(flat.round().astype(np.uint8))
    if image.shape[2] != 3:
        raise InputError("unsupported portrait pixel format", path=p,
                         expected="grey, RGB or RGBA pixels", got=f"{image.shape[2]} channels")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def _to_uint8(image: np.ndarray, path: Path) -> np.ndarray:
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
        raise InputError("unsupported portrait pixel format", path=path,
                         expected="8- or 16-bit pixels, or floating-point pixels in 0..1 "
                         "(an HDR picture needs tone mapping first)", got=got)
    raise InputError("unsupported portrait pixel format", path=path,
                     expected="8- or 16-bit pixels, or floating-point pixels in 0..1",
                     got=f"{image.dtype} pixels")


@dataclass(frozen=True, eq=False)
class Portrait:
    """A portrait and its face: the full image, the face crop (with its ``crop_to_frame``
    into the image and landmarks in crop pixels) and the landmarks in image pixels."""

    path: Path
    image: np.ndarray
    crop: FaceCrop
    landmarks: np.ndarray

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


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
                  path: str | Path = "portrait") -> Portrait:
    """Find the largest face in ``image`` (:func:`find_faces`, whole picture first) and cut
    its ``crop_size`` square crop, framed like :class:`live.face.tracking.FaceTracker` frames a
    driving face (``crop_scale`` face sizes). Raises :class:`~calibrate.errors.NoFaceError` when
    there is no face."""
    from live.face.tracking import square_box
    from live.geometry import crop_square

    (lm,) = find_faces(image, max_faces=1, path=path, whole_picture_first=True)
    center, side = square_box(lm, scale=crop_scale)
    crop = crop_square(image, center, side, crop_size, landmarks=lm)
    return Portrait(path=Path(path), image=image, crop=crop, landmarks=lm)


@dataclass(frozen=True, eq=False)
class PreparedPortrait:
    """A portrait ready to switch to: the engine's handle and the compositor."""

    index: int
    portrait: Portrait
    handle: Any
    compositor: Compositor


class PortraitLibrary:
    """Portraits from a file or folder, prepared for one engine and output size.

    :meth:`prepare` does the heavy work (read, find the face, ``engine.prepare``, compositor)
    and caches the result (the ``max_cached`` most recently used, so a large folder does not
    fill memory); :meth:`prepare_async` runs it on the library's background thread. A
    portrait without a face raises :class:`~calibrate.errors.NoFaceError` from either.
    """

    def __init__(self, paths: Sequence[Path], engine: Engine, *,
                 output_size: tuple[int, int], crop_scale: float = 1.8,
                 feather: float = 0.03, color_transfer: bool = False,
                 max_cached: int = 10) -> None:
        if not paths:
            raise InputError("no portraits given", expected="at least one image")
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

    @classmethod
    def from_path(cls, path: str | Path, engine: Engine, **options: Any) -> PortraitLibrary:
        return cls(portrait_paths(path), engine, **options)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

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
        portrait = find_portrait(load_image(path), self.crop_size, crop_scale=self.crop_scale,
                                 path=path)
        handle = self.engine.prepare(portrait.crop.image)
        compositor = Compositor(portrait.image, portrait.crop.crop_to_frame, self.crop_size,
                                self.output_size, feather=self.feather,
                                color_transfer=self.color_transfer)
        prepared = PreparedPortrait(index, portrait, handle, compositor)
        with self._lock:
            self._cache[index] = prepared
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            self._futures.pop(index, None)
        log.info("portrait %d/%d ready: %s", index + 1, len(self.paths), path.name)
        return prepared

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
