"""Streaming search for the driving frame whose pose best matches the portrait('s faces).

PaddleGAN's / first-order-model's ``find_best_frame`` compares the portrait's face landmarks
with every driving frame's and starts the relative motion from the closest one. Here the
driving video is streamed, so :class:`BestFrameSearch` sees one frame at a time and keeps only
the best frame so far (its index, distance and whatever item was passed with it, e.g. the
:class:`~live.packets.FaceCrop`): memory does not grow with the video's length.

Distances are :func:`calibrate.neutral.pose_distance` (similarity-aligned RMS, in the
portrait face's inter-ocular distances). With several portrait faces (a group picture driven
by one face) a frame's distance is the mean over the faces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibrate.landmarks import POSE_POINTS
from calibrate.neutral import pose_distance


@dataclass(frozen=True, eq=False)
class BestFrame:
    """The best-matching driving frame: its index, its distance (IODs) and its item."""

    index: int
    distance: float
    item: Any = None


class BestFrameSearch:
    """Keep the driving frame whose face pose is closest to the portrait face(s).

    ``portrait_landmarks`` is one face-mesh array ``(N, 2|3)`` or a sequence of them (one per
    portrait face). Call :meth:`update` for each driving frame in order, ``landmarks`` None when
    the frame has no face; ties keep the earlier frame. :attr:`best` is None until a frame with
    a face was seen.
    """

    def __init__(self, portrait_landmarks: np.ndarray | Sequence[np.ndarray], *,
                 points: Sequence[int] = POSE_POINTS) -> None:
        faces = ([portrait_landmarks] if isinstance(portrait_landmarks, np.ndarray)
                 and portrait_landmarks.ndim == 2 else list(portrait_landmarks))
        if not faces:
            raise ValueError("portrait_landmarks: expected at least one face's landmarks, got none")
        self._faces = [np.asarray(f, dtype=np.float64) for f in faces]
        self._points = tuple(points)
        # validate now (shape, separate eyes) rather than on the first driving frame
        for i, face in enumerate(self._faces):
            try:
                pose_distance(face, face, points=self._points)
            except ValueError as exc:
                raise ValueError(f"portrait_landmarks[{i}]: {exc}") from None
        self._best: BestFrame | None = None
        self.frames = 0
        self.frames_with_face = 0

    @property
    def best(self) -> BestFrame | None:
        return self._best

    def distance(self, landmarks: np.ndarray) -> float:
        """Mean :func:`pose_distance` from the portrait face(s) to ``landmarks``."""
        return float(np.mean([pose_distance(face, landmarks, points=self._points)
                              for face in self._faces]))

    def update(self, index: int, landmarks: np.ndarray | None, item: Any = None) -> float | None:
        """Take driving frame ``index``; returns its distance (None without a face)."""
        self.frames += 1
        if landmarks is None:
            return None
        self.frames_with_face += 1
        d = self.distance(landmarks)
        if not math.isfinite(d):
            return None
        if self._best is None or d < self._best.distance:
            self._best = BestFrame(int(index), d, item)
        return d
