"""The portrait library of ``mimicam live``: images, their faces, and engine-ready crops.

:func:`portrait_paths` lists a portrait file or a folder of them; :func:`load_image` reads
one as RGB (alpha composited on white, 16-bit and grey converted); :func:`find_portrait` finds
the largest face and cuts the square crop the engine animates, framed exactly like the
tracker frames the driving face. :class:`PortraitLibrary` prepares portraits (face search,
``engine.prepare``, the :class:`~live.compose.Compositor`) on a background thread and keeps
them, so switching portraits never stalls the live loop.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from live.compose import Compositor
from live.engines.base import Engine
from live.errors import InputError, NoFaceError
from live.packets import FaceCrop

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "Portrait",
    "PortraitLibrary",
    "PreparedPortrait",
    "find_portrait",
    "load_image",
    "portrait_paths",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


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


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (alpha composited on white)."""
    p = Path(path)
    data = np.fromfile(str(p), dtype=np.uint8) if p.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if img is None:
        raise InputError("cannot read the portrait", path=p,
                         expected="an image file (JPEG, PNG, WebP, BMP, TIFF)",
                         got="a missing, empty or undecodable file")
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        img = ((f - lo) * (255.0 / max(hi - lo, 1e-12)) + 0.5).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        return (rgb * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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


def find_portrait(image: np.ndarray, crop_size: int, *, crop_scale: float = 1.8,
                  path: str | Path = "portrait") -> Portrait:
    """Find the largest face in ``image`` and cut its ``crop_size`` square crop, framed like
    :class:`live.tracking.FaceTracker` frames a driving face (``crop_scale`` face sizes).
    Raises :class:`~live.errors.NoFaceError` when there is no face."""
    from live.tracking import crop_square, face_landmarks, square_box

    lm = face_landmarks(image, refine=True)
    if lm is None:
        raise NoFaceError("no face found in the portrait", path=path,
                          expected="a picture with a clearly visible face",
                          got=f"a {image.shape[1]}x{image.shape[0]} image without one")
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
    portrait without a face raises :class:`~live.errors.NoFaceError` from either.
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
