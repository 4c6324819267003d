"""Piecewise-affine image warp: a rasterised triangle-index map, closed-form affines, one remap.

For every output pixel the warp needs the source position it shows. The output triangles are
drawn into a coarse index map (``grid`` x ``grid``; a fill per triangle, in draw order, so
later triangles cover earlier ones); every triangle's output->source affine is solved in
closed form for all triangles at once; the per-pixel *displacement* (source minus output
position) is evaluated on the coarse grid, resized to full size (it is continuous across
shared triangle edges, so bilinear resizing is nearly exact) and one ``cv2.remap`` samples
the image (the engine samples a copy of the portrait enlarged 2x, :func:`enlarge_2x`:
bilinear sampling of the picture itself blurs a moving face). Pixels no triangle covered
(fill rounding) take a neighbour's triangle. Where the
face folds over the outside (a turned cheek), the displacement jumps between two cells and the
grid shows as a staircase: :meth:`PiecewiseAffineWarp.silhouette_seams` finds those cells and
:meth:`PiecewiseAffineWarp.seam_sources` gives what their pixels show from either side and how
much of each the face covers, to draw them at full resolution. Where the face folds over
itself (lips pulled over the skin round a yelling mouth), :meth:`PiecewiseAffineWarp.fold_seams`
finds the torn cells and :meth:`PiecewiseAffineWarp.fold_samples` gives their pixels' source
positions at 2 x 2 sub-samples each (:data:`FOLD_SUBSAMPLES`), from a fine raster of the
triangles there.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import cv2
import numpy as np


def fill_points(points: np.ndarray, *, scale: float = 1.0,
                origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Polygon corners ``points`` (..., 2, output pixels) as OpenCV's fills take them with 4
    fractional bits (``shift=4``), int32, on a raster ``scale`` times as fine as the output
    whose first pixel lies at output pixel ``origin`` (x, y): pixel centres map onto pixel
    centres."""
    return np.round(((points - np.asarray(origin, np.float64) + 0.5) * scale - 0.5)
                    * 16.0).astype(np.int32)


def triangle_affines(dst: np.ndarray, src: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Displacement coefficients of each triangle's output->source affine, (T, 6) float32.

    Row ``(a, b, c, d, e, f)`` gives ``source - output = (a x + b y + c, d x + e y + f)`` at
    output position ``(x, y)``. Degenerate (zero-area) output triangles get a pure shift.
    """
    d0, d1, d2 = dst[tris[:, 0]], dst[tris[:, 1]], dst[tris[:, 2]]
    s0, s1, s2 = src[tris[:, 0]], src[tris[:, 1]], src[tris[:, 2]]
    e1, e2 = d1 - d0, d2 - d0
    f1, f2 = s1 - s0, s2 - s0
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    ok = np.abs(det) > 1e-9
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    # L = [f1 f2] @ inverse([e1 e2]); inverse([e1 e2]) = [[e2y, -e2x], [-e1y, e1x]] / det
    l00 = (f1[:, 0] * e2[:, 1] - f2[:, 0] * e1[:, 1]) * inv_det
    l01 = (-f1[:, 0] * e2[:, 0] + f2[:, 0] * e1[:, 0]) * inv_det
    l10 = (f1[:, 1] * e2[:, 1] - f2[:, 1] * e1[:, 1]) * inv_det
    l11 = (-f1[:, 1] * e2[:, 0] + f2[:, 1] * e1[:, 0]) * inv_det
    l00 = np.where(ok, l00, 1.0)
    l11 = np.where(ok, l11, 1.0)
    tx = s0[:, 0] - (l00 * d0[:, 0] + l01 * d0[:, 1])
    ty = s0[:, 1] - (l10 * d0[:, 0] + l11 * d0[:, 1])
    return np.stack([l00 - 1.0, l01, tx, l10, l11 - 1.0, ty], axis=1).astype(np.float32)


def triangle_bounds(dst: np.ndarray, src: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Each triangle's displacement range, (T, 4) float32 ``(dx min, dy min, dx max, dy
    max)`` over its corners: inside a triangle the displacement never leaves it, so a grid
    cell that a sliver triangle won (its centre outside the sliver) is held to it instead of
    taking the sliver's affine far outside (a patch of picture from elsewhere)."""
    disp = src - dst
    a, b, c = disp[tris[:, 0]], disp[tris[:, 1]], disp[tris[:, 2]]
    out = np.empty((len(tris), 4), np.float32)  # (min and max are exact in float32 too)
    out[:, :2] = np.minimum(np.minimum(a, b), c)
    out[:, 2:] = np.maximum(np.maximum(a, b), c)
    return out


SHARP_SAMPLING = cv2.INTER_CUBIC
"""How the portrait's pixels are sampled where a few are (:func:`enlarge_2x`'s midpoints, the
parted lips' seam-free copy, a gaze's redrawn eye): OpenCV's bicubic, 5-6x the time of
bilinear for a whole picture."""


REMAP_STEPS = 32
"""``cv2.remap`` samples at 1/32 px steps (OpenCV's ``INTER_TAB_SIZE``)."""


def doubled_positions(source: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Source positions (..., 2) float32 as positions in an :func:`enlarge_2x` copy: rounded
    to the 1/32 px steps ``cv2.remap`` samples at (:data:`REMAP_STEPS`), then doubled. A
    position the picture itself would be sampled at as a whole pixel (a background 0.01 px
    off) is then a whole pixel of the copy too, not 1/32 of the way to a midpoint. Into
    ``out`` when given."""
    if out is None:
        out = np.empty(source.shape, np.float32)
    np.multiply(source, np.float32(REMAP_STEPS), out=out)
    np.rint(out, out=out)
    np.multiply(out, np.float32(2.0 / REMAP_STEPS), out=out)
    return out


def sample_at(image: np.ndarray, source: np.ndarray, *,
              interpolation: int = cv2.INTER_LINEAR, border: int = cv2.BORDER_REFLECT_101,
              dst: np.ndarray | None = None) -> np.ndarray:
    """``image`` sampled at ``source``, (h, w, 2) float32 (x, y) positions (``cv2.remap``
    with the one 2-channel map; border pixels 0 where ``border`` makes them up); into
    ``dst`` when given."""
    remap: Any = cv2.remap  # the stubs do not allow map2=None (a 2-channel map1)
    return np.asarray(remap(image, source, None, interpolation, dst=dst, borderMode=border))


def enlarge_2x(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W[, C]) at twice its size less a pixel, (2H - 1, 2W - 1[, C]): its even
    pixels are ``image``'s own, the odd ones bicubic midpoints (:data:`SHARP_SAMPLING`).

    Sampled bilinearly at twice a source map (:meth:`PiecewiseAffineWarp.doubled`), this
    gives about what bicubic sampling of ``image`` gives at the cost of bilinear: bilinear
    sampling of ``image`` itself averages neighbours at a fractional position (half a pixel
    off: a [1/2, 1/2] filter) and a moving face's grain, lashes and hair go soft. A
    whole-pixel map still gives ``image`` back exactly, and a map past the edge mirrors it as
    :meth:`PiecewiseAffineWarp.remap` does (the last pixel is an original one)."""
    h, w = image.shape[:2]
    up = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], np.float32)
    return np.asarray(cv2.warpAffine(image, up, (2 * w - 1, 2 * h - 1), flags=SHARP_SAMPLING,
                                     borderMode=cv2.BORDER_REFLECT_101))


SEAM_JUMP_PX = 1.5
"""Neighbouring grid cells whose displacements differ by more than this (px) tear apart (see
:meth:`PiecewiseAffineWarp.silhouette_seams`)."""


SEAM_LEAST_PX = 100
"""A torn part of a silhouette smaller than this (pixels, its cells grown by one: a cell or
two of a jump) is left as the grid draws it (:meth:`PiecewiseAffineWarp.seam_sources`)."""


FOLD_MISS_PX = 1.5
"""A face cell that, drawn by its neighbour's triangle, would show a source this far (px) from
its own marks a staircase (:meth:`PiecewiseAffineWarp.fold_seams`)."""


FOLD_BLOCK_PX = 4
"""The fine raster of a fold takes the triangles that reach a block this size with a fold
pixel in it (:meth:`PiecewiseAffineWarp.fold_samples`)."""


FOLD_SUBSAMPLES = 2
"""Sub-samples a side of a pixel on a fold (:meth:`PiecewiseAffineWarp.fold_samples`)."""


POINT_ROW = 4096
"""Points a row of the map :meth:`PiecewiseAffineWarp.remap_points` samples through."""


class Buffers:
    """Reusable arrays by name, for a frame's large temporaries: a fresh 1 MB array costs
    its page faults every frame, often more than the work done on it."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """The array kept as ``name`` (contents left from its last use), made anew when
        its shape or type differs."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype)
        return a


class SeamSources(NamedTuple):
    """A torn silhouette's two sides at its pixels (:meth:`PiecewiseAffineWarp.seam_sources`)."""

    ys: np.ndarray
    """(N,) the pixels' rows ..."""
    xs: np.ndarray
    """(N,) ... and columns (output pixels)."""
    cover: np.ndarray
    """(N,) float32: how much of each pixel the face covers (0..1)."""
    face: np.ndarray
    """(N, 2) float32: source positions as part of the face ..."""
    outside: np.ndarray
    """(N, 2) float32: ... and as part of the outside."""


class FoldSamples(NamedTuple):
    """A fold's pixels and their sub-samples' sources (:meth:`PiecewiseAffineWarp.fold_samples`)."""

    ys: np.ndarray
    """(N,) the pixels' rows ..."""
    xs: np.ndarray
    """(N,) ... and columns (output pixels)."""
    sources: np.ndarray
    """(N, S, 2) float32: the source positions of each pixel's S sub-samples, each from the
    triangle drawn last over it (a pixel's own source where none is)."""


class PiecewiseAffineWarp:
    """Warps ``size`` x ``size`` images by triangle meshes (see the module docstring)."""

    def __init__(self, size: int, *, grid: int = 256) -> None:
        if size < 8 or not 8 <= grid <= size:
            raise ValueError(f"expected size >= 8 and 8 <= grid <= size, got {size}, {grid}")
        self.size = int(size)
        self.grid = int(grid)
        self._g = self.grid / self.size
        # Output-pixel coordinates of the coarse grid's cells (pixel centres).
        c = (np.arange(self.grid, dtype=np.float32) + 0.5) / self._g - 0.5
        c.setflags(write=False)  # handed out by cell_centres
        self._centres = c
        self._gx, self._gy = np.meshgrid(c, c)
        full = np.arange(self.size, dtype=np.float32)
        fx, fy = np.meshgrid(full, full)
        self._identity = np.stack([fx, fy], axis=-1)  # (size, size, 2) output positions
        self._index = np.zeros((self.grid, self.grid), np.uint16)
        self._fill_values: list[tuple[int]] = []
        self.buffers = Buffers()
        """A frame's large temporaries, reused (see :class:`Buffers`)."""
        self._disp = np.empty((self.grid, self.grid, 2), np.float32)
        # per-cell (x, y) pairs of source_map: 3 of coefficients, 2 of bounds, a scratch one
        self._planes = np.empty((6, self.grid, self.grid, 2), np.float32)
        self._gx2 = np.ascontiguousarray(np.stack([self._gx, self._gx], axis=-1))
        self._gy2 = np.ascontiguousarray(np.stack([self._gy, self._gy], axis=-1))
        self._grid_xy = np.ascontiguousarray(np.stack([self._gx, self._gy], axis=-1))
        self._seam_cells = np.zeros((self.grid, self.grid), np.uint8)
        self._kernel3 = np.ones((3, 3), np.uint8)
        self._cross3 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))

    def index_map(self, dst: np.ndarray, tris: np.ndarray, *,
                  top: int | None = None) -> np.ndarray:
        """Rasterise triangles (drawn in the given order) into the coarse grid: cell value is
        1 + the triangle's row in ``tris``; holes are filled from neighbours. With ``top``,
        the rows from ``top`` on were drawn already (:meth:`draw_top`, on the same ``tris``
        and their corners in ``dst``): only the rows before it are drawn, under them; the
        map is the same as drawing them all in order."""
        if len(tris) >= np.iinfo(np.uint16).max:
            raise ValueError(f"too many triangles for the index map: {len(tris)}")
        idx = self._index
        if top is None:
            idx.fill(0)
            self._fill(idx, dst, tris, 0)
        elif top > 0:
            # the cells a top triangle won keep it: the rest take the last one under it
            under = self.buffers.get("index under", idx.shape, idx.dtype)
            under.fill(0)
            self._fill(under, dst, tris[:top], 0)
            np.copyto(idx, under, where=idx == 0)
        holes = idx == 0
        if holes.any():
            grown = cv2.dilate(idx, np.ones((3, 3), np.uint8))
            np.copyto(idx, grown, where=holes)
        return idx

    def draw_top(self, dst: np.ndarray, tris: np.ndarray, top: int) -> None:
        """The first part of :meth:`index_map` with ``top``: rows ``top:`` of ``tris`` (the
        triangles drawn last, which cover the rest) into a fresh index map, from their
        corners in ``dst``; the rows before ``top`` may still move meanwhile."""
        if len(tris) >= np.iinfo(np.uint16).max:
            raise ValueError(f"too many triangles for the index map: {len(tris)}")
        self._index.fill(0)
        self._fill(self._index, dst, tris[top:], top)

    def _fill(self, idx: np.ndarray, dst: np.ndarray, tris: np.ndarray, first: int) -> None:
        """Draw ``tris`` in order into ``idx``, row ``k`` as the value ``first + k + 1``."""
        # Grid coordinates with 4 fractional bits, for cv2's sub-pixel fill.
        pts = fill_points(dst, scale=self._g)
        fill, line = cv2.fillConvexPoly, cv2.LINE_8
        colours = self._colours(first + len(tris))[first:]
        for poly, colour in zip(pts[tris], colours, strict=False):
            fill(idx, poly, colour, line, 4)

    def _colours(self, n: int) -> list[tuple[int]]:
        """The fill values ``(1,), (2,), ...`` of ``n`` triangles (kept: a frame's 1400
        little tuples cost more than the list they come from)."""
        if len(self._fill_values) < n:
            self._fill_values = [(k + 1,) for k in range(n)]
        return self._fill_values

    @staticmethod
    def _coefficient_pairs(index: np.ndarray, coeffs: np.ndarray, bounds: np.ndarray | None,
                           out: np.ndarray | None = None) -> np.ndarray:
        """Per cell of ``index``, its triangle's coefficient pairs ``(a, d), (b, e), (c, f)``
        (of each of ``k`` sources: ``coeffs`` (T, 6) or (k, T, 6)) and, with ``bounds``, its
        displacement's lows and highs: (3k (+2), h, w, 2) float32 (in ``out`` when given,
        which may have more pairs)."""
        # Each pair is one 8-byte item of a small table (row 0: no triangle), so one gather
        # per pair gives the cells' pairs interleaved as the displacement is, and the
        # per-cell work runs on whole (h, w, 2) arrays.
        sources = coeffs.reshape(-1, *coeffs.shape[-2:])
        n = 3 * len(sources)
        k = n if bounds is None else n + 2
        table = np.zeros((k, sources.shape[1] + 1, 2), np.float32)
        table[:n, 1:] = sources.reshape(len(sources), -1, 2, 3).transpose(0, 3, 1, 2).reshape(
            n, -1, 2)
        if bounds is not None:
            table[n:, 1:] = bounds.reshape(-1, 2, 2).transpose(1, 0, 2)
        items = table.view(np.float64)[..., 0]
        cells = index.astype(np.intp)
        if out is None:
            out = np.empty((k, *index.shape, 2), np.float32)
        for j in range(k):  # (mode "clip": every index is in range, unchecked)
            np.take(items[j], cells, out=out[j].view(np.float64)[..., 0], mode="clip")
        return out

    def source_map(self, index: np.ndarray, coeffs: np.ndarray,
                   bounds: np.ndarray | None = None, *,
                   out: np.ndarray | None = None) -> np.ndarray:
        """Full-size map of source positions, (size, size, 2) float32 (x, y), from an index
        map and (T, 6) displacement rows (:func:`triangle_affines`), each cell's displacement
        held within its triangle's ``bounds`` (:func:`triangle_bounds`) when given; written
        into ``out`` when given (a reused buffer: no fresh 2 MB array a frame)."""
        p = self._coefficient_pairs(index, coeffs, bounds, out=self._planes)
        disp, tmp = self._disp, p[5]
        np.multiply(p[0], self._gx2, out=disp)
        disp += np.multiply(p[1], self._gy2, out=tmp)
        disp += p[2]
        if bounds is not None:  # what np.clip does, without its overhead
            np.maximum(disp, p[3], out=disp)
            np.minimum(disp, p[4], out=disp)
        # self._disp, the coarse displacement, is kept: silhouette_seams reads it
        if out is None:
            out = np.empty((self.size, self.size, 2), np.float32)
        if self.grid == self.size:
            np.copyto(out, disp)
        else:
            cv2.resize(disp, (self.size, self.size), dst=out, interpolation=cv2.INTER_LINEAR)
        out += self._identity
        return out

    def grid_source(self, index: np.ndarray, coeffs: np.ndarray, *,
                    origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Source positions at coarse-grid cells only, float32 (h, w, 2): the cheap version
        of :meth:`source_map` for a second source (another image's triangles, in its own
        pixels); for ``k`` sources at once (``coeffs`` (k, T, 6)), (k, h, w, 2). ``index``
        is the index map or a window of it whose first cell is at grid ``origin`` (row,
        column)."""
        pairs = self._coefficient_pairs(index, coeffs, None)
        h, w = index.shape
        y0, x0 = origin
        window = slice(y0, y0 + h), slice(x0, x0 + w)
        gx, gy, xy = self._gx2[window], self._gy2[window], self._grid_xy[window]
        pos = np.empty((len(pairs) // 3, h, w, 2), np.float32)
        for i, p in enumerate(pos):
            a, b, c = pairs[3 * i:3 * i + 3]
            np.multiply(a, gx, out=p)
            p += np.multiply(b, gy, out=b)
            p += c
            p += xy
        return pos if coeffs.ndim == 3 else pos[0]

    def silhouette_seams(self, index: np.ndarray, first: int, *,
                         jump: float = SEAM_JUMP_PX) -> np.ndarray | None:
        """Where the last :meth:`source_map` tears along the edge between two groups of
        triangles: full-size bool mask of the pixels within a grid cell of two neighbouring
        cells, one won by a triangle from row ``first`` of the draw list on (the face), the
        other by one before it (the outside), whose displacements differ by more than
        ``jump`` px (a buffer the next call overwrites); None when there is none. A turned
        cheek's outline folds over the outside there, and the coarse grid shows it as a
        staircase of whole cells."""
        face = np.greater(index, first).view(np.uint8)  # index = 1 + row
        # cells with a 4-neighbour of the other group (both sides of the edge)
        edge = cv2.findNonZero(cv2.morphologyEx(face, cv2.MORPH_GRADIENT, self._cross3))
        if edge is None:
            return None
        d = self._disp
        cells = self._seam_cells
        cells.fill(0)
        found = False
        last = self.grid - 1
        for dy, dx in ((0, 1), (1, 0)):  # each edge cell and its right / lower neighbour
            xs, ys = edge[:, 0, 0], edge[:, 0, 1]
            keep = (xs + dx <= last) & (ys + dy <= last)
            xs, ys = xs[keep], ys[keep]
            other = face[ys + dy, xs + dx] != face[ys, xs]
            xs, ys = xs[other], ys[other]
            torn = np.abs(d[ys + dy, xs + dx] - d[ys, xs]).max(axis=1) > jump
            if torn.any():
                found = True
                cells[ys[torn], xs[torn]] = 1
                cells[ys[torn] + dy, xs[torn] + dx] = 1
        if not found:
            return None
        grown = cv2.dilate(cells, self._kernel3)
        if self.grid != self.size:
            grown = cv2.resize(grown, (self.size, self.size), interpolation=cv2.INTER_NEAREST,
                               dst=self.buffers.get("seams", (self.size, self.size)))
        return grown.view(bool)

    def seam_sources(self, seams: np.ndarray, index: np.ndarray, first: int,
                     coeffs: np.ndarray, bounds: np.ndarray, dst: np.ndarray,
                     tris: np.ndarray) -> list[SeamSources]:
        """The two sides of a torn silhouette, to draw it at full resolution instead of the
        grid's staircase: for each connected part of ``seams`` (:meth:`silhouette_seams` of
        this ``index``; a cheek on either side of the face, the chin) of at least
        :data:`SEAM_LEAST_PX` pixels, at each of its pixels the source position it would
        show as part of the face (rows ``first`` on of ``tris``, corners in ``dst``) and as
        part of the outside (the affine, ``coeffs`` held within ``bounds`` as
        :meth:`source_map` holds it, of the nearest cell's triangle of that side, carried on
        past its edge), and how much of it the face's triangles cover (4 x 4 samples a
        pixel)."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(seams.view(np.uint8),
                                                                   connectivity=8)
        parts = []
        boxes: tuple[np.ndarray, np.ndarray] | None = None  # the face triangles' corners' box
        for part in range(1, count):
            if stats[part, 4] < SEAM_LEAST_PX:
                continue
            if boxes is None:
                corners = dst[tris[first:]]
                boxes = corners.min(axis=1), corners.max(axis=1)
            x, y, w, h = (int(v) for v in stats[part, :4])
            ys, xs = np.nonzero(labels[y:y + h, x:x + w] == part)
            parts.append(self._seam_part(ys, xs, (x, y, w, h), index, first, coeffs, bounds,
                                         dst, tris, boxes))
        return parts

    def _seam_part(self, ys: np.ndarray, xs: np.ndarray, box: tuple[int, int, int, int],
                   index: np.ndarray, first: int, coeffs: np.ndarray, bounds: np.ndarray,
                   dst: np.ndarray, tris: np.ndarray,
                   boxes: tuple[np.ndarray, np.ndarray]) -> SeamSources:
        """:meth:`seam_sources` of one part: its pixels ``ys``, ``xs`` in its ``box``
        (``boxes``: the lows and highs of the face triangles' corners, rows ``first`` on)."""
        x, y, w, h = box
        k = self._g
        # the grid cells under the box, and 3 more a side (the sides' reach)
        cx0, cy0 = max(0, math.floor(x * k) - 3), max(0, math.floor(y * k) - 3)
        cx1 = min(self.grid, math.ceil((x + w) * k) + 4)
        cy1 = min(self.grid, math.ceil((y + h) * k) + 4)
        window = index[cy0:cy1, cx0:cx1]
        face = window > first  # index = 1 + row; 0: no triangle
        px = (xs + x).astype(np.float32)
        py = (ys + y).astype(np.float32)
        cells = (np.clip(np.floor((py + 0.5) * k).astype(np.intp) - cy0, 0, window.shape[0] - 1),
                 np.clip(np.floor((px + 0.5) * k).astype(np.intp) - cx0, 0, window.shape[1] - 1))
        sides = []
        for mine in (face, ~face & (window > 0)):
            # each cell's own triangle of this side, else the nearest one's (a cell at a
            # time, as far as the seam's pixels reach past the torn cells)
            rows = np.where(mine, window, 0).astype(np.uint16)
            for _ in range(3):
                np.copyto(rows, cv2.dilate(rows, self._kernel3), where=rows == 0)
            row = rows[cells].astype(np.intp) - 1
            found = np.maximum(row, 0)
            c = coeffs[found]
            disp = np.stack([c[:, 0] * px + c[:, 1] * py + c[:, 2],
                             c[:, 3] * px + c[:, 4] * py + c[:, 5]], axis=-1)
            lo, hi = bounds[found, :2], bounds[found, 2:]
            disp = np.minimum(np.maximum(disp, lo), hi)
            sides.append(((np.stack([px, py], axis=-1) + disp).astype(np.float32), row >= 0))
        # the face's coverage, at 4 x 4 samples a pixel, from every face triangle that reaches
        # the box (the cells' own winners left holes where a pixel's triangle had won none
        # of the cells round it: dark specks along a turned cheek's edge)
        low, high = boxes
        reaching = first + np.flatnonzero((high[:, 0] >= x - 1) & (low[:, 0] <= x + w)
                                          & (high[:, 1] >= y - 1) & (low[:, 1] <= y + h))
        ss = 4
        fine = np.zeros((h * ss, w * ss), np.uint8)
        pts = fill_points(dst[tris[reaching]], scale=ss, origin=(x, y))
        for poly in pts:
            cv2.fillConvexPoly(fine, poly, (255,), cv2.LINE_8, 4)
        # OpenCV's fill takes every sample its edges touch (about half a sample too many
        # round the outline): the mean of the fill and the fill one sample thinner is
        # unbiased within a few hundredths
        both = cv2.addWeighted(fine, 0.5, cv2.erode(fine, self._cross3), 0.5, 0.0)
        cover = cv2.resize(both, (w, h), interpolation=cv2.INTER_AREA)[ys, xs]
        cover = cover.astype(np.float32) * np.float32(1.0 / 255.0)
        (face_source, has_face), (outside_source, has_outside) = sides
        cover[~has_face] = 0.0  # (no triangle of a side within reach: the other's)
        cover[~has_outside] = 1.0
        return SeamSources(ys + y, xs + x, cover, face_source, outside_source)

    def fold_seams(self, index: np.ndarray, first: int, *,
                   jump: float = FOLD_MISS_PX) -> np.ndarray | None:
        """Where the last :meth:`source_map` (of ``index``, with bounds) shows a staircase
        inside the face (rows ``first`` on of the draw list): full-size bool mask of the
        pixels within a grid cell of two neighbouring face cells of different triangles
        where either cell, drawn by the other's triangle, would show a source more than
        ``jump`` px away (a buffer the next call overwrites); None when there is none. A
        cell shows its triangle's picture whole: where the face folds over itself (the lips
        pulled over the skin round a yelling mouth) or creases sharply (a lip stretched
        three times beside skin that is not), the edge between the two runs along the
        grid's cells instead of where the triangles meet. Across a smooth stretch the two
        triangles' affines nearly agree and nothing is marked."""
        face = np.greater(index, first).view(np.uint8)  # index = 1 + row
        x0, y0, w, h = cv2.boundingRect(face)
        if w < 2 or h < 2:
            return None
        window = slice(y0, y0 + h), slice(x0, x0 + w)
        rows, d = index[window], self._disp[window]
        inside = face[window].view(bool)
        step = np.float32(self.size / self.grid)
        cells = self._seam_cells
        cells.fill(0)
        found = False
        # the displacement's change over a cell along x, (a, d), and along y, (b, e), of each
        # cell's triangle: as the last source_map left them
        for dy, dx, slope in ((0, 1, self._planes[0][window]), (1, 0, self._planes[1][window])):
            a, b = (slice(0, h - dy), slice(0, w - dx)), (slice(dy, h), slice(dx, w))
            pair = (rows[a] != rows[b]) & inside[a] & inside[b]
            if not pair.any():
                continue
            change = d[b] - d[a]
            # cell b drawn by a's triangle, and a by b's, against what each shows (whole
            # planes: cheaper than gathering the pairs)
            torn = np.zeros(pair.shape, bool)
            for own in (slope[a], slope[b]):
                miss = np.multiply(own, step)
                np.subtract(change, miss, out=miss)
                np.abs(miss, out=miss)
                torn |= (miss > jump).view(np.uint16)[..., 0] != 0  # either component
            ys, xs = np.nonzero(pair & torn)
            if len(ys):
                found = True
                ys, xs = ys + y0, xs + x0
                cells[ys, xs] = 1
                cells[ys + dy, xs + dx] = 1
        if not found:
            return None
        full: np.ndarray = cells
        if self.grid != self.size:
            full = cv2.resize(cells, (self.size, self.size), interpolation=cv2.INTER_NEAREST,
                              dst=self.buffers.get("fold cells", (self.size, self.size)))
        # and a pixel round them: a pixel reads its neighbour cells' displacement too
        grown = cv2.dilate(full, self._kernel3,
                           dst=self.buffers.get("folds", (self.size, self.size)))
        return grown.view(bool)

    def fold_samples(self, folds: np.ndarray, source: np.ndarray, coeffs: np.ndarray,
                     bounds: np.ndarray, dst: np.ndarray, tris: np.ndarray) -> FoldSamples:
        """The pixels of ``folds`` (:meth:`fold_seams`) with the sources of their
        :data:`FOLD_SUBSAMPLES` squared sub-samples: the triangles of the draw list ``tris``
        (corners in ``dst``) whose boxes reach a block of :data:`FOLD_BLOCK_PX` with such a
        pixel drawn in order into a raster that fine, each sub-sample shown by the one drawn
        last over it through its affine (``coeffs``, held within ``bounds`` as
        :meth:`source_map` holds it); a sub-sample no triangle covers takes its pixel's
        ``source`` (the full-size map)."""
        marked = folds.view(np.uint8)
        x, y, w, h = cv2.boundingRect(marked)
        ys, xs = np.nonzero(marked[y:y + h, x:x + w])
        # the triangles that reach a block with a marked pixel in it (a summed-area table
        # of the blocks: every triangle's box at once)
        k = FOLD_BLOCK_PX
        nb = -(-self.size // k)
        # (255 a pixel: the blocks' means stay above 0 where one pixel is marked)
        occupied = cv2.resize(np.multiply(marked, 255, dtype=np.uint8), (nb, nb),
                              interpolation=cv2.INTER_AREA) > 0
        sat = np.zeros((nb + 1, nb + 1), np.int32)
        sat[1:, 1:] = occupied.cumsum(axis=0).cumsum(axis=1)
        corners = dst[tris]
        c0, c1, c2 = corners[:, 0], corners[:, 1], corners[:, 2]
        low = np.minimum(np.minimum(c0, c1), c2) * (1.0 / k)
        high = np.maximum(np.maximum(c0, c1), c2) * (1.0 / k)
        b0 = np.clip(low.astype(np.intp), 0, nb - 1)
        b1 = np.clip(high.astype(np.intp), 0, nb - 1) + 1
        hits = (sat[b1[:, 1], b1[:, 0]] - sat[b0[:, 1], b1[:, 0]]
                - sat[b1[:, 1], b0[:, 0]] + sat[b0[:, 1], b0[:, 0]])
        reaching = np.flatnonzero(hits > 0)
        corners = corners[reaching]
        ss = FOLD_SUBSAMPLES
        fine = self.buffers.get("fold raster", (h * ss, w * ss), np.uint16)
        fine.fill(0)
        pts = fill_points(corners, scale=ss, origin=(x, y))
        colours = self._colours(len(tris))
        for poly, row in zip(pts, reaching, strict=True):
            cv2.fillConvexPoly(fine, poly, colours[row], cv2.LINE_8, 4)
        # each pixel's ss x ss block of the fine raster: (N * ss * ss,) triangle rows, a
        # pixel's sub-samples together (flat, the coefficients gathered a column at a time
        # into contiguous arrays: quicker than (N, k, 6) rows of them)
        k2 = ss * ss
        sub_y, sub_x = np.divmod(np.arange(k2), ss)
        fy = ((ys * ss)[:, None] + sub_y).ravel()
        fx = ((xs * ss)[:, None] + sub_x).ravel()
        row = fine[fy, fx].astype(np.intp)  # 1 + row; 0: no triangle
        px = (fx + x * ss).astype(np.float32)
        px += 0.5
        px *= np.float32(1.0 / ss)
        px -= 0.5
        py = (fy + y * ss).astype(np.float32)
        py += 0.5
        py *= np.float32(1.0 / ss)
        py -= 0.5
        table = self.buffers.get("fold table", (10, len(tris) + 1), np.float32)
        table[:6, 1:] = coeffs.T
        table[6:, 1:] = bounds.T
        table[:, 0] = 0.0
        col = [np.take(table[j], row) for j in range(10)]
        pos = np.empty((len(row), 2), np.float32)
        for axis, (a, b, c, lo, hi), p in ((0, (0, 1, 2, 6, 8), px), (1, (3, 4, 5, 7, 9), py)):
            d = col[a] * px
            d += col[b] * py
            d += col[c]
            np.maximum(d, col[lo], out=d)
            np.minimum(d, col[hi], out=d)
            d += p
            pos[:, axis] = d
        ys, xs = ys + y, xs + x
        empty = row == 0
        if empty.any():
            pos[empty] = np.repeat(source[ys, xs], k2, axis=0)[empty]
        pos = pos.reshape(len(ys), k2, 2)
        return FoldSamples(ys, xs, pos)

    def moved_share(self, full: float) -> np.ndarray:
        """How far each output pixel's source moved in the last :meth:`source_map`, as a
        share of ``full`` pixels (clipped to 1): (size, size) float32, a buffer the next
        call overwrites."""
        buf = self.buffers
        share = buf.get("share", (self.grid, self.grid), np.float32)
        cv2.magnitude(self._disp[..., 0], self._disp[..., 1], share)
        np.multiply(share, 1.0 / max(full, 1e-6), out=share)
        np.minimum(share, 1.0, out=share)
        if self.grid == self.size:
            return share
        return np.asarray(cv2.resize(share, (self.size, self.size),
                                     dst=buf.get("full share", (self.size, self.size),
                                                 np.float32),
                                     interpolation=cv2.INTER_LINEAR))

    def moved_box(self) -> tuple[int, int, int, int] | None:
        """``(x, y, w, h)`` in output pixels around where :meth:`moved_share` is not zero
        (None: nowhere), from the coarse share of its last call."""
        moved = self.buffers.get("moved cells", (self.grid, self.grid), np.uint8)
        np.greater(self.buffers.get("share", (self.grid, self.grid), np.float32), 0.0,
                   out=moved.view(bool))
        x, y, w, h = cv2.boundingRect(moved)
        if w == 0:
            return None
        if self.grid == self.size:
            return x, y, w, h
        # a full-size pixel reads the two nearest cells a side: a cell reaches less than a
        # cell and a half beyond its own pixels
        k = self.size / self.grid
        m = int(k) + 1
        x0, y0 = max(0, math.floor(x * k) - m), max(0, math.floor(y * k) - m)
        x1 = min(self.size, math.ceil((x + w) * k) + m)
        y1 = min(self.size, math.ceil((y + h) * k) + m)
        return x0, y0, x1 - x0, y1 - y0

    @property
    def cell(self) -> float:
        """Output pixels per grid cell."""
        return self.size / self.grid

    @property
    def cell_centres(self) -> np.ndarray:
        """Output-pixel coordinates of the coarse grid's cell centres along one axis (the
        same for rows and columns), (grid,) float32, read-only."""
        return self._centres

    def remap(self, image: np.ndarray, source: np.ndarray, *,
              dst: np.ndarray | None = None) -> np.ndarray:
        """Sample ``image`` at the source positions (bilinear, edges reflected); into
        ``dst`` when given."""
        return sample_at(image, source, dst=dst)

    def doubled(self, source: np.ndarray) -> np.ndarray:
        """``source`` (a source map, (size, size, 2) float32) as the map to sample an
        :func:`enlarge_2x` copy with (:func:`doubled_positions`), in a reused buffer."""
        return doubled_positions(source,
                                 out=self.buffers.get("doubled map", source.shape, np.float32))

    def remap_points(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``image`` sampled (as :meth:`remap` samples it) at ``points`` (N, 2) float32 source
        positions: (N, channels), any N (``cv2.remap`` takes maps under 32767 a side: the
        points go in rows of :data:`POINT_ROW`)."""
        n = len(points)
        rows = max(1, -(-n // POINT_ROW))
        grid = np.zeros((rows * POINT_ROW, 2), np.float32)
        grid[:n] = points
        sampled = self.remap(image, grid.reshape(rows, POINT_ROW, 2))
        return sampled.reshape(rows * POINT_ROW, -1)[:n]

    def warp(self, image: np.ndarray, src: np.ndarray, dst: np.ndarray,
             tris: np.ndarray) -> np.ndarray:
        """Warp ``image`` so that vertex ``src[i]`` moves to ``dst[i]``; ``tris`` in draw order."""
        index = self.index_map(dst, tris)
        return self.remap(image, self.source_map(index, triangle_affines(dst, src, tris),
                                                 triangle_bounds(dst, src, tris)))



def composite_head(out: np.ndarray, matte: np.ndarray, plate: np.ndarray,
                   moved_plate: np.ndarray, *, buffers: Buffers | None = None) -> None:
    """In place: put the still background ``plate`` back behind the warped head.

    ``out`` is the warped portrait, ``matte`` the warped person matte (uint8, 255 = person)
    and ``moved_plate`` the plate warped alike. A warped pixel carries its source's background
    share ``(1 - matte)``; that share is swapped from the moved plate to the still one:
    ``out += (1 - matte) * (plate - moved_plate)``. Where nothing moved the result is the
    portrait exactly; where the head left, the plate; on the head, the warped portrait.
    ``buffers`` keeps the temporaries from frame to frame.
    """
    buf = buffers or Buffers()
    inv = cv2.cvtColor(matte, cv2.COLOR_GRAY2RGB, dst=buf.get("inverse matte", out.shape))
    cv2.bitwise_not(inv, dst=inv)
    # The difference's two signs apart, each in uint8 (one of them is 0 at every pixel):
    # round(diff * inv / 255) is exact in either part and the saturating add then subtract
    # is the clipped sum, as with a signed 16-bit difference, at a fraction of the cost.
    gain = cv2.subtract(plate, moved_plate, dst=buf.get("gain", out.shape))
    loss = cv2.subtract(moved_plate, plate, dst=buf.get("loss", out.shape))
    cv2.multiply(gain, inv, dst=gain, scale=1.0 / 255.0)
    cv2.multiply(loss, inv, dst=loss, scale=1.0 / 255.0)
    cv2.add(out, gain, dst=out)
    cv2.subtract(out, loss, dst=out)
