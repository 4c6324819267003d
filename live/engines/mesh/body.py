"""Motion outside the face (hair, ears, neck, shoulders) from the driving video's optical flow.

The face mesh says where the face goes; it says nothing about the hair around it, the neck or
the shoulders, which a real head carries along (hair swings, the neck turns, shoulders shift).
This module measures that motion on the driving video itself: at calibration the neutral
driving crop is kept with its person matte (segmented once) and a lattice of sample points
laid over it; every frame the current crop is resampled into the neutral crop's coordinates
(its head motion undone) and dense optical flow (OpenCV's Farneback, at 128 px) from the
neutral crop to it gives, averaged over each lattice cell, where each sample point went. The
engine carries those points through its smoothing and face-lost hold together with the
landmarks, and :func:`body_displacements` maps the motion onto the portrait's vertices outside
the face: each vertex takes the motion of the driving point at the same place relative to the
face (through the driver-to-portrait similarity), weighted by how much that point is on the
driving person (its matte). Where the
driver shows background, or outside its crop, the vertex keeps the head-following default.

Coordinates are frame pixels of the driving video (x right, y down); affines are 2x3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from calibrate import landmarks as lm
from live.engines.mesh.motion import (
    MappedMotion,
    apply_affine,
    compose,
    invert_affine,
)
from live.engines.mesh.topology import (
    MeshLayout,
    nearest_outline,
    oval_circle,
    points_in_polygon,
)

_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
_IDENTITY.setflags(write=False)  # the head's motion when none is given (shared)
FLOW_SIDE = 128
"""Side (pixels) of the images the flow is measured on (the driving crop, resized)."""
_FARNEBACK = (0.5, 4, 15, 3, 5, 1.1, 0)
"""Farneback's pyramid scale, levels, window (px), iterations, polynomial size and sigma,
flags: a 15 px window stays steady over plain clothes (9 px read a shirt moving 25 px down
as 59 px up)."""
ALIGN_SHRINK = 2
"""A driving crop larger than this many times the flow's side is first shrunk to it (area
filter): resampled bilinearly to a quarter or less of its side, a 512 px crop's fine
texture (a shirt's weave) aliased and the flow over the shoulders went astray."""
HEAD_PRIOR_FULL = 1.6
"""The head's motion is the flow's starting point up to this many face radii from the face's
centre (the face, the hair around it) ..."""
HEAD_PRIOR_NONE = 2.6
"""... and not at all from this many on (neck, shoulders: they stay where they were unless
the flow finds them moved)."""


@dataclass(frozen=True, eq=False)
class DriverLattice:
    """The sample lattice over the neutral driving crop.

    ``cells`` x ``cells`` points at the cell centres of the crop (``step`` crop pixels apart),
    ``frame_to_crop`` maps driving-frame pixels into the neutral crop, ``weight`` (cells,
    cells) is the neutral driving person matte at each cell (1 on the person, 0 on the
    background): how far the flow there speaks for a body part. ``on_face`` (cells * cells,)
    marks the points inside the neutral face outline, where the flow is checked against the
    landmarks (:func:`flow_trust`).
    """

    cells: int
    step: float
    frame_to_crop: np.ndarray
    crop_to_frame: np.ndarray
    weight: np.ndarray
    on_face: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))
    near: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.int64))
    """For each face point, its nearest landmarks (indices, (on_face.sum(), k))."""

    @property
    def count(self) -> int:
        return self.cells * self.cells

    def neutral_points(self) -> np.ndarray:
        """The lattice points in driving-frame pixels, (cells*cells, 2) float64, row-major."""
        c = (np.arange(self.cells, dtype=np.float64) + 0.5) * self.step - 0.5
        gx, gy = np.meshgrid(c, c)
        return apply_affine(self.crop_to_frame, np.stack([gx.ravel(), gy.ravel()], axis=1))


class BodyFlow:
    """Optical flow of the driving crop from its neutral pose (see the module docstring).

    ``BodyFlow(neutral_image, crop_to_frame, cells=16)``; :attr:`lattice` describes the
    sample points, :meth:`track` gives their positions in a later crop. The person matte of
    the neutral crop is segmented once here (MediaPipe selfie segmentation); without a person
    found every weight is 0 (the engine then keeps its head-following default everywhere).
    """

    def __init__(self, neutral_image: np.ndarray, crop_to_frame: np.ndarray, *,
                 cells: int = 16, landmarks: np.ndarray | None = None) -> None:
        if cells < 2:
            raise ValueError(f"expected cells >= 2, got {cells}")
        img = np.ascontiguousarray(neutral_image)
        h, w = img.shape[:2]
        if h != w:
            raise ValueError(f"expected a square neutral crop, got {w}x{h}")
        self.size = int(w)
        # The flow is measured at FLOW_SIDE pixels at most: a 16-cell lattice needs no more.
        self._work = min(self.size, FLOW_SIDE)
        k = self._work / self.size
        self._from_work = np.array([[1.0 / k, 0.0, 0.5 / k - 0.5], [0.0, 1.0 / k, 0.5 / k - 0.5]])
        self._gray0 = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (self._work, self._work),
                                 interpolation=cv2.INTER_AREA)
        self._crop_to_frame = np.array(crop_to_frame, dtype=np.float64)  # a copy: kept
        self._work_to_frame = compose(self._crop_to_frame, self._from_work)  # flow px -> frame
        from live.face.segmentation import segment_person

        matte = segment_person(img)
        weight = np.zeros((cells, cells), np.float32) if matte is None else \
            cv2.resize(matte, (cells, cells), interpolation=cv2.INTER_AREA)
        # One cell more around the person: the flow there is the person's edge moving over
        # the background (hair swinging out), smeared across the cell by the averaging.
        weight = cv2.dilate(weight, np.ones((3, 3), np.uint8))
        self.lattice = DriverLattice(
            cells=cells, step=self.size / cells,
            frame_to_crop=invert_affine(self._crop_to_frame),
            crop_to_frame=self._crop_to_frame, weight=np.clip(weight, 0.0, 1.0))
        self._neutral_points = self.lattice.neutral_points()
        # Where the head's motion is the prior for the flow (1) and where the body's own
        # place is (0): by distance from the face's centre, in face radii, over the flow's
        # pixels (see :meth:`track`). Without landmarks the head's motion is used everywhere.
        # None: the head's motion everywhere (no landmarks to say where the face is).
        self._head_share: np.ndarray | None = None
        self._head_share_at = np.ones(len(self._neutral_points))
        c = np.arange(self._work, dtype=np.float32)
        self._grid = np.meshgrid(c, c)  # the flow's pixels, x and y
        if landmarks is not None:  # neutral face-mesh points, frame pixels
            face = oval_circle(landmarks)
            work = np.stack([g.ravel() for g in self._grid], axis=1).astype(np.float64)
            frame = apply_affine(self._work_to_frame, work)
            self._head_share = self._head_share_points(frame, face).reshape(
                self._work, self._work).astype(np.float32)
            self._head_share_at = self._head_share_points(self._neutral_points, face)
            oval = np.asarray(landmarks, dtype=np.float64)[list(lm.FACE_OVAL), :2]
            pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
            on_face = points_in_polygon(self._neutral_points, oval)
            d = np.linalg.norm(self._neutral_points[on_face, None, :] - pts[None, :, :], axis=2)
            near = np.argsort(d, axis=1)[:, :4]
            self.lattice = dataclasses.replace(self.lattice, on_face=on_face, near=near)

    @property
    def neutral_points(self) -> np.ndarray:
        """The lattice points at the neutral pose, frame pixels (count, 2)."""
        return self._neutral_points.copy()

    @staticmethod
    def _head_share_points(points: np.ndarray, face: tuple[np.ndarray, float]) -> np.ndarray:
        """How much of the head's motion is the flow's prior at frame ``points``: 1 on the
        face and the hair around it, 0 from the neck and shoulders down (a head that rolls
        15 degrees does not carry the shoulders along; undoing its motion there would move
        them out of the flow's reach). ``face``: the outline's centre and radius."""
        centre, radius = face
        r = np.linalg.norm(points - centre, axis=1) / radius
        return np.asarray(np.clip((HEAD_PRIOR_NONE - r) / (HEAD_PRIOR_NONE - HEAD_PRIOR_FULL),
                                  0.0, 1.0))

    def track(self, image: np.ndarray, crop_to_frame: np.ndarray, *,
              head: np.ndarray | None = None) -> np.ndarray:
        """Where the lattice points are in this driving crop (RGB uint8, its crop-to-frame
        similarity): frame pixels, (count, 2) float64. ``head`` (2x3, frame pixels, neutral
        -> now; from the landmarks) is undone before the flow is measured, so the flow only
        has to find what moved differently from the head: a large head motion stays within
        its reach. The same as :meth:`align`, :meth:`flow` and :meth:`place` in turn."""
        aligned = self.align(image, crop_to_frame, head=head)
        return self.place(self.flow(aligned), head=head)

    def align(self, image: np.ndarray, crop_to_frame: np.ndarray, *,
              head: np.ndarray | None = None) -> np.ndarray:
        """:meth:`track`'s first step: the crop resampled into the neutral crop's coordinates
        at the flow's side, gray uint8, the head's motion undone near the face (the flow's
        prior)."""
        cur = np.asarray(crop_to_frame, dtype=np.float64)
        head_m = _IDENTITY if head is None else np.asarray(head, dtype=np.float64)
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        # flow pixels -> neutral crop pixels -> frame -> (the prior: the head's motion near
        # the face, none on the body) -> this crop's pixels
        to_frame = self._work_to_frame
        frame_to_cur = invert_affine(cur)
        side, small = gray.shape[1], ALIGN_SHRINK * self._work
        if side > small:
            f = small / side
            gray = cv2.resize(gray, (small, small), interpolation=cv2.INTER_AREA)
            frame_to_cur = compose(np.array([[f, 0.0, 0.5 * f - 0.5], [0.0, f, 0.5 * f - 0.5]]),
                                   frame_to_cur)
        to_cur = compose(frame_to_cur, compose(head_m, to_frame))
        if self._head_share is None:
            return np.asarray(cv2.warpAffine(gray, to_cur, (self._work, self._work),
                                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                             borderMode=cv2.BORDER_REPLICATE))
        still = compose(frame_to_cur, to_frame)
        gx, gy = self._grid
        a = self._head_share
        maps = [(still[i, 0] + a * (to_cur[i, 0] - still[i, 0])) * gx
                + (still[i, 1] + a * (to_cur[i, 1] - still[i, 1])) * gy
                + (still[i, 2] + a * (to_cur[i, 2] - still[i, 2])) for i in (0, 1)]
        return np.asarray(cv2.remap(gray, maps[0].astype(np.float32, copy=False),
                                    maps[1].astype(np.float32, copy=False),
                                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))

    def flow(self, aligned: np.ndarray) -> np.ndarray:
        """:meth:`track`'s second step, most of its time: the dense flow from the neutral
        crop to ``aligned`` (:meth:`align`), (side, side, 2) float32 in the flow's pixels.
        One OpenCV call, which releases the GIL: it may run on another thread while the
        caller's goes on."""
        # Farneback's dense flow (:data:`_FARNEBACK`): smooth over little texture (hair)
        # and the same run to run (OpenCV's DIS with spatial propagation was
        # not: its threads' stripes race where they meet, and without propagation it lost
        # the hair)
        farneback: Any = cv2.calcOpticalFlowFarneback  # the stubs do not allow flow=None
        return np.asarray(farneback(self._gray0, aligned, None, *_FARNEBACK))

    def place(self, flow: np.ndarray, *, head: np.ndarray | None = None) -> np.ndarray:
        """:meth:`track`'s last step: the lattice points moved by ``flow`` (:meth:`flow`),
        the head's motion ``head`` (as given to :meth:`align`) put back near the face; frame
        pixels, (count, 2) float64."""
        head_m = _IDENTITY if head is None else np.asarray(head, dtype=np.float64)
        flow = flow * np.float32(self.size / self._work)
        cells = self.lattice.cells
        mean = cv2.resize(flow, (cells, cells), interpolation=cv2.INTER_AREA)
        lin = self._crop_to_frame[:, :2]
        moved = self._neutral_points + mean.reshape(-1, 2).astype(np.float64) @ lin.T
        share = self._head_share_at[:, None]
        return moved + share * (apply_affine(head_m, moved) - moved)


@dataclass(frozen=True, eq=False)
class BodyMotion:
    """The lattice's motion for one frame: ``neutral`` and ``current`` points (count, 2) in
    driving-frame pixels, and the lattice they belong to."""

    lattice: DriverLattice
    neutral: np.ndarray
    current: np.ndarray


TRUST_FULL_BELOW = 0.15
"""Flow error on the face (inter-ocular distances, median) below which the flow is trusted."""
TRUST_NONE_ABOVE = 0.35
"""... and above which it is not used at all (the head-following default everywhere)."""


def flow_trust(motion: BodyMotion, neutral: np.ndarray, current: np.ndarray) -> float:
    """How far to trust this frame's flow, in [0, 1]: on the face, the lattice points the flow
    tracked must move as their nearest landmarks do (``neutral`` -> ``current``, frame
    pixels), within a share of the inter-ocular distance (median over the face points). A
    flow that lost a fast motion, or a picture that does not match its landmarks, falls back
    to the head-following default; 1 when the lattice has no face points to check."""
    lat = motion.lattice
    if not lat.on_face.any():
        return 1.0
    moved = np.asarray(current[:, :2] - neutral[:, :2], dtype=np.float64)
    expected = motion.neutral[lat.on_face] + moved[lat.near].mean(axis=1)
    err = float(np.median(np.linalg.norm(motion.current[lat.on_face] - expected, axis=1)))
    iod = max(float(lm.inter_ocular_distance(neutral)), 1e-6)
    return float(np.clip((TRUST_NONE_ABOVE - err / iod) / (TRUST_NONE_ABOVE - TRUST_FULL_BELOW),
                         0.0, 1.0))


def body_displacements(points: np.ndarray, to_portrait: np.ndarray,
                       motion: BodyMotion, *, beyond: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The driving motion at portrait ``points`` (N, 2) outside the face: ``(displacement
    (N, 2) in portrait pixels, weight (N,) in [0, 1])``. ``to_portrait`` is the similarity
    from driving-frame to portrait pixels at the neutral pose; a point takes the bilinearly
    interpolated motion of the lattice cells around the driving point it corresponds to,
    with their matte weight. Beyond the lattice (the driving crop shows less of the body than
    a portrait framed to the shoulders), a point takes the motion of the lattice's nearest
    edge, its weight fading to 0 over ``beyond`` lattice cells (0: no weight outside)."""
    lat = motion.lattice
    cells = lat.cells
    disp = (motion.current - motion.neutral).reshape(cells, cells, 2)
    drv = apply_affine(invert_affine(to_portrait), points)
    crop = apply_affine(lat.frame_to_crop, drv)
    u = (crop + 0.5) / lat.step - 0.5  # lattice coordinates (cell centres at integers)
    out = np.max(np.maximum(-0.5 - u, u - (cells - 0.5)), axis=1)  # cells beyond the edge
    inside = out <= 0.0 if beyond <= 0.0 else np.clip(1.0 - out / beyond, 0.0, 1.0)
    u = np.clip(u, 0.0, cells - 1.0)
    i0 = np.minimum(np.floor(u).astype(np.int64), cells - 2)
    f = u - i0
    x0, y0 = i0[:, 0], i0[:, 1]
    fx, fy = f[:, 0:1], f[:, 1:2]

    # the motion and the matte weight side by side: sampled together
    field = np.concatenate([disp, lat.weight.astype(np.float64)[..., None]], axis=2)
    a = field[y0, x0] * (1 - fx) + field[y0, x0 + 1] * fx
    b = field[y0 + 1, x0] * (1 - fx) + field[y0 + 1, x0 + 1] * fx
    both = a * (1 - fy) + b * fy
    w = both[:, 2] * inside
    # a contiguous copy: the same matrix product (numpy's BLAS path) as before
    d = np.ascontiguousarray(both[:, :2])
    return d @ to_portrait[:, :2].T, np.clip(w, 0.0, 1.0)


FLOW_REACH = 0.35
"""Body flow moves a point at most this share of the face's radius away from where the head
alone would take it: a driver's long hair swinging does not drag a portrait's collar across."""
FLOW_SHEAR = 0.5
"""Body flow moves a point outside the face at most this share of its distance to the
nearest point of the face's outline away from that point's own motion (or as far as the
head-following default already does, if more): hair by a cheek or an ear by the temple
does not tear away from the face where the portrait's outline does not sit where the
driver's hair begins (:func:`hold_to_outline`)."""
FLOW_BEYOND = 4.0
"""Past the driving crop's edge, a point takes the motion of the crop's nearest edge, fading
out over this many lattice cells (the driving crop shows less of the body than the portrait)."""


def hold_to_outline(flow: np.ndarray, src: np.ndarray, dst: np.ndarray,
                    outline_src: np.ndarray, outline_dst: np.ndarray, *,
                    shear: float = FLOW_SHEAR,
                    nearest: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The flow's part ``flow`` (N, 2) of the motion of outside points (``src`` -> ``dst``,
    (N, 2), ``dst`` without the flow) scaled down, point by point, so that each point moves
    relative to its nearest outline point (``outline_src`` -> ``outline_dst``) by at most
    ``shear`` times their distance, or by what it moves relative to it without the flow if
    that is more. ``nearest``: :func:`nearest_outline` of ``src``, when known. Returns a new
    array."""
    near, dist = nearest_outline(src, outline_src) if nearest is None else nearest
    base = (dst - src) - (outline_dst[near] - outline_src[near, :2])  # without the flow
    limit = np.maximum(np.linalg.norm(base, axis=1), shear * dist)
    over = np.linalg.norm(base + flow, axis=1) > limit
    out = np.array(flow, dtype=np.float64, copy=True)
    if over.any():
        # the largest share f in [0, 1] with |base + f * flow| = limit (base is within it)
        a = np.sum(flow[over] ** 2, axis=1)
        b = 2.0 * np.sum(base[over] * flow[over], axis=1)
        c = np.sum(base[over] ** 2, axis=1) - limit[over] ** 2
        f = (-b + np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))) / np.maximum(2.0 * a, 1e-12)
        out[over] *= np.clip(f, 0.0, 1.0)[:, None]
    return out


FLOW_STRAIN = 0.3
"""Below the chin, where the body flow's part of the motion of two linked points of the
warp differs by more than this share of their distance, it is smoothed
(:func:`limit_strain`): where a driver's crop ends at the neck, the neck's motion would
otherwise move a portrait's collar and tie knot as a neck-wide tongue, sheared away from
the shoulders beside it."""
STRAIN_SMOOTH = 1.0
"""Sigma of the smoothing :func:`limit_strain` pulls an over-strained point towards (a
Gaussian over the points' distances at rest, in median link lengths)."""
STRAIN_ROUNDS = 2
"""Rounds of :func:`limit_strain`'s smoothing."""


@dataclass(frozen=True, eq=False)
class StrainLinks:
    """The warp's outside points below the chin and their links (:func:`strain_links`):
    ``points`` (n,) positions in ``layout.outside_ids`` (followed by ``layout.border_ids``
    when the border slides); ``pairs`` (E, 2) links between them as positions in ``points``
    (the warp's triangle edges), their ``length`` (E,) at rest; ``ends`` (n, k) the links
    each point is an end of (padded with E, a link that is never over its limit); ``smooth``
    (n, n) the rows of a Gaussian over the points' distances at rest
    (:data:`STRAIN_SMOOTH`), each summing to 1."""

    points: np.ndarray
    pairs: np.ndarray
    length: np.ndarray
    ends: np.ndarray
    smooth: np.ndarray


def strain_links(layout: MeshLayout, *, border: bool = False) -> StrainLinks:
    """The points and links :func:`limit_strain` holds for ``layout``: the outside points
    (rings, lattice; with ``border``, the picture's border points after them, as
    :func:`move_outside` moves them when they slide) under the line through the chin across
    the face (as the eyes are level), linked by the warp's triangle edges; worked out once a
    portrait."""
    ids = np.concatenate([layout.outside_ids, layout.border_ids]) if border \
        else layout.outside_ids
    src = layout.src
    _, down = lm.face_axes(src)
    points = np.flatnonzero((src[ids, :2] - src[lm.CHIN, :2]) @ down > 0.0)
    where = np.full(layout.n_vertices, -1, np.int64)
    where[ids[points]] = np.arange(len(points))
    tris = layout.outer_tris
    pairs = where[np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])]
    pairs = np.unique(np.sort(pairs[(pairs >= 0).all(axis=1)], axis=1), axis=0)
    at = src[ids[points], :2]
    length = np.linalg.norm(at[pairs[:, 0]] - at[pairs[:, 1]], axis=1) if len(pairs) \
        else np.zeros(0)
    ends = np.full((len(points), 1), len(pairs), np.int64)
    if len(pairs):
        owner = pairs.T.ravel()  # each link's first ends, then its second ends
        order = np.argsort(owner, kind="stable")
        degree = np.bincount(owner, minlength=len(points))
        ends = np.full((len(points), max(1, int(degree.max()))), len(pairs), np.int64)
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(degree) - degree, degree)
        ends[owner[order], slot] = np.tile(np.arange(len(pairs)), 2)[order]
    sigma = STRAIN_SMOOTH * (float(np.median(length)) if len(length) else 1.0)
    d2 = np.sum((at[:, None, :] - at[None, :, :]) ** 2, axis=2)
    smooth = np.exp(-0.5 * d2 / max(sigma, 1e-6) ** 2)
    smooth /= np.maximum(smooth.sum(axis=1, keepdims=True), 1e-12)
    return StrainLinks(points=points, pairs=pairs, length=length, ends=ends, smooth=smooth)


def limit_strain(values: np.ndarray, links: StrainLinks, *,
                 strain: float = FLOW_STRAIN) -> np.ndarray:
    """``values`` (one (2,) per outside point) with its strained spots smoothed: where two
    linked points' values differ by more than ``strain`` times their distance at rest, both
    are pulled towards the :attr:`StrainLinks.smooth` average of their neighbourhood, fully
    from twice the limit on, and the points round them by as much as that average of the
    pulls (no new edge where the smoothing stops); :data:`STRAIN_ROUNDS` rounds. Values
    within their limits everywhere come back as they are. Returns a new array."""
    out = np.array(values, dtype=np.float64, copy=True)
    if not len(links.pairs):
        return out
    a, b = links.pairs[:, 0], links.pairs[:, 1]
    limit = strain * links.length
    sub = out[links.points]
    for _ in range(STRAIN_ROUNDS):
        diff = sub[a] - sub[b]
        over = np.sqrt(np.einsum("ij,ij->i", diff, diff)) / np.maximum(limit, 1e-9) - 1.0
        if not (over > 0.0).any():
            break
        share = np.clip(np.append(over, 0.0)[links.ends].max(axis=1), 0.0, 1.0)
        share = np.maximum(share, links.smooth @ share)  # no new edge where it stops
        sub += share[:, None] * (links.smooth @ sub - sub)
    out[links.points] = sub
    return out


def move_outside(layout: MeshLayout, dst: np.ndarray, motion: MappedMotion, body: BodyMotion,
                 neutral: np.ndarray, current: np.ndarray, *, slide: bool,
                 nearest: tuple[np.ndarray, np.ndarray] | None = None,
                 links: StrainLinks | None = None,
                 limits: np.ndarray | None = None) -> np.ndarray:
    """Add the body flow's motion to the vertices outside the face, in place in ``dst`` (the
    warp's output positions, the head-following default already there); returns the warp's
    source positions. ``neutral`` / ``current``: the driving landmarks (for
    :func:`flow_trust`). With ``slide`` (a head layer over a still plate) the picture's border
    points take the motion too, staying on the edge while their source moves: a body that
    moves down goes out through the bottom edge instead of being squeezed against it (their
    source stays within ``layout.slide_limits``, the border itself: one that moves up is
    stretched at the edge, as nothing beyond it is known).
    ``nearest``: :func:`nearest_outline` of the layout's outside points (rings, lattice), when
    known (:func:`hold_to_outline`); ``links``: :func:`strain_links` of the layout (with the
    border when it slides), when known (below the chin the flow's part is smoothed where it
    strains the picture more than :data:`FLOW_STRAIN`, :func:`limit_strain`); ``limits``:
    where the border's sources may slide instead of ``layout.slide_limits`` (beyond the top
    edge where a head touches it, :meth:`live.engines.mesh.crown.Crown.limits`)."""
    src = layout.src
    edge = layout.border_ids if slide else layout.border_ids[:0]
    ids = np.concatenate([layout.outside_ids, edge])
    disp, weight = body_displacements(src[ids], motion.to_portrait, body, beyond=FLOW_BEYOND)
    # A flow that disagrees with the face's landmarks is not used (the hair never tears away
    # from the face).
    weight *= flow_trust(body, neutral, current)
    dev = src[ids] + disp - dst[ids]
    reach = FLOW_REACH * oval_circle(motion.points)[1]
    norm = np.maximum(np.linalg.norm(dev, axis=1), 1e-9)
    dev *= (np.minimum(1.0, reach / norm) * weight)[:, None]
    moved = len(ids) - len(edge)
    if FLOW_STRAIN > 0.0:
        dev = limit_strain(dev, strain_links(layout, border=slide) if links is None else links,
                           strain=FLOW_STRAIN)
    oval = list(lm.FACE_OVAL)
    dev[:moved] = hold_to_outline(dev[:moved], src[ids[:moved]], dst[ids[:moved], :2],
                                  src[oval], dst[oval, :2], nearest=nearest)
    dst[ids[:moved]] += dev[:moved]
    if len(edge):
        src = src.copy()
        src[edge] -= dev[moved:]  # an edge point shows what the motion brings to it
        # ... from the picture only: a body that moves up is stretched at the edge, not
        # filled with the crop's made-up border or its mirror image
        bounds = layout.slide_limits if limits is None else limits
        src[edge] = np.clip(src[edge], bounds[0], bounds[1])
    return src


__all__ = ["FLOW_BEYOND", "FLOW_REACH", "FLOW_SHEAR", "FLOW_STRAIN", "BodyFlow", "BodyMotion",
           "DriverLattice", "StrainLinks", "body_displacements", "flow_trust", "hold_to_outline",
           "limit_strain", "move_outside", "nearest_outline", "strain_links"]
