"""The portrait's person matte and the clean background plate behind it (once per portrait).

Used by the mesh engine (only the head layer is warped; the background stays still) and by the
background options of the compositor. Three steps:

1. :func:`segment_person`: MediaPipe's selfie segmentation (bundled in mediapipe 0.10.21), run
   on the image scaled to the model's working size; ``None`` when it finds nobody (a painting it
   fails on), so callers can fall back with a warning instead of cutting half an image.
2. :func:`refine_matte`: an edge-aware guided filter (OpenCV contrib's ``ximgproc``) that snaps
   the coarse mask to the photo's own edges (hair, ears, collar).
   :func:`separate_colours` then re-estimates the outline from the two colours meeting there,
   :func:`release_background` takes out the stretches of plain wall the model was unsure of,
   and :func:`claim_attached` gives the person back the rims the model left out (a collar
   ring, a hair clip); for the mesh engine :func:`claim_strands` also finds the loose
   strands of hair around the head, and what lies behind them.
3. :func:`background_plate`: the background with the person removed, filled at a reduced size
   (a smooth pull-push fill, with the background's texture reflected a little way into the
   hole); pixels outside the (dilated) person are the photo's own, bit for bit.

:func:`prepare_layers` runs all three and returns a :class:`PortraitLayers`;
:func:`quick_matte` is step 1 and the guided filter at a small size, fast enough for every
frame (the FOMM engine's animated crop, whose head moves without a warp to carry the
portrait's matte).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from live.packets import check_rgb

log = logging.getLogger(__name__)

_MIN_PERSON_FRACTION = 0.01  # less than 1% of the image above 0.5: nobody found
_lock = threading.Lock()
_models: dict[int, object] = {}


def _model(selection: int) -> object:
    with _lock:
        model = _models.get(selection)
        if model is None:
            from mediapipe.python.solutions import selfie_segmentation

            model = selfie_segmentation.SelfieSegmentation(model_selection=selection)
            _models[selection] = model
        return model


def segment_person(image: np.ndarray, *, model_selection: int = 0) -> np.ndarray | None:
    """The person matte of an RGB uint8 image: float32 (H, W) in [0, 1], or ``None`` when
    the model finds no person. ``model_selection`` 0 is MediaPipe's general (square, 256 px)
    model, 1 its landscape model."""
    img = check_rgb(image, "image")
    h, w = img.shape[:2]
    side = 512
    scale = side / max(h, w)
    small = img if scale >= 1 else cv2.resize(
        img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    model = _model(model_selection)
    with _lock:  # MediaPipe graphs are not re-entrant
        result = model.process(np.ascontiguousarray(small))  # type: ignore[attr-defined]
    mask = getattr(result, "segmentation_mask", None)
    if mask is None:
        return None
    mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    if float((mask > 0.5).mean()) < _MIN_PERSON_FRACTION:
        return None
    if mask.shape != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return mask


def refine_matte(image: np.ndarray, matte: np.ndarray, *, radius: int | None = None,
                 eps: float = 1e-3) -> np.ndarray:
    """Snap ``matte`` (float32 (H, W) in [0, 1]) to the edges of ``image`` with a guided
    filter; ``radius`` defaults to ~1% of the image side."""
    h, w = matte.shape[:2]
    r = radius if radius is not None else max(2, round(0.01 * max(h, w)))
    guide = cv2.cvtColor(check_rgb(image, "image"), cv2.COLOR_RGB2GRAY)
    out = cv2.ximgproc.guidedFilter(guide, matte.astype(np.float32), r, eps * 255.0 ** 2)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


SEPARATE_WORK_SIDE = 512
"""Side at which :func:`separate_colours` finds each outline pixel's two colours."""
SEPARATE_SURE = 0.006
"""How far (share of the long side) inside the coarse mask's sure regions their colours are
taken: its ramp is often that much off the real edge."""
SEPARATE_CONTRAST = (10.0, 30.0)
"""Distance of the two colours (RGB levels, less their texture's spread) from which the
colour estimate starts to count, and from which it counts fully."""
SEPARATE_RESIDUAL = 12.0
"""A pixel further than this (RGB levels) from the line between its two colours counts less,
and not at all from twice as far (a third colour: an ear between hair and wall)."""
SEPARATE_GRAIN = 0.0012
"""Blur (share of the long side) of the colours whose alpha is estimated, against grain."""
SEPARATE_RAMP = 0.02
"""Colours decide only where the coarse mask goes from nobody (below 0.05) to the person
(above 0.95) within this share of the long side: not on a wide uncertain plateau (light
hair against a light wall, where the mask stays near 0.5)."""


SEPARATE_LIKE = (8.0, 20.0)
"""A pixel whose colour lies within the first of these (RGB levels) of a colour the sure
background shows where it is nearest (:data:`SEPARATE_LIKE_RINGS`) is not made more of the
person by :func:`separate_colours`, and fully from the second on: foliage as dark as the
hair beside it was taken for hair in spikes out of the head's outline (lp_s42)."""
SEPARATE_LIKE_RINGS = (0.0, 1.0, 2.0, 3.0)
"""Radii (times the sure regions' inset, :data:`SEPARATE_SURE`) of the rings round a pixel's
nearest sure background pixel on which :func:`separate_colours` reads the background's
colours, 16 points each (the point itself for 0)."""


def _unlike_background(colours: np.ndarray, background: np.ndarray, nearest: np.ndarray,
                       where: np.ndarray, step: float) -> np.ndarray:
    """Per pixel of ``where``, how unlike its colour (``colours``, (H, W, 3) float32) is
    every colour of the ``background`` pixels round its nearest one (``nearest``: (H, W, 2)
    float32 x, y; on the rings of :data:`SEPARATE_LIKE_RINGS` times ``step`` px): 0 within
    the first of :data:`SEPARATE_LIKE` (RGB levels) of one, 1 from the second on; 1
    elsewhere. (H, W) float32."""
    h, w = background.shape[:2]
    out = np.ones((h, w), np.float32)
    ys, xs = np.nonzero(where)
    if ys.size == 0:
        return out
    flat = colours.reshape(-1, 3)
    sure = background.ravel()
    own = flat[ys * w + xs]
    bx = np.rint(nearest[ys, xs, 0]).astype(np.intp)
    by = np.rint(nearest[ys, xs, 1]).astype(np.intp)
    closest = np.full(ys.size, np.inf, np.float32)
    for ring in SEPARATE_LIKE_RINGS:
        r = ring * step
        for a in (np.arange(16) * (np.pi / 8.0) if r > 0 else (0.0,)):
            at = (np.clip(by + round(r * np.sin(a)), 0, h - 1) * w
                  + np.clip(bx + round(r * np.cos(a)), 0, w - 1))
            there = np.take(flat, at, axis=0)
            there -= own
            apart = np.einsum("ij,ij->i", there, there)
            apart[~sure[at]] = np.inf
            np.minimum(closest, apart, out=closest)
    lo, hi = SEPARATE_LIKE
    out[ys, xs] = np.clip((np.sqrt(closest) - lo) / (hi - lo), 0.0, 1.0)
    return out


def _nearest_samples(values: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """For each pixel, ``values`` (H, W, C) at the nearest pixel of ``sure`` (True
    somewhere)."""
    _, labels = cv2.distanceTransformWithLabels((~sure).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    # labels number the sure pixels in raster order from 1: their flat indices, shifted
    where = np.concatenate([[0], np.flatnonzero(sure)]).astype(np.int64)
    h, w, c = values.shape
    return np.take(values.reshape(-1, c), where[labels.ravel()], axis=0).reshape(h, w, c)


def _per_pixel(values: np.ndarray, weight: np.ndarray, *, divide: bool = False) -> np.ndarray:
    """``values`` (H, W, C) times ``weight`` (H, W) at each pixel (``divide``: over it, which
    must then be nonzero), as numpy's ``values * weight[..., None]`` gives it, the same float
    steps, with OpenCV's per-element arithmetic on whole planes (about a fifth of the time of
    numpy's broadcasting over a short last axis)."""
    if values.ndim != 3 or values.dtype != weight.dtype or values.shape[2] > 4:
        return values / weight[..., None] if divide else values * weight[..., None]
    c = values.shape[2]
    planes = weight if c == 1 else cv2.merge([weight] * c)
    out = cv2.divide(values, planes) if divide else cv2.multiply(values, planes)
    return np.asarray(out).reshape(values.shape)


def _disk(r: int) -> np.ndarray:
    """An elliptic structuring element of radius ``r``."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _without_grain(image: np.ndarray) -> np.ndarray:
    """``image`` blurred by :data:`SEPARATE_GRAIN` of its long side (at least 0.7 px)."""
    return np.asarray(cv2.GaussianBlur(image, (0, 0),
                                       max(0.7, SEPARATE_GRAIN * max(image.shape[:2]))))


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) float32 read bilinearly at the points ``(x, y)``: (N, C)."""
    n = x.size
    cols = 4096  # remap's maps must stay below 32767 on a side
    rows = -(-n // cols)
    map_x = np.zeros(rows * cols, np.float32)
    map_y = np.zeros(rows * cols, np.float32)
    map_x[:n], map_y[:n] = x, y
    out = cv2.remap(np.ascontiguousarray(image), map_x.reshape(rows, cols),
                    map_y.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out.reshape(rows * cols, -1)[:n])


def _region_spread(image: np.ndarray, region: np.ndarray, sigma: float) -> np.ndarray:
    """Texture of ``image`` within ``region``: the local spread (RGB levels, root of the
    summed channel variances over a Gaussian window), its least value within ``3 sigma``
    (an edge inside the region, a wall meeting a board, is not texture)."""
    m = region.astype(np.float32)
    den = np.maximum(cv2.GaussianBlur(m, (0, 0), sigma), 1e-6)
    mean = _per_pixel(cv2.GaussianBlur(_per_pixel(image, m), (0, 0), sigma), den, divide=True)
    sq = cv2.GaussianBlur(_channel_sum(image * image) * m, (0, 0), sigma) / den
    spread = np.where(region, np.sqrt(np.maximum(sq - _channel_sum(mean * mean), 0.0)), 1e4)
    least = cv2.erode(spread.astype(np.float32), _disk(max(1, round(3 * sigma))))
    return np.asarray(least, np.float32)


def separate_colours(image: np.ndarray, coarse: np.ndarray, matte: np.ndarray, *,
                     work_side: int = SEPARATE_WORK_SIDE) -> np.ndarray:
    """``matte`` re-estimated along the person's outline from the two colours meeting there.

    The guided filter cannot see an edge between two dark colours (dark hair against a dark
    board): there it spreads ``coarse`` (the segmentation's mask) into a wide ramp, and that
    share of the background moves with the head. Here each pixel near the coarse mask's edge
    takes the colour of the nearest sure person pixel and of the nearest sure background pixel
    (:data:`SEPARATE_SURE` inside the mask's sure regions, the picture smoothed edge-aware at
    ``work_side``), and its alpha is where its own colour lies between the two. That estimate
    replaces ``matte`` as far as it can be trusted: the two colours differ by more than their
    texture (:data:`SEPARATE_CONTRAST`), the pixel lies near the line between them
    (:data:`SEPARATE_RESIDUAL`), and the coarse mask has an edge there
    (:data:`SEPARATE_RAMP`); elsewhere ``matte`` is returned unchanged, bit for bit. Where
    the estimate would make a pixel more of the person than ``matte`` does, its colour must
    also be unlike the colours the sure background shows where it is nearest
    (:data:`SEPARATE_LIKE`): a textured background (foliage) has the hair's colour too.
    """
    img = check_rgb(image, "image")
    h, w = coarse.shape[:2]
    side = float(max(h, w))
    scale = min(1.0, work_side / side)
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small_u8 = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    raw = small_u8.astype(np.float32)
    smooth = cv2.bilateralFilter(small_u8, 5, 20, 3).astype(np.float32)
    cs = cv2.resize(coarse.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    e = max(1, round(SEPARATE_SURE * side * scale))
    person = cv2.erode((cs >= 0.98).astype(np.uint8), _disk(e)) > 0
    background = cv2.erode((cs <= 0.02).astype(np.uint8), _disk(e)) > 0
    band = cv2.dilate(((cs > 0.02) & (cs < 0.98)).astype(np.uint8), _disk(2 * e)) > 0
    if not (person.any() and background.any() and band.any()):
        return matte
    fg = _nearest_samples(np.dstack([smooth, _region_spread(raw, person, 1.5)]), person)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    bg = _nearest_samples(np.dstack([smooth, _region_spread(raw, background, 1.5), xx, yy]),
                          background)  # (and where that background pixel is)
    d = fg[..., :3] - bg[..., :3]
    dd = np.maximum(_channel_sum(d * d), 1e-6)
    alpha = np.clip(_channel_sum((smooth - bg[..., :3]) * d) / dd, 0.0, 1.0)
    residual = np.sqrt(_channel_sum(((bg[..., :3] + alpha[..., None] * d) - smooth) ** 2))
    lo, hi = SEPARATE_CONTRAST
    spread = np.sqrt(fg[..., 3] ** 2 + bg[..., 3] ** 2)
    trust = (np.clip((np.sqrt(dd) - spread - lo) / (hi - lo), 0.0, 1.0)
             * np.clip(2.0 - residual / SEPARATE_RESIDUAL, 0.0, 1.0) * band)
    # an edge is where the mask goes from nobody to the person within SEPARATE_RAMP
    reach = _disk(max(1, round(SEPARATE_RAMP * side * scale)))
    span = cv2.dilate(cs, reach) - cv2.erode(cs, reach)
    trust = cv2.GaussianBlur((trust * np.clip((span - 0.6) / 0.3, 0.0, 1.0)).astype(np.float32),
                             (0, 0), 1.0)
    # where the estimate would make a pixel more of the person, its colour must be unlike
    # those the sure background shows where it is nearest (a textured background has the
    # hair's colours too)
    held = matte if scale >= 1.0 else cv2.resize(matte, (sw, sh), interpolation=cv2.INTER_AREA)
    unlike = _unlike_background(smooth, background, bg[..., 4:6],
                                (trust > 1e-3) & (alpha > held), e)
    # full size, only where the estimate counts
    big = cv2.resize(trust, (w, h), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(big > 1e-3)
    if ys.size == 0:
        return matte
    t = big[ys, xs]
    at_x, at_y = (xs + 0.5) * (sw / w) - 0.5, (ys + 0.5) * (sh / h) - 0.5
    f, b = _sample(fg[..., :3], at_x, at_y), _sample(bg[..., :3], at_x, at_y)
    d_full = f - b
    # the picture's grain would speckle the estimate: its colours a little smoothed
    soft = _without_grain(img)
    own = np.clip(_channel_sum((soft[ys, xs].astype(np.float32) - b) * d_full)
                  / np.maximum(_channel_sum(d_full * d_full), 1e-6), 0.0, 1.0)
    out = matte.astype(np.float32, copy=True)
    was = out[ys, xs]
    raised = own > was
    if raised.any():
        t[raised] *= cv2.resize(unlike, (w, h), interpolation=cv2.INTER_LINEAR)[ys, xs][raised]
    out[ys, xs] = t * own + (1.0 - t) * was
    # Colours alone can open a hole in the person (a white hair clip against a light wall)
    # or leave a speck of background on it: what they made background must join the
    # background, and what they made person must join the person.
    stray = np.zeros((h, w), np.uint8)
    for made, anchor in ((out < 0.5, matte < 0.1), (out >= 0.5, matte > 0.9)):
        count, labels = cv2.connectedComponents(made.astype(np.uint8), connectivity=8)
        joined = np.zeros(count, bool)
        joined[labels[made & anchor]] = True
        joined[0] = True  # the label of everything outside ``made``
        stray |= ~joined[labels]
    if stray.any():  # ``matte`` again there, with the rim around it
        r = max(1, round(SEPARATE_SURE * side / 2))
        back = cv2.GaussianBlur(cv2.dilate(stray, _disk(r)).astype(np.float32), (0, 0), r / 2)
        out = np.where(out != matte, back * matte + (1.0 - back) * out, matte)
    return np.asarray(out, np.float32)


CLAIM_REACH = 0.03
"""How far (share of the long side) from the person :func:`claim_attached` looks for pieces
of it the segmentation left out."""
CLAIM_CONTRAST = (30.0, 60.0)
"""Distance (RGB levels, less the background's own texture) of a pixel's colour from the
background expected there at which :func:`claim_attached` starts to take it for the person,
and from which fully."""
CLAIM_TEXTURE = 0.03
"""Window (Gaussian sigma, share of the long side) over which :func:`claim_attached` measures
the background's own texture: wide enough to see a waterfall's streaks or a landscape's rocks
beside the plain patch next to the person."""
CLAIM_TEXTURE_SPREADS = 2.5
"""How many times its texture's spread (a standard deviation) a pixel must differ from the
expected background by before the contrast counts (a streak of a waterfall is that far from
its mean)."""
CLAIM_WORK_SIDE = 512
"""Side at which :func:`claim_attached` works (its result is scaled up)."""


_SUM3 = np.ones((1, 3), np.float32)
"""The channel transform that sums three channels (:func:`_channel_sum`)."""


def _channel_sum(values: np.ndarray) -> np.ndarray:
    """``values`` (H, W, C) summed over its channels, in order (numpy's own sum over a short
    last axis is several times slower; for three float32 channels OpenCV's channel transform
    adds them in the same order, in a fifth of the time)."""
    if values.ndim == 3 and values.shape[2] == 3 and values.dtype == np.float32:
        return np.asarray(cv2.transform(np.ascontiguousarray(values), _SUM3)).reshape(
            values.shape[:2])
    out = np.array(values[..., 0], copy=True)
    for c in range(1, values.shape[-1]):
        out += values[..., c]
    return out


def _local_moments(values: np.ndarray, weight: np.ndarray, sigma: float, *,
                   about_mean: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The ``weight``-ed local mean of ``values`` (H, W, C float32), their spread (the root of
    the summed channel variances about that mean, or of their mean squares without
    ``about_mean``) and the weight's own local mean, over a Gaussian window of ``sigma``
    pixels; taken at a quarter of the size (a smooth measure) and brought back to (H, W).
    The mean is None without ``about_mean``."""
    h, w = weight.shape[:2]
    q = 4 if min(w, h) >= 64 else 1
    qsize = (max(1, w // q), max(1, h // q))
    s = max(1.0, sigma / q)
    terms: list[np.ndarray] = [weight, _channel_sum(values * values) * weight]
    if about_mean:
        terms.append(_per_pixel(values, weight))
    blurred = [cv2.GaussianBlur(cv2.resize(a, qsize, interpolation=cv2.INTER_AREA), (0, 0),
                                s) for a in terms]
    den = np.maximum(blurred[0], 1e-6)
    square = blurred[1] / den
    mean = None
    if about_mean:
        mean = _per_pixel(blurred[2].reshape(*den.shape, -1), den, divide=True)
        square = square - _channel_sum(mean * mean)
    spread = np.sqrt(np.maximum(square, 0.0)).astype(np.float32)
    if q > 1:
        spread = cv2.resize(spread, (w, h), interpolation=cv2.INTER_LINEAR)
        den = cv2.resize(den, (w, h), interpolation=cv2.INTER_LINEAR)
        if mean is not None:
            mean = cv2.resize(mean, (w, h), interpolation=cv2.INTER_LINEAR)
    if mean is not None:
        mean = mean.reshape(h, w, -1)
    return mean, spread, den


def _spread_beyond(values: np.ndarray, clear: np.ndarray, *,
                   about_mean: bool = True) -> np.ndarray:
    """The local spread of ``values`` (H, W, C float32; RGB levels) over the ``clear``
    pixels: the root of the summed channel variances about their local mean (``about_mean``)
    or of their mean squares, over a Gaussian window of :data:`CLAIM_TEXTURE` of the long
    side (a smooth measure, taken at a quarter of the size), each pixel given the nearest
    clear pixel's. (H, W) float32."""
    h, w = clear.shape[:2]
    _, spread, _ = _local_moments(values, clear.astype(np.float32),
                                  CLAIM_TEXTURE * max(w, h), about_mean=about_mean)
    return np.asarray(_nearest_samples(spread[..., None], clear)[..., 0], np.float32)


def claim_attached(image: np.ndarray, matte: np.ndarray, *, reach: float = CLAIM_REACH,
                   contrast: tuple[float, float] = CLAIM_CONTRAST,
                   work_side: int = CLAIM_WORK_SIDE) -> np.ndarray:
    """``matte`` with the pieces of the person the segmentation left out put back: pixels the
    matte calls mostly background (below 0.5) within ``reach`` of the person whose colour stands
    out from the background expected there (the photo filled in from beyond the reach) by
    ``contrast`` over :data:`CLAIM_TEXTURE_SPREADS` times the background's own texture, in
    pieces at least 3 px thick (at ``work_side``) joined to the person.

    The selfie model misses thin rims on the person's outline (a space suit's collar ring, a
    hair clip, a strand of hair against the wall); the plate kept them, and where the body
    moved, a copy of the rim stayed behind on the background. Elsewhere ``matte`` is returned
    unchanged (float32)."""
    img = check_rgb(image, "image")
    h, w = matte.shape[:2]
    if img.shape[:2] != (h, w):
        raise ValueError(f"claim_attached: the matte is {w}x{h}, the image "
                         f"{img.shape[1]}x{img.shape[0]}")
    matte = matte.astype(np.float32)
    side = float(max(h, w))
    scale = min(1.0, work_side / side)
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = img if scale >= 1.0 else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    sm = matte if scale >= 1.0 else cv2.resize(matte, (sw, sh), interpolation=cv2.INTER_AREA)
    body = (sm >= 0.5).astype(np.uint8)
    r = max(2.0, reach * max(sw, sh))
    away = cv2.distanceTransform(1 - body, cv2.DIST_L2, 5)
    near = (away > 0.0) & (away <= r)
    clear = away > r
    if not (body.any() and near.any() and clear.any()):
        return matte
    # the background expected near the person: the photo filled in from beyond the reach
    expected = background_plate(small, sm, work_side=max(sw, sh) // 2, grow=1.05 * reach)
    # the background's own texture: its local spread beyond the reach, carried in
    texture = _spread_beyond(small.astype(np.float32), clear)
    diff = np.sqrt(_channel_sum((_without_grain(small).astype(np.float32)
                                 - expected.astype(np.float32)) ** 2))
    lo, hi = contrast
    stands = np.clip((diff - CLAIM_TEXTURE_SPREADS * texture - lo) / (hi - lo), 0.0, 1.0) * near
    # only pieces joined to the person (and their anti-aliased rim)
    count, labels = cv2.connectedComponents(((stands > 0.5) | (body > 0)).astype(np.uint8),
                                            connectivity=8)
    joined = np.zeros(count, bool)
    joined[labels[body > 0]] = True
    joined[0] = False
    # at least three pixels thick: not the outline's own anti-aliased ring, a pixel wide,
    # which would harden every edge
    square = np.ones((3, 3), np.uint8)
    piece = cv2.morphologyEx((joined[labels] & (stands > 0.5)).astype(np.uint8),
                             cv2.MORPH_OPEN, square)
    if not piece.any():
        return matte
    add = stands * (cv2.dilate(piece, square) > 0)
    if scale < 1.0:
        add = cv2.resize(add.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(np.maximum(matte, add), np.float32)


RELEASE_WORK_SIDE = 512
"""Side at which :func:`release_background` works (its result is scaled up)."""
RELEASE_CONTRAST = (12.0, 24.0)
"""Distance (RGB levels, over :data:`RELEASE_SPREADS` times the background's texture) of a
pixel's colour from the background's next to it below which :func:`release_background` takes
it for that background, fully below the first."""
RELEASE_SPREADS = 1.5
"""How many times the background's own texture (its colours' local spread) a pixel may lie
from the background's colour and still look like it."""
RELEASE_GRAIN = (1.5, 4.0)
"""A pixel looks like the background only while its own fine texture (the spread over
:data:`RELEASE_GRAIN_WINDOW`) is at most the first times the background's fine texture plus
the second (RGB levels): strands of light hair as light as a plain wall are not the wall."""
RELEASE_GRAIN_WINDOW = 0.006
"""Window (Gaussian sigma, share of the long side) of the fine texture."""
RELEASE_THICK = 0.01
"""Half the thickness (share of the long side) a piece must have to be released: thinner
lookalikes (an anti-aliased rim, a lock of hair) stay."""
RELEASE_UNSURE = 0.6
"""The segmentation's mean confidence over a piece above which it is not released: the
wall it half took for the person averages 0.37-0.51 on the fixtures, dark coats it is
fairly sure of against dark panelling of their colour 0.68-0.89 (the Syndics' painting)."""
RELEASE_BINS = 16
"""Levels a bin of :func:`release_background`'s colour histograms spans, per channel."""
RELEASE_ODDS = (0.25, 0.5)
"""A colour below the first of these times as frequent among what the model was sure is the
person as among what it was sure is background counts fully as the background's; above the
second, not at all."""
RELEASE_PASSES = 3
"""Times the background's colour is carried on from what was released, into a wall whose
light changes across the piece (each pass reaches a little further)."""


def _carried(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Smooth ``values`` (H, W, C) where ``known``, each other pixel given the nearest known
    pixel's (found at a quarter of the size: the values are smooth)."""
    h, w = known.shape[:2]
    q = 4 if min(w, h) >= 64 else 1
    if q == 1 or known.all():
        return values if known.all() else _nearest_samples(values, known)
    qsize = (max(1, w // q), max(1, h // q))
    small_known = cv2.resize(known.astype(np.uint8), qsize, interpolation=cv2.INTER_NEAREST) > 0
    if not small_known.any():
        return _nearest_samples(values, known)
    small = cv2.resize(values, qsize, interpolation=cv2.INTER_AREA).reshape(qsize[1], qsize[0], -1)
    filled = cv2.resize(_nearest_samples(small, small_known), (w, h),
                        interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    # the known pixels' own values over it (OpenCV's masked copy: a fifth of np.where's time)
    cv2.copyTo(np.ascontiguousarray(values, filled.dtype), known.view(np.uint8), filled)
    return np.asarray(filled, np.float32)


def _colour_odds(colours: np.ndarray, person: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """How much likelier each pixel's colour (``colours``, (H, W, 3) float32 RGB) is among
    the ``person`` pixels than among the ``wall`` pixels: the ratio of the two colour
    histograms (:data:`RELEASE_BINS` levels a bin, each bin counted with its neighbours),
    (H, W) float32."""
    n = 256 // RELEASE_BINS
    q = np.clip(colours, 0.0, 255.0).astype(np.int32) // RELEASE_BINS
    index = (q[..., 0] * n + q[..., 1]) * n + q[..., 2]
    shares = []
    for where in (person, wall):
        hist = np.bincount(index[where], minlength=n ** 3).astype(np.float64).reshape(n, n, n)
        padded = np.pad(hist, 1)
        near = np.zeros_like(hist)
        for i, j, k in np.ndindex(3, 3, 3):
            near += padded[i:i + n, j:j + n, k:k + n]
        shares.append(near.ravel() / max(1.0, float(where.sum())))
    odds = (shares[0] + 1e-4) / (shares[1] + 1e-4)
    return np.asarray(odds[index], np.float32)


def _left_apart(matte: np.ndarray, coarse: np.ndarray, released: np.ndarray) -> np.ndarray:
    """1 on the pieces of ``matte`` (above 0.1) that ``released`` leaves apart from the person,
    beside what it released, on which ``coarse`` is nowhere sure (0.9); 0 elsewhere."""
    left = matte * (1.0 - released) > 0.1
    count, labels = cv2.connectedComponents(left.astype(np.uint8), connectivity=8)
    sure, beside = np.zeros(count, bool), np.zeros(count, bool)
    sure[labels[left & (coarse >= 0.9)]] = True
    beside[labels[left & (cv2.dilate((released > 0.5).astype(np.uint8), _disk(2)) > 0)]] = True
    apart = beside & ~sure
    apart[0] = False
    return apart[labels].astype(np.float32)


def release_background(image: np.ndarray, coarse: np.ndarray, matte: np.ndarray, *,
                       work_side: int = RELEASE_WORK_SIDE) -> np.ndarray:
    """``matte`` without the pieces of background the segmentation half took for the person.

    MediaPipe's selfie model is sometimes unsure of a stretch of plain wall beside the neck
    or shoulder (``coarse`` 0.3-0.9 there, with a sure spot in it); the guided filter and
    :func:`separate_colours` find no edge in it to cut at, so it stayed in the matte and
    showed in front of every background (sadtalker_art_14's red wall, a sign beside
    deepface_img21's shoulder).

    A pixel looks like the background when its colour lies within :data:`RELEASE_CONTRAST`
    (plus :data:`RELEASE_SPREADS` times the wall's texture) of the background's next to it
    (the local mean of the sure background, ``coarse`` <= 0.02, carried in), it is no more
    textured than the wall (:data:`RELEASE_GRAIN`), and its colour is rare on the person
    (:data:`RELEASE_ODDS`: what the model was sure of, against what it was sure is
    background). Pieces of such pixels at least :data:`RELEASE_THICK` thick, joined to the
    sure background, over which the model's mean confidence is at most
    :data:`RELEASE_UNSURE`, are released, up to the person's own edge; the background's
    colour is carried on from them, :data:`RELEASE_PASSES` times, into a wall lit unevenly.
    What the release leaves apart from the person, on which the model was never sure, goes
    with it. Elsewhere ``matte`` is returned unchanged, bit for bit (float32).

    A plain wall and light hair of its colour, the mask flat and unsure over both, are told
    apart only by an edge or a texture between them; without either the hair stays
    (tests/test_mesh_layers.py's plateau). Neither is every wall: lp_s2_bw_photo's grey
    wall by the elbow is the grey of his shirt, and stays."""
    img = check_rgb(image, "image")
    h, w = matte.shape[:2]
    if img.shape[:2] != (h, w) or coarse.shape[:2] != (h, w):
        raise ValueError(f"release_background: the image is {img.shape[1]}x{img.shape[0]}, "
                         f"the mask {coarse.shape[1]}x{coarse.shape[0]}, the matte {w}x{h}")
    matte = matte.astype(np.float32)
    scale = min(1.0, work_side / float(max(h, w)))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = (img if scale >= 1.0 else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
             ).astype(np.float32)
    cs, sm = (m.astype(np.float32) if scale >= 1.0 else cv2.resize(
        m.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) for m in (coarse, matte))
    side = float(max(sw, sh))
    clear = cv2.erode((cs <= 0.02).astype(np.uint8),
                      _disk(max(1, round(SEPARATE_SURE * side)))) > 0
    candidate = sm > 0.02
    if not (clear.any() and candidate.any()):
        return matte
    window = CLAIM_TEXTURE * side
    g = max(1.0, RELEASE_GRAIN_WINDOW * side)
    fine = np.sqrt(np.maximum(cv2.GaussianBlur(_channel_sum(small * small), (0, 0), g)
                              - _channel_sum(cv2.GaussianBlur(small, (0, 0), g) ** 2), 0.0))
    # the wall's own texture (its colours' spread) and fine texture, from the sure background
    _, texture, cover = _local_moments(small, clear.astype(np.float32), window)
    wall_grain, _, _ = _local_moments(fine[..., None], clear.astype(np.float32), window)
    assert wall_grain is not None
    carried = _carried(np.dstack([texture, wall_grain[..., 0]]), cover >= 0.05)
    lo, hi = RELEASE_CONTRAST
    glo, ghi = RELEASE_GRAIN
    plain = np.clip((glo * carried[..., 1] + ghi - fine) / ghi, 0.0, 1.0)
    tolerance = hi + RELEASE_SPREADS * carried[..., 0]
    own = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.004 * side))
    # a colour the person shows about as often as the wall (dark hair by a shadowed wall, dark
    # coats on dark panelling) is not released
    olo, ohi = RELEASE_ODDS
    rare = np.clip((ohi - _colour_odds(own, cs >= 0.9, clear)) / (ohi - olo), 0.0, 1.0)
    confidence = cs.astype(np.float64).ravel()
    thick = _disk(max(1, round(RELEASE_THICK * side)))
    released = np.zeros((sh, sw), np.float32)
    known = clear
    for _ in range(RELEASE_PASSES):
        colour, _, cover = _local_moments(small, known.astype(np.float32), window)
        assert colour is not None
        colour = _carried(colour, cover >= 0.05)
        diff = np.sqrt(_channel_sum((own - colour) ** 2))
        alike = np.clip((tolerance - diff) / (hi - lo), 0.0, 1.0) * plain * rare
        like = cv2.morphologyEx(((alike > 0.5) & candidate).astype(np.uint8),
                                cv2.MORPH_OPEN, thick) > 0
        count, labels = cv2.connectedComponents((like | known).astype(np.uint8),
                                                connectivity=8)
        joined = np.zeros(count, bool)
        joined[labels[known]] = True
        piece = np.where(like, labels, 0).ravel()
        size = np.bincount(piece, minlength=count)
        mean = np.bincount(piece, weights=confidence, minlength=count) / np.maximum(size, 1)
        go = joined & (mean <= RELEASE_UNSURE)
        go[0] = False
        found = alike * go[labels] * like
        if not (found > 0.5).any():
            break
        released = np.maximum(released, found)
        known = clear | (released > 0.5)
    if not (released > 0.0).any():
        return matte
    # the fine texture's window took the person's own edge next to the wall for grain: up to
    # that edge, the colour alone decides
    reach = cv2.dilate((released > 0.5).astype(np.uint8), _disk(max(1, round(2.0 * g)))) > 0
    released = np.maximum(released, np.clip((tolerance - diff) / (hi - lo), 0.0, 1.0)
                          * (reach & candidate)).astype(np.float32)
    out = cv2.GaussianBlur(np.maximum(released, _left_apart(sm, cs, released)), (0, 0), 1.0)
    if scale < 1.0:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(np.where(out > 0.0, matte * (1.0 - out), matte), np.float32)


STRAND_REACH = 0.08
"""How far (share of the long side) beyond the person :func:`claim_strands` looks for loose
hair (a curl floating 40 px off a 512 px head)."""
STRAND_WIDTH = 0.006
"""Half the width (share of the long side, at least 1 px) of the widest strand
:func:`claim_strands` takes out: the background under a strand is the picture's median over
a square this much to each side of it."""
STRAND_SPREADS = (2.5, 5.0)
"""How many times the background's own grain (the spread of the picture about its median,
beyond the reach) a pixel must lie from that median towards the hair's colour before
:func:`claim_strands` starts to count it as a strand, and from which fully."""
STRAND_CONTRAST = (20.0, 40.0)
"""Distance (RGB levels) of the hair's colour from the background's from which loose strands
start to count, and from which fully (hair no darker than the wall shows no strands)."""
STRAND_OFF_LINE = 0.5
"""A pixel whose difference from the background's median strays from the direction of the
hair's colour by more than this share of its length (plus twice the grain) counts less as a
strand, and not at all from twice as far: a strand's colour lies between the background's
and the hair's; a waterfall's white streak beside brown hair does not."""
STRAND_WORK_SIDE = 1024
"""Largest side at which :func:`claim_strands` works (its results are scaled up)."""


@dataclass(frozen=True, eq=False)
class Strands:
    """Loose hair beyond the segmented person (:func:`claim_strands`)."""

    coverage: np.ndarray
    """float32 (H, W) in [0, 1]: how much of each pixel the strands cover (0 elsewhere)."""
    clean: np.ndarray
    """RGB uint8 (H, W, 3): the picture with the strands taken out (what lies behind them)."""


def claim_strands(image: np.ndarray, matte: np.ndarray, *, reach: float = STRAND_REACH,
                  work_side: int = STRAND_WORK_SIDE) -> Strands | None:
    """Thin strands of hair the segmentation left out around the person: pixels within
    ``reach`` of the person (``matte`` >= 0.5) that differ from the background's local median
    (a square :data:`STRAND_WIDTH` of the side to each side: a strand is thinner, an object
    is not) towards the colour of the nearest sure person pixel, by more than the
    background's grain (:data:`STRAND_SPREADS`) and along the line between the two colours
    (:data:`STRAND_OFF_LINE`), in pieces joined to the person.

    Each strand pixel's coverage is where its colour lies between the background's and the
    hair's (a curl a pixel wide and 15 levels darker than a white wall covers less than a
    tenth of it); ``clean`` is the picture less that share of the hair's colour over the
    background's (the wall with its grain). None when there are none.

    A photo's flyaway curls lay outside the matte, so the mesh engine's plate kept them: they
    stayed on the background where the head left them, a ghost of the hair beside it."""
    img = check_rgb(image, "image")
    h, w = matte.shape[:2]
    if img.shape[:2] != (h, w):
        raise ValueError(f"claim_strands: the matte is {w}x{h}, the image "
                         f"{img.shape[1]}x{img.shape[0]}")
    scale = min(1.0, work_side / float(max(h, w)))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = img if scale >= 1.0 else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    sm = matte if scale >= 1.0 else cv2.resize(matte.astype(np.float32), (sw, sh),
                                              interpolation=cv2.INTER_AREA)
    side = float(max(sw, sh))
    body = (sm >= 0.5).astype(np.uint8)
    away = cv2.distanceTransform(1 - body, cv2.DIST_L2, 5)
    r = max(2.0, reach * side)
    near, clear = (away > 0.0) & (away <= r), away > r
    person = cv2.erode((sm >= 0.95).astype(np.uint8), _disk(2)) > 0
    if not (near.any() and clear.any() and person.any()):
        return None
    median_u8 = cv2.medianBlur(small, 2 * max(1, round(STRAND_WIDTH * side)) + 1)
    median = median_u8.astype(np.float32)
    hair = _nearest_samples(median, person) - median  # towards the hair, from the background
    contrast = np.sqrt(np.maximum(_channel_sum(hair * hair), 1e-6))
    direction = hair / contrast[..., None]
    raw = (small.astype(np.float32) - median)
    # found on the picture a little smoothed (grain), measured on its own pixels
    soft = (cv2.GaussianBlur(small, (0, 0), 0.7).astype(np.float32) - median)
    along = _channel_sum(soft * direction)
    # the background's grain: the picture's spread about its median beyond the reach,
    # carried in
    grain = np.maximum(_spread_beyond(soft, clear, about_mean=False), 0.5)
    lo, hi = STRAND_SPREADS
    sure = np.clip((along / grain - lo) / (hi - lo), 0.0, 1.0)
    off = np.sqrt(np.maximum(_channel_sum(soft * soft) - along * along, 0.0))
    sure *= np.clip(2.0 - off / (STRAND_OFF_LINE * np.abs(along) + 2.0 * grain), 0.0, 1.0)
    clo, chi = STRAND_CONTRAST
    sure *= np.clip((contrast - clo) / (chi - clo), 0.0, 1.0) * near
    # only pieces joined to the person (a strand's faint stretch between two found pixels
    # does not break it)
    found = sure > 0.0
    square = np.ones((3, 3), np.uint8)
    count, labels = cv2.connectedComponents(cv2.dilate((found | (body > 0)).astype(np.uint8),
                                                       square), connectivity=8)
    joined = np.zeros(count, bool)
    joined[labels[body > 0]] = True
    joined[0] = False
    sure *= joined[labels]
    if not (sure > 0.0).any():
        return None
    share = np.clip(_channel_sum(raw * direction) / contrast, 0.0, 1.0) * sure
    taken = share[..., None] * hair  # what the strands add to the background
    if scale < 1.0:
        share = cv2.resize(share, (w, h), interpolation=cv2.INTER_LINEAR)
        taken = cv2.resize(taken, (w, h), interpolation=cv2.INTER_LINEAR)
    # (the picture's own pixels, bit for bit, where nothing is taken)
    clean = np.clip(img.astype(np.float32) - taken + 0.5, 0.0, 255.0).astype(np.uint8)
    return Strands(coverage=share.astype(np.float32), clean=clean)


PLATE_GROW = 0.03
"""How far (share of the long side) :func:`background_plate` grows the person by default."""


PLATE_WORK_SIDE = 512
"""The long side (px) at which :func:`background_plate` fills, at most the picture's own: the
fill is enlarged from it. At 256 px the place a big move uncovers behind a 512 px
portrait's head was a smooth smear where the picture shows foliage (lp_s42 on lp_d3,
frames 255 and 276); at 512 px it keeps the texture, for about 75 ms more (34 -> 110 ms on
a 512 px picture)."""


def background_plate(image: np.ndarray, matte: np.ndarray, *,
                     work_side: int = PLATE_WORK_SIDE,
                     grow: float = PLATE_GROW) -> np.ndarray:
    """``image`` with the person (``matte`` > 0.1, grown by ``grow`` of the image side)
    filled in from the surrounding background (at ``work_side`` on the long side, at most
    the image's own, and enlarged): its texture mirrored in from the hole's edge
    (:func:`reflect_into_holes`) over a smooth fill that leaves out what is unlike its
    surroundings in colour (:data:`FILL_HUE`). Pixels outside the grown person region are
    returned unchanged."""
    img = check_rgb(image, "image")
    h, w = img.shape[:2]
    # grown by a disk: the exact distance to the person, thresholded (a dilation with a
    # 123 px disk took ~1 s on a 2048 px photo, the distance ~30 ms)
    reach = max(1.5, round(grow * max(h, w)) + 0.5)
    away = cv2.distanceTransform((matte <= 0.1).astype(np.uint8), cv2.DIST_L2,
                                 cv2.DIST_MASK_PRECISE)
    hole = (away <= reach).astype(np.uint8)
    if not hole.any():
        return img.copy()
    scale = min(1.0, work_side / max(h, w))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole, (sw, sh), interpolation=cv2.INTER_NEAREST)
    small_valid = cv2.dilate(small_hole, np.ones((3, 3), np.uint8)) == 0
    # the smooth fill takes in the background round the hole, less of what is unlike its
    # surroundings in colour (a small sign beside a neck: no pink haze over the hole)
    taken = small_valid.astype(np.float32) * _hue_like_around(small, small_valid)
    if float(taken.sum()) < 0.05 * float(small_valid.sum()):  # (nearly all of it unlike)
        taken = small_valid.astype(np.float32)
    smooth = fill_holes(small, taken)
    smooth[small_valid] = small[small_valid]  # (what the mirror samples: the picture's own)
    filled_small = reflect_into_holes(smooth, small_valid)
    filled = cv2.resize(filled_small, (w, h), interpolation=cv2.INTER_CUBIC)
    # No seam at the hole's edge: the fill fades in over a few pixels inside the hole.
    ramp = max(2.0, 0.01 * max(h, w))
    weight = np.clip(cv2.distanceTransform(hole, cv2.DIST_L2, 3) / ramp, 0.0, 1.0)
    out = cv2.blendLinear(filled, img, weight.astype(np.float32),
                          (1.0 - weight).astype(np.float32))
    return np.asarray(out)


FILL_HUE_REACH = 0.15
"""Sigma (share of the long side) of the neighbourhood whose colour :func:`background_plate`
compares each background pixel's with before its smooth fill takes it in."""
FILL_HUE = (25.0, 50.0)
"""How far (RGB levels, the largest channel's, each channel less the pixel's grey) a
background pixel's colour may lie from its neighbourhood's before the smooth fill of
:func:`background_plate` takes it in less, and from which it leaves it out: a small red
sign beside a neck is not smeared over the hole as a pink haze. Brightness alone does not
count: a dark board beside a light wall carries on into the hole as before."""
FILL_HUE_SIDE = 128
"""Long side (px) at which :func:`background_plate` compares the colours."""


def _hue_like_around(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per pixel of ``image`` (RGB uint8), float32 in [0, 1]: 1 where its colour, grey taken
    out, is like its ``valid`` neighbourhood's (:data:`FILL_HUE_REACH`), falling to 0 where
    it is unlike it (:data:`FILL_HUE`); worked out at :data:`FILL_HUE_SIDE` px and enlarged."""
    h, w = valid.shape[:2]
    k = min(1.0, FILL_HUE_SIDE / max(h, w))
    sw, sh = max(8, round(w * k)), max(8, round(h * k))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    hue = cv2.transform(small, np.eye(3, dtype=np.float32) - np.float32(1.0 / 3.0))
    weight = cv2.resize(valid.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    sigma = max(1.0, FILL_HUE_REACH * max(sw, sh))
    total = cv2.GaussianBlur(_per_pixel(hue, weight), (0, 0), sigma)
    mass = cv2.GaussianBlur(weight, (0, 0), sigma)
    far = np.abs(hue - _per_pixel(total, np.maximum(mass, 1e-6), divide=True)).max(axis=2)
    lo, hi = FILL_HUE
    like = np.clip((hi - far) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return np.asarray(cv2.resize(like, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


REFLECT_DEPTH = 0.12
"""How far into a hole (share of the picture's long side) the reflected background reaches
before the smooth fill takes over."""
REFLECT_BEND = 0.02
"""Blur (share of the long side) of the offsets to the nearest valid pixel: the reflection
turns gradually where the hole's edge bends instead of tearing along its medial axis."""
REFLECT_RIM = 0.012
"""The picture's outer rim (share of the long side) never mirrored into a hole."""
REFLECT_ALIKE = (40.0, 90.0)
"""Colour distance (RGB levels) between a mirrored pixel and the likest pixel of the hole's
edge near where it was mirrored, up to which it is carried in fully, and from which not at
all: a red sign a little way beside a neck was mirrored into the plate as a second sign."""


def reflect_into_holes(filled: np.ndarray, valid: np.ndarray, *,
                       depth: float = REFLECT_DEPTH, bend: float = REFLECT_BEND,
                       rim: float = REFLECT_RIM) -> np.ndarray:
    """``filled`` (RGB uint8: a picture whose pixels outside ``valid`` were filled smoothly,
    e.g. by :func:`fill_holes`) with the texture around each hole carried into it: a hole
    pixel at distance d from the nearest valid pixel b takes the pixel mirrored through b (d
    beyond it), fading to the smooth fill at ``depth`` of the long side and wherever the
    mirrored point is itself in a hole (sampled from ``filled``, so what was removed never
    comes back) or within ``rim`` of the picture's edge (a frame line), and wherever it is
    unlike every pixel of the edge near b (:data:`REFLECT_ALIKE`; read at b and along the
    edge as far each way as the pixel is deep): an object near the hole but not touching it
    is not copied. Straight edges that meet the hole (a sofa's back, a horizon) continue
    into it; valid pixels are unchanged."""
    h, w = valid.shape[:2]
    hole = np.asarray(~valid, np.uint8)
    if not hole.any() or not valid.any():
        return filled.copy()
    side = float(max(h, w))
    dist, labels = cv2.distanceTransformWithLabels(hole, cv2.DIST_L2, 5,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(valid)  # labels number the valid pixels in raster order from 1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sigma = max(1.0, bend * side)
    off_y = cv2.GaussianBlur(ys[labels - 1].astype(np.float32) - yy, (0, 0), sigma)
    off_x = cv2.GaussianBlur(xs[labels - 1].astype(np.float32) - xx, (0, 0), sigma)
    map_x, map_y = xx + 2.0 * off_x, yy + 2.0 * off_y
    mirrored = cv2.remap(filled, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    # a frame line or a scan's border along the picture's edge is not background to mirror:
    # points mirrored onto the outer rim (or past it) take the smooth fill
    source = valid.astype(np.float32)
    edge = max(2, round(rim * side))
    source[:edge], source[-edge:], source[:, :edge], source[:, -edge:] = 0.0, 0.0, 0.0, 0.0
    lands = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT)  # 0 past the edge
    # only what carries on from the hole's edge: a mirrored pixel unlike anything on the
    # edge near where it was mirrored (an object a little way from the hole, not touching
    # it) would come back as a copy. The edge is read at the mirror point and along it, as
    # far each way as the pixel is deep (bands meeting a slanted edge meet it further along)
    reach = np.sqrt(off_x * off_x + off_y * off_y)
    along_x = -off_y / np.maximum(reach, 1e-3)
    along_y = off_x / np.maximum(reach, 1e-3)
    looks = mirrored.astype(np.float32)
    is_valid = valid.astype(np.float32)
    apart = np.full((h, w), np.inf, np.float32)
    for k in (0.0, -1.0, 1.0, -2.0, 2.0):
        at_x = xx + off_x + k * reach * along_x
        at_y = yy + off_y + k * reach * along_y
        edge_pixel = cv2.remap(filled, at_x, at_y, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        there = cv2.remap(is_valid, at_x, at_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
        d = np.sqrt(_channel_sum((looks - edge_pixel) ** 2))
        apart = np.minimum(apart, np.where(there > 0.5, d, np.inf))
    lo, hi = REFLECT_ALIKE
    # (smoothed a little: pixel by pixel the choice speckles a busy background; what is
    # refused grown by a pixel first, so that the smoothing lets none of it back)
    refuse = cv2.erode(np.clip((hi - apart) / (hi - lo), 0.0, 1.0).astype(np.float32),
                       np.ones((3, 3), np.uint8))
    alike = cv2.GaussianBlur(refuse, (0, 0), max(1.0, 0.005 * side))
    weight = (np.clip(1.0 - dist / (depth * side), 0.0, 1.0)
              * np.clip(2.0 * lands - 1.0, 0.0, 1.0) * hole * alike)
    out = cv2.blendLinear(mirrored, filled, weight.astype(np.float32),
                          (1.0 - weight).astype(np.float32))
    return np.asarray(out)


def fill_holes(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill the pixels of ``image`` (RGB uint8) where ``valid`` is False from the valid ones
    around them, smoothly (a pull-push pyramid: averages of the valid pixels at coarser and
    coarser levels fill the finer levels' gaps). ``valid`` may also be weights in [0, 1]:
    how far each pixel counts in the averages (0: filled like a hole; from 0.25 on a pixel
    keeps its own value). No valid pixel at all: mid grey."""
    w = valid.astype(np.float32)
    if not w.any():
        return np.full_like(image, 128)
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    cur_i: np.ndarray = _per_pixel(image.astype(np.float32), w)
    cur_w: np.ndarray = w
    while min(cur_w.shape[:2]) > 2:
        levels.append((cur_i, cur_w))
        cur_i, cur_w = cv2.pyrDown(cur_i), cv2.pyrDown(cur_w)
    filled = (cur_i.reshape(-1, 3).sum(0) / max(float(cur_w.sum()), 1e-6)).astype(np.float32)
    filled = np.broadcast_to(filled, cur_i.shape).copy()
    for level_i, level_w in reversed(levels):
        h, w_ = level_w.shape[:2]
        up = cv2.pyrUp(filled, dstsize=(w_, h))
        conf = np.clip(level_w * 4.0, 0.0, 1.0)
        own = _per_pixel(level_i, np.maximum(level_w, 1e-6), divide=True)
        filled = cv2.add(_per_pixel(own, conf), _per_pixel(up, 1.0 - conf))
    return np.clip(filled + 0.5, 0, 255).astype(np.uint8)


def quick_matte(image: np.ndarray, *, work_side: int = 256) -> np.ndarray | None:
    """The person matte of a small picture, fast (~3 ms for a 256 px face crop here):
    segmented and refined at ``work_side`` pixels at most, uint8 (255 = person) at the
    picture's size; ``None`` when nobody is found."""
    img = check_rgb(image, "image")
    h, w = img.shape[:2]
    scale = min(1.0, work_side / max(h, w))
    small = img if scale >= 1.0 else cv2.resize(
        img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    matte = segment_person(small)
    if matte is None:
        return None
    matte = refine_matte(small, matte)
    if small is not img:
        matte = cv2.resize(matte, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(matte * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class PortraitLayers:
    """A portrait split into a person layer and a background plate."""

    matte: np.ndarray
    """float32 (H, W) in [0, 1]: 1 on the person (face, hair, neck, body)."""
    plate: np.ndarray
    """RGB uint8 (H, W, 3): the background with the person filled in."""
    clean: np.ndarray | None = None
    """RGB uint8 (H, W, 3): the picture with the loose strands of hair around the person
    taken out (:func:`claim_strands`: what lies behind them); None: none taken out."""

    @functools.cached_property
    def matte_u8(self) -> np.ndarray:
        """The matte as uint8 (0 .. 255)."""
        return np.clip(self.matte * 255.0 + 0.5, 0, 255).astype(np.uint8)


STILL_GROW = 0.008
"""How far (share of the long side) the person is grown for the mesh engine's plate
(``prepare_layers(image, grow=STILL_GROW)``): what shows where the head has left. The
background options' plate grows it 0.03 (:data:`PLATE_GROW`) and would turn a ring of the
real background around the head into fill wherever the head moved."""
STILL_BLEND = 0.03
"""Depth (share of the long side) into the person over which the background carried in from
its edge fades into the still plate's fill (:func:`still_background`)."""
STILL_TAKE = 0.3
"""Matte value at which :func:`still_background` has turned from the pixel itself to the
nearest background pixel's colour."""


def still_background(image: np.ndarray, matte: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """What lies behind each pixel of ``image`` (RGB uint8) for the mesh engine's head layer:
    the background each pixel carries when the warp moves it, which ``composite_head`` swaps
    for the still one.

    Where ``matte`` is 0, the photo, bit for bit. On the matte's soft edge, the pixel itself
    turning into the colour of the nearest pixel the matte calls background as the matte
    rises to :data:`STILL_TAKE` (a pixel with a little of the person in it is mostly its
    background). Under the person (matte from 0.9), that nearest background colour carried
    in and fading, over :data:`STILL_BLEND` of the side, into ``plate``'s fill (the mesh
    engine's, grown :data:`STILL_GROW`).

    The plate's fill itself was what a moved pixel carried before, and beside the person it
    was wrong: where dark hair met a dark board just below a light wall it held the wall's
    grey, and the hair's soft edge, darkened by the difference, moved with the head as a
    dark tab.
    """
    img = check_rgb(image, "image")
    h, w = img.shape[:2]
    side = float(max(h, w))
    matte = matte.astype(np.float32)
    person, clear = matte >= 0.9, matte <= 0.02
    if not person.any() or not clear.any():
        return plate
    back = _nearest_samples(_without_grain(img), clear)
    # under the person: the nearest background carried in, fading into the fill; on the
    # edge: the pixel itself, turning into that colour as the matte rises
    inward = cv2.distanceTransform(person.astype(np.uint8), cv2.DIST_L2, 3)
    t = np.where(person, np.minimum(inward * (1.0 / max(1.0, STILL_BLEND * side)), 1.0),
                 1.0 - np.minimum(matte * (1.0 / STILL_TAKE), 1.0)).astype(np.float32)
    ends = img.copy()
    cv2.copyTo(plate, person.view(np.uint8), ends)
    out = np.asarray(cv2.blendLinear(ends, back, t, 1.0 - t))
    untouched = matte <= 0.0
    out[untouched] = img[untouched]
    return out


CONTEXT_OWN_CLEAR = 0.02
"""Share of an image its own person mask must call sure background (0.02 or less) for
:func:`prepare_layers` to trust it without a ``context``."""
CONTEXT_CLEAR = 0.05
"""Share of the image a ``context`` must call sure background to be used instead."""


PersonContext = np.ndarray | Callable[[], "np.ndarray | None"] | None
"""A person mask from a wider view (:func:`prepare_layers`' ``context``): the mask, a function
giving it (or None) when first needed (a :class:`WiderView` too), or None."""


class WiderView:
    """A ``context`` that :func:`prepare_layers` takes instead of the image's own person
    mask whenever it gives one (not only where the image's own sees almost no background).

    For a face picked out of a group photo: its crop cuts through its neighbours, and the
    selfie model's view of the crop disagreed with the whole picture's on 17-28 % of the
    Syndics' crops (a hat and a collar taken for background). Pasted into the whole
    picture's still matte, the crop's showed as a rectangle through the hat on a replaced
    background (benchmarks/README "Round 65"). Callable: it gives the mask (or None), so
    engines that take a plain function take it as one."""

    def __init__(self, mask: np.ndarray | Callable[[], np.ndarray | None]) -> None:
        self.mask = mask
        """The mask, or a function giving it (or None) when first needed."""

    def __call__(self) -> np.ndarray | None:
        return self.mask() if callable(self.mask) else self.mask


def change_context(context: PersonContext,
                   change: Callable[[np.ndarray], np.ndarray]) -> PersonContext:
    """``context`` changed by ``change`` (cut, resized), when and if it is worked out (a
    :class:`WiderView` stays one)."""
    if context is None:
        return None
    if isinstance(context, WiderView):  # its mask (or function) changed as any other
        inner = change_context(context.mask, change)
        return context if inner is None else WiderView(inner)
    if not callable(context):
        return change(context)
    made = context

    def changed() -> np.ndarray | None:
        mask = made()
        return None if mask is None else change(mask)

    return changed


def _check_context(mask: np.ndarray, shape: tuple[int, ...]) -> None:
    """A ``context`` mask must be its image's (H, W)."""
    if mask.shape != shape[:2]:
        raise ValueError(f"context: expected a mask of the image's {shape[1]}x{shape[0]}, "
                         f"got {mask.shape[1]}x{mask.shape[0]}")


def _with_context(own: np.ndarray, context: PersonContext) -> np.ndarray:
    """``own`` (the selfie model's mask of an image), or where it sees almost no background
    and ``context`` (the mask from a wider view; a function giving it is called only then)
    does, the lower of the two; a :class:`WiderView`'s mask instead of ``own`` when it
    gives one."""
    if isinstance(context, WiderView):
        view = context()
        if view is None:
            return own
        _check_context(view, own.shape)
        log.debug("the portrait's person mask is the wider view's (a group photo)")
        return np.clip(np.asarray(view, np.float32), 0.0, 1.0)
    if context is None or float((own <= 0.02).mean()) >= CONTEXT_OWN_CLEAR:
        return own
    mask = context() if callable(context) else context
    if mask is None:
        return own
    _check_context(mask, own.shape)
    wider = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    if float((wider <= 0.02).mean()) < CONTEXT_CLEAR:
        return own
    log.debug("the portrait's own person mask sees almost no background; the wider view's "
              "is used where it is lower")
    return np.asarray(np.minimum(own, wider), np.float32)


def prepare_layers(image: np.ndarray, *, refine: bool = True,
                   grow: float = PLATE_GROW,
                   strands: bool = False, plate_side: int = PLATE_WORK_SIDE,
                   picture: tuple[int, int, int, int] | None = None,
                   context: PersonContext = None) -> PortraitLayers | None:
    """Segment ``image`` once and build its background plate (the person grown ``grow`` of
    the long side, :func:`background_plate`); ``None`` when no person is found (the caller
    keeps today's behaviour and says so in one warning).

    ``strands`` (with ``refine``): the plate is built from the picture without the loose
    hair around the person (:func:`claim_strands`), which is kept as
    :attr:`PortraitLayers.clean`: the mesh engine carries each pixel's background from it,
    so a strand's difference from the wall rides on the warp with the head and none stays
    behind. The matte is unchanged (a replaced background shows no pale trace of the wall
    the strands were seen against).

    ``picture`` ``(x0, y0, x1, y1)``: the part of ``image`` that shows the picture (a crop
    that reaches past the picture's edge, the rest made up by the crop,
    :func:`live.geometry.picture_box`): only that part is segmented. The made-up border
    (the picture's edge repeated) gave the selfie model streaks to see: a pale line along
    the edge of a sign beside deepface_img21's shoulder, a cloud of landscape beside the
    Mona Lisa. Outside it the matte goes on as at the part's edge, and the plate and the
    clean picture are the image's own pixels.

    ``plate_side``: the long side at which the plate is filled (:func:`background_plate`'s
    ``work_side``); a plate only ever shown under a strong blur needs no finer fill.

    ``context`` (float32 (H, W) in [0, 1]): the person mask of ``image`` worked out with more
    of the picture around it (the whole picture's, cut into a crop). A tight crop of a face
    can show the selfie model too little scene: it called nearly all of live's crop of
    sadtalker_art_14 the person, the red wall on both sides of her neck included. Where the
    image's own mask is sure of less than :data:`CONTEXT_OWN_CLEAR` of it as background and
    the context of at least :data:`CONTEXT_CLEAR`, the lower of the two is used. A function
    giving that mask (or None) is called only then: working it out costs a segmentation of
    the whole picture, which most portraits do not need."""
    if isinstance(context, np.ndarray):
        _check_context(context, image.shape)
    if picture is not None:
        return _prepare_layers_within(check_rgb(image, "image"), picture, refine=refine,
                                      grow=grow, strands=strands,
                                      plate_side=plate_side, context=context)
    matte = segment_person(image)
    if matte is None:
        return None
    matte = _with_context(matte, context)
    clean = None
    if refine:
        matte = release_background(image, matte, separate_colours(
            image, matte, refine_matte(image, matte)))
        matte = claim_attached(image, matte)
        loose = claim_strands(image, matte) if strands else None
        clean = None if loose is None else loose.clean
    return PortraitLayers(matte=matte, plate=background_plate(
        image if clean is None else clean, matte, grow=grow, work_side=plate_side),
        clean=clean)


def _prepare_layers_within(image: np.ndarray, picture: tuple[int, int, int, int], *,
                           refine: bool, grow: float, strands: bool,
                           plate_side: int, context: PersonContext
                           ) -> PortraitLayers | None:
    """:func:`prepare_layers` of the ``picture`` part of ``image`` alone, brought back to the
    image's size."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in picture)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"picture: expected a box within the {w}x{h} image, got {picture}")
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return prepare_layers(image, refine=refine, grow=grow, strands=strands,
                              plate_side=plate_side, context=context)
    inner = prepare_layers(np.ascontiguousarray(image[y0:y1, x0:x1]), refine=refine,
                           grow=grow, strands=strands, plate_side=plate_side,
                           context=change_context(
                               context, lambda mask: np.ascontiguousarray(mask[y0:y1, x0:x1])))
    if inner is None:
        return None
    matte = cv2.copyMakeBorder(inner.matte, y0, h - y1, x0, w - x1, cv2.BORDER_REPLICATE)
    plate = image.copy()
    plate[y0:y1, x0:x1] = inner.plate
    clean = None
    if inner.clean is not None:
        clean = image.copy()
        clean[y0:y1, x0:x1] = inner.clean
    return PortraitLayers(matte=np.asarray(matte, np.float32), plate=plate, clean=clean)
