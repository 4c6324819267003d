"""Piecewise-affine image warp: a rasterised triangle-index map, closed-form affines, one remap.

For every output pixel the warp needs the source position it shows. The output triangles are
drawn into a coarse index map (``grid`` x ``grid``; a fill per triangle, in draw order, so
later triangles cover earlier ones); every triangle's output->source affine is solved in
closed form for all triangles at once; the per-pixel *displacement* (source minus output
position) is evaluated on the coarse grid, resized to full size (it is continuous across
shared triangle edges, so bilinear resizing is nearly exact) and one ``cv2.remap`` samples
the image. Pixels no triangle covered (fill rounding) take a neighbour's triangle. Where the
face folds over the outside (a turned cheek), the displacement jumps between two cells and the
grid shows as a staircase: :meth:`PiecewiseAffineWarp.silhouette_seams` finds those cells and
:meth:`PiecewiseAffineWarp.soften` blurs them a little.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


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
    disp = (src - dst)[tris]  # (T, 3, 2)
    return np.concatenate([disp.min(axis=1), disp.max(axis=1)], axis=1).astype(np.float32)


SEAM_JUMP_PX = 1.5
"""Neighbouring grid cells whose displacements differ by more than this (px) tear apart (see
:meth:`PiecewiseAffineWarp.silhouette_seams`)."""


SEAM_BLUR_KSIZE = (3, 3)
SEAM_BLUR_SIGMA = 0.8
"""The blur over a seam (:meth:`PiecewiseAffineWarp.soften`): just enough to round a
staircase of 2 px cells off."""


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
        self._gx, self._gy = np.meshgrid(c, c)
        full = np.arange(self.size, dtype=np.float32)
        fx, fy = np.meshgrid(full, full)
        self._identity = np.stack([fx, fy], axis=-1)  # (size, size, 2) output positions
        self._index = np.zeros((self.grid, self.grid), np.uint16)
        self._disp = np.empty((self.grid, self.grid, 2), np.float32)
        # per-cell planes of source_map: 10 coefficients and bounds, dx, dy and a scratch one
        self._planes = np.empty((13, self.grid, self.grid), np.float32)
        self._seam_cells = np.zeros((self.grid, self.grid), np.uint8)
        self._kernel3 = np.ones((3, 3), np.uint8)
        self._cross3 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))

    def index_map(self, dst: np.ndarray, tris: np.ndarray) -> np.ndarray:
        """Rasterise triangles (drawn in the given order) into the coarse grid: cell value is
        1 + the triangle's row in ``tris``; holes are filled from neighbours."""
        if len(tris) >= np.iinfo(np.uint16).max:
            raise ValueError(f"too many triangles for the index map: {len(tris)}")
        idx = self._index
        idx.fill(0)
        # Grid coordinates with 4 fractional bits, for cv2's sub-pixel fill.
        pts = np.round(((dst + 0.5) * self._g - 0.5) * 16.0).astype(np.int32)
        polys = pts[tris]
        fill = cv2.fillConvexPoly
        for k in range(len(polys)):
            fill(idx, polys[k], (k + 1,), cv2.LINE_8, 4)
        holes = idx == 0
        if holes.any():
            grown = cv2.dilate(idx, np.ones((3, 3), np.uint8))
            np.copyto(idx, grown, where=holes)
        return idx

    def source_map(self, index: np.ndarray, coeffs: np.ndarray,
                   bounds: np.ndarray | None = None) -> np.ndarray:
        """Full-size map of source positions, (size, size, 2) float32 (x, y), from an index
        map and (T, 6) displacement rows (:func:`triangle_affines`), each cell's displacement
        held within its triangle's ``bounds`` (:func:`triangle_bounds`) when given."""
        # One small table per coefficient (row 0: no triangle), gathered plane by plane: the
        # per-cell work then runs on contiguous arrays.
        k = 6 if bounds is None else 10
        table = np.zeros((k, len(coeffs) + 1), np.float32)
        table[:6, 1:] = coeffs.T
        if bounds is not None:
            table[6:, 1:] = bounds.T
        p = self._planes
        for j in range(k):
            np.take(table[j], index, out=p[j])
        gx, gy = self._gx, self._gy
        dx, dy, tmp = p[10], p[11], p[12]
        np.multiply(p[0], gx, out=dx)
        dx += np.multiply(p[1], gy, out=tmp)
        dx += p[2]
        np.multiply(p[3], gx, out=dy)
        dy += np.multiply(p[4], gy, out=tmp)
        dy += p[5]
        if bounds is not None:
            np.clip(dx, p[6], p[8], out=dx)
            np.clip(dy, p[7], p[9], out=dy)
        # the coarse displacement, kept: silhouette_seams reads it
        cv2.merge([dx, dy], dst=self._disp)
        disp: np.ndarray = self._disp.copy() if self.grid == self.size else np.asarray(
            cv2.resize(self._disp, (self.size, self.size), interpolation=cv2.INTER_LINEAR),
            np.float32)
        disp += self._identity
        return disp

    def grid_source(self, index: np.ndarray, coeffs: np.ndarray, *,
                    origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Source positions at coarse-grid cells only, float32 (h, w, 2): the cheap version
        of :meth:`source_map` for a second source (another image's triangles, in its own
        pixels). ``index`` is the index map or a window of it whose first cell is at grid
        ``origin`` (row, column)."""
        table = np.concatenate([np.zeros((1, 6), np.float32), coeffs])
        c = np.take(table, index, axis=0)
        h, w = index.shape
        y0, x0 = origin
        gx = self._gx[0, x0:x0 + w][None, :]
        gy = self._gy[y0:y0 + h, 0][:, None]
        sx = c[..., 0] * gx + c[..., 1] * gy + c[..., 2] + gx
        sy = c[..., 3] * gx + c[..., 4] * gy + c[..., 5] + gy
        return np.stack([sx, sy], axis=-1)

    def silhouette_seams(self, index: np.ndarray, first: int, *,
                         jump: float = SEAM_JUMP_PX) -> np.ndarray | None:
        """Where the last :meth:`source_map` tears along the edge between two groups of
        triangles: full-size bool mask of the pixels within a grid cell of two neighbouring
        cells, one won by a triangle from row ``first`` of the draw list on (the face), the
        other by one before it (the outside), whose displacements differ by more than
        ``jump`` px; None when there is none. A turned cheek's outline folds over the
        outside there, and the coarse grid shows it as a staircase of whole cells."""
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
            grown = cv2.resize(grown, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return grown.view(bool)

    def soften(self, image: np.ndarray, mask: np.ndarray) -> None:
        """In place: blur ``image`` a little where ``mask`` is set (a seam's staircase of
        grid cells reads as a soft edge)."""
        x0, y0, w, h = cv2.boundingRect(mask.view(np.uint8))
        roi = image[y0:y0 + h, x0:x0 + w]
        blurred = cv2.GaussianBlur(roi, SEAM_BLUR_KSIZE, SEAM_BLUR_SIGMA)
        cv2.copyTo(blurred, mask[y0:y0 + h, x0:x0 + w].view(np.uint8), roi)

    def moved_share(self, full: float) -> np.ndarray:
        """How far each output pixel's source moved in the last :meth:`source_map`, as a
        share of ``full`` pixels (clipped to 1): (size, size) float32."""
        share = cv2.magnitude(self._disp[..., 0], self._disp[..., 1]) * (1.0 / max(full, 1e-6))
        np.minimum(share, 1.0, out=share)
        if self.grid == self.size:
            return np.asarray(share)
        return np.asarray(cv2.resize(share, (self.size, self.size),
                                     interpolation=cv2.INTER_LINEAR))

    @property
    def cell(self) -> float:
        """Output pixels per grid cell."""
        return self.size / self.grid

    def remap(self, image: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Sample ``image`` at the source positions (bilinear, edges reflected)."""
        remap: Any = cv2.remap  # the stubs do not allow map2=None (a 2-channel map1)
        return np.asarray(remap(image, source, None, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101))

    def warp(self, image: np.ndarray, src: np.ndarray, dst: np.ndarray,
             tris: np.ndarray) -> np.ndarray:
        """Warp ``image`` so that vertex ``src[i]`` moves to ``dst[i]``; ``tris`` in draw order."""
        index = self.index_map(dst, tris)
        return self.remap(image, self.source_map(index, triangle_affines(dst, src, tris),
                                                 triangle_bounds(dst, src, tris)))



def composite_head(out: np.ndarray, matte: np.ndarray, plate: np.ndarray,
                   moved_plate: np.ndarray) -> None:
    """In place: put the still background ``plate`` back behind the warped head.

    ``out`` is the warped portrait, ``matte`` the warped person matte (uint8, 255 = person)
    and ``moved_plate`` the plate warped alike. A warped pixel carries its source's background
    share ``(1 - matte)``; that share is swapped from the moved plate to the still one:
    ``out += (1 - matte) * (plate - moved_plate)``. Where nothing moved the result is the
    portrait exactly; where the head left, the plate; on the head, the warped portrait.
    """
    inv = cv2.merge([255 - matte] * 3)
    diff = cv2.subtract(plate, moved_plate, dtype=cv2.CV_16S)
    corr = cv2.multiply(diff, inv, scale=1.0 / 255.0, dtype=cv2.CV_16S)
    np.copyto(out, cv2.add(out, corr, dtype=cv2.CV_8U))
