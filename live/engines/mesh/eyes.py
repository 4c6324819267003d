"""The eyes' interior, drawn again after the warp so the gaze can move.

The warp fans the eye opening around the iris centre: when the driving eyes look aside, the
iris centre moves but the iris's edges stay pinned to the lids, so the iris smears instead of
sliding. Here each eye is split once per portrait (:func:`prepare_eyes`) into an iris disc (its
colour and a soft round alpha) and the eye's white with the iris filled in from the white
around it, lit as the eyeball's middle is (:func:`_white`); per frame (:func:`render_eyes`)
the white follows the eye opening (a least-squares affine from the portrait's eye contour to
the output's), the iris is placed at the output's iris centre at head scale, and both are
drawn inside the output's eye opening only, so the lids cover the iris as they do in life. A
closed or nearly closed eye is left to the warp.

A closing eye's upper lid is redrawn: the portrait's dark lash line is measured once
(:func:`lash_lines`), the warp takes the closing lid from the skin above it
(:func:`lift_lash_source`), and the area the lid swept becomes skin with a thin lash line
at its edge (:func:`smooth_closing_lids`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import cv2
import numpy as np

from calibrate import landmarks as lm
from live.engines.mesh.motion import affine_scale, apply_affine
from live.engines.mesh.warp import SHARP_SAMPLING
from live.face.segmentation import fill_holes

_EYES = (
    (lm.RIGHT_EYE, lm.RIGHT_IRIS_CENTER, lm.RIGHT_IRIS),
    (lm.LEFT_EYE, lm.LEFT_IRIS_CENTER, lm.LEFT_IRIS),
)
_MIN_OPEN_PX = 3.0  # mean lid gap below which the warp's own eye is kept


@dataclass(frozen=True, eq=False)
class EyePatch:
    """One eye of the portrait, cut out once."""

    origin: np.ndarray
    """(2,) float: top-left corner of the patches in portrait pixels."""
    white: np.ndarray
    """RGB float32 (h, w, 3): the eye with the iris filled in from the white around it."""
    iris: np.ndarray
    """RGB float32 (h, w, 3): the portrait around the iris (its colour)."""
    iris_alpha: np.ndarray
    """float32 (h, w): soft disc of the iris."""
    contour: np.ndarray
    """(16, 2): the eye opening in portrait pixels."""
    centre: np.ndarray
    """(2,): the iris centre in portrait pixels."""
    loop: tuple[int, ...]
    """Landmark ids of the eye opening."""
    centre_id: int
    """Landmark id of the iris centre."""


def _open_gap(contour: np.ndarray) -> float:
    """Mean distance between the upper and lower lid halves of an eye contour (16 points)."""
    d = contour[1:8] - contour[9:16][::-1]
    dx, dy = d[:, 0], d[:, 1]
    return float(np.sqrt(dx * dx + dy * dy).mean())  # np.linalg.norm(d, axis=1), cheaper


WHITE_FILL_FROM = 0.5
"""The iris's place in an eye's white (what a glance aside uncovers) is filled from the white's
lighter pixels, from this share of them by lightness on (:func:`_white`) ..."""
WHITE_FILL_EDGE = 3.0
"""... going over from the white's own pixels at the hole's edge to that fill within this
many pixels (no step where the two meet), or :data:`WHITE_FILL_EDGE_SHARE` of the eye's width
if that is more."""
WHITE_FILL_EDGE_SHARE = 0.1
"""(The going over's width as a share of the eye's width, for large eyes.)"""
WHITE_SKIN_LUMA = 1.15
"""The eyeball a glance uncovers is lit to this many times the luma of the skin just below the
eye when the white's fill is darker ... The white a portrait shows beside a centred iris lies
in the corners' and the lids' shadow: in the fixture clips (lp_d0, lp_d11, lp_d3) the white a
glance uncovered was 1.0-1.5 times that skin's luma, the fill from the white the first frame
shows 0.76-1.0 of it."""
WHITE_LIGHTEST = 0.75
"""... in the colour (chroma) of the white's lightest pixels, from this share of them by
lightness on: a painting's whites keep its cast; a photo's a little of its lid margins'
pink (lp_d0's uncovered white has 0.65 of that chroma) ..."""
WHITE_OWN_LIGHTEST = 1.3
"""... but at most this many times as light as the lightest of the white the portrait shows
(its 97th percentile): deep-set eyes in the brows' shadow (FOMM's source image) are darker
than the cheek below them, and their uncovered white was a bright spot at the skin's."""
WHITE_LID_SHADE = (0.12, 0.3)
"""In the filled place: darker by the first share at the upper lid, back to full over the second
share of the opening's height (the lashes' shadow) ..."""
WHITE_LOW_SHADE = (0.1, 0.3)
"""... and by the first share at the lower lid over the second."""


def skin_below_eye(image: np.ndarray, contour: np.ndarray) -> np.ndarray | None:
    """The colour (YCrCb, float, chroma about 0) of the skin just below an eye (``contour``:
    the eye opening in ``image`` pixels, RGB uint8): the median of a disc a third of the
    eye's width under its lowest point; None when that is off the picture."""
    width = float(np.ptp(contour[:, 0]))
    low = contour[int(np.argmax(contour[:, 1]))]
    cx, cy, r = low[0], low[1] + 0.3 * width, 0.15 * width
    h, w = image.shape[:2]
    x0, y0, x1, y1 = int(cx - r), int(cy - r), int(np.ceil(cx + r)) + 1, int(np.ceil(cy + r)) + 1
    if r < 1.0 or x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disc = np.hypot(xx - cx, yy - cy) <= r
    ycc = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2YCrCb)
    return np.median(ycc[disc].astype(np.float64), axis=0) - [0.0, 128.0, 128.0]


def _lid_shade(opening: np.ndarray) -> np.ndarray:
    """Per pixel of an eye's patch, the eyeball's shading by the lids (1 in the middle of the
    opening, :data:`WHITE_LID_SHADE` and :data:`WHITE_LOW_SHADE` at its edges)."""
    rows = np.arange(opening.shape[0], dtype=np.float32)[:, None]
    inside = opening > 0
    top = np.where(inside, rows, np.inf).min(axis=0)
    bottom = np.where(inside, rows, -np.inf).max(axis=0)
    span = np.maximum(bottom - top, 1.0)
    t = np.clip((rows - top) / span, 0.0, 1.0)
    up = np.clip(1.0 - t / WHITE_LID_SHADE[1], 0.0, 1.0)
    down = np.clip(1.0 - (1.0 - t) / WHITE_LOW_SHADE[1], 0.0, 1.0)
    shade = 1.0 - WHITE_LID_SHADE[0] * up * up - WHITE_LOW_SHADE[0] * down * down
    return np.where(np.isfinite(top), shade, 1.0).astype(np.float32)


def _white(roi: np.ndarray, white_px: np.ndarray, opening: np.ndarray,
           skin: np.ndarray | None, width: float) -> np.ndarray:
    """An eye's white with the iris's place filled in (float32 RGB, the shape of ``roi``,
    RGB uint8; ``white_px``: the white's visible pixels; ``opening``: the eye opening's mask;
    ``skin``: the skin below the eye, :func:`skin_below_eye`, None: not known; ``width``: the
    eye's width in pixels). Filled from all of them, the shadowed lid margins and lashes beside
    the white made the uncovered eyeball a dull grey or brown; filled from the lighter ones
    (:data:`WHITE_FILL_FROM`) alone, the fill met the darker white at its edge in a step, hence
    the blend over :data:`WHITE_FILL_EDGE`. A fill darker than the skin's light
    (:data:`WHITE_SKIN_LUMA`, :data:`WHITE_OWN_LIGHTEST`) is lit to it in the white's lightest
    colour (:data:`WHITE_LIGHTEST`); the fill is shaded by the lids (:func:`_lid_shade`)."""
    luma = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY)
    shown = luma[white_px].astype(np.float32)
    light_px = white_px & (luma >= np.quantile(shown, WHITE_FILL_FROM))
    dull = fill_holes(roi, white_px).astype(np.float32)
    if int(light_px.sum()) < 6:
        return np.asarray(cv2.GaussianBlur(dull, (0, 0), 0.6))
    light = fill_holes(roi, light_px).astype(np.float32)
    hole = (opening > 0) & ~white_px
    if skin is not None and hole.any():
        own = float(np.median(light[hole] @ np.array([0.299, 0.587, 0.114], np.float32)))
        lit = min(WHITE_SKIN_LUMA * float(skin[0]),
                  WHITE_OWN_LIGHTEST * float(np.percentile(shown, 97)))
        if lit > own:  # the portrait's white is in shadow: a white lit as the skin is
            lightest = white_px & (luma >= np.quantile(shown, WHITE_LIGHTEST))
            ycc = cv2.cvtColor(roi, cv2.COLOR_RGB2YCrCb)[lightest].astype(np.float64)
            colour = np.array([[[min(lit, 255.0), *np.median(ycc[:, 1:], axis=0)]]])
            rgb = cv2.cvtColor(np.clip(colour + 0.5, 0, 255).astype(np.uint8),
                               cv2.COLOR_YCrCb2RGB)
            light[...] = rgb.reshape(3).astype(np.float32)
    light *= _lid_shade(opening)[..., None]
    away = cv2.distanceTransform((~white_px).astype(np.uint8), cv2.DIST_L2, 3)
    edge = max(WHITE_FILL_EDGE, WHITE_FILL_EDGE_SHARE * width)
    share = np.clip(away / np.float32(edge), 0.0, 1.0)[..., None]
    return np.asarray(cv2.GaussianBlur(np.clip(dull + (light - dull) * share, 0.0, 255.0),
                                       (0, 0), 0.6))


def prepare_eyes(image: np.ndarray, landmarks: np.ndarray) -> tuple[EyePatch, ...]:
    """Cut both eyes of a portrait (RGB uint8, landmarks (478, 3) with irises). Eyes that are
    closed, off the image or without iris landmarks are left out."""
    if landmarks.shape[0] < lm.NUM_LANDMARKS_WITH_IRISES:
        return ()
    h, w = image.shape[:2]
    out = []
    for loop, centre_id, ring in _EYES:
        contour = landmarks[list(loop), :2].astype(np.float64)
        if _open_gap(contour) < _MIN_OPEN_PX:
            continue
        centre = landmarks[centre_id, :2].astype(np.float64)
        radius = float(np.linalg.norm(landmarks[list(ring), :2] - centre, axis=1).mean())
        if radius < 1.0:
            continue
        pad = radius + 4.0
        x0, y0 = np.floor(np.minimum(contour.min(0), centre - pad)).astype(int)
        x1, y1 = np.ceil(np.maximum(contour.max(0), centre + pad)).astype(int) + 1
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            continue
        roi = image[y0:y1, x0:x1]
        origin = np.array([x0, y0], np.float64)
        yy, xx = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float32)
        d = np.hypot(xx - (centre[0] - x0), yy - (centre[1] - y0))
        alpha = np.clip((radius * 1.08 - d) / 1.5, 0.0, 1.0).astype(np.float32)
        opening = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.round(contour - origin).astype(np.int32)], (1,))
        alpha *= cv2.GaussianBlur(opening.astype(np.float32), (0, 0), 0.7)  # visible iris only
        white_px = (opening > 0) & (d > radius * 1.15)
        if white_px.sum() < 6:  # no white to fill the iris from: leave this eye to the warp
            continue
        white = _white(roi, white_px, opening, skin_below_eye(image, contour),
                       float(np.ptp(contour[:, 0])))
        out.append(EyePatch(origin=origin, white=white, iris=roi.astype(np.float32),
                            iris_alpha=alpha, contour=contour, centre=centre, loop=tuple(loop),
                            centre_id=int(centre_id)))
    return tuple(out)


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine with ``dst ~ A @ [src, 1]``."""
    a = np.column_stack([src, np.ones(len(src))])
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return np.asarray(sol.T)


def render_eyes(out: np.ndarray, points: np.ndarray, eyes: tuple[EyePatch, ...], *,
                scale: float = 1.0) -> int:
    """Draw the prepared ``eyes`` into ``out`` (the warped portrait, in place) where the
    output landmarks ``points`` (478, 2+) put them; ``scale`` is the head's scale. Returns
    how many eyes were drawn."""
    drawn = 0
    for eye in eyes:
        drawn += _render_one(out, np.asarray(points, np.float64), eye, scale)
    return drawn


def _render_one(out: np.ndarray, points: np.ndarray, eye: EyePatch, scale: float) -> int:
    h, w = out.shape[:2]
    contour = points[list(eye.loop), :2]
    if _open_gap(contour) < _MIN_OPEN_PX:
        return 0  # closed or nearly: the warped lids are right as they are
    centre = points[eye.centre_id, :2]
    ph, pw = eye.white.shape[:2]
    pad = 2.0 + 0.5 * max(ph, pw) * max(scale, 1.0)
    x0, y0 = np.floor(np.minimum(contour.min(0), centre - pad)).astype(int)
    x1, y1 = np.ceil(np.maximum(contour.max(0), centre + pad)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0
    size = (x1 - x0, y1 - y0)
    # The white follows the eye opening: output ROI pixel -> patch pixel.
    to_out = _fit_affine(eye.contour - eye.origin, contour - [x0, y0])
    # Where the iris would be if it stayed put in the eye: the warp shows that right already.
    # The redrawn eye fades in over a pixel of gaze offset (no pop, and an unmoved face is
    # returned exactly).
    carried = to_out[:, :2] @ (eye.centre - eye.origin) + to_out[:, 2]
    offset = float(np.linalg.norm((centre - [x0, y0]) - carried))
    strength = float(np.clip((offset - 0.25) / 1.0, 0.0, 1.0))
    if strength <= 0.0:
        return 0
    white = cv2.warpAffine(eye.white, to_out, size, flags=SHARP_SAMPLING,
                           borderMode=cv2.BORDER_REPLICATE)
    # The iris: the portrait's disc at the output centre, at head scale (no shear).
    s = float(scale)
    c_src = eye.centre - eye.origin
    c_dst = centre - [x0, y0]
    iris_m = np.array([[s, 0.0, c_dst[0] - s * c_src[0]], [0.0, s, c_dst[1] - s * c_src[1]]])
    iris = cv2.warpAffine(eye.iris, iris_m, size, flags=SHARP_SAMPLING,
                          borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(eye.iris_alpha, iris_m, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))[..., None]
    # Drawn inside the output eye opening only (soft by a pixel): the lids cover the iris.
    mask = np.zeros((size[1], size[0]), np.uint8)
    poly = np.round((contour - [x0, y0]) * 16.0).astype(np.int32)
    cv2.fillPoly(mask, [poly], (255,), cv2.LINE_AA, 4)
    inside = np.asarray(cv2.erode(mask, np.ones((2, 2), np.uint8)), np.uint8)
    # Blended only where the mask is: elsewhere the blend gives the pixel back as it was.
    bx, by, bw, bh = cv2.boundingRect(inside)
    if bw == 0 or bh == 0:
        return 1
    box = (slice(by, by + bh), slice(bx, bx + bw))
    m = inside[box].astype(np.float32)[..., None] * np.float32(strength / 255.0)
    roi = out[y0:y1, x0:x1][box]
    a = alpha[box]
    eye_px = iris[box] * a + white[box] * (1.0 - a)
    blended = roi.astype(np.float32) * (1.0 - m) + eye_px * m
    roi[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return 1


@dataclass(frozen=True)
class LashLine:
    """An eye's upper lash line in the portrait, measured once (:func:`lash_lines`)."""

    reach: float
    """How far (pixels, along the eye's up direction) the dark line reaches above the upper
    lid landmarks; 0 when no dark line stands out from the skin above it."""
    colour: tuple[float, float, float]
    """Its RGB colour (the darkest tone along it)."""


NO_LASHES = LashLine(0.0, (0.0, 0.0, 0.0))

LASH_BAND_MAX = 0.15
"""Thickest upper lash line (eye widths above the upper lid landmarks) :func:`lash_lines`
looks for."""


def _lid_normal(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit vector from an eye's lower lid towards its upper lid, across the eye's axis, and
    the eye's width (corner to corner) of a 16-point eye contour."""
    axis = contour[8] - contour[0]
    width = float(np.linalg.norm(axis))
    n = np.array([axis[1], -axis[0]]) / max(width, 1e-9)
    if float(np.dot(n, contour[1:8].mean(0) - contour[9:16].mean(0))) < 0.0:
        n = -n
    return n, width


def lash_lines(image: np.ndarray, landmarks: np.ndarray) -> tuple[LashLine, LashLine]:
    """Each eye's upper lash line (right eye, left eye): the median profile of the picture
    along the eye's up direction from the middle of the upper lid, its darkest point near the
    lid and how far above it the profile is back most of the way to the skin above."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lines = []
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        contour = np.asarray(landmarks, np.float64)[list(eye), :2]
        n, width = _lid_normal(contour)
        if width < 8.0:
            lines.append(NO_LASHES)
            continue
        ds = np.arange(-0.05 * width, 0.35 * width, 0.5)
        pts = (contour[2:7, None, :] + ds[None, :, None] * n).astype(np.float32)
        prof = np.median(cv2.remap(gray, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE), axis=0)
        i_dark = int(np.argmin(np.where(ds <= 0.12 * width, prof, np.inf)))
        dark = float(prof[i_dark])
        skin = float(np.percentile(prof[(ds >= 0.1 * width) & (ds <= 0.3 * width)], 75))
        if skin - dark < 12.0:
            lines.append(NO_LASHES)
            continue
        past = np.nonzero((np.arange(len(ds)) > i_dark)
                          & (prof >= dark + 0.6 * (skin - dark)))[0]
        reach = float(ds[past[0]]) if len(past) else LASH_BAND_MAX * width
        at = contour[2:7] + ds[i_dark] * n
        colour = cv2.remap(image, at[None, :, 0].astype(np.float32),
                           at[None, :, 1].astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)[0].astype(np.float64)
        r, g, b = np.median(colour, axis=0)
        lines.append(LashLine(float(np.clip(reach, 0.0, LASH_BAND_MAX * width)),
                              (float(r), float(g), float(b))))
    return lines[0], lines[1]


def _closed_share(was: np.ndarray, now: np.ndarray) -> float:
    """How much of an eye's open gap (``was``, 16-point contour) is closed in ``now``."""
    gap_open = _open_gap(was)
    if gap_open < 1.0:
        return 0.0
    return float(np.clip(1.0 - _open_gap(now) / gap_open, 0.0, 1.0))


def _closing(was: np.ndarray, now: np.ndarray) -> float:
    """How far a closing eye's lid is redrawn, 0 to 1: from :data:`CLOSING_LID_FROM` of its
    gap closed to :data:`CLOSING_LID_FULL` (a squint keeps its own lid)."""
    return float(np.clip((_closed_share(was, now) - CLOSING_LID_FROM)
                         / (CLOSING_LID_FULL - CLOSING_LID_FROM), 0.0, 1.0))


_MEMO: dict[tuple[str, bytes], Any] = {}
_T = TypeVar("_T")


def _memo(key: tuple[str, bytes], make: Callable[[], _T]) -> _T:
    """``make()``, kept by the bytes of its inputs (``key``): one frame asks three times for
    each eye's closing (lash source, lash bands, closing lids) and every frame for the
    portrait's own lid normals."""
    hit = _MEMO.get(key)
    if hit is None:
        if len(_MEMO) > 64:
            _MEMO.clear()
        hit = _MEMO[key] = make()
    return cast(_T, hit)


def _eye_closing(own: np.ndarray, head: np.ndarray, now: np.ndarray) -> float:
    """:func:`_closing` of an eye whose portrait contour ``own`` the ``head`` affine carries
    to where its open lid would be, and which is ``now`` at the output's (both (16, 2)
    float64)."""
    head = np.asarray(head, np.float64)
    key = ("closing", own.tobytes() + head.tobytes() + now.tobytes() + bytes(head.shape))
    return _memo(key, lambda: _closing(apply_affine(head, own), now))


def _own_lid_normal(own: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`_lid_normal` of the portrait's own eye contour (the same every frame)."""
    return _memo(("normal", own.tobytes()), lambda: _lid_normal(own))


def lift_lash_source(src: np.ndarray, portrait: np.ndarray, points: np.ndarray,
                     head: np.ndarray, lashes: tuple[LashLine, LashLine]) -> np.ndarray:
    """The warp's source points with each closing eye's upper lid taken from above its lash
    line (by the lash line's reach, as the eye goes from :data:`CLOSING_LID_FROM` to
    :data:`CLOSING_LID_FULL` closed): the lid that comes down is the skin above the lashes,
    not the lash line drawn out over the eye. ``src``: the warp's source points (portrait
    pixels); ``portrait``: the portrait's landmarks; ``points``: the output's; ``head``: the
    head's portrait -> output affine. Returns ``src`` itself when no eye closes that far,
    else a changed copy."""
    out = src
    for eye, lash in zip((lm.RIGHT_EYE, lm.LEFT_EYE), lashes, strict=True):
        if lash.reach <= 0.0:
            continue
        own = np.asarray(portrait, np.float64)[list(eye), :2]
        closed = _eye_closing(own, head, np.asarray(points, np.float64)[list(eye), :2])
        if closed <= 0.0:
            continue
        n, _ = _own_lid_normal(own)
        rise = (own[1:8] - own[0]) @ n  # the lid's height above its corner: 0 at the ends
        weight = np.clip(rise / max(float(rise.max()), 1e-9), 0.0, 1.0)
        if out is src:
            out = src.copy()
        out[list(eye[1:8])] += (closed * lash.reach) * weight[:, None] * n
    return out


LASH_SHARE_MAX = 0.7
"""The lash line fills at most this share of the band between an upper lid and the row of
points above it (:func:`keep_lash_bands`): the rest is skin that takes the stretch."""

_LID_BANDS = (
    (lm.RIGHT_EYE, lm.RIGHT_LID_RING_NEAR),
    (lm.LEFT_EYE, lm.LEFT_LID_RING_NEAR),
)


def _lash_band_rows(t: np.ndarray, u: np.ndarray, u_lid: np.ndarray, share: np.ndarray,
                    stretch: np.ndarray) -> np.ndarray:
    """For output points at height ``t`` (0 at the lid, 1 at the row above) and position
    ``u`` along the eye: the height whose warped pixel each should show. The lash line's
    ``share`` of the band (at the lid points ``u_lid``, sorted) is drawn out by ``stretch``
    in the warp; shown at ``share / stretch`` instead, the skin above takes the rest. Faded
    in over the band's outer fifths (its ends near the corners keep the warp)."""
    ends = float(u_lid[-1] - u_lid[0])
    fade = np.clip(np.minimum(u - u_lid[0], u_lid[-1] - u) / max(0.2 * ends, 1e-6), 0.0, 1.0)
    rho = np.interp(u, u_lid, share)  # the lash line's share in the warp
    tau = rho / np.maximum(np.interp(u, u_lid, stretch), 1.0)  # ... and the share it should have
    f = np.where(t < tau, t * rho / np.maximum(tau, 1e-6),
                 rho + (t - tau) * (1.0 - rho) / np.maximum(1.0 - tau, 1e-6))
    return np.asarray(t + fade * (f - t))


def keep_lash_bands(source: np.ndarray, points: np.ndarray, portrait: np.ndarray,
                    head: np.ndarray, lashes: tuple[LashLine, LashLine]) -> int:
    """In place in the warp's full-size ``source`` map ((H, W, 2) float32, output pixel ->
    portrait position): where the skin between an upper lid and the row of points above it
    is drawn out (a driver raising its brows or lowering its lids over a portrait with a
    narrower band), the lash line keeps its own thickness at the lid's edge and only the skin
    above it stretches. Within each column of the band (across the eye, in the eye's own
    axes), the output is resampled so that the lash line's share of the portrait's band
    (``lashes``, :func:`lash_lines`) covers its share of the portrait's band at the head's
    scale, not the stretched share; the band's edges map where they did, so the result joins
    the warp around it. ``points``: the output landmarks; ``portrait``: the portrait's;
    ``head``: the head's portrait -> output affine. Left alone: an eye whose lid is closing
    (its lid is redrawn, :func:`smooth_closing_lids`), a band that is not stretched, an eye
    without a lash line. Returns the number of bands resampled."""
    h, w = source.shape[:2]
    scale = affine_scale(np.asarray(head, np.float64))
    pts = np.asarray(points, np.float64)
    own_pts = np.asarray(portrait, np.float64)
    done = 0
    for (eye, ring), lash in zip(_LID_BANDS, lashes, strict=True):
        if lash.reach <= 0.0:
            continue
        own, now = own_pts[list(eye), :2], pts[list(eye), :2]
        n, width = _lid_normal(now)
        if width < 8.0:
            continue
        own_n, _ = _own_lid_normal(own)
        lid, top = now[:9], pts[list(ring), :2]
        # the band's height over each of the lid's seven middle points, in the output and
        # in the portrait (at the head's scale)
        own_h = (own_pts[list(ring), :2] - own[1:8]) @ own_n
        stretch = ((top - lid[1:8]) @ n) / np.maximum(own_h * scale, 1e-6)
        if float(np.median(stretch)) <= 1.05 or _eye_closing(own, head, now) > 0.0:
            continue
        axis = np.array([-n[1], n[0]])  # along the eye; ``n`` points up, out of the eye
        origin = now[0]
        u_lid, v_lid = (lid - origin) @ axis, (lid - origin) @ n
        u_top, v_top = (top - origin) @ axis, (top - origin) @ n
        o_lid, o_top = np.argsort(u_lid), np.argsort(u_top)
        share = np.clip(lash.reach / np.maximum(own_h, 1e-6), 0.0, LASH_SHARE_MAX)
        u_in = u_lid[1:8]
        o_in = np.argsort(u_in)
        # the band's pixels in the output (its polygon, grown a pixel)
        band = np.concatenate([lid[1:8], top[::-1]])
        x0, y0 = np.floor(band.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(band.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round(band - [x0, y0]).astype(np.int32)], (1,))
        ys, xs = np.nonzero(cv2.dilate(mask, np.ones((3, 3), np.uint8)))
        ys, xs = ys + y0, xs + x0
        u = (xs - origin[0]) * axis[0] + (ys - origin[1]) * axis[1]
        v = (xs - origin[0]) * n[0] + (ys - origin[1]) * n[1]
        base = np.interp(u, u_lid[o_lid], v_lid[o_lid])
        height = np.interp(u, u_top[o_top], v_top[o_top]) - base
        t = (v - base) / np.maximum(height, 1.0)
        inside = (height > 1.0) & (t > 0.0) & (t < 1.0) & (u > u_in.min()) & (u < u_in.max())
        if not inside.any():
            continue
        u, t, base, height = u[inside], t[inside], base[inside], height[inside]
        f = _lash_band_rows(t, u, u_in[o_in], share[o_in], stretch[o_in])
        # the warp's source at the output point that shows what this one should
        along = base + f * height
        px = (origin[0] + u * axis[0] + along * n[0]).astype(np.float32)[None, :]
        py = (origin[1] + u * axis[1] + along * n[1]).astype(np.float32)[None, :]
        moved = cv2.remap(source, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        source[ys[inside], xs[inside]] = moved[0]
        done += 1
    return done


CLOSING_LID_FROM = 0.4
"""Share of an eye's lid gap closed from which its lid is smoothed (:func:`smooth_closing_lids`)
..."""
CLOSING_LID_FULL = 0.55
"""... fully from this share on."""
CLOSING_LID_BLUR = 0.12
"""Width (eye widths) of the blur along the eye that takes out the lid's vertical streaks."""
CLOSING_LID_CALM = 0.3
"""Share of the lid's redraw (:data:`CLOSING_LID_FROM` to :data:`CLOSING_LID_FULL`) by which
the warp's own lid is fully blurred along the eye (its streaks gone), the skin above the
lashes only then fading in over it."""
CLOSING_LID_FEATHER = 0.05
"""Softness (eye widths, Gaussian sigma) of the smoothed area's edge."""
CLOSED_LID_SKIN_FROM = 0.02
"""How far (eye widths) past the lash line the skin a closed lid is made of starts
(:func:`_lid_skin`, :func:`lid_lifts`) ..."""
CLOSED_LID_SKIN = 0.1
"""... and its height (eye widths): the portrait's skin above the lash line that covers a
closed eye (:func:`_lid_skin`)."""
CLOSED_LASH_LINE = 0.3
"""Thickness of the closed lid's lash line in its middle, a share of the open lash line's
reach (at least :data:`CLOSED_LASH_MIN` px) ..."""
CLOSED_LASH_MIN = 2.0
CLOSED_LASH_ENDS = 0.5
"""... thinning towards the eye's corners to this share of it (:func:`closed_lash_line`)."""
CLOSED_LASH_ALPHA = 1.0
"""How much of the lash colour the line takes (a closed eye's lashes bunch into a dark line:
lighter, it cost dlib's face embedding a little on lp_d3's closed eyes)."""
CLOSED_LASH_HANG = 0.08
"""How far below a closing lid's edge its lashes hang over what is left of the eye's opening
(eye widths) ..."""
CLOSED_LASH_HANG_ALPHA = 0.7
"""... and how much of the lash colour that part takes."""
CLOSED_LASH_FRINGE = 0.16
"""How far a closed eye's lashes hang below its lid's edge (eye widths, in the middle;
shorter towards the corners): closed lashes point down and show as a soft dark fringe over
the lower lid, 6-10 px deep at 512 px on the fixture clips' blinks, not as a thin line ..."""
CLOSED_LASH_FRINGE_ALPHA = 0.8
"""... taking this much of the lash colour at the lid's edge, none at their tips."""


def closed_lash_line(lid: np.ndarray, shape: tuple[int, int], thickness: float, *,
                     lower: np.ndarray | None = None, hang: float = 0.0,
                     fringe: float = 0.0) -> np.ndarray:
    """Coverage (float32 (h, w) in [0, 1]) of a closed eye's lash line along ``lid`` (its 9
    upper lid points from corner to corner, pixels of the (h, w) area): ``thickness`` px in
    the middle, thinning to :data:`CLOSED_LASH_ENDS` of it at the corners, anti-aliased by
    each pixel's distance from the lid's curve (measured across the eye), and nothing
    beyond the corners. A line stroked through the points instead came out as a chunky,
    stair-stepped marker line. With ``lower`` (the lower lid's points from corner to
    corner) the lashes also hang ``hang`` px below the lid's edge over the slit left between
    the lids (at :data:`CLOSED_LASH_HANG_ALPHA`), never past the lower lid: a nearly closed
    eye showed a pale sliver of its white under the line. With ``fringe`` (px) the closed
    lashes hang that far below the edge (over the lower lid too), fading from
    :data:`CLOSED_LASH_FRINGE_ALPHA` to nothing at their tips, shorter towards the corners."""
    h, w = shape
    lid = np.asarray(lid, np.float64)
    axis = lid[-1] - lid[0]
    length = float(np.hypot(axis[0], axis[1]))
    if length < 2.0 or h < 1 or w < 1:
        return np.zeros((h, w), np.float32)
    e = axis / length
    n = np.array([-e[1], e[0]])
    rel = lid - lid[0]
    u_pts, v_pts = rel @ e, rel @ n
    order = np.argsort(u_pts, kind="stable")
    u_pts, v_pts = u_pts[order], v_pts[order]
    # the lid's curve and its slope on a fine grid along the eye
    uu = np.linspace(0.0, length, max(16, int(length) + 1))
    cc = np.interp(uu, u_pts, v_pts)
    slope = np.gradient(cc, uu)
    dx = np.arange(w, dtype=np.float64)[None, :] - lid[0, 0]
    dy = np.arange(h, dtype=np.float64)[:, None] - lid[0, 1]
    u = dx * e[0] + dy * e[1]
    v = dx * n[0] + dy * n[1]
    across = v - np.interp(u, uu, cc)  # from the lid's curve, across the eye
    dist = np.abs(across) / np.sqrt(1.0 + np.interp(u, uu, slope) ** 2)
    # down the picture is down the face (a head rolled less than 90 degrees)
    down = 1.0 if n[1] >= 0.0 else -1.0
    depth = across * down  # below the lid's edge, px
    s = np.clip(u / length, 0.0, 1.0)
    taper = CLOSED_LASH_ENDS + (1.0 - CLOSED_LASH_ENDS) * np.sqrt(
        np.clip(1.0 - (2.0 * s - 1.0) ** 2, 0.0, 1.0))
    cover = np.clip(0.5 * thickness * taper + 0.5 - dist, 0.0, 1.0) * CLOSED_LASH_ALPHA
    if lower is not None and hang > 0.0:
        low = np.asarray(lower, np.float64) - lid[0]
        lu, lv = low @ e, low @ n
        o = np.argsort(lu, kind="stable")
        # a lower lid above the upper one (a closed eye's lids cross) leaves no slit
        gap = np.interp(uu, lu[o], lv[o]) - cc  # the slit's height along the eye (signed)
        reach = np.minimum(np.maximum(np.interp(u, uu, gap) * down, 0.0), hang * taper)
        slit = np.clip(depth + 0.5, 0.0, 1.0) * np.clip(reach + 0.5 - depth, 0.0, 1.0)
        cover = np.maximum(cover, slit * CLOSED_LASH_HANG_ALPHA)
    if fringe > 0.0:  # the closed lashes hang from the edge, shorter towards the corners
        tips = np.maximum(fringe * taper ** 2, 1e-6)
        fade = np.clip(1.0 - depth / tips, 0.0, 1.0) * np.clip(depth + 0.5, 0.0, 1.0)
        cover = np.maximum(cover, fade * CLOSED_LASH_FRINGE_ALPHA)
    cover *= np.clip(np.minimum(u, length - u) + 0.5, 0.0, 1.0)  # ends at the corners
    return np.asarray(cover, np.float32)


def _lid_skin(image: np.ndarray, own: np.ndarray, head: np.ndarray, lash: LashLine,
              open_lid: np.ndarray, lid: np.ndarray, origin: tuple[int, int],
              shape: tuple[int, int]) -> np.ndarray:
    """The skin a closing lid brings over the eye, for an output area of ``shape`` at
    ``origin`` (x, y): between the open lid and the lid now (``open_lid``, ``lid``: 9 upper
    lid points each, output pixels), the portrait's (``image``, eye contour ``own``) band of
    skin just above its lash line, unrolled: the lid's edge shows the skin next to the lashes,
    the open lid's line the skin :data:`CLOSED_LID_SKIN` eye widths above it. Taken from the
    portrait through the inverse of the ``head`` affine, so it is the portrait's own lid skin,
    not the warp's stretched crease. float32 RGB."""
    h, w = shape
    x0, y0 = origin
    xs = np.arange(x0, x0 + w, dtype=np.float64)
    o = np.argsort(open_lid[:, 0])
    n = np.argsort(lid[:, 0])
    y_open = np.interp(xs, open_lid[o, 0], open_lid[o, 1])
    y_lid = np.interp(xs, lid[n, 0], lid[n, 1])
    yy = np.arange(y0, y0 + h, dtype=np.float64)[:, None]
    share = np.clip((y_lid - yy) / np.maximum(y_lid - y_open, 1.0), 0.0, 1.0)
    up, width = _own_lid_normal(own)
    back = cv2.invertAffineTransform(np.asarray(head, np.float64))  # output -> portrait
    on_lid = np.stack([xs, y_open, np.ones_like(xs)], axis=1) @ back.T  # (w, 2) portrait
    rise = lash.reach + CLOSED_LID_SKIN_FROM * width + share * (CLOSED_LID_SKIN * width)
    map_x = on_lid[None, :, 0] + rise * up[0]
    map_y = on_lid[None, :, 1] + rise * up[1]
    return np.asarray(cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32),
                                cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101),
                      np.float32)


CLOSED_LID_FLOOR = 0.55
"""Darkest a closed lid's skin may come out, as a share of the skin round its eye (the median
of the face's skin 0.3-1.2 eye widths from the eye's middle, eye and brow left out): the
portrait's skin just above its lash line is in the shadow of the crease on deep-set eyes or
under eye make-up (0.45-0.55 of the skin round the eye on five of the ten fixture portraits,
0.25 on the left eye of lp_d3's first frame) and drew a closed eye as a dark socket; real
closed lids measure 0.36 (lp_d3) to 0.86 of it on the fixture clips (:func:`lid_lifts`)."""
CLOSED_LID_MAX_LIFT = 60.0
"""Most a closed lid's skin is lightened by (grey levels; :data:`CLOSED_LID_FLOOR`)."""


def _skin_round_eye(image: np.ndarray, landmarks: np.ndarray, eye: tuple[int, ...],
                    brow: tuple[int, ...]) -> np.ndarray | None:
    """Median colour (RGB float64 (3,)) of the face's skin (``image``) round an eye (0.3-1.2
    eye widths from its middle, the eye and the brow left out with a margin); None where too
    little of it shows."""
    contour = landmarks[list(eye)]
    _, width = _lid_normal(contour)
    centre = contour.mean(axis=0)
    reach = 1.2 * width
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(centre - reach).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(centre + reach).astype(int) + 1, [w, h])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    origin = np.array([x0, y0], np.float64)
    face = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(face, [np.round(landmarks[list(lm.FACE_OVAL)] - origin).astype(np.int32)], (1,))
    holes = np.zeros_like(face)
    for part in (eye, brow):
        cv2.fillPoly(holes, [np.round(landmarks[list(part)] - origin).astype(np.int32)], (1,))
    k = max(3, round(0.15 * width) | 1)
    wide = cv2.dilate(holes, np.ones((k, k), np.uint8))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx - centre[0], yy - centre[1])
    skin = (face > 0) & (wide == 0) & (d > 0.3 * width) & (d < reach)
    if int(skin.sum()) < 20:
        return None
    return np.median(image[y0:y1, x0:x1][skin].astype(np.float64), axis=0)


def lid_lifts(image: np.ndarray, landmarks: np.ndarray, lashes: tuple[LashLine, LashLine]
              ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """What is added (RGB levels; right eye, left eye) to the skin :func:`_lid_skin` takes
    from above an eye's lash line for a closed lid: a lid darker than
    :data:`CLOSED_LID_FLOOR` of the skin round the eye is brought up to it (its grey level)
    by adding light of the skin's own colour, at most :data:`CLOSED_LID_MAX_LIFT` grey
    levels; a lid already that light keeps its tone (nothing added). A gain instead turned a
    crease's shadow, redder and more saturated than the skin, orange; grey light made it
    grey. Measured once per portrait (``image`` RGB uint8, face mesh ``landmarks`` (N, 2+) in
    its pixels)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    pts = np.asarray(landmarks, np.float64)[:, :2]
    none = (0.0, 0.0, 0.0)
    lifts = []
    for eye, brow, lash in zip((lm.RIGHT_EYE, lm.LEFT_EYE), (lm.RIGHT_BROW, lm.LEFT_BROW),
                               lashes, strict=True):
        contour = pts[list(eye)]
        up, width = _lid_normal(contour)
        around = _skin_round_eye(image, pts, eye, brow) if width >= 8.0 else None
        level = 0.0 if around is None else float(  # its grey level, as `gray`'s
            cv2.cvtColor(around.reshape(1, 1, 3).astype(np.float32), cv2.COLOR_RGB2GRAY)[0, 0])
        if around is None or level < 1.0:
            lifts.append(none)
            continue
        # the band _lid_skin takes a closed lid from, above the middle of the upper lid
        ds = np.arange(lash.reach + CLOSED_LID_SKIN_FROM * width,
                       lash.reach + (CLOSED_LID_SKIN_FROM + CLOSED_LID_SKIN) * width, 0.5)
        at = (contour[2:7, None, :] + ds[None, :, None] * up).astype(np.float32)
        sample = float(np.mean(cv2.remap(gray, at[..., 0], at[..., 1], cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE)))
        lift = min(CLOSED_LID_FLOOR * level - sample, CLOSED_LID_MAX_LIFT)
        if lift <= 0.0:
            lifts.append(none)
            continue
        rgb = around * (lift / level)
        lifts.append((float(rgb[0]), float(rgb[1]), float(rgb[2])))
    return lifts[0], lifts[1]


def smooth_closing_lids(out: np.ndarray, points: np.ndarray, portrait: np.ndarray,
                        head: np.ndarray, image: np.ndarray,
                        lashes: tuple[LashLine, LashLine] = (NO_LASHES, NO_LASHES), *,
                        lifts: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),
                                                                          (0.0, 0.0, 0.0))
                        ) -> int:
    """In place: a closing eye's upper lid is the portrait's thin visible lid stretched over
    the eye, which shows as vertical streaks; as the lid comes down, the swept area is first
    blurred along the eye (by :data:`CLOSING_LID_CALM` of the way), then becomes the
    portrait's skin above its lash line (:func:`_lid_skin`), blurred along the eye, with a
    soft edge, and the lid's edge gets the portrait's lash line (``lashes``,
    :func:`lash_lines`) as a thin dark line. ``points``: the output landmarks; ``portrait``:
    the portrait's; ``head``: the head's portrait -> output affine (2x3); ``image``: the
    portrait (RGB uint8); ``lifts``: light added to each eye's lid skin (:func:`lid_lifts`).
    Returns the number of eyes smoothed."""
    done = 0
    h, w = out.shape[:2]
    for eye, lash, lift in zip((lm.RIGHT_EYE, lm.LEFT_EYE), lashes, lifts, strict=True):
        # 9 upper lid points, then the lower lid back
        own = np.asarray(portrait, np.float64)[list(eye), :2]
        now = np.asarray(points, np.float64)[list(eye), :2]
        a = _eye_closing(own, head, now)
        if a <= 0.0:
            continue
        was = apply_affine(head, own)
        up_open, up_now = was[:9], now[:9]
        width = float(np.linalg.norm(up_now[-1] - up_now[0]))
        k = max(3, round(CLOSING_LID_BLUR * width) | 1)
        feather = max(1.0, CLOSING_LID_FEATHER * width)
        pad = k + int(np.ceil(3.0 * feather))
        swept = np.concatenate([up_open, up_now[::-1]])
        x0, y0 = np.floor(swept.min(axis=0)).astype(int) - pad
        x1, y1 = np.ceil(swept.max(axis=0)).astype(int) + pad + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        roi = out[y0:y1, x0:x1]
        base = roi.astype(np.float32)
        mask = np.zeros(roi.shape[:2], np.float32)
        cv2.fillPoly(mask, [np.round((swept - [x0, y0]) * 16).astype(np.int32)], (1.0,),
                     cv2.LINE_AA, 4)
        mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), feather), np.float32)
        # the warp's own lid, its streaks blurred out along the eye well before the skin
        # above the lashes takes over: mixed while still streaked, the two showed a ghost
        calm = mask * np.float32(min(1.0, a / CLOSING_LID_CALM))
        base += (np.asarray(cv2.blur(base, (k, 1)), np.float32) - base) * calm[..., None]
        mask *= np.float32(a)
        skin = _lid_skin(image, own, head, lash, up_open, up_now, (int(x0), int(y0)),
                         (y1 - y0, x1 - x0))
        colour = np.asarray(cv2.blur(skin, (k, 1)), np.float32)
        if any(lift):
            colour += np.asarray(lift, np.float32)
        blended = base + (colour - base) * mask[..., None]
        if lash.reach > 0.0:  # the closed lid's edge: the portrait's lash line
            low_now = np.concatenate([now[:1], now[9:][::-1], now[8:9]])
            line = closed_lash_line(up_now - [x0, y0], (y1 - y0, x1 - x0),
                                    max(CLOSED_LASH_MIN, CLOSED_LASH_LINE * lash.reach),
                                    fringe=CLOSED_LASH_FRINGE * width,
                                    lower=low_now - [x0, y0],
                                    hang=CLOSED_LASH_HANG * width)
            line *= np.float32(a)
            blended += (np.asarray(lash.colour, np.float32) - blended) * line[..., None]
        roi[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        done += 1
    return done
