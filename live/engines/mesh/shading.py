"""Expression shading for the mesh engine: the driving face's own creases, folds and
dimples, carried onto the portrait as a luminance ratio.

A warp moves the portrait's pixels but cannot darken a crease that a smile makes, or the fold
between nose and mouth, or lighten a raised cheek; without them a warped smile reads as a
different face. The driving video has them: its current face, warped back onto its neutral
face's geometry, divided by that neutral face (both lightly blurred luminance), is an
*expression ratio image* (Liu, Shan and Zhang, SIGGRAPH 2001): about 1 where nothing changed,
below 1 in a new crease. Mapped onto the animated portrait through the face mesh (same
triangle, same place in the face) and multiplied in, it adds the shading changes, not the
driver's skin or colour: a black-and-white photo stays grey, a painting keeps its palette. Only
the ratio's local detail is kept (it is divided by its own blur over the face): light that
changes across the face as the driving head turns is not an expression. On another person's
face the ratio's grain (the driver's pores and video noise, a few percent everywhere) is taken
out and only the deeper creases and folds stay (:func:`drop_grain`, :func:`skin_match`).

Only skin triangles of the face mesh carry it: not the eye or mouth openings, and not the
brows, eyelids or lips, whose look belongs to the driver's identity rather than to an
expression's shading (the skin between and above the brows does: a frown's furrows;
:func:`shading_triangles`); the ratio is clamped and faded out over the
region's edge. It is computed on the warp's coarse grid, in
the bounding box of the face, and resized to the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from calibrate import landmarks as lm
from calibrate.smoothing import approach_factor
from live.engines.mesh.topology import face_triangles, mesh_edges, tesselation_triangles
from live.engines.mesh.warp import PiecewiseAffineWarp, sample_at, triangle_affines

RATIO_RANGE = (0.55, 1.6)
"""The ratio is clamped to this range (a shadow may darken to about half, not to black)."""
_EPS = 6.0  # luminance (0..255) added before dividing: dark pixels give no wild ratios
_BLUR = 1.0  # sigma (driving crop pixels) of the luminance blur
_DETAIL_SCALE = 0.06  # light vs creases: the ratio's blur, as a share of the face's width


@lru_cache(maxsize=1)
def lip_points() -> tuple[int, ...]:
    """Every face-mesh point of the lips (80): the inner and outer contours and the rows
    between them, found by walking the mesh's edges out from the inner contour and stopping
    at the outer one (the inner corners, which also touch the cheeks, are not walked from)."""
    neighbours: dict[int, set[int]] = {}
    for a, b in mesh_edges().tolist():
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    outer = set(lm.LIPS_OUTER)
    corners = {lm.LIPS_INNER_UPPER[0], lm.LIPS_INNER_UPPER[-1]}
    seen = set(lm.LIPS_INNER)
    todo = [v for v in lm.LIPS_INNER if v not in corners]
    while todo:
        v = todo.pop()
        if v in outer:
            continue
        for n in neighbours.get(v, ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return tuple(sorted(seen))


FEATURES: tuple[int, ...] = tuple(sorted(set(lm.RIGHT_BROW + lm.LEFT_BROW + lm.RIGHT_EYE
                                             + lm.LEFT_EYE) | set(lip_points())))
"""The face-mesh points of the brows, eyes and lips (:func:`shading_triangles`)."""
BROWS: tuple[int, ...] = tuple(sorted(lm.RIGHT_BROW + lm.LEFT_BROW))
EYES_AND_LIPS: tuple[int, ...] = tuple(sorted(set(FEATURES) - set(BROWS)))
"""A triangle with a corner on one of these is not skin (:func:`shading_triangles`)."""
BROW_CORNERS = 2
"""A triangle with this many corners on a brow is the brow's own (its strip, and the
triangles along its edges); one with a single brow corner is the skin around it."""


@lru_cache(maxsize=1)
def shading_triangles() -> np.ndarray:
    """Which of :func:`~live.engines.mesh.topology.face_triangles` carry the shading: skin
    triangles of the mesh, not the eyes' and lips' (no corner on them) nor the brows' own
    (:data:`BROW_CORNERS`), (T,) bool.

    The skin between and above the brows carries it: a frown's furrows form there. Leaving
    out every triangle with a brow corner left a band round each brow, the glabella
    included, without them (lp_d3's frown came out nearly smooth)."""
    faces = face_triangles()
    skin = np.zeros(len(faces), bool)
    skin[:len(tesselation_triangles())] = True
    brow = np.isin(faces, BROWS).sum(axis=1) >= BROW_CORNERS
    return np.asarray(skin & ~brow & ~np.isin(faces, EYES_AND_LIPS).any(axis=1))


def luminance(image: np.ndarray) -> np.ndarray:
    """Lightly blurred luminance of an RGB uint8 image, float32."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.asarray(cv2.GaussianBlur(gray, (0, 0), _BLUR))


BRIDGE_LINE = 0.015
"""A thin line across the nose bridge this much darker or lighter than the skin on either
side of it (a share of its luminance) says the face wears glasses (:func:`wears_glasses`);
without glasses the fixture faces measured at most 0.006, with them 0.031 and 0.043."""


def wears_glasses(gray: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether a face wears glasses: a thin line (their bridge) crosses its nose between the
    eyes. ``gray``: :func:`luminance` of its crop; ``landmarks``: the face mesh (crop
    pixels)."""
    pts = np.asarray(landmarks, np.float64)
    if len(pts) < lm.NUM_LANDMARKS:
        return False
    iod = float(lm.inter_ocular_distance(pts))
    if iod < 16.0:
        return False
    # down the nose from a little above its bridge point to the middle of its ridge
    top = pts[lm.NOSE_BRIDGE, :2] - np.array([0.0, 0.05 * iod])
    bottom = pts[lm.NOSE_BRIDGE_LINE[2], :2]
    t = np.linspace(0.0, 1.0, max(20, int(0.5 * iod)), dtype=np.float64)[:, None]
    path = (top * (1.0 - t) + bottom * t).astype(np.float32)
    line = cv2.remap(gray, path[None, :, 0], path[None, :, 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)[0]
    w = max(2, int(0.03 * iod))  # either side of a thin line
    mid, before, after = line[w:-w], line[:-2 * w], line[2 * w:]
    darker = (np.minimum(before, after) - mid) / (mid + _EPS)
    lighter = (mid - np.maximum(before, after)) / (np.maximum(before, after) + _EPS)
    return bool(max(float(darker.max()), float(lighter.max())) >= BRIDGE_LINE)


GLASSES_ZONE = (0.36, 0.27)
"""Half width and half height (inter-ocular distances) of the ellipse around each eye that
glasses cover, rims included: triangles with a corner in it (:func:`glasses_triangles`)."""


def glasses_triangles(landmarks: np.ndarray) -> np.ndarray:
    """Which of :func:`~live.engines.mesh.topology.face_triangles` lie where glasses sit on
    the face with these landmarks ((N, 2+) pixels): around each eye and across the nose
    between them, (T,) bool. A driving face's glasses sit on its nose, not in its skin: the
    face mesh slides under them as it moves, and their rims and bridge would draw themselves
    onto the portrait as light and dark lines; there the shading is left out."""
    pts = np.asarray(landmarks, np.float64)[:, :2]
    centres = [pts[list(lm.RIGHT_EYE)].mean(axis=0), pts[list(lm.LEFT_EYE)].mean(axis=0)]
    iod = max(float(lm.inter_ocular_distance(pts)), 1e-6)
    ax, ay = GLASSES_ZONE[0] * iod, GLASSES_ZONE[1] * iod
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), bool)  # per point, then: triangles with a corner inside
    for c in centres:
        inside |= ((x - c[0]) / ax) ** 2 + ((y - c[1]) / ay) ** 2 <= 1.0
    # the bridge: between the eyes' centres, from above them down to their lower lids
    (x0, y0), (x1, y1) = np.minimum(*centres), np.maximum(*centres)
    inside |= (x >= x0) & (x <= x1) & (y >= y0 - ay) & (y <= y1 + 0.5 * ay)
    return np.asarray(inside[face_triangles()].any(axis=1))


@dataclass(frozen=True, eq=False)
class ShadingReference:
    """A driving face (the neutral one, or a frame's): its crop's blurred luminance and
    landmarks (crop pixels), and whether it wears glasses (:func:`wears_glasses`)."""

    gray: np.ndarray
    landmarks: np.ndarray
    glasses: bool = False

    @classmethod
    def of(cls, image: np.ndarray, landmarks: np.ndarray, *,
           detect_glasses: bool = False) -> ShadingReference:
        """The reference of a driving crop ``image`` and its landmarks; ``detect_glasses``
        (the neutral face's) looks for glasses, else ``glasses`` is False."""
        gray = luminance(image)
        points = np.array(landmarks, dtype=np.float64)[:, :2]
        return cls(gray, points, detect_glasses and wears_glasses(gray, points))


@dataclass(frozen=True)
class ExpressionDetail:
    """The expression ratio on the warp's coarse grid before the output picture is known
    (:func:`expression_detail`), to be finished by :func:`finish_ratio`."""

    cells: tuple[int, int, int, int]
    """``(y0, y1, x0, x1)``: the grid cells of the face's box the ratio covers."""
    width: int
    """The skin's width in grid cells (what the blurs' sizes are shares of)."""
    ratio: np.ndarray
    """(y1 - y0, x1 - x0) float32: the ratio's local detail (divided by its own blur)."""
    mask: np.ndarray
    """(y1 - y0, x1 - x0) float32: 1 on the skin cells the ratio is for, else 0."""
    neutral: np.ndarray
    """(y1 - y0, x1 - x0) float32: the driving neutral face's luminance at those cells."""


def expression_detail(warp: PiecewiseAffineWarp, index: np.ndarray, tris: np.ndarray,
                      skin: np.ndarray, dst: np.ndarray, reference: ShadingReference,
                      current_gray: np.ndarray, current_landmarks: np.ndarray
                      ) -> ExpressionDetail | None:
    """The expression ratio's first part, which needs the warp's maps but not the output
    picture (the engine works it out while the picture is remapped; :func:`finish_ratio`
    makes the rest). ``index`` and ``tris`` are the warp's triangle-index map and its
    triangle list (``dst`` its output vertices), ``skin`` marks the skin rows of ``tris``;
    ``reference`` is the driving neutral face, ``current_gray`` and ``current_landmarks``
    the current one. None when no skin is visible."""
    n = min(len(reference.landmarks), len(current_landmarks))
    rows = np.flatnonzero(skin)
    if rows.size == 0 or n < 468:
        return None
    lut = np.zeros(len(skin) + 1, np.uint8)  # index 0: no triangle
    lut[1:] = skin
    face = tris[rows]
    pad = 3
    (wy, wx), near = _skin_cells(warp, index, lut, dst, face, margin=pad)
    bx, by, width, height = cv2.boundingRect(near)
    if width == 0:
        return None
    bx, by = bx + wx, by + wy
    g = warp.grid
    y0, y1 = max(0, by - pad), min(g, by + height + pad)
    x0, x1 = max(0, bx - pad), min(g, bx + width + pad)
    sub = index[y0:y1, x0:x1]
    cur, ref = _sample_pair(warp, sub, (y0, x0), len(tris), rows, face, dst,
                            (current_gray, np.asarray(current_landmarks, dtype=np.float64)),
                            (reference.gray, reference.landmarks), n=n)
    ratio = (cur + _EPS) / (ref + _EPS)
    np.clip(ratio, *RATIO_RANGE, out=ratio)
    mask = near[y0 - wy:y1 - wy, x0 - wx:x1 - wx].astype(np.float32)
    hidden = hidden_skin(ref, cur, mask)
    if hidden is not None:
        mask[hidden] = 0.0
    # Creases are local; what changes smoothly across the face is light (the head turned
    # towards or away from it), which the portrait's own light must keep: divide the ratio
    # by its own blur over the skin (a normalised convolution: the skin's edge does not
    # pull it towards 1).
    # (both blurs as the two channels of one: the same sums, one pass)
    sigma = _DETAIL_SCALE * float(width)
    den, low = cv2.split(cv2.GaussianBlur(cv2.merge([mask, ratio * mask]), (0, 0), sigma))
    low /= np.maximum(den, 1e-3)
    ratio = ratio / np.maximum(low, 1e-3)
    np.clip(ratio, *RATIO_RANGE, out=ratio)
    return ExpressionDetail((y0, y1, x0, x1), width, ratio, mask, ref)


def finish_ratio(warp: PiecewiseAffineWarp, detail: ExpressionDetail, *,
                 strength: float = 1.0, base: np.ndarray | None = None,
                 same_skin: Callable[[float], float] | None = None
                 ) -> tuple[tuple[slice, slice], np.ndarray]:
    """The expression ratio on the output from ``detail`` (:func:`expression_detail`, of
    the same warp), as ``(region, ratio)``: ``ratio`` (float32) is to multiply the output's
    pixels in ``region`` (a (rows, cols) slice pair). ``base`` is the output picture the
    ratio will multiply (the warped portrait, RGB uint8): with it, a crease of the driving
    face's neutral frame that went away lifts the portrait only as far as the portrait has
    that crease (:func:`lift_share`), and the driver's grain stays off it as far as its skin
    is not the driver's (:func:`skin_match`; ``same_skin``, when given, turns this frame's
    reading into the one used: a :class:`SkinMatch` average)."""
    (y0, y1, x0, x1), width = detail.cells, detail.width
    ratio, mask, ref = detail.ratio.copy(), detail.mask, detail.neutral
    cell = warp.cell
    top, left = round(y0 * cell), round(x0 * cell)
    bottom, right = min(warp.size, round(y1 * cell)), min(warp.size, round(x1 * cell))
    if base is not None and GRAIN_K > 0:
        # the driver's own skin grain, unless the portrait's skin is the driver's
        # (blurred as the driving face's luminance is)
        own = luminance(cv2.resize(base[top:bottom, left:right], (x1 - x0, y1 - y0),
                                   interpolation=cv2.INTER_AREA))
        match = skin_match(own, ref, mask)
        if same_skin is not None:
            match = same_skin(match)
        foreign = 1.0 - float(np.clip((match - SAME_SKIN[0]) / (SAME_SKIN[1] - SAME_SKIN[0]),
                                      0.0, 1.0))
        if foreign > 0.0:
            drop_grain(ratio, mask, k=GRAIN_K * foreign)
            soften_creases(ratio, mask, FOREIGN_SOFT * float(width) * foreign)
    if base is not None and bool((ratio > 1.0 + FREE_LIFT).any()):
        # measured on a grid SHARE_STEP times coarser (creases are several cells wide)
        small = (max(1, (x1 - x0) // SHARE_STEP), max(1, (y1 - y0) // SHARE_STEP))
        own = cv2.cvtColor(cv2.resize(base[top:bottom, left:right], small,
                                      interpolation=cv2.INTER_AREA),
                           cv2.COLOR_RGB2GRAY).astype(np.float32)
        share = lift_share(own, cv2.resize(ref, small, interpolation=cv2.INTER_AREA),
                           cv2.resize(mask, small, interpolation=cv2.INTER_AREA),
                           step=SHARE_STEP)
        share = cv2.resize(share, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        ratio = np.where(ratio > 1.0, np.minimum(ratio, np.maximum(
            1.0 + (ratio - 1.0) * share, 1.0 + FREE_LIFT)), ratio)
    soft = cv2.GaussianBlur(mask, (0, 0), 1.5) * mask  # fades in from the mesh's edge
    if strength != 1.0:
        np.power(ratio, np.float32(strength), out=ratio)
    ratio = 1.0 + soft * (ratio - 1.0)
    full = cv2.resize(ratio.astype(np.float32), (right - left, bottom - top),
                      interpolation=cv2.INTER_LINEAR)
    return (slice(top, bottom), slice(left, right)), full


GRAIN_K = 3.0
"""The ratio's grain (:func:`drop_grain`): deviations up to this many of its robust standard
deviations over the skin are taken off every cell's deviation ..."""
SAME_SKIN = (0.45, 0.65)
"""... on another person's face: where the portrait's skin detail and the driving neutral
face's, at the same places of the face, correlate (:func:`skin_match`) by the first value or
less; none from the second value on (the portrait is the driver's own face, in the same light:
its grain is the driver's, and the whole ratio gives back what the driver's face did), in
between in proportion. Measured on the fixtures (512 px crops): a clip's own first frame as
the portrait 0.65-0.96 over every frame (medians 0.77-0.93 by clip), every other portrait x
clip pair -0.06-0.50 over every 2nd of the first 120 frames (medians up to 0.41)."""
MATCH_SIGMA = 1.5
"""Grid cells (sigma): the skin detail :func:`skin_match` compares is each cell against the
skin around it at this scale (pores, fine lines, grain)."""


def skin_match(own: np.ndarray, other: np.ndarray, mask: np.ndarray) -> float:
    """How alike two faces' skin detail is at the same places (-1..1): the correlation of
    their fine luminance detail (each cell over the skin around it, :data:`MATCH_SIGMA`) on the
    skin cells (``mask`` > 0.5, one cell in from its edge). ``own`` and ``other`` are
    luminances on the same grid cells of one face geometry (the portrait as drawn, the driving
    neutral face sampled there). The same photo gives about 1, two people about 0."""
    on = (mask > 0.5).astype(np.float32)
    a, b, w = cv2.split(cv2.GaussianBlur(cv2.merge([own * on, other * on, on]), (0, 0),
                                         MATCH_SIGMA))
    np.maximum(w, 1e-3, out=w)
    inner = cv2.erode(on, np.ones((3, 3), np.uint8)) > 0.5
    if int(inner.sum()) < 16:
        return 0.0
    a /= w
    b /= w
    da = ((own - a) / (a + _EPS))[inner]
    db = ((other - b) / (b + _EPS))[inner]
    da -= da.mean()
    db -= db.mean()
    den = math.sqrt(float(da @ da) * float(db @ db))
    return float(da @ db) / den if den > 0.0 else 0.0


class SkinMatch:
    """:func:`skin_match` averaged over time (exponentially, on real time steps: half of a
    change is taken in :attr:`half_life` seconds, about a fifth a frame at 30 fps): a frame's
    reading moves by up to ~0.06 from the last one, which near :data:`SAME_SKIN` would make the
    grain come and go. A new portrait or neutral pose starts a new average (:meth:`reset`)."""

    half_life = 0.1

    def __init__(self) -> None:
        self.value: float | None = None
        self._t = 0.0

    def __call__(self, match: float, t: float) -> float:
        """The average with ``match``, the reading of the frame at ``t`` (seconds)."""
        if self.value is None:
            self.value = float(match)
        else:
            self.value += approach_factor(t - self._t, self.half_life) * (float(match)
                                                                         - self.value)
        self._t = t
        return self.value

    def reset(self) -> None:
        self.value = None


FOREIGN_SOFT = 0.012
"""On another person's face (:data:`SAME_SKIN`) the creases are softened by a blur of this
share of the face's width (:func:`soften_creases`)."""


def soften_creases(ratio: np.ndarray, mask: np.ndarray, sigma: float) -> None:
    """In place: blur an expression ratio's log over the skin (``mask`` > 0.5; a normalised
    convolution: what is not skin does not bleed in) by ``sigma`` cells (none below 0.3). A
    driver's deep, thin crease (a forehead line, the fold by the nose) drawn at full
    sharpness on another person's smooth skin read as a scratch; the skin's own fold is a
    soft shadow."""
    if sigma < 0.3:
        return
    on = (mask > 0.5).astype(np.float32)
    log, weight = cv2.split(cv2.GaussianBlur(cv2.merge([np.log(ratio) * on, on]), (0, 0),
                                             sigma))
    soft = np.exp(log / np.maximum(weight, 1e-3))
    np.copyto(ratio, soft, where=on > 0.0)


def drop_grain(ratio: np.ndarray, mask: np.ndarray, *, k: float = GRAIN_K) -> None:
    """In place: take the grain out of an expression ratio (float32, 1 = no change), measured
    on the skin cells (``mask`` > 0.5). The driving face's pores, fine lines and video noise
    do not line up between its neutral and its current frame once warped onto each other, so
    the ratio speckles by a few percent all over the face: the driver's skin, not the expression. On
    another person's skin it reads as dirt (grey blotches over a smooth young face; on the
    driver's own face it is what that face did, :data:`SAME_SKIN`). Every cell's
    log-deviation shrinks by ``k`` times the deviations' robust spread (1.4826 x their median
    absolute value over the skin; soft thresholding): the speckle goes, creases and folds,
    sparse and far deeper, keep all but that margin."""
    cells = np.flatnonzero(mask > 0.5)
    if cells.size < 16:
        return
    dev = np.log(ratio)
    spread = 1.4826 * _median(np.abs(np.take(dev, cells)))
    if spread <= 0.0:
        return
    cut = np.float32(k * spread)
    shrunk = np.maximum(np.abs(dev) - cut, np.float32(0.0))
    np.copyto(ratio, np.exp(np.copysign(shrunk, dev)))


_RASTER_REACH = 2
"""Grid cells a triangle's index reaches past its corners' box: a cell the fill rounds into
it, and a hole filled from that cell (:meth:`PiecewiseAffineWarp.index_map`)."""


def _skin_cells(warp: PiecewiseAffineWarp, index: np.ndarray, lut: np.ndarray,
                dst: np.ndarray, face: np.ndarray, *, margin: int
                ) -> tuple[tuple[int, int], np.ndarray]:
    """``lut`` looked up on the window of ``index`` that holds every cell of the triangles
    ``face`` (output vertices ``dst``) and ``margin`` cells more: ``((row, column) of its
    first cell, the looked-up window)`` (a lookup on the whole map cost more than the rest
    of the box)."""
    # (a box of float32 corners: the same box give or take rounding, well within reach)
    bx, by, bw, bh = cv2.boundingRect(np.take(dst.astype(np.float32), face.ravel(), axis=0))
    g, k = warp.grid, warp.grid / warp.size
    reach = _RASTER_REACH + margin
    x0 = max(0, math.floor((bx + 0.5) * k - 0.5) - reach)
    y0 = max(0, math.floor((by + 0.5) * k - 0.5) - reach)
    x1 = min(g, max(x0, math.ceil((bx + bw + 0.5) * k - 0.5) + reach + 1))
    y1 = min(g, max(y0, math.ceil((by + bh + 0.5) * k - 0.5) + reach + 1))
    return (y0, x0), np.take(lut, index[y0:y1, x0:x1])


def _sample_pair(warp: PiecewiseAffineWarp, sub: np.ndarray, origin: tuple[int, int],
                 count: int, rows: np.ndarray, face: np.ndarray, dst: np.ndarray,
                 *faces: tuple[np.ndarray, np.ndarray], n: int) -> list[np.ndarray]:
    """Each of ``faces`` (a luminance and its landmarks) sampled at the coarse-grid cells of
    ``sub`` (a window of the index map at grid ``origin``) through the skin triangles
    ``face``, rows ``rows`` of the ``count`` drawn (output vertices ``dst``, the face's
    first ``n`` landmarks as their source): what :meth:`PiecewiseAffineWarp.grid_source`
    and a remap give, with the triangles' affines solved in one call for all faces."""
    m, k = len(dst), len(faces)
    src = np.zeros((k * m, dst.shape[1]), dst.dtype)
    for i, (_, points) in enumerate(faces):
        src[i * m:i * m + n] = points[:n, :2]
    coeffs = triangle_affines(np.concatenate([dst] * k), src,
                              np.concatenate([face + i * m for i in range(k)]))
    table = np.zeros((k, count, 6), np.float32)  # other rows: the cell itself
    table[:, rows] = coeffs.reshape(k, len(rows), 6)
    maps = warp.grid_source(sub, table, origin=origin)
    return [sample_at(gray, m, border=cv2.BORDER_REPLICATE)
            for (gray, _), m in zip(faces, maps, strict=True)]


HIDDEN_DARK = 0.5
"""A grid cell of the driving face's skin this much darker than its skin's median, in the
neutral or the current frame, is not skin there (hair over the forehead) ..."""
HIDDEN_GROW = 2
"""... and neither are the cells this near it (the hair's edge moves) (:func:`hidden_skin`)."""


def hidden_skin(ref: np.ndarray, cur: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Cells of the face mesh's skin (``mask`` > 0) that something in front of the driving
    face hides in its neutral (``ref``) or its current frame (``cur``): far darker than its
    skin's median and reaching in from the face's outline (a fringe of hair over the
    forehead, a hand; not a nostril or the lashes, which lie inside), and the cells around
    them, (H, W) bool; None when there are none. A fringe moving over the forehead made a
    ratio of light and dark blotches that was carried onto the portrait's smooth forehead."""
    on = mask > 0.5
    if not on.any():
        return None
    dark = np.zeros(mask.shape, np.uint8)
    cells = np.flatnonzero(on)
    for gray in (ref, cur):
        level = _median(np.take(gray, cells))
        dark |= (on & (gray < HIDDEN_DARK * level)).view(np.uint8)
    if not dark.any():
        return None
    # the face's outline: the skin with its holes (eyes, brows, mouth) filled
    outside = cv2.copyMakeBorder((~on).view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT,
                                 value=(1,))
    cv2.floodFill(outside, None, (0, 0), (2,))
    face = (outside[1:-1, 1:-1] != 2).view(np.uint8)
    rim = face & ~cv2.erode(face, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                           borderValue=(0,))
    count, labels = cv2.connectedComponents(dark, connectivity=8)
    reach = np.zeros(count, bool)
    reach[labels[(rim & dark).view(bool)]] = True
    reach[0] = False
    if not reach.any():
        return None
    kernel = np.ones((2 * HIDDEN_GROW + 1,) * 2, np.uint8)
    grown = cv2.dilate(np.take(reach.view(np.uint8), np.asarray(labels)), kernel)
    return np.asarray(grown.view(bool))


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array without NaNs (the same value), without its overhead."""
    k = values.size // 2
    if values.size % 2:
        return float(np.partition(values, k)[k])
    part = np.partition(values, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2)


CREASE_SIGMA = 3.0
"""Grid cells (sigma of a Gaussian): the skin around a pixel that its darkness is measured
against (:func:`lift_share`) ..."""
CREASE_SLACK = 1.5
"""... and the grid cells (sigma) that darkness is averaged over, so that grain (dark and
light specks) cancels out and a crease a cell away from the driver's still counts."""
CREASE_FLOOR = 0.005
"""A lift where the driving neutral face is darker than its surroundings by less than this
share is weighed against this much darkness (no division by nothing)."""
FREE_LIFT = 0.05
"""A ratio up to 1 + this lifts any skin (light, mild changes): too little to draw a line."""
SHARE_STEP = 2
"""The share is measured on a grid this many times coarser than the warp's."""


def lift_share(own: np.ndarray, neutral: np.ndarray, mask: np.ndarray, *,
               step: int = 1) -> np.ndarray:
    """How much of a ratio above 1 the portrait takes, (H, W) in [0, 1], from the portrait's
    luminance ``own`` and the driving neutral face's ``neutral`` at the same places (float32,
    one grid of ``step`` warp cells a pixel; ``mask`` 1 on skin, 0 elsewhere). Above 1 the
    ratio says a crease or shadow of the driving neutral face went away (its forehead's lines
    at rest, its brows coming down); the portrait has that crease only as far as it is as
    dark there as the driver was. On another person's smooth skin the lift drew light lines
    (white streaks across a child's forehead); on the driver's own face (self-reconstruction)
    it is the crease going.

    Darkness: how much darker the skin is than the skin around it (normalised convolutions:
    what is not skin does not count), averaged over :data:`CREASE_SLACK`."""
    sigma, slack_sigma = CREASE_SIGMA / step, CREASE_SLACK / step
    own, neutral = np.asarray(own, np.float32), np.asarray(neutral, np.float32)
    # each pair of blurs (the skin weighted, and the weight) as the channels of one blur:
    # the same sums, one pass
    around_own, around_neutral, weight = cv2.split(cv2.GaussianBlur(
        cv2.merge([own * mask, neutral * mask, mask]), (0, 0), sigma))
    np.maximum(weight, 1e-3, out=weight)
    dark = [((around / weight + _EPS) / (picture + _EPS) - 1.0) * mask
            for around, picture in ((around_own, own), (around_neutral, neutral))]
    dark_own, dark_neutral, slack = cv2.split(cv2.GaussianBlur(cv2.merge([*dark, mask]),
                                                               (0, 0), slack_sigma))
    np.maximum(slack, 1e-3, out=slack)
    dark_own = np.maximum(dark_own / slack, 0.0)
    dark_neutral = np.maximum(dark_neutral / slack, 0.0)
    share = np.clip(dark_own / np.maximum(dark_neutral, CREASE_FLOOR), 0.0, 1.0)
    return np.asarray(share, np.float32)


def apply_ratio(out: np.ndarray, region: tuple[slice, slice], ratio: np.ndarray) -> None:
    """In place: multiply ``out[region]`` (RGB uint8) by ``ratio`` (rounded half up,
    clipped)."""
    patch = out[region]
    scaled = patch.astype(np.float32)
    # in place and with the ratio spread to the 3 channels: several times quicker than
    # broadcasting it (same products)
    scaled *= cv2.merge([ratio, ratio, ratio])
    scaled += np.float32(0.5)
    # clipped to [0, 255] in place by cv2, on one channel (its bound then holds for all values)
    flat = scaled.reshape(len(scaled), -1)
    cv2.threshold(flat, 0.0, 0.0, cv2.THRESH_TOZERO, dst=flat)
    cv2.threshold(flat, 255.0, 255.0, cv2.THRESH_TRUNC, dst=flat)
    np.copyto(patch, scaled, casting="unsafe")  # truncates: with the 0.5, rounds half up


__all__ = ["BRIDGE_LINE", "BROWS", "BROW_CORNERS", "CREASE_FLOOR", "CREASE_SIGMA",
           "CREASE_SLACK", "EYES_AND_LIPS", "FEATURES",
           "FOREIGN_SOFT", "FREE_LIFT", "GLASSES_ZONE", "GRAIN_K", "HIDDEN_DARK", "HIDDEN_GROW",
           "MATCH_SIGMA", "RATIO_RANGE", "SAME_SKIN", "SHARE_STEP", "ExpressionDetail",
           "ShadingReference", "SkinMatch", "apply_ratio", "drop_grain", "expression_detail",
           "finish_ratio", "glasses_triangles", "hidden_skin", "lift_share", "lip_points",
           "luminance", "shading_triangles", "skin_match", "soften_creases",
           "wears_glasses"]
