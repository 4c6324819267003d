"""Where the face's outer band takes its pixels from when a turn brings it into view.

A portrait's face seen turned shows its far cheek edge-on: there the face mesh's outer rows
fold over past the outline (their triangles face away in the portrait) or lie a few pixels
apart. When the driving head turns that cheek towards the camera, those triangles open up
and the warp draws each from its own source triangle: the few pixels at the portrait's edge
(the cheek's rim of light, a shadow line, strands of hair), mirrored where the rows folded,
are drawn out into a streak down the cheek beside a doubled edge.

:class:`BandSource` re-sources the band (the rings of mesh vertices next to the face
outline) there: a vertex next to a triangle that comes into view, or to an edge stretched
more than :data:`STRETCH_FROM` times, takes (with the rings around it) its *source* point
from a smooth map of the output onto the portrait, interpolated from the outline and the
vertices further in (least-norm weights that reproduce any affine map, so a rigid or
uniformly scaled motion keeps every source where it was). Landmarks go where they went
before; only the texture between them is taken in order and shared out evenly.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from live.engines.mesh.topology import triangle_areas, triangle_edges

REFERENCE_SIZE = 512
"""The crop size (px) at which the pixel measures below hold. A band built for another size
(:class:`BandSource`'s ``size``) scales them, lengths by the sizes' ratio and areas by its
square: Mona Lisa's face prepared at 256 px (a 512 px picture) kept the fold of her turned
cheek under :data:`FOLD_MIN_AREA` as it opened, and drew the edge's rim of light twice."""
STRETCH_FROM = 3.0
"""Edge stretch (output length over portrait length, the most stretched edge of a vertex) at
which a band vertex starts to take its interpolated source ..."""
STRETCH_FULL = 4.5
"""... and from which on it takes it fully."""
MIN_EDGE_PX = 4.0
"""Edges shorter than this in the portrait count as this long when their stretch is measured
(a pixel-long edge between two close landmarks is no strip of skin drawn out)."""
RINGS = 3
"""How many rings of vertices inside the face outline share out the stretch."""
FOLD_MIN_AREA = 30.0
"""Output area (px^2) from which a triangle the portrait shows facing away counts as brought
into view (smaller ones are slivers along the outline)."""
EDGE_ON_AREA = 2.0
"""Portrait area (px^2) under which a band triangle counts as seen edge-on (its corners
nearly in a line along the outline): it is brought into view as one facing away is, when it
opens up facing the camera, rather than drawing that line of pixels out over the cheek."""


class BandSource:
    """The outer band of one portrait's face mesh (see the module's docstring).

    ``src`` are the portrait's mesh points (N, 2); ``tris`` the face triangles (T, 3) of
    indices into them; ``outline`` the face outline's ids; ``keep`` ids whose sources never
    move (eyes, brows, lips: their own renderers rely on them); ``depth_points`` the
    portrait's landmarks with the face mesh's z ((N, 3); without them only stretched edges
    are re-sourced, not triangles brought into view); ``size`` the crop's side in pixels
    (the pixel measures scale from :data:`REFERENCE_SIZE`)."""

    def __init__(self, src: np.ndarray, tris: np.ndarray, outline: Iterable[int],
                 keep: Iterable[int], *, rings: int = RINGS,
                 depth_points: np.ndarray | None = None,
                 size: int = REFERENCE_SIZE) -> None:
        if size <= 0:
            raise ValueError(f"expected a crop size in pixels > 0, got {size}")
        scale = size / REFERENCE_SIZE  # lengths; areas by its square
        self._fold_min_area = FOLD_MIN_AREA * scale * scale
        src = np.asarray(src, np.float64)[:, :2]
        n = len(src)
        tris = np.asarray(tris, np.int64)
        neighbours: list[set[int]] = [set() for _ in range(n)]
        for a, b in triangle_edges(tris).tolist():
            neighbours[a].add(b)
            neighbours[b].add(a)
        depth = np.full(n, -1)
        front = [int(i) for i in outline if i < n]
        depth[front] = 0
        for d in range(1, rings + 1):
            nxt = []
            for v in front:
                for u in neighbours[v]:
                    if depth[u] < 0:
                        depth[u] = d
                        nxt.append(u)
            front = nxt
        kept = set(int(i) for i in keep)
        free = [v for v in range(n) if 1 <= depth[v] <= rings and v not in kept
                and len(neighbours[v]) >= 3]
        self.free = np.asarray(free, np.int64)
        col = {v: i for i, v in enumerate(free)}  # free vertex -> its row (and column)
        fixed = sorted({u for v in free for u in neighbours[v] if u not in col})
        self.fixed = np.asarray(fixed, np.int64)
        # each free vertex's neighbours, padded to one length: (F, K) ids into the mesh and
        # their columns in [free | fixed]
        col.update({v: len(free) + i for i, v in enumerate(fixed)})
        k = max((len(neighbours[v]) for v in free), default=0)
        self._nb = np.zeros((len(free), k), np.int64)
        self._col = np.zeros((len(free), k), np.int64)
        self._mask = np.zeros((len(free), k), bool)
        self._col[:] = len(free) + len(fixed)  # padding: a column of its own, dropped
        self._rows = np.repeat(np.arange(len(free)), k).reshape(len(free), k)
        for i, v in enumerate(free):
            nb = sorted(neighbours[v])
            self._nb[i, :len(nb)] = nb
            self._col[i, :len(nb)] = [col[u] for u in nb]
            self._mask[i, :len(nb)] = True
        pairs = [(i, col[u]) for i, v in enumerate(free) for u in neighbours[v]
                 if i < col[u] < len(free)]
        self._pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        self._rings = rings
        is_free = np.zeros(n, bool)
        is_free[free] = True
        self._slot = np.full(n, -1, np.int64)  # mesh id -> row among the free vertices
        self._slot[free] = np.arange(len(free))
        self._tris = tris[is_free[tris].any(axis=1)] if free else tris[:0]
        self._area_src = triangle_areas(src, self._tris)
        # which of the band's triangles face away in the portrait (folded past its outline:
        # the ones a turn can bring round) or lie edge-on in it (EDGE_ON_AREA): the mesh's
        # triangles are wound either way, so each is first wound with its normal pointing
        # out of the head (away from the face's centre in 3-D), then seen from the camera
        # (the face mesh's z grows away from it)
        self._back = self._tris[:0]
        self._wind = np.ones(0)
        self._front = 1.0
        if depth_points is not None:
            p3 = np.asarray(depth_points, np.float64)[:, :3]
            t = self._tris
            a, b, c = p3[t[:, 0]], p3[t[:, 1]], p3[t[:, 2]]
            normal = np.cross(b - a, c - a)
            out = (a + b + c) / 3.0 - p3[:n].mean(axis=0)
            wind = np.where(np.einsum("ij,ij->i", normal, out) >= 0.0, 1.0, -1.0)
            away = wind * normal[:, 2] > 0.0
            hidden = away | (np.abs(self._area_src) < EDGE_ON_AREA * scale * scale)
            self._back = t[hidden]
            # the 2-D area's sign of a triangle facing the camera, wound outwards
            self._wind = wind[hidden]
            facing = ~hidden
            self._front = 1.0 if float(np.sum(np.sign(wind[facing] * self._area_src[facing]))) \
                >= 0.0 else -1.0
        self._src_len = np.maximum(
            np.linalg.norm(src[self.free][:, None, :] - src[self._nb], axis=2), MIN_EDGE_PX * scale)

    def sources(self, dst: np.ndarray, src: np.ndarray) -> np.ndarray:
        """``src`` (N, 2+) with the band's stretched or folded vertices re-sourced for the
        output points ``dst`` (N, 2+); ``src`` itself when there are none. ``src`` holds the
        portrait's own points where the band is (as it was built with)."""
        f = self.free
        if not len(f):
            return src
        d = np.asarray(dst, np.float64)[:, :2]
        length = np.linalg.norm(d[f][:, None, :] - d[self._nb], axis=2)
        ratio = np.where(self._mask, length / self._src_len, 0.0)
        stretch = ratio.max(axis=1)
        alpha = np.clip((stretch - STRETCH_FROM) / (STRETCH_FULL - STRETCH_FROM), 0.0, 1.0)
        # a triangle the portrait shows turned over (past its silhouette) that now faces
        # the camera: its own sources would draw the portrait's edge mirrored
        back = self._back
        if len(back):
            shown = self._wind * triangle_areas(d, back) * self._front > self._fold_min_area
            if np.any(shown):
                slots = self._slot[back[shown]]
                alpha[slots[slots >= 0]] = 1.0
        if not np.any(alpha > 0.0):
            return src
        s = np.asarray(src, np.float64)[:, :2]
        t = self._tris
        area_s, area_d = self._area_src, triangle_areas(d, t)
        # the whole depth of the band next to a stretch takes part (a vertex left out would
        # take all of it on its own edges)
        a, b = self._pairs[:, 0], self._pairs[:, 1]
        for _ in range(self._rings):
            grown = alpha.copy()
            np.maximum.at(grown, a, alpha[b])
            np.maximum.at(grown, b, alpha[a])
            alpha = grown
        # the source as a smooth function of the output position: each free vertex's source
        # is the least-norm affine combination of its neighbours' at its output position
        w = _affine_weights(d[f], d[self._nb], self._mask)
        n_free = len(f)
        m = np.zeros((n_free, n_free + len(self.fixed) + 1))  # + 1: the padding's column
        m[self._rows, self._col] = w
        try:
            smooth = np.linalg.solve(np.eye(n_free) - m[:, :n_free],
                                     m[:, n_free:-1] @ s[self.fixed])
        except np.linalg.LinAlgError:
            return src
        # never turn a triangle over that the portrait's own sources kept the right way
        # round (where the output is cramped the weights can overshoot): the vertices of
        # such a triangle take half their change, three times over, then none
        own = area_s * area_d > 0.0
        change = alpha[:, None] * (smooth - s[f])
        out = np.array(src, copy=True)
        for attempt in range(5):
            out[f, :2] = s[f] + change
            bad = own & (triangle_areas(out[:, :2], t) * area_d <= 0.0)
            if not np.any(bad):
                return out
            slots = self._slot[t[bad]]
            slots = slots[slots >= 0]
            change[slots] *= 0.0 if attempt == 3 else 0.5
        return src


def _affine_weights(p: np.ndarray, nb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row: least-norm weights ``w`` (K,) over the points ``nb`` (K, 2) where ``mask``,
    0 elsewhere, with ``sum(w) = 1`` and ``w @ nb = p``: any affine function of the points is
    reproduced at ``p`` (F rows: ``p`` (F, 2), ``nb`` (F, K, 2), ``mask`` (F, K))."""
    a = np.concatenate([np.ones(mask.shape)[:, None, :], np.moveaxis(nb, 2, 1)], axis=1)
    a = a * mask[:, None, :]  # (F, 3, K)
    gram = a @ np.moveaxis(a, 2, 1) + 1e-9 * np.eye(3)
    b = np.concatenate([np.ones((len(p), 1)), p], axis=1)[:, :, None]
    return np.asarray((np.moveaxis(a, 2, 1) @ np.linalg.solve(gram, b))[:, :, 0])
