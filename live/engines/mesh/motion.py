"""Relative motion for the mesh engine, as pure numpy functions.

The driving face's motion is measured against its neutral pose and split in two:

- the head's rigid motion, a similarity (scale, in-plane rotation, translation) fitted on
  stable points (:data:`~live.engines.mesh.topology.STABLE_POINTS`);
- the expression: what is left once the head motion is undone, in the neutral head frame.

A second similarity, fitted between the driving neutral pose and the portrait, carries both
into the portrait's frame: the expression is added to the portrait's landmarks (lips with a
gain), the head motion is applied around the portrait's own head. Eyelids follow the driving
eyes' *opening ratio* rather than a displacement, so a blink closes any portrait's eye fully
and never folds the lid below the lower one (the two eyes of a blink close together, where
the face mesh reads one of them less closed); the mouth never closes past the portrait's own
lip line; the irises keep their place between the lids and follow the driving gaze.

Coordinates are image pixels (x right, y down); affines are 2x3 float64 arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibrate import landmarks as lm
from live.engines.mesh.topology import STABLE_POINTS, FaceChains, MeshLayout, face_chains


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (uniform scale, rotation, translation) mapping ``src`` to
    ``dst`` (both (N, 2), N >= 2); returns a 2x3 matrix."""
    p = np.asarray(src, dtype=np.float64)[:, :2]
    q = np.asarray(dst, dtype=np.float64)[:, :2]
    if p.shape != q.shape or p.shape[0] < 2:
        raise ValueError(
            f"expected two (N>=2, 2) point sets of one shape, got {p.shape}, {q.shape}")
    pc = p.mean(axis=0)
    p0 = p - pc
    return fit_similarity_from(pc, p0, float(np.sum(p0 * p0)), q)


def fit_similarity_from(pc: np.ndarray, p0: np.ndarray, norm: float,
                        q: np.ndarray) -> np.ndarray:
    """:func:`fit_similarity` to ``q`` ((N, 2) float64) from a source given as its centre
    ``pc``, its centred points ``p0`` and their squared norm: a source fitted on every frame
    (a portrait's, a neutral pose's) is prepared once."""
    qc = q.mean(axis=0)
    q0 = q - qc
    if norm <= 1e-12:
        return np.array([[1.0, 0.0, qc[0] - pc[0]], [0.0, 1.0, qc[1] - pc[1]]])
    a = float(np.sum(p0 * q0)) / norm
    b = float(np.sum(p0[:, 0] * q0[:, 1] - p0[:, 1] * q0[:, 0])) / norm
    lin = np.array([[a, -b], [b, a]])
    return np.concatenate([lin, (qc - lin @ pc)[:, None]], axis=1)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2+) points through a 2x3 affine; returns (N, 2) float64."""
    p = np.asarray(pts, dtype=np.float64)[:, :2]
    return np.asarray(p @ m[:, :2].T + m[:, 2])


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine."""
    lin = np.linalg.inv(m[:, :2])
    return np.concatenate([lin, (-lin @ m[:, 2])[:, None]], axis=1)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``x -> outer(inner(x))``."""
    lin = outer[:, :2] @ inner[:, :2]
    return np.concatenate([lin, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def affine_scale(m: np.ndarray) -> float:
    """Uniform scale of a similarity (sqrt of the determinant's magnitude)."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def with_scale(m: np.ndarray, scale: float, src_anchor: np.ndarray) -> np.ndarray:
    """The similarity ``m`` with its scale replaced by ``scale``, still mapping ``src_anchor``
    (2,) where ``m`` maps it."""
    lin = m[:, :2] * (scale / affine_scale(m))
    anchor = np.asarray(src_anchor, dtype=np.float64)
    target = m[:, :2] @ anchor + m[:, 2]
    return np.concatenate([lin, (target - lin @ anchor)[:, None]], axis=1)


@dataclass(frozen=True)
class MotionOptions:
    """How driving motion is carried over (one set of defaults: the engine's config)."""

    lip_gain: float = 1.0
    """Gain on the lips' expression motion (face-mesh on a warped face under-reads lips)."""
    gaze_gain: float = 1.0
    """Gain on the iris motion relative to the eye."""
    blink_close_at: float = 0.2
    """Driving eye-opening ratio (of its neutral) at and below which the portrait's eye is
    fully closed; the face mesh rarely reports a closed eye as fully closed."""
    max_eye_open: float = 1.6
    """Largest eye-opening ratio passed on (wide-eyed surprise)."""
    min_gap_fraction: float = 0.2
    """Below the mouth, the smallest gap between successive points down the face, as a
    fraction of the portrait's (see :func:`keep_order`)."""
    jaw_follow: float = 0.9
    """How far the chin drops with the lower lip when the mouth opens (0: only as far as the
    face mesh says, which reads about half of a wide-open jaw's drop; 1: as far as the lip)."""
    rotation_3d: bool = True
    """Turn the portrait's own 3-D face (MediaPipe's z) by the driving head's 3-D rotation,
    so yaw and pitch foreshorten its far side; False: a 2-D similarity only."""


@dataclass(frozen=True)
class MappedMotion:
    """Where the portrait's landmarks go, and the head's motion in the portrait's frame."""

    points: np.ndarray
    """(478, 3) float64: x, y in portrait pixels, z for depth order."""
    head: np.ndarray
    """2x3 similarity: the driving head's rigid motion carried into portrait pixels."""
    to_portrait: np.ndarray
    """2x3 similarity: driving-frame pixels -> portrait pixels at the neutral pose."""
    turn_deg: float = 0.0
    """How far the driving head has turned from its neutral pose (3-D angle, degrees)."""


def fit_rotation_3d(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares rotation and uniform scale (Umeyama) with ``dst - mean(dst) ~ s R (src -
    mean(src))`` for two (N, 3) point sets; returns (R (3, 3), s)."""
    x = np.asarray(src, dtype=np.float64)[:, :3]
    x = x - x.mean(axis=0)
    return _fit_rotation_3d(x, float(np.sum(x * x)), dst)


def _fit_rotation_3d(x: np.ndarray, norm: float, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`fit_rotation_3d` from a source given as its centred points ``x`` and their
    squared norm (fixed sources: computed once)."""
    y = np.asarray(dst, dtype=np.float64)[:, :3]
    y = y - y.mean(axis=0)
    if norm <= 1e-12:
        return np.eye(3), 1.0
    u, sv, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    fix = np.diag([1.0, 1.0, d])
    rot = vt.T @ fix @ u.T
    scale = float(np.sum(sv * np.diag(fix))) / norm
    return rot, scale


_Eye = tuple[tuple[int, ...], tuple[int, ...], int, tuple[int, ...]]
"""An eye's upper and lower lid, iris centre and iris ring (landmark ids)."""
_EYES: tuple[_Eye, ...] = (
    (lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, lm.RIGHT_IRIS_CENTER, lm.RIGHT_IRIS),
    (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, lm.LEFT_IRIS_CENTER, lm.LEFT_IRIS),
)


_IDS: dict[tuple[int, ...], np.ndarray] = {}


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 at and below ``e0``, 1 at and above ``e1``, a smooth S between (float32, as
    ``x``'s shape)."""
    t = np.clip((x - e0) * np.float32(1.0 / (e1 - e0)), 0.0, 1.0)
    return np.asarray(t * t * (3.0 - 2.0 * t), dtype=np.float32)


def _ids(ids: tuple[int, ...]) -> np.ndarray:
    """``ids`` as an index array, made once (faster to index with than a list)."""
    arr = _IDS.get(ids)
    if arr is None:
        arr = _IDS[ids] = np.array(ids, np.intp)
    return arr


def eye_opening(pts: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...],
                down: np.ndarray) -> float:
    """Opening of one eye: summed lid gaps along ``down`` over the five middle lid pairs."""
    up = pts[_ids(upper[2:-2]), :2]
    lo = pts[_ids(lower[2:-2]), :2]
    return float(np.sum((lo - up) @ down))


class _EyeCoords:
    """Coordinates within one eye: ``u`` from the outer (0) to the inner corner (1), ``r``
    from the upper lid (0) to the lower lid (1) at that ``u``."""

    def __init__(self, pts: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...],
                 down: np.ndarray) -> None:
        self.origin = pts[upper[0], :2]
        axis = pts[upper[-1], :2] - self.origin
        self.width = max(math.sqrt(axis.dot(axis)), 1e-9)  # np.linalg.norm, less overhead
        self.axis = axis / self.width
        self.down = down
        # (u, v) are coordinates in the (possibly skewed) basis (axis, down), in eye widths.
        det = self.axis[0] * down[1] - self.axis[1] * down[0]
        det = det if abs(det) > 1e-9 else 1e-9
        self._to_uv = np.array([[down[1], -down[0]], [-self.axis[1], self.axis[0]]]) \
            / (det * self.width)
        u_up, v_up = self._uv(pts[_ids(upper), :2])
        u_lo, v_lo = self._uv(pts[_ids(lower), :2])
        o_up, o_lo = np.argsort(u_up), np.argsort(u_lo)
        self.u_up, self.v_up = u_up[o_up], v_up[o_up]
        self.u_lo, self.v_lo = u_lo[o_lo], v_lo[o_lo]

    def _uv(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uv = (p - self.origin) @ self._to_uv.T
        return uv[:, 0], uv[:, 1]

    def lids_at(self, u: float) -> tuple[float, float]:
        return (float(np.interp(u, self.u_up, self.v_up)),
                float(np.interp(u, self.u_lo, self.v_lo)))

    def to_eye(self, p: np.ndarray) -> tuple[float, float]:
        u_arr, v_arr = self._uv(p[None, :2])
        u, v = float(u_arr[0]), float(v_arr[0])
        top, bottom = self.lids_at(u)
        gap = bottom - top
        return u, (v - top) / gap if gap > 1e-6 else 0.5

    def to_image(self, u: float, r: float) -> np.ndarray:
        top, bottom = self.lids_at(u)
        v = top + r * (bottom - top)
        return np.asarray(self.origin + self.width * (u * self.axis + v * self.down))


_BROW_ZONES = (
    (lm.RIGHT_EYE_UPPER, lm.RIGHT_LID_RING_NEAR + lm.RIGHT_LID_RING_FAR + lm.RIGHT_BROW),
    (lm.LEFT_EYE_UPPER, lm.LEFT_LID_RING_NEAR + lm.LEFT_LID_RING_FAR + lm.LEFT_BROW),
)
_LID_CHAINS = tuple(np.array(chain) for chain in (
    *zip(lm.RIGHT_EYE_UPPER[1:-1], lm.RIGHT_LID_RING_NEAR, lm.RIGHT_LID_RING_FAR, strict=True),
    *zip(lm.LEFT_EYE_UPPER[1:-1], lm.LEFT_LID_RING_NEAR, lm.LEFT_LID_RING_FAR, strict=True)))
"""Upwards from each upper lid point through the two rows above it (:func:`keep_order`): a
lid that opens wide pushes the skin above it up instead of folding over it."""


def brow_band(points: np.ndarray, upper: tuple[int, ...], zone: tuple[int, ...],
              down: np.ndarray, *, above: str = "corners") -> np.ndarray:
    """Heights (pixels, along ``-down``) of the ``zone`` points above the line through the
    eye's corners (``upper[0]``, ``upper[-1]``), or with ``above="lid"`` above the upper
    lid's middle point."""
    pts = np.asarray(points, dtype=np.float64)
    ref = pts[[upper[0], upper[-1]], :2].mean(axis=0) if above == "corners" \
        else pts[upper[len(upper) // 2], :2]
    return np.asarray((ref - pts[list(zone), :2]) @ down)


BROW_BAND_SAME = 0.85
"""A portrait's brow band at least this share of the driver's (at the portrait's scale)
takes the driver's displacements as they are (:func:`hold_brow_bands`): the face mesh's
reading of one face in a photo and in a video differs by a few percent."""


def hold_brow_bands(q: np.ndarray, portrait: np.ndarray, neutral: np.ndarray, scale: float,
                    p_down: np.ndarray, d_down: np.ndarray) -> None:
    """In place: the skin between each upper lid and its brow stretches (or shrinks) in
    proportion, as the driver's does, not by the driver's pixels. ``q`` holds the portrait's
    points moved by the driver's displacements (scaled by ``scale``, driver -> portrait
    pixels); where the portrait's band (the mean height of the rows above the lid and of the
    brow over the lid's middle) is clearly narrower than the driver's (below
    :data:`BROW_BAND_SAME` of it), the change of those rows' heights over the eye's corners is
    scaled down by the ratio of the two bands (over :data:`BROW_BAND_SAME`). A driver raising
    its brows by a third of a wide band then raises a band half as wide by about a third of
    its own, not by two thirds: its lash line and lid crease are not drawn out into a grey
    band up to the brow. A blink (the lid alone moving) changes nothing here."""
    _hold_brow(q, _brow_rest(portrait, neutral, scale, p_down, d_down), p_down)


_BrowRest = tuple[tuple[tuple[int, ...], tuple[int, ...], float, np.ndarray], ...]


def _brow_rest(portrait: np.ndarray, neutral: np.ndarray, scale: float, p_down: np.ndarray,
               d_down: np.ndarray) -> _BrowRest:
    """The part of :func:`hold_brow_bands` that depends on the portrait and the neutral pose
    alone: per eye whose band is narrower, its lid, zone, share kept and the portrait's band
    heights over the eye's corners."""
    rest = []
    for upper, zone in _BROW_ZONES:
        band_p = float(brow_band(portrait, upper, zone, p_down, above="lid").mean())
        band_d = scale * float(brow_band(neutral, upper, zone, d_down, above="lid").mean())
        if band_p <= 0.0 or band_p >= BROW_BAND_SAME * band_d:
            continue
        keep = band_p / (BROW_BAND_SAME * band_d)  # 1 where the bands count as the same
        rest.append((upper, zone, keep, brow_band(portrait, upper, zone, p_down)))
    return tuple(rest)


def _hold_brow(q: np.ndarray, rest: _BrowRest, p_down: np.ndarray) -> None:
    for upper, zone, keep, own in rest:
        # the change is measured from the eye's corners: a blink (the lid alone moving) is
        # no change of the band
        change = brow_band(q, upper, zone, p_down) - own
        q[list(zone)] += ((1.0 - keep) * change)[:, None] * p_down


CHIN_RATIO_RANGE = (0.25, 4.0)
"""How far one band of skin below the lower lip may stretch or shrink relative to its
neutral height when the bands are shared out (:func:`share_chin_bands`)."""


CHIN_SPACING_SAME = 0.45
"""Chains whose spacing below the lower lip differs from the driver's by up to this (the
largest absolute log ratio of one band's share of the chain) keep the driver's
displacements (:func:`share_chin_bands`): one face's readings in a photo and in a video
differ by up to ~0.4 (tps_driving's frame 0); lp_s2's full lower lip over a thin band
differs from the fixture drivers' by 1.1-1.2 ..."""
CHIN_SPACING_FADE = 0.25
"""... and the sharing fades in over this much more."""


def share_chin_bands(q: np.ndarray, portrait: np.ndarray, neutral: np.ndarray,
                     current: np.ndarray, chains: tuple[np.ndarray, ...], p_down: np.ndarray,
                     d_down: np.ndarray) -> None:
    """In place: the skin from the lower lip's outer line down to the face outline is shared
    out between its bands as the driver's is, not by the driver's pixels. Along each of the
    ``chains`` (:class:`~live.engines.mesh.topology.FaceChains` ``down``), from its point on
    the outer lower lip to its end, the points keep their ends and are spaced so that each
    band has the portrait's own height times the driver's stretch of the same band
    (``neutral`` -> ``current``, head motion undone), scaled to the length the driver's
    displacements gave (``q``). A portrait with a thin band under a full lower lip (its
    shadow) then does not draw that band out to the driver's pixels when the driver presses
    its lips up: it stretches as the driver's does, and the rest of the chin takes the
    remainder. Only where the portrait's spacing clearly differs from the driver's
    (:data:`CHIN_SPACING_SAME`, :data:`CHIN_SPACING_FADE`). A point on several chains takes
    the mean of their spacings. With the portrait's own face driving (self-reconstruction)
    the spacing is the displacements'."""
    rest = _chin_rest(portrait, neutral, len(current), chains, p_down, d_down)
    if rest is not None:
        _share_chin(q, current, rest, p_down, d_down)


_ChinRest = tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _chin_rest(portrait: np.ndarray, neutral: np.ndarray, n_current: int,
               chains: tuple[np.ndarray, ...], p_down: np.ndarray, d_down: np.ndarray
               ) -> _ChinRest | None:
    """The part of :func:`share_chin_bands` that depends on the portrait and the neutral pose
    alone: the chains' segments, where their links start, the portrait's and the neutral
    band heights and each segment's weight; None where nothing is shared."""
    segs = _derived(chains, "chin segments", _chin_segments)
    if not segs or max(int(seg.max()) for seg in segs) >= min(len(neutral), n_current):
        return None
    a, b, starts = _derived(segs, "links", _links)
    g_p = (np.asarray(portrait, np.float64)[b, :2] - np.asarray(portrait, np.float64)[a, :2]) \
        @ p_down
    g_0 = (np.asarray(neutral, np.float64)[b, :2] - np.asarray(neutral, np.float64)[a, :2]) \
        @ d_down
    if np.any(g_p <= 1e-6) or np.any(g_0 <= 1e-6):  # a chain that turns back: not shared
        ok = np.minimum.reduceat(np.minimum(g_p, g_0), starts) > 1e-6
    else:
        ok = np.ones(len(segs), bool)
    g_p, g_0 = np.maximum(g_p, 1e-6), np.maximum(g_0, 1e-6)
    # how far the portrait's spacing differs from the driver's (worst band, log of the ratio
    # of their shares of the chain); the face mesh's own readings of one face differ by up
    # to ~0.4
    share_p = g_p / np.repeat(np.add.reduceat(g_p, starts), np.diff([*starts, len(a)]))
    share_0 = g_0 / np.repeat(np.add.reduceat(g_0, starts), np.diff([*starts, len(a)]))
    differ = np.maximum.reduceat(np.abs(np.log(share_p / share_0)), starts)
    weight = np.clip((differ - CHIN_SPACING_SAME) / CHIN_SPACING_FADE, 0.0, 1.0) * ok
    if not np.any(weight > 0.0):
        return None
    return segs, starts, g_p, g_0, weight


def _share_chin(q: np.ndarray, current: np.ndarray, rest: _ChinRest, p_down: np.ndarray,
                d_down: np.ndarray) -> None:
    segs, starts, g_p, g_0, weight = rest
    lo, hi = CHIN_RATIO_RANGE
    cur = np.asarray(current, np.float64)
    total = np.zeros(len(q))
    count = np.zeros(len(q))
    for i in np.nonzero(weight > 0.0)[0]:
        seg = segs[i]
        at = slice(starts[i], starts[i] + len(seg) - 1)
        want = g_p[at] * np.clip(np.diff(cur[seg, :2] @ d_down) / g_0[at], lo, hi)
        v = q[seg] @ p_down
        length = float(v[-1] - v[0])
        if length <= 0.0:
            continue
        spaced = v[0] + np.concatenate([[0.0], np.cumsum(want)]) * (length / float(want.sum()))
        np.add.at(total, seg[1:-1], weight[i] * (spaced[1:-1] - v[1:-1]))
        np.add.at(count, seg[1:-1], 1.0)
    moved = count > 0
    if moved.any():
        q[moved] += (total[moved] / count[moved])[:, None] * p_down


_DERIVED: dict[tuple[int, str], tuple[tuple[np.ndarray, ...], Any]] = {}


def _derived(chains: tuple[np.ndarray, ...], what: str,
             build: Callable[[tuple[np.ndarray, ...]], Any]) -> Any:
    """``build(chains)``, kept for the chains' life (a portrait's chains, and the lid
    chains, are used on every frame); ``what`` names the derived value."""
    key = (id(chains), what)
    hit = _DERIVED.get(key)
    if hit is not None and hit[0] is chains:
        return hit[1]
    value = build(chains)
    if len(_DERIVED) > 128:
        _DERIVED.clear()
    _DERIVED[key] = (chains, value)
    return value


def _links(chains: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of successive points of ``chains`` as two index arrays (from, to), and
    where each chain's pairs start."""
    if not chains:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate([c[:-1] for c in chains])
    b = np.concatenate([c[1:] for c in chains])
    starts = np.cumsum([0] + [len(c) - 1 for c in chains[:-1]])
    return a, b, starts


def _chin_segments(chains: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The part of each chain from its last point on the outer lower lip on (chains without
    one, or with under three points from there, left out)."""
    outer = frozenset(lm.LIPS_OUTER_LOWER)
    segs = []
    for chain in chains:
        on_lip = [k for k, v in enumerate(chain.tolist()) if v in outer]
        if on_lip and len(chain) - on_lip[-1] >= 3:
            segs.append(np.asarray(chain[on_lip[-1]:]))
    return tuple(segs)


def portrait_motion(portrait: np.ndarray, neutral: np.ndarray, current: np.ndarray, *,
                    scale: float | None = None,
                    options: MotionOptions | None = None,
                    chains: FaceChains | None = None) -> MappedMotion:
    """Carry the driving motion ``neutral -> current`` onto the ``portrait`` landmarks.

    ``portrait`` is (478, 3) in portrait pixels; ``neutral`` and ``current`` are (N, 3) with
    N = 468 or 478 in the driving frame's pixels (z in the same scale). ``scale`` None scales
    the motion by the faces' size ratio (adapt scale); a number uses that pixel ratio instead.
    ``chains`` are the portrait's :func:`~live.engines.mesh.topology.face_chains` (computed
    when None). With ``current == neutral`` the result is the portrait's landmarks.
    """
    opts = options or MotionOptions()
    P = np.asarray(portrait, dtype=np.float64)
    D0 = np.asarray(neutral, dtype=np.float64)
    D = np.asarray(current, dtype=np.float64)
    if P.shape[0] != lm.NUM_LANDMARKS_WITH_IRISES or D0.shape != D.shape \
            or D.shape[0] < lm.NUM_LANDMARKS or D.shape[1] != 3 or P.shape[1] != 3:
        raise ValueError(
            "expected portrait (478, 3) and neutral/current (N, 3) of one shape with N >= 468, "
            f"got {P.shape}, {D0.shape}, {D.shape}"
        )
    rest = _motion_rest(P, D0, scale, opts, chains)
    to_portrait = rest.to_portrait
    D_stable = D[_STABLE]
    head_d = fit_similarity_from(rest.d_centre, rest.d_centred, rest.d_norm,
                             np.asarray(D_stable, dtype=np.float64)[:, :2])
    head_p = compose(to_portrait, compose(head_d, rest.from_portrait))

    # Expression: the current face with the head motion undone, minus the neutral face.
    rot, s3 = _fit_rotation_3d(rest.d_centred_3d, rest.d_norm_3d, D_stable)
    turn = float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))
    c1 = D_stable.mean(axis=0)
    if opts.rotation_3d:
        aligned = ((D - c1) @ rot / s3 + rest.c0)[:, :2]
    else:
        aligned = apply_affine(invert_affine(head_d), D)
    expr = aligned - D0[:, :2]
    expr[_LIPS] *= opts.lip_gain
    q = P[:, :2].copy()
    n = min(D.shape[0], P.shape[0])
    q[:n] += expr[:n] @ to_portrait[:, :2].T
    p_down, d_down = rest.p_down, rest.d_down
    if opts.jaw_follow > 0:
        # Only a mouth opening wide: in speech the lower lip moves on its own and the face
        # mesh's chin is right.
        drop = float((aligned[lm.LOWER_LIP_BOTTOM] - D0[lm.LOWER_LIP_BOTTOM, :2])
                     @ rest.drop_along)
        wide = drop / rest.iod
        share = float(np.clip((wide - JAW_WIDE_FROM) / (JAW_WIDE_FULL - JAW_WIDE_FROM), 0, 1))
        drop_jaw(q, P, opts.jaw_follow * share * drop)

    ratios = link_blinks([_eye_ratio(aligned, eye, eye_rest, opts, d_down)
                          for eye, eye_rest in zip(_EYES, rest.eyes, strict=True)])
    for eye, eye_rest, ratio in zip(_EYES, rest.eyes, ratios, strict=True):
        _move_eye(q, aligned, eye, eye_rest, opts, d_down, p_down, ratio,
                  has_iris=D.shape[0] >= lm.NUM_LANDMARKS_WITH_IRISES)

    _hold_brow(q, rest.brow, p_down)
    _keep_order(q, _LID_CHAINS, rest.up, rest.lid_order)

    # The mouth does not close past the portrait's own inner lip line.
    gap = (q[_LO_M] - q[_UP_M]) @ p_down
    short = np.minimum(gap - rest.gap0_floor, 0.0)
    q[_UP_M] += 0.5 * short[:, None] * p_down
    q[_LO_M] -= 0.5 * short[:, None] * p_down

    chain_sets = rest.chain_sets
    if rest.chin is not None:
        _share_chin(q, aligned, rest.chin, p_down, d_down)
    _keep_order(q, chain_sets.down, p_down, rest.down_order)
    # A driving upper lip raised further than the portrait's skin below its nose has room
    # for pushes that skin up (short of the nose) instead of folding over it.
    _keep_order(q, chain_sets.up, rest.up, rest.up_order)

    out = np.empty_like(P)
    if opts.rotation_3d:
        # The driving rotation, seen in the portrait's frame (its in-plane angle differs).
        rot_p = rest.spin @ rot @ rest.spin.T
        cp = rest.cp
        moved = (np.column_stack([q, P[:, 2]]) - cp) @ rot_p.T * s3 + cp
        shift = to_portrait[:, :2] @ (c1[:2] - rest.c0[:2]) * rest.shift_scale
        out[:, :2] = moved[:, :2] + shift
    else:
        out[:, :2] = apply_affine(head_p, q)
    out[:, 2] = P[:, 2]
    out[:n, 2] += rest.s_full * (D[:n, 2] - D0[:n, 2])
    return MappedMotion(points=out, head=head_p, to_portrait=to_portrait, turn_deg=turn)


_STABLE = list(STABLE_POINTS)
_LIPS = list(lm.LIPS)
_UP_M, _LO_M = list(lm.LIPS_INNER_UPPER[1:-1]), list(lm.LIPS_INNER_LOWER[1:-1])


@dataclass(frozen=True, eq=False)
class _EyeRest:
    """One eye's part of :class:`_MotionRest`."""

    open0: float
    """The driving neutral eye's opening (:func:`eye_opening`)."""
    span: np.ndarray
    """The portrait's lower lid minus its upper lid (the middle points), (7, 2)."""
    iris: tuple[float, float]
    """The portrait's iris in its eye's (u, r) coordinates (:class:`_EyeCoords`)."""
    iris0: tuple[float, float] | None
    """The driving neutral iris's, None without irises."""


@dataclass(frozen=True, eq=False)
class _MotionRest:
    """What :func:`portrait_motion` derives from the portrait and the driving neutral pose
    alone (and the options): the same on every frame of one calibration, so worked out once
    (:func:`_motion_rest`)."""

    key: tuple[np.ndarray, np.ndarray, float | None, MotionOptions, FaceChains | None]
    """Copies of the portrait and the neutral pose, the scale, options and chains given."""
    to_portrait: np.ndarray
    from_portrait: np.ndarray
    s_full: float
    d_centre: np.ndarray
    d_centred: np.ndarray
    d_norm: float
    d_centred_3d: np.ndarray
    d_norm_3d: float
    c0: np.ndarray
    p_down: np.ndarray
    d_down: np.ndarray
    up: np.ndarray
    drop_along: np.ndarray
    iod: float
    eyes: tuple[_EyeRest, ...]
    brow: tuple[tuple[tuple[int, ...], tuple[int, ...], float, np.ndarray], ...]
    lid_order: _OrderLimits
    gap0_floor: np.ndarray
    chain_sets: FaceChains
    chin: tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
    down_order: _OrderLimits
    up_order: _OrderLimits
    spin: np.ndarray
    cp: np.ndarray
    shift_scale: float

    def fits(self, P: np.ndarray, D0: np.ndarray, scale: float | None, opts: MotionOptions,
             chains: FaceChains | None) -> bool:
        p, d0, s, o, c = self.key
        return (c is chains and s == scale and o == opts and p.shape == P.shape
                and d0.shape == D0.shape and np.array_equal(p, P) and np.array_equal(d0, D0))


_RESTS: list[_MotionRest] = []
"""The last few :class:`_MotionRest` (an engine's portrait and neutral pose, a few engines)."""


def _motion_rest(P: np.ndarray, D0: np.ndarray, scale: float | None, opts: MotionOptions,
                 chains: FaceChains | None) -> _MotionRest:
    """The :class:`_MotionRest` of these inputs: kept from an earlier frame when they are
    the same (compared by value: a caller may change an array in place)."""
    for rest in _RESTS:
        if rest.fits(P, D0, scale, opts, chains):
            return rest
    rest = _build_rest(P, D0, scale, opts, chains)
    _RESTS.insert(0, rest)
    del _RESTS[4:]
    return rest


def _build_rest(P: np.ndarray, D0: np.ndarray, scale: float | None, opts: MotionOptions,
                chains: FaceChains | None) -> _MotionRest:
    stable = _STABLE
    to_portrait = fit_similarity(D0[stable], P[stable])
    s_full = affine_scale(to_portrait)
    if scale is not None:
        to_portrait = with_scale(to_portrait, scale, D0[stable, :2].mean(axis=0))
    d_pts = np.asarray(D0[stable], dtype=np.float64)[:, :2]
    d_centre = d_pts.mean(axis=0)
    d_centred = d_pts - d_centre
    d_3d = np.asarray(D0[stable], dtype=np.float64)[:, :3]
    d_3d = d_3d - d_3d.mean(axis=0)
    _, p_down = lm.face_axes(P)
    _, d_down = lm.face_axes(D0)
    head_scale = affine_scale(to_portrait)
    chain_sets = face_chains(P) if chains is None else chains
    lin = to_portrait[:, :2] / s_full
    spin = np.eye(3)
    spin[:2, :2] = lin
    up = -p_down
    src = P[:, :2]
    return _MotionRest(
        key=(P.copy(), D0.copy(), scale, opts, chains),
        to_portrait=to_portrait, from_portrait=invert_affine(to_portrait), s_full=s_full,
        d_centre=d_centre, d_centred=d_centred, d_norm=float(np.sum(d_centred * d_centred)),
        d_centred_3d=d_3d, d_norm_3d=float(np.sum(d_3d * d_3d)),
        c0=D0[stable].mean(axis=0), p_down=p_down, d_down=d_down, up=up,
        drop_along=to_portrait[:, :2].T @ p_down,
        iod=max(float(lm.inter_ocular_distance(P)), 1e-6),
        eyes=tuple(_eye_rest(P, D0, eye, p_down, d_down) for eye in _EYES),
        brow=_brow_rest(P, D0, head_scale, p_down, d_down),
        lid_order=_order_limits(src, _LID_CHAINS, up, opts.min_gap_fraction),
        gap0_floor=np.minimum((P[_LO_M, :2] - P[_UP_M, :2]) @ p_down, 0.0),
        chain_sets=chain_sets,
        chin=_chin_rest(P, D0, len(D0), chain_sets.down, p_down, d_down),
        down_order=_order_limits(src, chain_sets.down, p_down, opts.min_gap_fraction),
        up_order=_order_limits(src, chain_sets.up, up, opts.min_gap_fraction),
        spin=spin, cp=np.array([*P[stable, :2].mean(axis=0), P[stable, 2].mean()]),
        shift_scale=head_scale / s_full)


def _eye_rest(P: np.ndarray, D0: np.ndarray, eye: _Eye, p_down: np.ndarray,
              d_down: np.ndarray) -> _EyeRest:
    upper, lower, iris, _ = eye
    up_i, lo_i = list(upper[1:-1]), list(lower[1:-1])
    iris0 = None
    if D0.shape[0] >= lm.NUM_LANDMARKS_WITH_IRISES:
        iris0 = _EyeCoords(D0, upper, lower, d_down).to_eye(D0[iris])
    return _EyeRest(open0=eye_opening(D0, upper, lower, d_down),
                    span=P[lo_i, :2] - P[up_i, :2],
                    iris=_EyeCoords(P, upper, lower, p_down).to_eye(P[iris]),
                    iris0=iris0)


def _eye_ratio(aligned: np.ndarray, eye: _Eye, rest: _EyeRest, opts: MotionOptions,
               d_down: np.ndarray) -> float:
    """How open one portrait eye is to be, as a share of its own opening: the driving eye's
    opening ratio to its neutral, fully closed at ``blink_close_at``, at most
    ``max_eye_open``."""
    upper, lower, _, _ = eye
    open0 = rest.open0
    ratio = eye_opening(aligned, upper, lower, d_down) / open0 if open0 > 1e-6 else 1.0
    if ratio < 1.0:
        ratio = max(0.0, (ratio - opts.blink_close_at) / (1.0 - opts.blink_close_at))
    return min(ratio, opts.max_eye_open)


BLINK_LINK_CLOSED = (0.7, 0.8)
"""Two eyes closing together are one blink (:func:`link_blinks`): the more closed eye this
far closed (1 - its :func:`_eye_ratio`; from the first on, fully from the second) ..."""
BLINK_LINK_SHARE = (0.55, 0.7)
"""... and the other at least this share as closed: then the other closes as far. The
face mesh under-reads one eye of a blink: on the fixture clips' blinks (both eyes shut in
the picture) the second eye read 0.52-0.53 closed against 0.81-0.86 (a share of 0.6-0.65;
tps_driving frames 20-21) and 0.71-0.79 against 0.99-1.0 (lp_d11, frames 148-156): the
output winked. A wink's open eye narrows with it, to at most 0.53 of the winking one's
closure (lp_d3, frames 5-21 and 29-46), and stays as it is; so does a squint (neither eye
nearly closed)."""


def link_blinks(ratios: list[float]) -> list[float]:
    """The two eyes' opening ratios (:func:`_eye_ratio`) with a blink closing both: the more
    open eye is drawn to the more closed one's ratio as far as both are closing together
    (:data:`BLINK_LINK_CLOSED`, :data:`BLINK_LINK_SHARE`, smoothly). A wink, a squint and
    eyes opening wide are left as they are."""
    if len(ratios) != 2:
        return list(ratios)
    most = 1.0 - min(ratios)  # the more closed eye's closure
    least = 1.0 - max(ratios)
    if most <= 0.0 or least <= 0.0:
        return list(ratios)
    link = float(smoothstep(*BLINK_LINK_CLOSED, np.array(most))
                 * smoothstep(*BLINK_LINK_SHARE, np.array(least / most)))
    if link <= 0.0:
        return list(ratios)
    low = min(ratios)
    return [r - link * (r - low) for r in ratios]


def _move_eye(q: np.ndarray, aligned: np.ndarray, eye: _Eye,
              rest: _EyeRest, opts: MotionOptions, d_down: np.ndarray, p_down: np.ndarray,
              ratio: float, *, has_iris: bool) -> None:
    """In place: one eye's lids and iris (see :func:`portrait_motion`), the lids at the
    opening ``ratio`` of the portrait's own (:func:`_eye_ratio`, :func:`link_blinks`)."""
    upper, lower, iris, ring = eye
    # Lids: the portrait's own opening times the driving opening ratio.
    q[_ids(upper[1:-1])] = q[_ids(lower[1:-1])] - ratio * rest.span
    # Iris: same place between the lids, plus the driving gaze.
    u0, r0 = rest.iris
    du = dr = 0.0
    if has_iris and rest.iris0 is not None:
        ua, ra = rest.iris0
        ub, rb = _EyeCoords(aligned, upper, lower, d_down).to_eye(aligned[iris])
        du = opts.gaze_gain * (ub - ua)
        # The iris's place between nearly closed lids says nothing about the gaze.
        dr = opts.gaze_gain * (rb - ra) * float(np.clip((ratio - 0.3) / 0.4, 0.0, 1.0))
    u = float(np.clip(u0 + du, min(u0, 0.25), max(u0, 0.75)))
    r = float(np.clip(r0 + dr, min(r0, 0.3), max(r0, 0.7)))
    centre = _EyeCoords(q, upper, lower, p_down).to_image(u, r)
    q[_ids(ring)] += centre - q[iris]
    q[iris] = centre


JAW_WIDE_FROM = 0.2
"""The chin starts following the lower lip (:func:`drop_jaw`) once the lip has dropped this
many inter-ocular distances ..."""
JAW_WIDE_FULL = 0.4
"""... and follows it fully (``jaw_follow``) from this drop on."""


def jaw_weights(portrait: np.ndarray) -> np.ndarray:
    """How much of the jaw's drop each portrait landmark takes, (N,) in [0, 1]: 1 at the
    chin, fading to 0 up towards the lower lip and sideways towards the angles of the jaw
    (the jaw turns about hinges by the ears)."""
    P = np.asarray(portrait, dtype=np.float64)[:, :2]
    across, down = lm.face_axes(P)
    rel = P - P[lm.CHIN]
    lip = float((P[lm.LOWER_LIP_BOTTOM] - P[lm.CHIN]) @ down)  # < 0: the lip is above
    v = 1.0 - (rel @ down) / lip if lip < -1e-6 else np.zeros(len(P))  # 0 lip .. 1 chin
    half = 0.5 * abs(float((P[lm.FACE_OVAL[8]] - P[lm.FACE_OVAL[28]]) @ across))
    u = (rel @ across) / max(half, 1e-6)
    w = np.clip(v / 0.5, 0.0, 1.0) * np.clip(1.0 - u * u, 0.0, 1.0)
    w[list(lm.LIPS)] = 0.0
    return np.asarray(w)


def drop_jaw(points: np.ndarray, portrait: np.ndarray, drop: float) -> None:
    """In place: the jaw drops by ``drop`` portrait pixels down the face (at the chin; see
    :func:`jaw_weights`): points the face mesh moved less far down are moved on, none back.
    A driving face mesh follows the lips of an opening mouth but keeps its chin too high (on
    a wide-open mouth it reads about half of the chin's drop)."""
    if drop <= 0:
        return
    P = np.asarray(portrait, dtype=np.float64)[:, :2]
    _, down = lm.face_axes(P)
    n = min(len(points), len(P))
    moved = (points[:n, :2] - P[:n]) @ down
    w = jaw_weights(P)[:n]
    more = np.where(w > 0, np.maximum(drop * w - moved, 0.0), 0.0)
    points[:n, :2] += more[:, None] * down


def ring_motion(src: np.ndarray, anchor_src: np.ndarray, anchor_dst: np.ndarray,
                weight: np.ndarray, head: np.ndarray, follow: float) -> np.ndarray:
    """Where the rings around the face go: ``weight`` of the head's rigid motion plus
    ``follow * weight`` of their anchor oval point's own (non-rigid) motion."""
    rigid = apply_affine(head, src) - src
    own = anchor_dst - apply_affine(head, anchor_src)
    return np.asarray(src + weight[:, None] * (rigid + follow * own))


def outside_motion(layout: MeshLayout, points: np.ndarray, head: np.ndarray,
                   follow: float) -> np.ndarray:
    """Where all the warp's vertices go (``layout.src``'s shape), before any body flow: the
    face mesh to ``points`` ((N_MESH, 2+), the output landmarks), and the points around the
    face, rings and lattice alike, by :func:`ring_motion` from the outline point they take
    their own motion from (a lattice point between the outline and the first ring moving
    with the head alone, while both sides of it took the outline's turn, squeezed the
    triangles on one side of it and drew the other's picture out: an ear's lobe as a
    block). The picture's border stays."""
    dst = np.array(layout.src, dtype=np.float64, copy=True)
    dst[:len(points)] = points[:, :2]
    for ids, anchor, weight in ((layout.ring_ids, layout.ring_anchor, layout.ring_weight),
                                (layout.grid_ids, layout.grid_anchor, layout.grid_weight)):
        if len(ids):
            dst[ids] = ring_motion(layout.src[ids], layout.src[anchor], dst[anchor], weight,
                                   head, follow)
    return dst


def keep_order(points: np.ndarray, src: np.ndarray, chains: tuple[np.ndarray, ...],
               down: np.ndarray, *, min_fraction: float = 0.2) -> None:
    """Keep points in order along ``down`` on each chain, in place: every point stays before
    the next by at least ``min_fraction`` of their gap in the portrait. First the lip leads:
    working along from the chain's first point (an inner lip point), the points it crossed
    are pushed on (a mouth opens by the jaw dropping; a raised upper lip bunches the skin
    under the nose), short of the chain's last point (on the face outline, or the nose),
    which stays put; then, working back from that last point, points still out of order are
    pulled back.

    Against folds around the mouth: a driving mesh whose lower lip line rolls past the chin
    row (it does when a mouth opens wide) would otherwise fold the portrait's lower lip, and
    an upper lip raised by more than the portrait's skin below the nose would fold over it.
    """
    _keep_order(points, chains, down, _order_limits(src, chains, down, min_fraction))


@dataclass(frozen=True, eq=False)
class _OrderLimits:
    """What :func:`keep_order` needs of the portrait's chains (worked out once)."""

    least: np.ndarray
    """The smallest gap of each link of all chains."""
    gaps: tuple[np.ndarray, ...]
    """The same per chain."""
    owner: np.ndarray
    """The chain each link is on."""
    sharing: tuple[frozenset[int], ...]
    """Per chain, the later chains with a point of it."""


def _order_limits(src: np.ndarray, chains: tuple[np.ndarray, ...], down: np.ndarray,
                  min_fraction: float) -> _OrderLimits:
    a, b, _ = _derived(chains, "links", _links)
    ids = [frozenset(chain.tolist()) for chain in chains]
    return _OrderLimits(
        least=np.maximum((src[b, :2] - src[a, :2]) @ down, 0.0) * min_fraction,
        gaps=tuple(np.maximum(np.diff(src[chain] @ down), 0.0) * min_fraction
                   for chain in chains),
        owner=np.repeat(np.arange(len(chains)), [len(chain) - 1 for chain in chains]),
        sharing=tuple(frozenset(j for j in range(i + 1, len(chains)) if ids[i] & ids[j])
                      for i in range(len(chains))))


_CLEAR = 1e-9
"""A link longer than its least gap by more than this times (1 + the points' largest
absolute coordinate) pixels is in order however its length is rounded: :func:`keep_order`'s
passes, which round it differently, leave its chain alone (unless an earlier chain moved a
point of it)."""


def _keep_order(points: np.ndarray, chains: tuple[np.ndarray, ...], down: np.ndarray,
                limits: _OrderLimits) -> None:
    a, b, _ = _derived(chains, "links", _links)
    room = (points[b, :2] - points[a, :2]) @ down - limits.least
    if np.all(room >= 0.0):
        return  # every chain already in order: nothing to push or pull
    # only the chains with a link out of order or close to it can move, and those after
    # them that share a point with one that moved
    near = room <= _CLEAR * (1.0 + float(np.abs(points).max()))
    todo = set(limits.owner[~(room > 0.0) | near].tolist())
    for i in range(len(chains)):
        if i not in todo:
            continue
        chain, gap = chains[i], limits.gaps[i]
        v = points[chain] @ down
        if np.all(v[:-2] + gap[:-1] <= v[1:-1]) and np.all(v[:-1] <= v[1:] - gap):
            continue  # neither pass below would move a point of this chain
        new = v.tolist()
        g = gap.tolist()
        for k in range(len(chain) - 2):
            new[k + 1] = max(new[k + 1], new[k] + g[k])
        for k in range(len(chain) - 2, -1, -1):
            new[k] = min(new[k], new[k + 1] - g[k])
        points[chain] += (np.array(new) - v)[:, None] * down
        todo.update(limits.sharing[i])
