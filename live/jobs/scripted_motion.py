"""A built-in driving "performance" made of face-mesh landmark displacements (no video needed).

An :class:`Expression` is a handful of parameters (eye closure per eye, smile, mouth opening,
brow raise, head yaw / pitch / roll); :func:`apply_expression` turns one into displaced
MediaPipe face-mesh landmarks, starting from a neutral face (normally the portrait's own
landmarks, so driving face and portrait coincide at neutral). A timeline of keyframes
(:data:`DEFAULT_TIMELINE`, ~10 s: hold, blink, wink, smile, talk, brows up, nod, turn, tilt,
back to neutral) is interpolated with smooth easing by :func:`expression_at`, and
:class:`ScriptedMotion` yields it frame by frame as :class:`~live.packets.FaceCrop` packets
whose image is the portrait crop and whose landmarks are the scripted ones.

Displacements are built in a face-aligned frame (x along the eye line, y down the face, in
units of the inter-ocular distance, IOD) so they follow a tilted or scaled portrait; head
motion is a 3-D rotation about a pivot behind the face, projected orthographically.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from calibrate import landmarks as L
from live.packets import FaceCrop, check_rgb

# Index groups (numpy arrays for fancy indexing).
_R_UPPER = np.array(L.RIGHT_EYE_UPPER[1:-1])
_R_LOWER = np.array(L.RIGHT_EYE_LOWER[1:-1])
_L_UPPER = np.array(L.LEFT_EYE_UPPER[1:-1])
_L_LOWER = np.array(L.LEFT_EYE_LOWER[1:-1])
EYELIDS: frozenset[int] = frozenset(
    L.RIGHT_EYE_UPPER[1:-1] + L.RIGHT_EYE_LOWER[1:-1]
    + L.LEFT_EYE_UPPER[1:-1] + L.LEFT_EYE_LOWER[1:-1])
"""Lid points that close the eyes (both lids of both eyes, the eye corners excluded)."""
_BROWS = np.array(L.RIGHT_BROW + L.LEFT_BROW)
_OVAL = np.array(L.FACE_OVAL)
# Every point of the lips: their outer and inner lines, the rows between them and the points
# between the outer and inner corners (moved together, or the lips fold).
_LIP_CORNERS = (L.MOUTH_RIGHT, L.MOUTH_LEFT, L.LIPS_INNER_UPPER[0], L.LIPS_INNER_UPPER[-1],
                *L.LIPS_CORNER_MIDDLE[0], *L.LIPS_CORNER_MIDDLE[1])
_UPPER_LIP_INNER = np.array(L.LIPS_INNER_UPPER[1:-1])
_UPPER_LIP_OUTER = np.array(L.LIPS_OUTER_UPPER[1:-1])
_UPPER_LIP_MIDDLE = tuple(np.array(row) for row in L.LIPS_UPPER_MIDDLE)  # outer row first
_LOWER_LIP = np.array(sorted(set(L.LIPS_OUTER_LOWER[1:-1] + L.LIPS_INNER_LOWER[1:-1]
                                 + sum(L.LIPS_LOWER_MIDDLE, ()))))
_ALL_LIPS = frozenset(L.LIPS + sum(L.LIPS_UPPER_MIDDLE, ()) + sum(L.LIPS_LOWER_MIDDLE, ())
                      + sum(L.LIPS_CORNER_MIDDLE, ()))
# Points that the smile / jaw / brow fields must leave alone (they have their own rules).
_EYE_POINTS = frozenset(L.RIGHT_EYE + L.LEFT_EYE + L.IRISES)
_FIELD_EXCLUDED = _EYE_POINTS | _ALL_LIPS | frozenset(L.RIGHT_BROW + L.LEFT_BROW)

# Sizes of the expressions at full strength, in IOD units.
_CLOSED_LID_LINE = 0.25     # closed lids meet this far up from the lower lid (of the gap)
_SMILE_PULL = (0.10, -0.07)  # mouth-corner shift (outward, up)
_SMILE_REACH = 0.35         # gaussian radius of the smile around each corner
_SMILE_LOWER_LID = 0.2      # share of the lid gap the lower lid rises in a full smile
_JAW_DROP = 0.30            # lower lip / chin drop for a fully open mouth
_UPPER_LIP_LIFT = 0.04
_MAX_LIP_SQUEEZE = 0.7      # the upper lip's inner line rises at most this share of its height
_BROW_RAISE = 0.12
_BROW_REACH = 0.45          # lateral reach of the brow lift (gaussian radius)
_LID_WITH_BROW = 0.15       # share of the brow lift the upper lids take
_MAX_FOREHEAD_SQUEEZE = 0.3  # brows rise at most this share of the brow-to-hairline gap
_PIVOT_DEPTH = 1.0          # head pivot this far behind the nose tip


@dataclass(frozen=True, slots=True)
class Expression:
    """One facial state. Closures, smile, mouth and brows are 0..1; angles are degrees.

    ``blink_right`` / ``blink_left`` close the subject's right / left eye. ``yaw`` > 0 turns
    the face towards image right, ``pitch`` > 0 tips the chin down, ``roll`` > 0 tilts the
    head clockwise (as seen in the image).
    """

    blink_right: float = 0.0
    blink_left: float = 0.0
    smile: float = 0.0
    mouth_open: float = 0.0
    brows: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def lerp(self, other: Expression, a: float) -> Expression:
        return Expression(*(x + (y - x) * a for x, y in
                            zip(dataclasses.astuple(self), dataclasses.astuple(other),
                                strict=True)))

    @property
    def is_neutral(self) -> bool:
        return not any(dataclasses.astuple(self))


NEUTRAL = Expression()

Keyframe = tuple[float, Expression]
"""(time in seconds, the expression reached at that time)."""


def _build_default_timeline() -> tuple[Keyframe, ...]:
    keys: list[Keyframe] = [(0.0, NEUTRAL)]

    def then(dt: float, **fields: float) -> None:
        keys.append((keys[-1][0] + dt, Expression(**fields)))

    then(0.6)                                              # neutral hold
    then(0.10, blink_right=1, blink_left=1)                # blink both eyes
    then(0.06, blink_right=1, blink_left=1)
    then(0.16)
    then(0.35)
    then(0.14, blink_left=1)                               # wink (subject's left eye)
    then(0.3, blink_left=1)
    then(0.2)
    then(0.15)
    then(0.4, smile=1)                                     # smile
    then(0.5, smile=1)
    then(0.35)
    for dt, m in ((0.14, 0.6), (0.14, 0.15), (0.12, 0.45), (0.15, 0.05), (0.14, 0.75),
                  (0.14, 0.2), (0.12, 0.5), (0.14, 0.1), (0.15, 0.55), (0.2, 0.0)):
        then(dt, mouth_open=m)                             # talk
    then(0.15)
    then(0.35, brows=1)                                    # brows up
    then(0.35, brows=1)
    then(0.3)
    then(0.3, pitch=10)                                    # nod
    then(0.35, pitch=-7)
    then(0.3)
    then(0.45, yaw=18)                                     # turn one way...
    then(0.2, yaw=18)
    then(0.7, yaw=-18)                                     # ...and the other
    then(0.2, yaw=-18)
    then(0.45)
    then(0.4, roll=10)                                     # tilt
    then(0.5, roll=-10)
    then(0.4)
    then(0.5)                                              # neutral hold at the end
    return tuple(keys)


DEFAULT_TIMELINE: tuple[Keyframe, ...] = _build_default_timeline()
"""The demo's performance, ~10 s long, starting and ending on a neutral hold."""


def _ease(a: float) -> float:
    """Smootherstep: zero velocity and acceleration at both ends."""
    a = min(max(a, 0.0), 1.0)
    return a * a * a * (a * (a * 6.0 - 15.0) + 10.0)


def timeline_duration(timeline: Sequence[Keyframe] = DEFAULT_TIMELINE) -> float:
    return float(timeline[-1][0])


def expression_at(t: float, timeline: Sequence[Keyframe] = DEFAULT_TIMELINE) -> Expression:
    """The expression at time ``t`` (seconds), eased between the surrounding keyframes;
    before the first / after the last keyframe it holds that keyframe."""
    if not timeline:
        raise ValueError("timeline: expected at least one keyframe, got none")
    if t <= timeline[0][0]:
        return timeline[0][1]
    for (t0, e0), (t1, e1) in itertools.pairwise(timeline):
        if t < t1:
            return e0.lerp(e1, _ease((t - t0) / (t1 - t0))) if t1 > t0 else e1
    return timeline[-1][1]


# ------------------------------------------------------------------------------ geometry


@dataclass(frozen=True, slots=True)
class _FaceFrame:
    """A face-aligned 2-D frame: x along the eye line (image right for a frontal face),
    y down the face, in IOD units, origin at ``origin``."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    iod: float

    def local(self, pts: np.ndarray) -> np.ndarray:
        d = pts[..., :2] - self.origin
        return np.stack([d @ self.ex, d @ self.ey], axis=-1) / self.iod

    def to_image(self, d_local: np.ndarray) -> np.ndarray:
        """Local displacements (..., 2) -> image displacements (..., 3) (z unchanged)."""
        d = (d_local[..., :1] * self.ex + d_local[..., 1:2] * self.ey) * self.iod
        return np.concatenate([d, np.zeros_like(d[..., :1])], axis=-1)


def _face_frame(neutral: np.ndarray, origin: np.ndarray) -> _FaceFrame:
    iod = float(L.inter_ocular_distance(neutral))
    if not iod > 1e-6:
        raise ValueError("landmarks: the outer eye corners coincide; expected a real face")
    ex, ey = L.face_axes(neutral)
    return _FaceFrame(origin=np.asarray(origin[:2], np.float64), ex=ex, ey=ey, iod=iod)


def _close_eye(out: np.ndarray, neutral: np.ndarray, upper: np.ndarray, lower: np.ndarray,
               closure: float, lower_rise: float) -> None:
    up, lo = neutral[upper], neutral[lower]
    meet = lo + _CLOSED_LID_LINE * (up - lo)
    if closure:
        out[upper] += closure * (meet - up)
    lo_target = lo + min(1.0, closure + lower_rise) * (meet - lo)
    out[lower] += lo_target - lo


def _field_points(n: int) -> np.ndarray:
    return np.array([i for i in range(n) if i not in _FIELD_EXCLUDED])


def _smile(out: np.ndarray, neutral: np.ndarray, amount: float) -> None:
    corners = neutral[[L.MOUTH_RIGHT, L.MOUTH_LEFT]]
    frame = _face_frame(neutral, corners.mean(axis=0))
    idx = np.concatenate([_field_points(len(neutral)), np.array(sorted(_ALL_LIPS))])
    idx = np.unique(idx)
    local = frame.local(neutral[idx])
    c_local = frame.local(corners)
    disp = np.zeros_like(local)
    for side, c in zip((-1.0, 1.0), c_local, strict=True):
        g = np.exp(-np.sum((local - c) ** 2, axis=1) / _SMILE_REACH ** 2)[:, None]
        disp += g * np.array([side * _SMILE_PULL[0], _SMILE_PULL[1]])
    out[idx] += amount * frame.to_image(disp)
    # A real smile pushes the cheeks up: the lower lids rise a little (see _close_eye).


def _open_mouth(out: np.ndarray, neutral: np.ndarray, amount: float) -> None:
    corners = neutral[[L.MOUTH_RIGHT, L.MOUTH_LEFT]]
    frame = _face_frame(neutral, corners.mean(axis=0))
    half_width = float(np.linalg.norm(frame.local(corners)[1] - frame.local(corners)[0])) / 2
    chin_y = max(float(frame.local(neutral[L.CHIN])[1]), 0.2)
    drop = _JAW_DROP * amount

    def lateral(pts: np.ndarray) -> np.ndarray:
        return np.clip(frame.local(pts)[:, 0] / max(half_width, 1e-6), -1.0, 1.0)

    u = lateral(neutral[_LOWER_LIP])
    out[_LOWER_LIP] += frame.to_image(np.stack([0 * u, drop * (1 - 0.5 * u * u)], axis=1))
    u = lateral(neutral[_UPPER_LIP_INNER])
    # The inner line rises, the outer one stays: the lip between them is squeezed evenly
    # (each row by its share of the way from the outer line), never by more than
    # _MAX_LIP_SQUEEZE of its height (a thin lip would turn over).
    outer_y = frame.local(neutral[_UPPER_LIP_OUTER])[:, 1]
    height = np.maximum(frame.local(neutral[_UPPER_LIP_INNER])[:, 1] - outer_y, 0.0)
    lift = np.minimum(_UPPER_LIP_LIFT * amount * (1 - u * u), _MAX_LIP_SQUEEZE * height)
    for row in _UPPER_LIP_MIDDLE:
        share = np.clip((frame.local(neutral[row])[:, 1] - outer_y) / np.maximum(height, 1e-9),
                        0.0, 1.0)
        out[row] += frame.to_image(np.stack([0 * u, -share * lift], axis=1))
    out[_UPPER_LIP_INNER] += frame.to_image(np.stack([0 * u, -lift], axis=1))
    corner_idx = np.array(_LIP_CORNERS)
    u = np.sign(frame.local(neutral[corner_idx])[:, 0])
    out[corner_idx] += frame.to_image(np.stack([-0.03 * amount * u, 0.3 * drop + 0 * u], axis=1))
    # The jaw: skin and face outline below the mouth follow the lower lip, less at the sides.
    idx = _field_points(len(neutral))
    local = frame.local(neutral[idx])
    v = np.clip(local[:, 1] / (0.35 * chin_y), 0.0, 1.0)
    v = v * v * (3 - 2 * v)
    side = np.clip(1 - 0.75 * (local[:, 0] / (1.6 * half_width)) ** 2, 0.2, 1.0)
    w = v * side
    out[idx] += frame.to_image(np.stack([0 * w, drop * w], axis=1))


def _raise_brows(out: np.ndarray, neutral: np.ndarray, amount: float) -> None:
    eyes = neutral[[L.RIGHT_EYE_OUTER, L.LEFT_EYE_OUTER]]
    frame = _face_frame(neutral, eyes.mean(axis=0))
    brows = frame.local(neutral[_BROWS])
    top_y = float(frame.local(neutral[_OVAL])[:, 1].min())  # the hairline, roughly
    # A low hairline leaves little forehead: never squeeze it by more than a third.
    room = float(brows[:, 1].min()) - top_y
    rise = min(_BROW_RAISE, _MAX_FOREHEAD_SQUEEZE * max(room, 0.0)) * amount
    out[_BROWS] += frame.to_image(np.array([0.0, -rise]))
    # The upper lids open a little; the skin between lid and brow stretches evenly (no
    # fold right above the lashes) and the forehead is squeezed evenly up to the hairline.
    out[np.concatenate([_R_UPPER, _L_UPPER])] += frame.to_image(
        np.array([0.0, -_LID_WITH_BROW * rise]))
    idx = _field_points(len(neutral))
    local = frame.local(neutral[idx])
    weight = np.zeros(len(idx))
    for lid_mid, brow in ((L.RIGHT_EYE_LID_MID[0], L.RIGHT_BROW_LOWER),
                          (L.LEFT_EYE_LID_MID[0], L.LEFT_BROW_LOWER)):
        lid_y = float(frame.local(neutral[lid_mid])[1])
        brow_local = frame.local(neutral[list(brow)])
        brow_x, brow_y = float(brow_local[:, 0].mean()), float(brow_local[:, 1].mean())
        y = local[:, 1]
        below = np.clip((lid_y - y) / max(lid_y - brow_y, 1e-3), 0.0, 1.0)
        above = np.clip((y - top_y) / max(brow_y - top_y, 1e-3), 0.0, 1.0)
        vertical = np.where(y >= brow_y, _LID_WITH_BROW + (1 - _LID_WITH_BROW) * below, above)
        vertical = np.where(y >= lid_y, 0.0, vertical)
        lateral = np.exp(-(((local[:, 0] - brow_x) / _BROW_REACH) ** 2))
        weight = np.maximum(weight, vertical * lateral)
    weight[np.isin(idx, _OVAL)] = 0.0  # the hairline stays
    out[idx] += frame.to_image(np.stack([np.zeros_like(weight), -rise * weight], axis=1))


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation in image coordinates (x right, y down, z away from the camera)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def head_pivot(neutral: np.ndarray) -> np.ndarray:
    """The point the head turns about: the face-oval centre, one IOD behind the nose tip."""
    pts = np.asarray(neutral, np.float64)
    iod = float(L.inter_ocular_distance(pts))
    centre = pts[list(L.FACE_OVAL), :2].mean(axis=0)
    return np.array([centre[0], centre[1], pts[L.NOSE_TIP, 2] + _PIVOT_DEPTH * iod])


def apply_expression(neutral: np.ndarray, expr: Expression) -> np.ndarray:
    """Landmarks of ``neutral`` (N>=468, 3) showing ``expr``; float32, same shape.

    The neutral expression returns the input values unchanged.
    """
    pts = np.asarray(neutral, np.float64)
    if pts.ndim != 2 or pts.shape[0] < L.NUM_LANDMARKS or pts.shape[1] != 3:
        raise ValueError(f"landmarks: expected face-mesh points of shape (N>="
                         f"{L.NUM_LANDMARKS}, 3), got {pts.shape}")
    out = pts.copy()
    if expr.blink_right or expr.smile:
        _close_eye(out, pts, _R_UPPER, _R_LOWER, expr.blink_right,
                   _SMILE_LOWER_LID * expr.smile)
    if expr.blink_left or expr.smile:
        _close_eye(out, pts, _L_UPPER, _L_LOWER, expr.blink_left,
                   _SMILE_LOWER_LID * expr.smile)
    if expr.smile:
        _smile(out, pts, expr.smile)
    if expr.mouth_open:
        _open_mouth(out, pts, expr.mouth_open)
    if expr.brows:
        _raise_brows(out, pts, expr.brows)
    if expr.yaw or expr.pitch or expr.roll:
        pivot = head_pivot(pts)
        out = (out - pivot) @ _rotation(expr.yaw, expr.pitch, expr.roll).T + pivot
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- the stream


class ScriptedMotion:
    """The scripted performance as driving :class:`FaceCrop` packets, one per output frame.

    ``portrait`` is the (square) portrait crop and ``neutral`` its face-mesh landmarks in
    crop pixels; each packet carries the portrait crop as its image and the scripted
    landmarks. The timeline is stretched or squeezed to last ``seconds`` (default: its own
    length); frame 0 is the neutral face.
    """

    def __init__(self, portrait: np.ndarray, neutral: np.ndarray, *, fps: float = 30.0,
                 seconds: float | None = None,
                 timeline: Sequence[Keyframe] = DEFAULT_TIMELINE) -> None:
        check_rgb(portrait, "portrait")
        if fps <= 0:
            raise ValueError(f"fps: expected > 0, got {fps}")
        self.portrait = portrait
        self.neutral = np.asarray(neutral, np.float32)
        apply_expression(self.neutral, NEUTRAL)  # validates the shape
        self.fps = float(fps)
        self.timeline = tuple(timeline)
        natural = timeline_duration(self.timeline)
        self.seconds = float(seconds) if seconds is not None else natural
        if self.seconds <= 0:
            raise ValueError(f"seconds: expected > 0, got {seconds}")
        self.frame_count = max(1, round(self.seconds * self.fps))
        self._speed = natural / self.seconds if natural > 0 else 1.0
        self._identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def __len__(self) -> int:
        return self.frame_count

    def expression(self, index: int) -> Expression:
        return expression_at(index / self.fps * self._speed, self.timeline)

    def face(self, index: int) -> FaceCrop:
        """The driving face of output frame ``index``."""
        return FaceCrop(image=self.portrait, crop_to_frame=self._identity, frame_index=index,
                        t_capture=time.perf_counter(),
                        landmarks=apply_expression(self.neutral, self.expression(index)))

    def __iter__(self) -> Iterator[FaceCrop]:
        for i in range(self.frame_count):
            yield self.face(i)
