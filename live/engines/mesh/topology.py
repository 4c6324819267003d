"""Triangles of the mesh warp.

Three kinds of triangles cover the portrait crop:

- the face: MediaPipe's own face-mesh tesselation (852 triangles over the 468 mesh points),
  which follows the face's structure and does not zig-zag along its edge on head turns;
- the holes of that mesh: a fan around each iris centre over the eye opening (so the iris
  carries the eye's interior when the gaze moves) and a strip between the inner lip lines over
  the mouth opening;
- the outside: a Delaunay triangulation of the face oval, rings of points around the face and
  points along the image border, without the triangles that fall inside the face oval. When
  the crop reaches past its photo, that border is the photo's edge: the made-up border
  beyond it is in no triangle and never moves into the picture.

The face and hole triangles are fixed; the outside ones depend on the portrait and are built
once per portrait by :func:`build_layout`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from calibrate import landmarks as lm

N_MESH = lm.NUM_LANDMARKS_WITH_IRISES
"""Landmark slots at the start of every vertex array (irises included)."""

# Rings around the face: (distance from the oval's centre as a multiple of the oval's,
# how much of the head's motion the ring follows, take every n-th oval point).
DEFAULT_RINGS: tuple[tuple[float, float, int], ...] = (
    (1.22, 0.9, 1),
    (1.55, 0.6, 2),
    (2.1, 0.3, 3),
)

# Points that move with the head and little with expressions: eye corners, the upper nose
# ridge and the upper half of the face oval (forehead, temples; not the jaw).
STABLE_POINTS: tuple[int, ...] = tuple(
    dict.fromkeys(
        lm.EYE_CORNERS + lm.NOSE_BRIDGE_LINE[:6] + lm.FACE_OVAL[:9] + lm.FACE_OVAL[28:]
    )
)


@lru_cache(maxsize=1)
def tesselation_triangles() -> np.ndarray:
    """The face mesh's triangles, (852, 3) int32, from MediaPipe's tesselation edges.

    MediaPipe publishes the tesselation as a set of edges. Every triangle of the mesh is a
    3-cycle of edges; two 3-cycles are not faces (three edges each used by a third triangle)
    and are dropped.
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    adjacent: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        adjacent[a].add(b)
        adjacent[b].add(a)
    cycles = {tuple(sorted((a, b, c))) for a, b in edges for c in adjacent[a] & adjacent[b]}
    uses = Counter(e for tri in cycles for e in itertools.combinations(tri, 2))
    faces = sorted(t for t in cycles
                   if not all(uses[e] > 2 for e in itertools.combinations(t, 2)))
    return np.asarray(faces, dtype=np.int32)


def hole_triangles() -> np.ndarray:
    """Triangles over the eye openings (fans around the iris centres) and the mouth opening
    (a strip between the inner lip lines), (50, 3) int32."""
    tris: list[tuple[int, int, int]] = []
    for loop, centre in ((lm.RIGHT_EYE, lm.RIGHT_IRIS_CENTER), (lm.LEFT_EYE, lm.LEFT_IRIS_CENTER)):
        for a, b in zip(loop, loop[1:] + loop[:1], strict=True):
            tris.append((a, b, centre))
    up, lo = lm.LIPS_INNER_UPPER, lm.LIPS_INNER_LOWER
    tris.append((up[0], up[1], lo[1]))
    for i in range(1, len(up) - 2):
        tris.append((up[i], up[i + 1], lo[i]))
        tris.append((up[i + 1], lo[i + 1], lo[i]))
    tris.append((up[-2], up[-1], lo[-2]))
    return np.asarray(tris, dtype=np.int32)


@lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """Face and hole triangles together, (902, 3) int32 (indices into the landmarks)."""
    return np.concatenate([tesselation_triangles(), hole_triangles()])


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of many points against one polygon; (N,) bool."""
    px, py = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return np.asarray(np.count_nonzero(crosses & (px < x_at), axis=1) % 2 == 1)


def triangle_areas(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Signed triangle areas (the sign tells the orientation), (T,)."""
    a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                  - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


@dataclass(frozen=True)
class MeshLayout:
    """The vertices and triangles of one portrait's warp.

    Vertices ``0 .. N_MESH-1`` are the face landmarks; then the ring points (``ring_ids``),
    then the lattice points (``grid_ids``, when asked for), then the fixed border points.
    ``ring_anchor`` is the oval landmark each ring point was pushed out from, ``ring_weight``
    how much of the head's motion it follows (0 at the image border). ``face_tris`` are
    drawn by depth, ``outer_tris`` behind them.
    """

    src: np.ndarray
    ring_ids: np.ndarray
    ring_anchor: np.ndarray
    ring_weight: np.ndarray
    face_tris: np.ndarray
    outer_tris: np.ndarray
    face_sign: np.ndarray
    grid_ids: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int32))
    """Lattice points over the rest of the picture (hair, neck, shoulders), when asked for."""
    grid_weight: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.float64))
    """How much of the head's motion each lattice point follows by default (its rigid part,
    and ``outline_follow`` of that much of its :attr:`grid_anchor`'s own), as the rings
    at the same reach do."""
    grid_anchor: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int32))
    """The outline landmark nearest each lattice point: the point takes that landmark's own
    motion as the rings take their anchors' (:func:`~live.engines.mesh.motion.ring_motion`)."""
    slide_limits: np.ndarray = dataclasses.field(
        default_factory=lambda: np.array([[-np.inf, -np.inf], [np.inf, np.inf]]))
    """``[[x, y] lowest, [x, y] highest]``: where a border point's source may slide to (the
    body flow, :func:`live.engines.mesh.body.move_outside`): :func:`build_layout` sets the
    picture's border itself, the photo's edge or the crop's (beyond the crop the warp could
    only mirror it); unbounded by default."""

    @property
    def outside_ids(self) -> np.ndarray:
        """The vertices outside the face that may move: rings, then lattice points."""
        return np.concatenate([self.ring_ids, self.grid_ids])

    @property
    def border_ids(self) -> np.ndarray:
        """The points on the picture's edge (after the rings and the lattice)."""
        start = N_MESH + len(self.ring_ids) + len(self.grid_ids)
        return np.arange(start, self.n_vertices, dtype=np.int32)

    @property
    def n_vertices(self) -> int:
        return int(self.src.shape[0])


def oval_circle(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The face outline's centre (2,) and mean radius (pixels, at least 1e-6) of face-mesh
    ``landmarks`` (N, 2|3)."""
    oval = np.asarray(landmarks, dtype=np.float64)[list(lm.FACE_OVAL), :2]
    centre = oval.mean(axis=0)
    return centre, max(float(np.mean(np.linalg.norm(oval - centre, axis=1))), 1e-6)


def nearest_outline(points: np.ndarray, outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points`` (N, 2): the index of its nearest ``outline`` point and the
    distance to it."""
    d = np.linalg.norm(np.asarray(points)[:, None, :2] - np.asarray(outline)[None, :, :2],
                       axis=2)
    near = np.argmin(d, axis=1)
    return near, d[np.arange(len(d)), near]


def _border_points(lo: np.ndarray, hi: np.ndarray, step: float) -> np.ndarray:
    """Points along the rectangle from corner ``lo`` (x, y) to ``hi``, about ``step`` apart:
    its top and bottom rows, then its left and right columns."""
    nx = max(2, round((hi[0] - lo[0]) / step) + 1)
    ny = max(2, round((hi[1] - lo[1]) / step) + 1)
    tx, ty = np.linspace(lo[0], hi[0], nx), np.linspace(lo[1], hi[1], ny)
    mid = ty[1:-1]
    return np.concatenate([
        np.stack([tx, np.full_like(tx, lo[1])], 1), np.stack([tx, np.full_like(tx, hi[1])], 1),
        np.stack([np.full_like(mid, lo[0]), mid], 1), np.stack([np.full_like(mid, hi[0]), mid], 1),
    ])


def _edge_distance(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far each of the points ``p`` (N, 2) lies inside the rectangle ``lo`` .. ``hi``."""
    return np.asarray(np.min(np.concatenate([p - lo, hi - p], axis=1), axis=1))


def _oval_reach(p: np.ndarray, centre: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """How far each of the points ``p`` lies from the face's ``centre``, in the outline's
    own radius in its direction (1: on the outline; the rings lie at their factors)."""
    rel = oval - centre
    ang, rad = np.arctan2(rel[:, 1], rel[:, 0]), np.linalg.norm(rel, axis=1)
    order = np.argsort(ang)
    ang, rad = ang[order], rad[order]
    d = p - centre
    radius = np.interp(np.arctan2(d[:, 1], d[:, 0]),
                       np.concatenate([ang - 2 * np.pi, ang, ang + 2 * np.pi]), np.tile(rad, 3))
    return np.asarray(np.linalg.norm(d, axis=1) / np.maximum(radius, 1e-9))


def _follow_weight(p: np.ndarray, centre: np.ndarray, oval: np.ndarray, size: int,
                   rings: tuple[tuple[float, float, int], ...], fade: float,
                   still: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Default head-following weight of points at ``p``: the rings' weights interpolated by
    the distance from the face centre (in the outline's radius in the point's direction,
    :func:`_oval_reach`, as the rings are placed), zero beyond the outer ring's reach;
    points within ``still`` pixels of the picture's edge (the rectangle ``lo`` .. ``hi``) do
    not move and the weight fades in over ``fade * size`` pixels beyond them (the edge stays
    put as it did without them)."""
    r = _oval_reach(p, centre, oval)
    xs = [1.0] + [f for f, _, _ in rings] + [rings[-1][0] * 1.35]
    ys = [1.0] + [w for _, w, _ in rings] + [0.0]
    d_border = _edge_distance(p, lo, hi) - still
    return np.asarray(np.interp(r, xs, ys) * np.clip(d_border / (fade * size), 0.0, 1.0))


def build_layout(landmarks: np.ndarray, size: int, *,
                 rings: tuple[tuple[float, float, int], ...] = DEFAULT_RINGS,
                 border_step: float = 64.0, fade: float = 0.12,
                 grid_step: float | None = None,
                 picture: tuple[int, int, int, int] | None = None) -> MeshLayout:
    """Vertices and triangles for a portrait crop of ``size`` px with these landmarks.

    ``landmarks`` is (478, 2|3) in crop pixels. Ring points that fall outside the crop are left
    out; the weight of those near the border fades to zero over ``fade * size`` px so the
    border itself never moves. ``picture`` (``(x0, y0, x1, y1)``, :func:`live.geometry.
    picture_box`): the crop's pixels that show its photo; the border then runs along the
    photo's edge, and nothing of the layout lies beyond it.
    """
    from scipy.spatial import Delaunay

    if landmarks.ndim != 2 or landmarks.shape[0] != N_MESH or landmarks.shape[1] < 2:
        raise ValueError(f"expected landmarks of shape ({N_MESH}, 2|3), got {landmarks.shape}")
    pts = landmarks[:, :2].astype(np.float64)
    # the picture's pixel centres: the crop's, or the photo's part of it
    x0, y0, x1, y1 = (0, 0, size, size) if picture is None else picture
    lo = np.array([max(0, x0), max(0, y0)], np.float64)
    hi = np.array([min(size, x1) - 1, min(size, y1) - 1], np.float64)
    if np.any(hi - lo < 1.0):
        raise ValueError(f"picture: expected a box inside the {size} px crop, got {picture}")
    limits = np.array([lo, hi])
    oval_ids = np.asarray(lm.FACE_OVAL)
    oval = pts[oval_ids]
    centre = oval.mean(axis=0)
    margin = 1.0
    ring_pts, ring_anchor, ring_w = [], [], []
    for factor, weight, every in rings:
        ids = oval_ids[::every]
        p = centre + factor * (pts[ids] - centre)
        d_border = _edge_distance(p, lo, hi)
        inside = d_border >= margin
        w = weight * np.clip(d_border / (fade * size), 0.0, 1.0)
        ring_pts.append(p[inside])
        ring_anchor.append(ids[inside])
        ring_w.append(w[inside])
    ring = np.concatenate(ring_pts) if ring_pts else np.zeros((0, 2))
    anchor = np.concatenate(ring_anchor).astype(np.int32)
    weight_arr = np.concatenate(ring_w)
    # Ring points that land inside the face (possible on a strongly turned portrait) go.
    keep = ~points_in_polygon(ring, oval)
    ring, anchor, weight_arr = ring[keep], anchor[keep], weight_arr[keep]
    border = _border_points(lo, hi, border_step)
    border = border[~points_in_polygon(border, oval)]
    grid = np.zeros((0, 2))
    grid_w = np.zeros(0)
    grid_anchor = np.zeros(0, np.int32)
    if grid_step is not None:
        # A lattice over the rest of the picture, away from the border, the face and the
        # rings (no slivers), for motion measured outside the face.
        c = np.arange(grid_step / 2.0, size - 1.0 - grid_step / 4.0, grid_step)
        gx, gy = np.meshgrid(c, c)
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        near_face = points_in_polygon(grid, centre + 1.12 * (oval - centre))
        taken = np.concatenate([ring, border])
        gap = np.min(np.linalg.norm(grid[:, None, :] - taken[None, :, :], axis=2), axis=1) \
            if len(taken) else np.full(len(grid), np.inf)
        grid = grid[~near_face & (gap > 0.45 * grid_step) & (_edge_distance(grid, lo, hi) > 0)]
        grid_w = _follow_weight(grid, centre, oval, size, rings, fade,
                                still=grid_step / 2.0, lo=lo, hi=hi)
        grid_anchor = oval_ids[nearest_outline(grid, oval)[0]]
    src = np.concatenate([pts, ring, grid, border]).astype(np.float64)
    ring_ids = np.arange(N_MESH, N_MESH + len(ring), dtype=np.int32)
    grid_ids = np.arange(N_MESH + len(ring), N_MESH + len(ring) + len(grid), dtype=np.int32)
    outer_ids = np.concatenate([oval_ids, ring_ids,
                                np.arange(N_MESH + len(ring), len(src))]).astype(np.int32)
    tri = Delaunay(src[outer_ids])
    outer = outer_ids[tri.simplices]
    centroids = src[outer].mean(axis=1)
    outer = outer[~points_in_polygon(centroids, oval)]
    outer = outer[np.abs(triangle_areas(src, outer)) > 1e-3].astype(np.int32)

    face = face_triangles()
    sign = np.sign(triangle_areas(src, face))
    sign[sign == 0] = 1.0
    return MeshLayout(src=src, ring_ids=ring_ids, ring_anchor=anchor, ring_weight=weight_arr,
                      face_tris=face, outer_tris=outer, face_sign=sign, grid_ids=grid_ids,
                      grid_weight=grid_w, grid_anchor=grid_anchor.astype(np.int32),
                      slide_limits=limits)



def triangle_edges(tris: np.ndarray) -> np.ndarray:
    """The edges of the triangles ``tris`` (T, 3), (E, 2) int32, each once (lower id first)."""
    tris = np.asarray(tris)
    pairs = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0).astype(np.int32)


@lru_cache(maxsize=1)
def mesh_edges() -> np.ndarray:
    """The tesselation's edges, (E, 2) int32, each once."""
    return triangle_edges(tesselation_triangles())


def _walk(pts: np.ndarray, neighbours: dict[int, list[int]], start: int,
          direction: np.ndarray, stop: frozenset[int], max_steps: int) -> list[int]:
    """From ``start``, the mesh edge that points most nearly along ``direction`` (within 60
    degrees), step by step, until a point of ``stop`` or ``max_steps`` steps."""
    chain = [start]
    while chain[-1] not in stop and len(chain) <= max_steps:
        cur = chain[-1]
        best, best_cos = -1, 0.5
        for n in neighbours[cur]:
            step = pts[n] - pts[cur]
            norm = float(np.linalg.norm(step))
            if norm > 1e-9 and n not in chain and float(step @ direction) / norm > best_cos:
                best, best_cos = n, float(step @ direction) / norm
        if best < 0:
            break
        chain.append(best)
    return chain


@dataclass(frozen=True)
class FaceChains:
    """Paths of mesh points away from the mouth, each kept in order by
    :func:`~live.engines.mesh.motion.keep_order` (against folds where a driving face's motion
    is larger than the portrait's own room for it)."""

    down: tuple[np.ndarray, ...]
    """From each inner lower-lip point down to the face outline."""
    up: tuple[np.ndarray, ...]
    """From each inner upper-lip point up over the lip and the skin above it to the nose
    (or six steps, beside the nose)."""


def face_chains(landmarks: np.ndarray, *, max_down: int = 16, max_up: int = 6) -> FaceChains:
    """The portrait's :class:`FaceChains`: each step takes the mesh edge that points most
    nearly down (or up) the face, in this portrait's geometry."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    across = pts[lm.LEFT_EYE_OUTER] - pts[lm.RIGHT_EYE_OUTER]
    across /= max(float(np.linalg.norm(across)), 1e-9)
    down = np.array([-across[1], across[0]])
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in mesh_edges():
        neighbours[int(a)].append(int(b))
        neighbours[int(b)].append(int(a))

    def walk(starts: tuple[int, ...], direction: np.ndarray, stop: frozenset[int],
             max_steps: int) -> tuple[np.ndarray, ...]:
        chains = (_walk(pts, neighbours, s, direction, stop, max_steps) for s in starts)
        return tuple(np.asarray(c, dtype=np.int32) for c in chains if len(c) > 1)

    return FaceChains(
        down=walk(lm.LIPS_INNER_LOWER[1:-1], down, frozenset(lm.FACE_OVAL), max_down),
        up=walk(lm.LIPS_INNER_UPPER[1:-1], -down, frozenset(lm.NOSE), max_up))


@dataclass(frozen=True, eq=False)
class Unfolder:
    """Puts outside points that turned triangles over back in order (:meth:`__call__`),
    built once per portrait (:meth:`of`): the triangles, their orientation at rest, the
    mesh's edges and which points may move.

    The body flow moves the points outside the face one by one; near a tight crop's edge or
    on hair the flow is least sure of, two neighbours could swap places, and the thin
    triangle between them, turned over, drew picture from elsewhere (a torn, speckled edge).
    Face landmarks do not move (where the face's outline folds over the outside on a turn,
    the rings beside it give way)."""

    src: np.ndarray
    tris: np.ndarray
    ref: np.ndarray
    edges: np.ndarray
    count: np.ndarray
    movable: np.ndarray

    @classmethod
    def of(cls, layout: MeshLayout) -> Unfolder:
        """For a portrait's layout: the triangles outside the face, their rings' and
        lattice's points movable."""
        return cls.build(layout.src, layout.outer_tris, layout.outside_ids)

    @classmethod
    def build(cls, src: np.ndarray, tris: np.ndarray, movable: np.ndarray) -> Unfolder:
        """For triangles ``tris`` over the rest positions ``src``; ``movable``: vertex ids."""
        ref = np.sign(triangle_areas(src, tris))
        tris, ref = tris[ref != 0], ref[ref != 0]
        edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
        edges = np.concatenate([edges, edges[:, ::-1]])
        n = len(src)
        can = np.zeros(n, bool)
        can[movable] = True
        return cls(src=np.asarray(src, np.float64), tris=tris, ref=ref, edges=edges,
                   count=np.maximum(np.bincount(edges[:, 0], minlength=n), 1).astype(np.float64),
                   movable=can)

    def __call__(self, dst: np.ndarray, *, rounds: int = 4) -> int:
        """In place: where triangles turned over (in ``dst`` against the rest), their movable
        corners take the mean displacement of their neighbours, half way each round, for up
        to ``rounds`` rounds; returns the triangles still turned over."""
        tris, ref, src = self.tris, self.ref, self.src
        for _ in range(rounds):
            bad = np.sign(triangle_areas(dst, tris)) != ref
            if not bad.any():
                return 0
            fix = np.zeros(len(dst), bool)
            fix[tris[bad].ravel()] = True
            fix &= self.movable
            if not fix.any():
                break
            disp = dst - src
            total = np.stack([np.bincount(self.edges[:, 0], disp[self.edges[:, 1], k], len(dst))
                              for k in (0, 1)], axis=1)
            dst[fix] = src[fix] + 0.5 * (disp[fix] + total[fix] / self.count[fix, None])
        return int((np.sign(triangle_areas(dst, tris)) != ref).sum())
