"""Neutral driving pose: wait for a still face, compare poses, pick the best-matching frame.

All pure numpy on face-mesh landmark arrays ``(N, 2|3)`` in pixels (N = 468 or 478, see
:mod:`calibrate.landmarks`); only x and y are used. Distances are in inter-ocular distances (IOD,
outer eye corners), so they do not depend on the image resolution or the face's size.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibrate.errors import NoFaceError
from calibrate.landmarks import NUM_LANDMARKS, POSE_POINTS, inter_ocular_distance

_MIN_IOD = 1e-6


def _check_landmarks(landmarks: np.ndarray, name: str) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < NUM_LANDMARKS or pts.shape[1] < 2:
        raise ValueError(
            f"{name}: expected face-mesh landmarks of shape (N>={NUM_LANDMARKS}, 2 or 3), "
            f"got shape {pts.shape}"
        )
    return pts


@dataclass(frozen=True, eq=False)
class NeutralPose:
    """The driving face's neutral pose: the landmarks of the chosen frame, its time, whatever
    ``item`` was passed with it (e.g. its :class:`~live.packets.FaceCrop`), the landmark
    motion over the window that settled (RMS, in IODs), and whether it was taken because
    ``max_wait`` ran out rather than because the face was still."""

    landmarks: np.ndarray
    t: float
    item: Any
    motion: float
    timed_out: bool = False


class NeutralPoseDetector:
    """Finds the first moment the driving face holds still, to use as the neutral pose.

    Feed it every frame with :meth:`process` (``landmarks`` None when there is no face). The
    face *settles* when, over the last ``window`` seconds (at least ``min_frames`` frames, the
    face present in all of them), every frame's landmarks stay within ``threshold`` IODs (RMS
    over the points) of the window's mean. The neutral pose is then the frame of that window
    closest to its mean. If the face is present for ``max_wait`` seconds without settling
    (someone who keeps talking), the stillest window seen so far is taken instead
    (``timed_out=True``); ``max_wait=None`` waits for ever. A frame without a face restarts
    the window (not the ``max_wait`` clock). :meth:`reset` starts over (recalibrate hotkey).
    """

    def __init__(self, *, window: float = 0.3, threshold: float = 0.02, min_frames: int = 3,
                 max_wait: float | None = 3.0) -> None:
        if window < 0 or threshold <= 0 or min_frames < 1:
            raise ValueError(
                "expected window >= 0 s, threshold > 0 and min_frames >= 1, got "
                f"window={window}, threshold={threshold}, min_frames={min_frames}"
            )
        if max_wait is not None and max_wait < window:
            raise ValueError(f"max_wait: expected None or >= window ({window} s), got {max_wait}")
        self.window = float(window)
        self.threshold = float(threshold)
        self.min_frames = int(min_frames)
        self.max_wait = None if max_wait is None else float(max_wait)
        self._buf: deque[tuple[float, np.ndarray, Any]] = deque()
        self._neutral: NeutralPose | None = None
        self._best: NeutralPose | None = None  # stillest full window so far
        self._t_first: float | None = None  # first time a face was seen since reset

    @property
    def settled(self) -> bool:
        """True once a neutral pose has been chosen."""
        return self._neutral is not None

    @property
    def neutral(self) -> NeutralPose | None:
        """The chosen neutral pose, or None while waiting."""
        return self._neutral

    def reset(self) -> None:
        """Forget the neutral pose and wait for the face to settle again."""
        self._buf.clear()
        self._neutral = None
        self._best = None
        self._t_first = None

    def process(self, landmarks: np.ndarray | None, t: float, item: Any = None,
                ) -> NeutralPose | None:
        """Take one frame; returns the neutral pose once settled (the same object on this and
        every later call until :meth:`reset`), else None. ``t`` is in seconds."""
        if self._neutral is not None:
            return self._neutral
        t = float(t)
        if landmarks is None:
            self._buf.clear()
            return None
        pts = _check_landmarks(landmarks, "landmarks")[:, :2]
        if self._buf and not t > self._buf[-1][0]:
            return None  # no time passed: nothing new to learn
        if self._t_first is None:
            self._t_first = t
        self._buf.append((t, pts, item))
        # keep just enough history to span the window
        while len(self._buf) > self.min_frames and self._buf[1][0] <= t - self.window:
            self._buf.popleft()
        candidate = self._evaluate()
        if candidate is not None:
            if candidate.motion <= self.threshold:
                self._neutral = candidate
            elif self._best is None or candidate.motion < self._best.motion:
                self._best = candidate
        if (self._neutral is None and self.max_wait is not None
                and t - self._t_first >= self.max_wait and self._best is not None):
            best = self._best
            self._neutral = NeutralPose(best.landmarks, best.t, best.item, best.motion,
                                        timed_out=True)
        return self._neutral

    def _evaluate(self) -> NeutralPose | None:
        """The current window as a candidate, or None when it is not full yet."""
        if len(self._buf) < self.min_frames or self._buf[-1][0] - self._buf[0][0] < self.window:
            return None
        stack = np.stack([p for _, p, _ in self._buf])  # (F, N, 2)
        mean = stack.mean(axis=0)
        iod = max(float(inter_ocular_distance(mean)), _MIN_IOD)
        dev = np.sqrt(((stack - mean) ** 2).sum(axis=-1).mean(axis=-1)) / iod  # (F,)
        k = int(np.argmin(dev))
        t, pts, item = self._buf[k]
        return NeutralPose(pts.copy(), t, item, float(dev.max()))


def _aligned_residuals(target: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """RMS residual after the best 2-D similarity (scale, rotation, shift) maps each of
    ``moving`` (..., P, 2) onto ``target`` (P, 2); returns shape (...)."""
    a = target[:, 0] + 1j * target[:, 1]
    b = moving[..., 0] + 1j * moving[..., 1]
    a = a - a.mean()
    b = b - b.mean(axis=-1, keepdims=True)
    denom = (np.abs(b) ** 2).sum(axis=-1)
    # least squares: a ~ k * b with complex k (scale and rotation, no reflection)
    k = (np.conj(b) * a).sum(axis=-1) / np.maximum(denom, 1e-12)
    res = a - k[..., None] * b
    return np.sqrt((np.abs(res) ** 2).mean(axis=-1))


def pose_distance(landmarks_a: np.ndarray, landmarks_b: np.ndarray, *,
                  points: Sequence[int] = POSE_POINTS) -> float:
    """How different two faces' poses are, in IODs of ``landmarks_a``.

    ``landmarks_b`` is aligned onto ``landmarks_a`` by the best similarity (so position, size
    and in-plane rotation do not count) on a stable subset of points (eye corners, nose
    ridge, mouth corners, face oval by default); the result is the RMS distance left between
    corresponding points. Head turns and nods (out-of-plane rotation) and changes of face
    shape remain. 0 for a copy moved, scaled or rotated in the image plane.
    """
    a = _check_landmarks(landmarks_a, "landmarks_a")
    b = _check_landmarks(landmarks_b, "landmarks_b")
    idx = list(points)
    iod = float(inter_ocular_distance(a))
    if not iod > _MIN_IOD:
        raise ValueError(f"landmarks_a: expected a face with separate eyes, got IOD {iod}")
    return float(_aligned_residuals(a[idx, :2], b[idx, :2])) / iod


def best_matching_frame(portrait_landmarks: np.ndarray,
                        driving_landmarks: Sequence[np.ndarray | None] | np.ndarray, *,
                        points: Sequence[int] = POSE_POINTS) -> int:
    """Index of the driving frame whose pose best matches the portrait's (smallest
    :func:`pose_distance`); frames given as None (no face) are skipped.

    ``driving_landmarks`` is a sequence of ``(N, 2|3)`` arrays or None, or one array
    ``(T, N, 2|3)``. Raises :class:`~calibrate.errors.NoFaceError` when no frame has a face.
    """
    a = _check_landmarks(portrait_landmarks, "portrait_landmarks")
    idx = list(points)
    iod = float(inter_ocular_distance(a))
    if not iod > _MIN_IOD:
        raise ValueError(f"portrait_landmarks: expected a face with separate eyes, got IOD {iod}")
    frames = list(driving_landmarks)
    valid = [i for i, lm in enumerate(frames) if lm is not None]
    if not valid:
        raise NoFaceError("no face in any driving frame", expected="at least one frame with a face",
                          got=f"{len(frames)} frames without one")
    stack = np.stack([_check_landmarks(frames[i], f"driving_landmarks[{i}]")[idx, :2]
                      for i in valid])
    dist = _aligned_residuals(a[idx, :2], stack)
    best = int(np.argmin(dist))
    if not math.isfinite(float(dist[best])):
        raise ValueError("driving_landmarks: expected finite coordinates, got NaN or inf")
    return valid[best]
