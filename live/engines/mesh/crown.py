"""The top of a head that the photo's top edge cuts off (mesh engine, head layer).

With a head layer the warp's border slides with the body flow
(:func:`~live.engines.mesh.body.move_outside`): a point on the top edge shows what the motion
brings to it. When the head moves down, that lies above the photo, and nothing of it is
known. Held at the edge, the edge's own row was drawn down to the moved head: hair that
touched the edge was pulled up into a peak on a roll (pg_fom_source_image on tps_driving)
and a cone on a nod (gfpgan_julia_roberts_crop).

A :class:`Crown` closes the head above the edge instead. The edge row of the person matte
goes on upwards, narrowed row by row as a circle narrows. The circle is fitted to the
silhouette's sides just below the edge (with the edge's own run of person as its chord).
The border's sources may then slide up to :data:`CROWN_REACH` of the side beyond the edge.
Where the warp samples beyond it, the head layer shows the picture mirrored at the edge
(hair goes on as hair) inside that matte, over the still background (:meth:`Crown.draw`).
A photo whose top row shows no person has no crown, and its warp is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from live.engines.mesh.warp import doubled_positions, sample_at

log = logging.getLogger(__name__)

CROWN_REACH = 0.2
"""How far beyond the picture's top edge (share of the side) the warp's border sources may
slide when a head touches that edge, and so how tall a crown is kept."""

CROWN_FIT_DEPTH = 0.2
"""How far below the top edge (share of the side) the silhouette's sides are taken for the
crown's circle."""

CROWN_LEAST_PX = 3
"""A run of person along the top edge narrower than this (px) makes no crown (a strand)."""

BEYOND_PX = 0.5
"""How far above the top edge (px) a source must lie for :meth:`Crown.draw` to draw it."""

_PERSON = 0.5
"""Matte level a pixel counts as the person's from (the runs and the silhouette's sides)."""


@dataclass(frozen=True, eq=False)
class Crown:
    """The person matte above the picture's top edge ``top`` (a row of the portrait crop):
    ``cap`` (rows + 1, width) float32 in [0, 1], its row ``i`` lying at ``top - rows + i``
    (the last one the edge's own row)."""

    top: int
    cap: np.ndarray

    @property
    def rows(self) -> int:
        """How many rows above :attr:`top` the crown holds."""
        return int(self.cap.shape[0]) - 1

    def limits(self, slide_limits: np.ndarray) -> np.ndarray:
        """``slide_limits`` (``[[x, y] lowest, [x, y] highest]``) with the lowest y taken
        :attr:`rows` up, beyond the top edge."""
        out = np.array(slide_limits, np.float64, copy=True)
        out[0, 1] = min(out[0, 1], float(self.top - self.rows))
        return out

    def reached(self, sources: np.ndarray) -> bool:
        """Whether any of the warp's vertex sources ``sources`` (N, 2) lies beyond the edge
        (:data:`BEYOND_PX` or more): the map between them reaches no further, so without one
        :meth:`draw` has nothing to draw."""
        return bool(len(sources)) and float(np.min(sources[:, 1])) < self.top - BEYOND_PX

    def matte_at(self, source: np.ndarray) -> np.ndarray:
        """The crown's matte at a map of source positions ``source`` (h, w, 2) float32
        (bilinear; 0 outside it), (h, w)."""
        at = np.asarray(source, np.float32) - np.array([0.0, self.top - self.rows], np.float32)
        return np.asarray(sample_at(self.cap, np.ascontiguousarray(at),
                                    border=cv2.BORDER_CONSTANT), np.float32)

    def draw(self, out: np.ndarray, matte: np.ndarray, source: np.ndarray,
             picture: np.ndarray, still: np.ndarray) -> int:
        """In place: the pixels of ``out`` (the warped head over ``still``, the still
        background) at or below :attr:`top` whose source (``source``, the warp's map) lies
        :data:`BEYOND_PX` or more above it, drawn as the picture mirrored at the edge
        (``picture``: the portrait with its matte as a fourth channel, enlarged 2x,
        :func:`~live.engines.mesh.warp.enlarge_2x`, sampled as the engine samples it) inside
        the crown's matte, over ``still``. ``matte`` (uint8, the warped person matte) is set
        to the crown's there, and the rows above :attr:`top` in those columns repeat its
        row. Returns how many pixels were drawn."""
        ys = source[..., 1]
        # rows above the photo's edge are the crop's made-up border, and a source less than
        # half a pixel beyond is the edge's own row (a head at rest, give or take the
        # tracker's jitter): both left as they are
        line = np.float32(self.top - BEYOND_PX)
        rows = self.top + np.flatnonzero(ys[self.top:].min(axis=1) < line)
        if not len(rows):
            return 0
        strip = ys[rows[0]:rows[-1] + 1]
        cols = np.flatnonzero(strip.min(axis=0) < line)
        band = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        at = source[band]
        beyond = at[..., 1] < line
        n = int(beyond.sum())
        mirrored = doubled_positions(at)  # in the 2x copy's pixels
        flipped = np.float32(4 * self.top) - mirrored[..., 1]
        np.copyto(mirrored[..., 1], flipped, where=beyond)
        sample = sample_at(picture, np.ascontiguousarray(mirrored))[beyond]
        cover = self.matte_at(at)[beyond][:, None]
        behind = still[band][beyond].astype(np.float32)
        drawn = cover * sample[:, :3].astype(np.float32) + (1.0 - cover) * behind
        out[band][beyond] = np.clip(drawn + 0.5, 0.0, 255.0).astype(np.uint8)
        matte[band][beyond] = np.clip(cover[:, 0] * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        # the crop's rows above the edge (its made-up border, and the photo's own first row
        # or so) repeat the edge's row, as the crop was made: the warp left them as they were,
        # a line of the hair where it had been
        across = band[1]
        out[:self.top, across] = out[self.top, across]
        matte[:self.top, across] = matte[self.top, across]
        return n


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` (end exclusive) of each run of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def fit_circle(points: np.ndarray) -> tuple[float, float, float] | None:
    """``(cx, cy, r)`` of the circle fitted to ``points`` (N, 2) by least squares on its
    algebraic form; None for fewer than three points or points on a line."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 3:
        return None
    a = np.column_stack([pts, np.ones(len(pts))])
    b = -(pts ** 2).sum(axis=1)
    sol, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    if rank < 3:
        return None
    cx, cy = -sol[0] / 2.0, -sol[1] / 2.0
    r2 = cx * cx + cy * cy - sol[2]
    if not np.isfinite(r2) or r2 <= 0.0:
        return None
    return float(cx), float(cy), float(np.sqrt(r2))


def _sides(person: np.ndarray, top: int, start: int, end: int, x_lo: int, x_hi: int,
           depth: int) -> np.ndarray:
    """The silhouette's sides below the top edge's run ``start:end``: per row, the ends of
    the run of person under the run's middle (a side at the picture's own left or right
    edge is not the silhouette's and is left out), down to ``depth`` rows or to where the
    middle is no longer the person's."""
    mid = (start + end - 1) // 2
    points = []
    for y in range(top + 1, min(person.shape[0], top + 1 + depth)):
        row = person[y]
        if not row[mid]:
            break
        left = mid - int(np.argmin(row[mid::-1])) + 1 if not row[mid::-1].all() else 0
        right = mid + int(np.argmin(row[mid:])) - 1 if not row[mid:].all() else len(row) - 1
        if left > x_lo:
            points.append((left - 0.5, float(y)))
        if right < x_hi:
            points.append((right + 0.5, float(y)))
    return np.array(points, np.float64).reshape(-1, 2)


def crown_cap(matte: np.ndarray, slide_limits: np.ndarray, *,
              reach: float = CROWN_REACH, depth: float = CROWN_FIT_DEPTH) -> Crown | None:
    """The :class:`Crown` of a portrait whose person ``matte`` (float (H, W) in [0, 1], the
    portrait crop's) touches the picture's top edge (``slide_limits``: the picture's
    border in the crop, :attr:`~live.engines.mesh.topology.MeshLayout.slide_limits`); None
    when nothing of the person lies along that edge.

    Each run of person along the edge is a chord of a circle fitted to it and the
    silhouette's sides below (:data:`CROWN_FIT_DEPTH` of the side); a run whose sides give no
    usable circle (too few, or a circle narrower than the run) closes as a half disc over
    it. Above the edge the edge row's matte goes on, squeezed towards the run's middle as the
    circle's chord shortens (or widened where the circle still widens above the edge), up to
    ``reach`` of the side."""
    m = np.asarray(matte, np.float32)
    if m.ndim != 2:
        raise ValueError(f"matte: expected an (H, W) array, got shape {m.shape}")
    h, w = m.shape
    lo, hi = np.asarray(slide_limits, np.float64)
    if not np.all(np.isfinite(np.concatenate([lo, hi]))):
        lo, hi = np.array([0.0, 0.0]), np.array([w - 1.0, h - 1.0])
    top, x_lo, x_hi = (int(np.rint(v)) for v in (lo[1], lo[0], hi[0]))
    if not 0 <= top < h or not 0 <= x_lo < x_hi < w:
        return None
    edge = np.zeros(w, np.float32)
    edge[x_lo:x_hi + 1] = np.clip(m[top, x_lo:x_hi + 1], 0.0, 1.0)
    person = m >= _PERSON
    side = float(max(h, w))
    rows = max(1, int(np.ceil(reach * side)))
    heights = np.arange(rows, -1, -1, dtype=np.float64)  # cap row i lies `heights[i]` above
    cap = np.zeros((rows + 1, w), np.float32)
    xs = np.arange(w, dtype=np.float64)
    for start, end in _runs(edge >= _PERSON):
        if end - start < CROWN_LEAST_PX:
            continue
        half = (end - start) / 2.0
        mid = (start + end - 1) / 2.0
        # the run's whole profile, its soft ends too, out to where the matte is gone
        a, b = start, end
        while a > x_lo and edge[a - 1] > 0.02:
            a -= 1
        while b <= x_hi and edge[b] > 0.02:
            b += 1
        profile_x, profile = xs[a:b], edge[a:b].astype(np.float64)
        chord = np.array([[start - 0.5, float(top)], [end - 0.5, float(top)]])
        sides = _sides(person, top, start, end, x_lo, x_hi, max(2, int(depth * side)))
        circle = fit_circle(np.concatenate([chord, sides])) if len(sides) >= 4 else None
        # the fitted circle's curvature, through the run's ends (on the side of the edge
        # its centre lies); a half disc over the run without one
        if circle is None or circle[2] <= half:
            cy, r = float(top), half
        else:
            r = circle[2]
            below = float(np.sqrt(r * r - half * half))
            cy = top + below if circle[1] >= top else top - below
        # the chord's half width at each height above the edge, as a share of the run's
        squeeze = np.sqrt(np.maximum(r * r - (top - heights - cy) ** 2, 0.0)) / half
        for i, s in enumerate(squeeze):
            if s <= 1e-3:
                continue
            row = np.interp((xs - mid) / s + mid, profile_x, profile, left=0.0,
                            right=0.0)
            np.maximum(cap[i], row.astype(np.float32), out=cap[i])
    if not cap[:-1].any():
        return None
    log.debug("the person touches the picture's top edge: a crown of up to %d rows above it",
              int((cap.max(axis=1) > 0.02).sum()))
    return Crown(top=top, cap=cap)


__all__ = ["BEYOND_PX", "CROWN_FIT_DEPTH", "CROWN_LEAST_PX", "CROWN_REACH", "Crown", "crown_cap",
           "fit_circle"]
