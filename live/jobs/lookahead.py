"""Zero-lag smoothing of the driving landmarks for offline jobs.

Live video can only smooth with the past (the mesh engine's One Euro filter), which lags fast
motion. A video file has its future too: :func:`smooth_landmarks` holds a few tracked frames
back and replaces each face's landmarks by a local quadratic fit over the frames around it
(:class:`calibrate.smoothing.CentredSmoother`), in frame pixels, so jitter goes without lag
and a blink or a mouth opening keeps its height. A frame without a face ends a window; the
stream stays bounded (``2 * radius + 1`` frames held).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from calibrate.smoothing import CentredSmoother
from live.geometry import transform_points
from live.packets import FaceCrop, Tracked


def _frame_points(face: FaceCrop) -> np.ndarray | None:
    if face.landmarks is None:
        return None
    return transform_points(face.landmarks, face.crop_to_frame, dtype=np.float64)


def _with_frame_points(item: Tracked, points: np.ndarray | None) -> Tracked:
    face = item.face
    if points is None or face is None:
        return item
    return dataclasses.replace(item, face=dataclasses.replace(
        face, landmarks=transform_points(points, face.frame_to_crop())))


def smooth_landmarks(tracked: Iterable[Tracked], *, radius: int = 3) -> Iterator[Tracked]:
    """The tracked frames in order, each face's landmarks smoothed over the ``radius`` frames
    before and after it (see the module docstring); ``radius`` 0 passes them through."""
    if radius <= 0:
        yield from tracked
        return
    smoother = CentredSmoother(radius)
    held: deque[Tracked] = deque()
    shape: tuple[int, ...] | None = None
    for item in tracked:
        pts = _frame_points(item.face) if item.face is not None else None
        if pts is not None and shape is not None and pts.shape != shape:
            for value in smoother.flush():  # irises appeared or went: no window spans it
                yield _with_frame_points(held.popleft(), value)
        if pts is not None:
            shape = pts.shape
        held.append(item)
        for value in smoother.push(pts):
            yield _with_frame_points(held.popleft(), value)
    for value in smoother.flush():
        yield _with_frame_points(held.popleft(), value)


__all__ = ["smooth_landmarks"]
