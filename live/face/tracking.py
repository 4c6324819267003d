"""Face detection, face-mesh landmarks, square face boxes and the per-frame face tracker.

Coordinates: every pixel coordinate here (boxes, landmarks, crop transforms) follows OpenCV's
convention, integer values are pixel *centres*; MediaPipe's normalised outputs are converted
with ``x * width - 0.5`` (:func:`live.geometry.normalized_to_pixels`; the crops and point
transforms are :mod:`live.geometry`'s, re-exported here). Landmark ``z`` is MediaPipe's depth
scaled like x (by the width of the image the mesh ran on, then into the same pixel units as x
and y), so it stays comparable with x and y after any crop or resize.

MediaPipe (``mp.solutions`` of mediapipe 0.10.21, models bundled, offline) is imported only
when a function needs it. The still-image graphs are cached per process and guarded by a
lock, so :func:`detect_faces` and :func:`face_landmarks` are safe to call from any thread.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import numpy as np

from calibrate.smoothing import OneEuroFilter
from live.geometry import Border, border_args, crop_square, normalized_to_pixels, transform_points
from live.packets import Frame, Tracked, check_rgb

log = logging.getLogger(__name__)

# Re-exported: the crop and point maths live in live.geometry.
__all__ = [
    "Border",
    "FaceBox",
    "FaceTracker",
    "TrackerStats",
    "crop_square",
    "detect_faces",
    "face_landmarks",
    "landmark_array",
    "native_crop_size",
    "square_box",
    "transform_points",
]

# A BlazeFace box spans roughly brow to chin; the face-mesh extent (forehead top to chin,
# cheek to cheek) is larger and sits higher. These factors (median over the fixture
# portraits, short- and full-range boxes) make square_box(FaceBox) frame a face like
# square_box(landmarks) does.
_BOX_SIZE_TO_MESH = 1.12
_BOX_SHIFT_TO_MESH = -0.05
# Side of the region the face mesh runs on, in face sizes, and its pixel size.
_ROI_SCALE = 2.0
_MESH_INPUT = 256
_MAX_CANDIDATES = 3  # detected faces tried, largest first, when (re)acquiring
CROP_STEP = 64
"""A :class:`FaceTracker` given a ``max_crop_size`` samples its crops at the face's own
resolution in steps of this many pixels (:func:`native_crop_size`)."""
# Region around a detector box for still-image landmarks (in box sizes), and its pixel size.
_STILL_ROI_SCALE = 2.6
_STILL_INPUT = 384
_STILL_MAX_OFFSET = 0.2  # landmarks further than this (in region sides) belong to another face
# Detections that overlap this much are the same face.
_MERGE_IOU = 0.3
_MERGE_OVERLAP = 0.6
# Images whose shorter side is at least this big are also searched in overlapping tiles.
_TILE_MIN_SIDE = 384


# ----------------------------------------------------------------------------------------------
# boxes


@dataclass(frozen=True, eq=False)
class FaceBox:
    """A detected face in frame pixels: corners, detector score (0-1) and the detector's six
    keypoints ``(6, 2)`` (subject's right eye, left eye, nose tip, mouth centre, right ear
    tragion, left ear tragion), or None."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    keypoints: np.ndarray | None = None

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def intersection(self, other: FaceBox) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0.0) * max(h, 0.0)

    def iou(self, other: FaceBox) -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def shifted(self, dx: float, dy: float, scale: float = 1.0) -> FaceBox:
        """This box in another frame: ``p -> p * scale + (dx, dy)``."""
        kp = None if self.keypoints is None else self.keypoints * scale + np.array([dx, dy])
        return FaceBox(self.x0 * scale + dx, self.y0 * scale + dy, self.x1 * scale + dx,
                       self.y1 * scale + dy, self.score, kp)


def square_box(
    box_or_points: FaceBox | np.ndarray, *, scale: float = 1.8, shift_y: float = 0.0
) -> tuple[np.ndarray, float]:
    """The square crop ``(center_xy, side)`` around a face.

    ``box_or_points`` is a :class:`FaceBox` or landmarks ``(N, 2+)`` (face-mesh points in
    pixels). The face size is the larger side of the landmarks' bounding box (for the face mesh:
    forehead top to chin, cheek to cheek); for a detector box it is converted to that same
    measure, so both frame a face alike. ``side = scale * size``; ``shift_y`` moves the centre
    down by that many face sizes (negative: up, showing more hair).
    """
    if isinstance(box_or_points, FaceBox):
        b = box_or_points
        size = max(b.width, b.height) * _BOX_SIZE_TO_MESH
        cx, cy = b.center
        cy += _BOX_SHIFT_TO_MESH * size
    else:
        pts = np.asarray(box_or_points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] < 2:
            raise ValueError(f"expected a FaceBox or points of shape (N>=2, 2+), got {pts.shape}")
        lo = pts[:, :2].min(axis=0)
        hi = pts[:, :2].max(axis=0)
        size = float(max(hi - lo))
        cx, cy = (lo + hi) / 2.0
    if not (size > 0 and math.isfinite(size)):
        raise ValueError(f"expected a face of positive size, got size {size}")
    return np.array([cx, cy + shift_y * size]), float(scale * size)


# ----------------------------------------------------------------------------------------------
# MediaPipe graphs (still images): created once, shared under a lock


class _Graphs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._detectors: dict[tuple[int, float], Any] = {}
        self._meshes: dict[bool, Any] = {}

    def detector(self, model: int, min_score: float) -> Any:
        key = (model, round(min_score, 3))
        if key not in self._detectors:
            from mediapipe.python.solutions import face_detection

            self._detectors[key] = face_detection.FaceDetection(
                model_selection=model, min_detection_confidence=min_score)
        return self._detectors[key]

    def mesh(self, refine: bool) -> Any:
        if refine not in self._meshes:
            from mediapipe.python.solutions import face_mesh

            self._meshes[refine] = face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=4, refine_landmarks=refine,
                min_detection_confidence=0.5)
        return self._meshes[refine]


_GRAPHS = _Graphs()


def _run_detector(image: np.ndarray, model: int, min_score: float) -> list[FaceBox]:
    h, w = image.shape[:2]
    with _GRAPHS.lock:
        result = _GRAPHS.detector(model, min_score).process(image)
    boxes = []
    for det in result.detections or []:
        loc = det.location_data
        rb = loc.relative_bounding_box
        kp = normalized_to_pixels(
            np.array([[p.x, p.y] for p in loc.relative_keypoints],
                     dtype=np.float64).reshape(-1, 2), w, h)
        x0, y0 = normalized_to_pixels(np.array([[rb.xmin, rb.ymin]]), w, h)[0].tolist()
        boxes.append(FaceBox(x0, y0, x0 + rb.width * w, y0 + rb.height * h,
                             float(det.score[0]), kp if len(kp) else None))
    return boxes


def _tiles(w: int, h: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles ``(x0, y0, side)``: side 2/3 of the shorter image side, steps of
    half a tile, so every face smaller than half a tile lies whole inside some tile."""
    side = round(min(w, h) * 2 / 3)
    step = side // 2

    def starts(n: int) -> list[int]:
        out = [*range(0, n - side, step), n - side]
        return sorted(set(out))

    return [(x, y, side) for y in starts(h) for x in starts(w)]


def _merge(boxes: list[FaceBox]) -> list[FaceBox]:
    """Greedy suppression: keep the best-scoring box of each group of overlapping ones."""
    kept: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: b.score, reverse=True):
        same = False
        for k in kept:
            inter = b.intersection(k)
            small = min(b.area, k.area)
            if b.iou(k) > _MERGE_IOU or (small > 0 and inter / small > _MERGE_OVERLAP):
                same = True
                break
        if not same:
            kept.append(b)
    return kept


def detect_faces(
    image: np.ndarray, *, full_range: bool = True, min_score: float = 0.5, max_faces: int = 20
) -> list[FaceBox]:
    """Faces in a still image (RGB uint8), sorted left to right by box centre.

    ``full_range=True`` (for portraits and photos) runs both of MediaPipe's detectors, the
    short-range one (big, near faces) and the full-range one (small, far faces), and on
    images whose shorter side is >= 384 px also runs the short-range one on overlapping tiles
    (faces down to ~1/20 of the shorter side). ``full_range=False`` runs the short-range
    detector once on the whole image (fast; for webcam frames). Duplicates are merged by
    overlap, keeping the best score. With ``full_range=True`` each face is then confirmed by
    running the face mesh on its region (~10 ms a face), which drops hands and patterns the
    wider search also finds. At most ``max_faces`` best-scoring faces are returned.
    """
    check_rgb(image)
    if not 0.0 < min_score <= 1.0:
        raise ValueError(f"min_score: expected a value in (0, 1], got {min_score}")
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    found = _run_detector(image, 0, min_score)
    if full_range:
        found += _run_detector(image, 1, min_score)
        if min(h, w) >= _TILE_MIN_SIDE:
            for tx, ty, side in _tiles(w, h):
                tile = np.ascontiguousarray(image[ty:ty + side, tx:tx + side])
                for b in _run_detector(tile, 0, min_score):
                    # a face cut by an inner tile edge is whole in a neighbouring tile
                    margin = 0.02 * side
                    cut = ((b.x0 < margin and tx > 0) or (b.y0 < margin and ty > 0)
                           or (b.x1 > side - 1 - margin and tx + side < w)
                           or (b.y1 > side - 1 - margin and ty + side < h))
                    if not cut:
                        found.append(b.shifted(tx, ty))
    faces: list[FaceBox] = []
    for b in _merge(found):  # best score first
        if len(faces) >= max_faces:
            break
        # the wider search also finds hands, folds and patterns: keep what the mesh confirms
        if not full_range or _landmarks_near_box(image, b, refine=False) is not None:
            faces.append(b)
    log.debug("detect_faces: %d raw detections -> %d faces", len(found), len(faces))
    return sorted(faces, key=lambda b: b.center[0])


# ----------------------------------------------------------------------------------------------
# landmarks on still images


_LANDMARK_BYTES = 17
"""A ``NormalizedLandmark`` holding x, y and z only, on the wire inside its list: the list
field's tag and length (2 bytes), then each coordinate's tag and its 4-byte float."""
_LANDMARK_TAGS = {0: 0x0A, 1: 15, 2: 0x0D, 7: 0x15, 12: 0x1D}
"""Byte offset -> expected byte of such a landmark: field 1 (``landmark``, length-delimited)
of 15 bytes, then fields 1, 2, 3 (x, y, z) as fixed 32-bit."""
_LANDMARK_FLOATS = [o + k for o in (3, 8, 13) for k in range(4)]


def landmark_array(face: Any) -> np.ndarray:
    """A MediaPipe ``NormalizedLandmarkList`` -> (N, 3) float32 normalised x, y, z.

    Reading 478 landmarks field by field costs ~0.4 ms a frame here; the list's wire format
    is read in one go instead when every landmark holds x, y and z only (as the face mesh
    gives them), else field by field. Both give the same floats."""
    data = face.SerializeToString()
    n = len(data) // _LANDMARK_BYTES
    if n and n * _LANDMARK_BYTES == len(data):
        rec = np.frombuffer(data, np.uint8).reshape(n, _LANDMARK_BYTES)
        if all((rec[:, i] == v).all() for i, v in _LANDMARK_TAGS.items()):
            floats = np.ascontiguousarray(rec[:, _LANDMARK_FLOATS]).view("<f4")
            return floats.astype(np.float32).reshape(n, 3)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32).reshape(-1, 3)


def _mesh_points(face: Any, width: int, height: int) -> np.ndarray:
    """One MediaPipe face's normalised landmarks -> (N, 3) float32 pixels (z scaled like x)."""
    return normalized_to_pixels(landmark_array(face), width, height)


def _landmarks_in_crop(image: np.ndarray, center: np.ndarray, side: float, refine: bool,
                       ) -> np.ndarray | None:
    crop = crop_square(image, center, side, _STILL_INPUT)
    with _GRAPHS.lock:
        result = _GRAPHS.mesh(refine).process(crop.image)
    faces = result.multi_face_landmarks or []
    if not faces:
        return None
    # the face nearest the crop's centre is the one asked for (neighbours may show too);
    # none near the centre means the box held no face
    mid = (_STILL_INPUT - 1) / 2.0
    best, best_off = None, math.inf
    for f in faces:
        pts = _mesh_points(f, _STILL_INPUT, _STILL_INPUT)
        off = float(np.hypot(*(pts[:, :2].mean(axis=0) - mid)))
        if off < best_off:
            best, best_off = pts, off
    if best is None or best_off > _STILL_MAX_OFFSET * _STILL_INPUT:
        return None
    return transform_points(best, crop.crop_to_frame)


def _landmarks_near_box(image: np.ndarray, box: FaceBox, *, refine: bool) -> np.ndarray | None:
    center, side = square_box(box, scale=_STILL_ROI_SCALE / _BOX_SIZE_TO_MESH)
    return _landmarks_in_crop(image, center, side, refine)


def face_landmarks(
    image: np.ndarray, *, box: FaceBox | None = None, refine: bool = True
) -> np.ndarray | None:
    """Face-mesh landmarks of one face in a still image: ``(478, 3)`` float32 in image pixels
    (``(468, 3)`` with ``refine=False``), or None when there is no face.

    With ``box`` the mesh runs on a square region around that face, resampled to a fixed size
    (better for small faces; picks that face in a group photo). Without it the mesh runs on
    the whole image and, when it finds nothing there (e.g. a small face in a big picture),
    on the region of the largest face :func:`detect_faces` finds; with several faces, the
    largest one is returned.
    """
    check_rgb(image)
    if box is not None:
        return _landmarks_near_box(image, box, refine=refine)
    h, w = image.shape[:2]
    with _GRAPHS.lock:
        result = _GRAPHS.mesh(refine).process(np.ascontiguousarray(image))
    faces = result.multi_face_landmarks or []
    if faces:
        candidates = [_mesh_points(f, w, h) for f in faces]
        return max(candidates, key=lambda p: float(np.ptp(p[:, 0]) * np.ptp(p[:, 1])))
    boxes = detect_faces(image)
    if not boxes:
        return None
    return face_landmarks(image, box=max(boxes, key=lambda b: b.area), refine=refine)


# ----------------------------------------------------------------------------------------------
# the tracker


def native_crop_size(side: float, smallest: int, largest: int) -> int:
    """The crop size (px) that keeps what a camera shows of a face whose square is ``side``
    frame pixels: ``side`` rounded down to :data:`CROP_STEP`, so the crop is never an
    enlargement of the frame (a bicubic enlargement costs several times a reduction and adds
    nothing), within ``smallest`` and ``largest``."""
    size = int(max(side, 0.0) // CROP_STEP) * CROP_STEP
    return int(min(max(size, smallest), max(largest, smallest)))


@dataclass(frozen=True)
class TrackerStats:
    """Counters of a :class:`FaceTracker`: frames processed, frames with a face, detector
    runs, face-mesh runs, and tracking losses (the mesh lost a tracked face)."""

    frames: int = 0
    faces: int = 0
    detections: int = 0
    mesh_runs: int = 0
    losses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FaceTracker:
    """Follows one face through a video and cuts a steady square crop of it each frame.

    Per frame the face mesh (MediaPipe, video mode) runs on a square region around the face
    found in the previous frame, resampled to 256 px, so small faces in big frames get the
    same resolution as near ones. The face detector runs only when there is no tracked face
    (first frame, or the mesh lost the face); the largest detected face that the mesh
    confirms is taken. The crop (centre and side from the landmarks, ``crop_scale`` face
    sizes, centre moved down by ``crop_shift_y`` face sizes) is smoothed over time with a One
    Euro filter on real time steps: the frame's ``pts`` when it has one (video time), else
    its ``t_capture``. The filter works in face sizes, so the ``box_*`` settings fit every
    resolution; ``smooth_box=False`` turns it off. Only the crop is smoothed: the landmarks
    are the mesh's own for this frame.

    ``full_range=True`` looks for new faces with :func:`detect_faces`' thorough search (both
    detectors, tiles); the default searches with the short-range detector and, when that
    finds nothing, the full-range one.

    :meth:`process` returns ``Tracked(frame, FaceCrop)`` with the crop's landmarks in crop
    pixels (478 points, 468 with ``refine_landmarks=False``) and ``score`` the detector's
    score when the face was acquired, or ``Tracked(frame, None)`` when there is no face.
    One tracker serves one thread. Use it as a context manager or call :meth:`close`
    (idempotent).
    """

    def __init__(
        self,
        *,
        crop_size: int = 256,
        max_crop_size: int | None = None,
        crop_scale: float = 1.8,
        crop_shift_y: float = 0.0,
        full_range: bool = False,
        refine_landmarks: bool = True,
        min_detection_score: float = 0.5,
        min_tracking_score: float = 0.5,
        smooth_box: bool = True,
        box_min_cutoff: float = 1.0,
        box_beta: float = 1.5,
        box_d_cutoff: float = 1.0,
        border: Border = "replicate",
    ) -> None:
        if crop_size < 16:
            raise ValueError(f"crop_size: expected at least 16 pixels, got {crop_size}")
        if max_crop_size is not None and max_crop_size < crop_size:
            raise ValueError(f"max_crop_size: expected at least crop_size ({crop_size}) "
                             f"pixels, got {max_crop_size}")
        if crop_scale <= 0:
            raise ValueError(f"crop_scale: expected a positive factor, got {crop_scale}")
        border_args(border)
        self.crop_size = int(crop_size)
        self.max_crop_size = self.crop_size if max_crop_size is None else int(max_crop_size)
        self._crop_now = self.crop_size
        self.crop_scale = float(crop_scale)
        self.crop_shift_y = float(crop_shift_y)
        self.full_range = bool(full_range)
        self.refine_landmarks = bool(refine_landmarks)
        self.min_detection_score = float(min_detection_score)
        self.border: Border = border
        self._filter = (OneEuroFilter(box_min_cutoff, box_beta, box_d_cutoff)
                        if smooth_box else None)
        from mediapipe.python.solutions import face_mesh

        self._mesh: Any = face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=self.refine_landmarks,
            min_detection_confidence=0.5, min_tracking_confidence=min_tracking_score)
        self._roi: tuple[np.ndarray, float] | None = None  # (centre, side) for the mesh
        self._ref_size = 1.0  # face size at acquisition: the smoothing filter's unit
        self._score = 0.0
        self._stats = TrackerStats()
        self._closed = False

    @property
    def stats(self) -> TrackerStats:
        return self._stats

    @property
    def current_crop_size(self) -> int:
        """The size (px) of the crops cut now: ``crop_size`` unless ``max_crop_size`` lets it
        follow the face's resolution."""
        return self._crop_now

    def _follow_resolution(self, side: float, found: bool) -> None:
        """Choose :attr:`current_crop_size` for a face square of ``side`` frame pixels:
        anew when the face was just ``found``, else only when the square is smaller than
        the crop (the crop would be an enlargement) or two steps larger."""
        if self.max_crop_size == self.crop_size:
            return
        now = self._crop_now
        if found or side < now or side >= now + 2 * CROP_STEP:
            size = native_crop_size(side, self.crop_size, self.max_crop_size)
            if size != now:
                log.debug("driving crops at %d px (the face's square: %.0f px)", size, side)
            self._crop_now = size

    @property
    def tracking(self) -> bool:
        """True while a face is being followed."""
        return self._roi is not None

    def reset(self) -> None:
        """Forget the tracked face: the next frame starts with a detection."""
        self._roi = None
        if self._filter is not None:
            self._filter.reset()
        if not self._closed:
            self._mesh.reset()

    def _count(self, **inc: int) -> None:
        d = self._stats.as_dict()
        for k, v in inc.items():
            d[k] += v
        self._stats = TrackerStats(**d)

    def _mesh_on(self, image: np.ndarray, center: np.ndarray, side: float) -> np.ndarray | None:
        crop = crop_square(image, center, side, _MESH_INPUT, border=self.border)
        self._count(mesh_runs=1)
        result = self._mesh.process(crop.image)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        return transform_points(_mesh_points(faces[0], _MESH_INPUT, _MESH_INPUT),
                                crop.crop_to_frame)

    def _acquire(self, image: np.ndarray) -> np.ndarray | None:
        """Detect faces and start tracking the largest one the mesh confirms."""
        self._count(detections=1)
        boxes = detect_faces(image, full_range=self.full_range,
                             min_score=self.min_detection_score)
        if not boxes and not self.full_range:
            boxes = _run_detector(np.ascontiguousarray(image), 1, self.min_detection_score)
        for box in sorted(boxes, key=lambda b: b.area, reverse=True)[:_MAX_CANDIDATES]:
            self._mesh.reset()  # the mesh's own tracking state belongs to the old region
            lm = self._mesh_on(image, *square_box(box, scale=_ROI_SCALE))
            if lm is not None:
                self._score = box.score
                if self._filter is not None:
                    self._filter.reset()
                return lm
        return None

    def process(self, frame: Frame) -> Tracked:
        """Track the face in one frame; ``Tracked(frame, None)`` when there is none."""
        if self._closed:
            raise RuntimeError("FaceTracker.process: the tracker is closed")
        image = check_rgb(frame.image, "frame.image")
        self._count(frames=1)
        lm = None
        if self._roi is not None:
            lm = self._mesh_on(image, *self._roi)
            if lm is None:
                self._count(losses=1)
                log.debug("frame %d: lost the face, detecting again", frame.index)
                self._roi = None
        found = lm is None  # a face found anew (first frame, or after a loss)
        if found:
            lm = self._acquire(image)
        if lm is None:
            return Tracked(frame, None)
        self._count(faces=1)
        self._roi = square_box(lm, scale=_ROI_SCALE)
        center, side = square_box(lm, scale=self.crop_scale, shift_y=self.crop_shift_y)
        if self._filter is not None:
            if self._filter.value is None:
                self._ref_size = side
            t = frame.time()  # video time, else the capture clock
            box = self._filter(np.array([center[0], center[1], side]) / self._ref_size, t)
            box *= self._ref_size
            center, side = box[:2], float(box[2])
        self._follow_resolution(side, found)
        crop = crop_square(image, center, side, self._crop_now, landmarks=lm,
                           border=self.border, frame_index=frame.index,
                           t_capture=frame.t_capture, score=self._score)
        return Tracked(frame, crop)

    def close(self) -> None:
        """Release the face-mesh graph; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
