"""The mouth interior shown where the portrait's mouth opens further than it is open.

A mouth that opens has no interior to warp: the face mesh fans triangles over the opening,
so a closed mouth smears lip texture over it and a smile with teeth stretches the teeth into
a striped block. Instead the inside of the output's inner-lip polygon is painted, in one of
two modes (:func:`render_mouth`):

``"driver"`` (:func:`transplant_mouth`)
    The driving face's own mouth interior (teeth, tongue, shadow) is carried into the
    output's opening column by column: down each column its upper part keeps its distance
    from the upper lip and its lower part from the lower lip, so the upper teeth hang from
    the upper lip, the lower teeth ride on the lower lip and nothing stretches vertically
    (where a wide-open driver's lip reaches above its lower line, the output's own lower
    lip carries on over that strip: :func:`lower_lip_edge`).
    Colours are matched to the portrait (:func:`match_colours`: saturation scaled to the
    portrait's chroma level, a lightness gain, the portrait's colour cast as channel gains: a
    black-and-white photo gets grey teeth, a painting its palette); the driver's teeth take
    the portrait's teeth colour (told by the driver's, :func:`teeth_reference`). The
    interior is split at its highest dark band (:data:`DRIVER_SPLIT`: a yell's throat under
    the upper teeth, so its tongue rides on the lower lip). A driving mouth that is
    closed or not given falls back to ``"synthetic"``, and so does a driving image that is
    the portrait itself (:func:`is_portrait`: a scripted performance moves landmarks over
    the still portrait, whose pixels do not show the mouth they describe).
``"synthetic"`` (:func:`synthetic_mouth`)
    A throat in the portrait's own lip hue, darkest in the middle but only as dark as the
    opening is wide (a narrow one is a soft shadow, not a black slit), with a tongue low in
    a wide opening. A portrait that shows its teeth keeps them: its own interior, split at
    the dark gap between upper and lower teeth (:func:`cut_interior`; with no gap, all of it
    but the lower lip's inner edge hangs from the upper lip), moves in two parts, the upper
    with the upper inner lip, the lower with the lower one, at the head scale, column by
    column (the front teeth keep their size, the corners stretch with a smile). The parts
    take a little of the lips' inner edge along, so the rim of the opening stays the lip
    (no outline); where they come apart the upper teeth go on a little, fading into the
    throat. A portrait without visible teeth gets a hint of upper teeth under the upper lip:
    a light band in its own eye-white tone, desaturated, shaded along the dental arch.

A closed mouth's seam (the dark line where its lips meet) is filled once per portrait
(:func:`lip_seam`); the engine samples the lips around an opening from that copy
(:func:`open_lip_seam`), so the rim of the opening is lip, not the line drawn out around it.

What the modes need of a portrait is measured once (:func:`prepare_mouth`, kept in a
:class:`MouthStyle`); per frame the work stays inside the mouth's bounding box. Both modes
follow the actual polygon (a lopsided grin gets a shaped interior) and feather its edge.
Colours are RGB 0..255; Lab is OpenCV's float Lab (L 0..100, a and b about 0).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np

from calibrate import landmarks as lm
from live.engines.mesh.motion import apply_affine, fit_similarity_from
from live.engines.mesh.motion import smoothstep as _smoothstep
from live.engines.mesh.warp import SHARP_SAMPLING, fill_points, sample_at

MouthMode = Literal["driver", "synthetic", "off"]
MOUTH_MODES: tuple[str, ...] = ("driver", "synthetic", "off")

Box = tuple[int, int, int, int]
"""x0, y0, width, height of a pixel box."""

_UPPER = np.arange(11)  # LIPS_INNER positions of the upper inner lip, corner 0 .. corner 10
_LOWER = np.array([0, *range(19, 9, -1)])  # the lower inner lip, corner 0 .. corner 10
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_MIN_OPEN_PX = 2.0  # a driving mouth opening less than this (output pixels) counts as closed
_OWN_OPEN_PX = 2.5  # a portrait opening at least this high (mean, px) has an interior
_NO_LAYER = (0.0, 0.0, 0.0, 0.0)
_ROW_INSET_PX = 1.5  # teeth continued past the portrait's lips: its row this far inside
UPPER_JAW: tuple[int, ...] = (1, 4, 19, 94, 2, 98, 327, 164)
"""Landmarks that move with the upper jaw (the skull): the nose's tip, ridge and base."""
LOWER_JAW: tuple[int, ...] = (152, 148, 176, 377, 400, 175, 199, 200)
"""Landmarks that move with the lower jaw: the chin."""
_REACH_PX = 1.5  # how far over the lips' inner edge the portrait's own interior reaches
TRANSPLANT_REACH_PX = 0.5
"""How far over the driving lips' inner edge (driving-crop pixels) the transplanted interior
reaches: the opening's rim shows the driver's lip edge, colour-matched, instead of a dark
line of throat where an interior cut short of the edge left the layers thin (0.7 px in,
before: a dark ring around every opening)."""


def polygon_area(poly: np.ndarray) -> float:
    """Absolute area of a simple polygon (N, 2)."""
    x, y = poly[:, 0], poly[:, 1]
    # np.roll(a, -1), without its overhead (called a few times a frame)
    y1, x1 = np.concatenate((y[1:], y[:1])), np.concatenate((x[1:], x[:1]))
    return 0.5 * abs(float(np.dot(x, y1) - np.dot(y, x1)))


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB (0..255, shape (..., 3)) -> float Lab, same shape."""
    a = np.asarray(rgb, np.float32).reshape(-1, 1, 3) * np.float32(1.0 / 255.0)
    return np.asarray(cv2.cvtColor(a, cv2.COLOR_RGB2Lab).reshape(np.shape(rgb)))


def _to_rgb(lab: np.ndarray) -> np.ndarray:
    """Float Lab (..., 3) -> RGB 0..255 float32, same shape."""
    a = np.asarray(lab, np.float32).reshape(-1, 1, 3)
    return np.asarray(cv2.cvtColor(a, cv2.COLOR_Lab2RGB).reshape(np.shape(lab)) * 255.0)


INTERIOR_CHROMA = 1.5
"""The synthetic interior's shades of the lips' colour (:func:`lip_shade`) keep the lips'
chroma (Lab a*, b*) up to this many times their own lightness (L)."""


def lip_shade(lip: np.ndarray, k: float) -> np.ndarray:
    """The lips' colour ``lip`` (RGB) as dark as ``k`` times it (the Lab lightness of RGB
    scaled by ``k``) with the lips' red kept: their chroma (a*, and b* no further from 0 than
    a*: a hue within 45 degrees of red), up to :data:`INTERIOR_CHROMA` times that lightness.
    A mouth's inside is a deep red, where scaling RGB by ``k`` turned pale lips' inside
    brown-black (their colour went with their light); saturated lips' inside stays a dark
    red, not a bright one; grey lips (a black-and-white photo) give grey, yellowed lips (a
    varnished painting) a dark brown, not a dark mustard."""
    scaled = _to_lab(np.asarray(lip, np.float32) * np.float32(k))
    lab = _to_lab(np.asarray(lip, np.float32))
    a = max(float(lab[1]), 0.0)
    b = float(np.clip(lab[2], -a, a))
    light = float(scaled[0])
    chroma = float(np.hypot(a, b))
    c = min(1.0, INTERIOR_CHROMA * light / chroma) if chroma > 1e-6 else 0.0
    # no less colour than scaling gave (a yellowed lip's own brown)
    red = np.array([a * c, b * c], np.float32)
    ab = np.where(np.abs(red) >= np.abs(scaled[1:]), red, scaled[1:])
    rgb = np.zeros(3, np.float32)
    for share in np.linspace(1.0, 0.0, 11):  # less chroma until it is a colour RGB has
        rgb = _to_rgb(np.array([light, *(ab * np.float32(share))], np.float32))
        if rgb.min() >= -0.5 and rgb.max() <= 255.5:
            break
    return np.clip(rgb, 0.0, 255.0).astype(np.float32)


# -- the mouth's own frame ---------------------------------------------------------------------


class _LipFrame:
    """Coordinates along a mouth opening (inner-lip polygon (20, 2)): ``s`` from corner 0
    towards corner 10 (0 .. width), ``t`` across, towards the lower lip; the two inner lip
    lines as functions of ``s``."""

    def __init__(self, inner: np.ndarray) -> None:
        inner = np.asarray(inner, np.float64)[:, :2]
        self.inner = inner
        self.c0 = inner[0]
        axis = inner[10] - inner[0]
        self.width = float(np.hypot(axis[0], axis[1]))
        self.e = axis / self.width if self.width > 1e-6 else np.array([1.0, 0.0])
        self.n = np.array([-self.e[1], self.e[0]])  # image y is down: n points to the chin
        rel = inner - self.c0
        s, t = rel @ self.e, rel @ self.n
        self.su, self.tu = np.maximum.accumulate(s[_UPPER]), t[_UPPER]
        self.sl, self.tl = np.maximum.accumulate(s[_LOWER]), t[_LOWER]
        # Area between the lip lines (the polygon's area for an opening that is not folded).
        self.area = polygon_area(inner)
        self.height = self.area / max(self.width, 1.0)  # mean opening height

    def _offsets(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        x0, y0, w, h = box
        xs = np.arange(x0, x0 + w, dtype=np.float32) - np.float32(self.c0[0])
        ys = np.arange(y0, y0 + h, dtype=np.float32) - np.float32(self.c0[1])
        return xs, ys

    def along(self, box: Box) -> np.ndarray:
        """Per pixel of ``box``: s, float32 (h, w)."""
        xs, ys = self._offsets(box)
        return np.asarray(xs[None, :] * np.float32(self.e[0])
                          + ys[:, None] * np.float32(self.e[1]), np.float32)

    def gaps(self) -> np.ndarray:
        """The opening's height (px, along ``t``) at each point of the upper inner lip."""
        return np.asarray(np.interp(self.su, self.sl, self.tl) - self.tu)

    def grid(self, box: Box) -> tuple[np.ndarray, ...]:
        """Per pixel of ``box``: s, t and the upper and lower lip's t at s, float32 (h, w)."""
        xs, ys = self._offsets(box)
        ex, ey = np.float32(self.e[0]), np.float32(self.e[1])
        s = self.along(box)
        t = ys[:, None] * ex - xs[None, :] * ey
        tu = np.interp(s, self.su, self.tu).astype(np.float32)
        tl = np.interp(s, self.sl, self.tl).astype(np.float32)
        return s, t, tu, tl


def _box(points: np.ndarray, margin: float, shape: tuple[int, ...]) -> Box | None:
    """The integer box around ``points`` (N, 2) plus ``margin``, clipped to the image."""
    h, w = shape[:2]
    lo = np.floor(points.min(axis=0) - margin)
    hi = np.ceil(points.max(axis=0) + margin) + 1
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), w), min(int(hi[1]), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _polygon_mask(poly: np.ndarray, box: Box, feather_px: float) -> np.ndarray:
    """Polygon coverage (0..1 float32) in ``box`` (4x4 supersampled: unbiased, unlike
    OpenCV's anti-aliased fill, which grows a polygon by about half a pixel), its edge
    blurred over about ``feather_px`` pixels."""
    x0, y0, w, h = box
    ss = 4
    mask = np.zeros((h * ss, w * ss), np.uint8)
    pts = fill_points(poly[:, :2], scale=ss, origin=(x0, y0))
    cv2.fillPoly(mask, [pts], (255,), cv2.LINE_8, 4)
    cover = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    cover *= np.float32(1.0 / 255.0)
    if feather_px > 0:
        return np.asarray(cv2.GaussianBlur(cover, (0, 0), max(0.5 * feather_px, 0.3)))
    return cover


def _composite(out: np.ndarray, box: Box, colour: np.ndarray, alpha: np.ndarray) -> None:
    """``out[box] = out * (1 - alpha) + colour * alpha``, in place."""
    x0, y0, w, h = box
    roi = out[y0:y0 + h, x0:x0 + w]
    # channel by channel: numpy broadcasts over a trailing axis of 3 slowly (same values)
    keep = 1.0 - alpha
    planes = [np.clip(own.astype(np.float32) * keep + paint * alpha + 0.5, 0, 255)
              .astype(np.uint8) for own, paint in zip(cv2.split(roi), _planes(colour), strict=True)]
    roi[...] = cv2.merge(planes)


# -- interiors split into an upper and a lower part -----------------------------------------------


@dataclass(frozen=True, eq=False)
class Interior:
    """A mouth interior cut out of an image (:func:`cut_interior`), split into the part that
    hangs from the upper lip (upper teeth) and the part that rides on the lower lip (lower
    teeth, tongue)."""

    origin: np.ndarray
    """(2,) float64: image position of the layers' pixel (0, 0)."""
    upper: np.ndarray
    """(h, w, 4) float32: premultiplied RGB (0..255) and weight of the upper part."""
    lower: np.ndarray
    """(h, w, 4) float32: premultiplied RGB (0..255) and weight of the lower part."""
    inner: np.ndarray
    """(20, 2) float64: the inner-lip polygon in image pixels."""
    split: float
    """Where, from 0 at the upper lip to 1 at the lower lip, the two parts meet; 1 when the
    interior has no dark gap between teeth rows: then it all hangs from the upper lip but a
    band ``band`` px high along the lower lip (the lip's inner edge and its shadow)."""
    teeth: bool = False
    """Whether the interior shows teeth (:func:`prepare_mouth` decides)."""
    band: float = 0.0
    """With ``split`` 1: the height (px) of the band that rides on the lower lip."""
    shade: np.ndarray | None = None
    """RGB float32 (3,): the colour where the two parts meet (the gap between the teeth
    rows, else the lower lip's inner edge), the tone of a narrow gap between them."""
    light: np.ndarray | None = None
    """RGB float32 (3,): the upper part's lightest colour (its teeth, when it shows any)."""

    @functools.cached_property
    def frame(self) -> _LipFrame:
        """The lip frame of :attr:`inner` (made once: a portrait's interior is drawn every
        frame its mouth opens)."""
        return _LipFrame(self.inner)

    def upper_end(self, gap: np.ndarray) -> np.ndarray:
        """How far (px) below the upper lip the upper part is still whole, in a column of
        the interior where the opening is ``gap`` px high."""
        if self.split < 1.0:
            return np.asarray(np.maximum(self.split - 0.07, 0.0) * gap, np.float32)
        return np.asarray(np.maximum(gap - self.lower_depth(gap) - 1.0, 0.0), np.float32)

    def lower_depth(self, gap: np.ndarray) -> np.ndarray:
        """How far (px) above the lower lip the two parts meet, in a column of the
        interior where the opening is ``gap`` px high."""
        if self.split < 1.0:
            return np.asarray((1.0 - self.split) * gap, np.float32)
        return np.asarray(np.minimum(self.band, 0.3 * gap), np.float32)


def _split_at_gap(v: np.ndarray, lum: np.ndarray, weight: np.ndarray,
                  search: tuple[float, float] = (0.35, 0.85),
                  highest: float = 0.0) -> float | None:
    """The dark gap between upper and lower teeth as a fraction of the opening (within
    ``search``): the darkest band of the interior's lightness profile (with ``highest``, the
    highest band no more than that share of the profile's range above the darkest); None
    when it has none."""
    bins = 20
    idx = np.clip((v * bins).astype(np.int32), 0, bins - 1).ravel()
    wsum = np.bincount(idx, weight.ravel(), bins)
    lsum = np.bincount(idx, (lum * weight).ravel(), bins)
    ok = wsum > 0.5
    if ok.sum() < 8:
        return None
    prof = np.interp(np.arange(bins), np.flatnonzero(ok), lsum[ok] / wsum[ok])
    prof = np.convolve(np.pad(prof, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    lo_i, hi_i = int(search[0] * bins), int(search[1] * bins)
    k = lo_i + int(np.argmin(prof[lo_i:hi_i]))
    if highest > 0.0:
        near = prof[lo_i:hi_i] <= prof[k] + highest * float(np.ptp(prof))
        k = lo_i + int(np.argmax(near))
    contrast = min(prof[:k].max(initial=0.0), prof[k:].max(initial=0.0)) - prof[k]
    if contrast < 0.08 * max(float(prof.max()), 1.0):
        return None
    return (k + 0.5) / bins


def _cut(image: np.ndarray, frame: _LipFrame, *, erode_px: float, split: float | None,
         rgb: np.ndarray | None, reach_px: float = 0.0,
         band_px: float | None = None,
         search: tuple[tuple[float, float], float] = ((0.35, 0.85), 0.0)
         ) -> Interior | None:
    if frame.width < 4.0 or frame.area < 4.0:
        return None
    box = _box(frame.inner, 2.0 + max(reach_px, 0.0), image.shape)
    if box is None:
        return None
    x0, y0, w, h = box
    s, t, tu, tl = frame.grid(box)
    gap = tl - tu
    v = (t - tu) / np.maximum(gap, 1e-3)
    pad = np.float32(0.5 - erode_px)
    inside = (np.clip(t - tu + pad, 0.0, 1.0) * np.clip(tl - t + pad, 0.0, 1.0)
              * np.clip(s + pad, 0.0, 1.0) * np.clip(frame.width - s + pad, 0.0, 1.0))
    inside *= gap > 0
    if float(inside.sum()) < 4.0:
        return None
    pix = rgb if rgb is not None else image[y0:y0 + h, x0:x0 + w].astype(np.float32)
    weight = inside
    if reach_px > 0.0:
        # The layers reach over the lips' inner edge: moved with their lip, they bring the
        # edge along, and the opening's rim shows the lip, not a line of whatever is under.
        r = np.float32(0.5 + reach_px)
        weight = (np.clip(t - tu + r, 0.0, 1.0) * np.clip(tl - t + r, 0.0, 1.0)
                  * np.clip(s + r, 0.0, 1.0) * np.clip(frame.width - s + r, 0.0, 1.0))
    band = 0.0
    if split is None:
        split = _split_at_gap(v, pix @ _LUMA, inside, *search)
        if split is None and band_px is not None:
            split, band = 1.0, float(band_px)
        elif split is None:
            split = 0.6
    if split >= 1.0:
        # No gap between teeth rows: all hangs from the upper lip but the lower lip's edge.
        d0 = np.minimum(np.float32(band), 0.3 * np.maximum(gap, 0.0))
        w_lo = weight * (1.0 - _smoothstep(-1.0, 1.0, tl - t - d0))
        w_up = weight - w_lo
    else:
        w_up = weight * (1.0 - _smoothstep(split - 0.07, split + 0.07, v))
        w_lo = weight - w_up
    up = np.concatenate([pix * w_up[..., None], w_up[..., None]], axis=2)
    lo = np.concatenate([pix * w_lo[..., None], w_lo[..., None]], axis=2)
    if split >= 1.0:
        zone = inside * w_lo / np.maximum(weight, 1e-6)
    else:
        zone = inside * (1.0 - _smoothstep(0.05, 0.12, np.abs(v - split)))
    shade = ((pix * zone[..., None]).reshape(-1, 3).sum(axis=0) / float(zone.sum())
             if float(zone.sum()) > 1.0 else None)
    whole = (w_up > 0.5 * weight) & (inside > 0.5)  # the upper part, inside the lips
    light = None
    if int(whole.sum()) >= 6:
        px = pix[whole]
        lum = px @ _LUMA
        light = px[lum >= np.percentile(lum, 85)].mean(axis=0).astype(np.float32)
    return Interior(origin=np.array([x0, y0], np.float64), upper=up.astype(np.float32),
                    lower=lo.astype(np.float32), inner=frame.inner, split=float(split),
                    band=band, shade=None if shade is None else shade.astype(np.float32),
                    light=light)


def cut_interior(image: np.ndarray, inner: np.ndarray, *, erode_px: float = 0.0,
                 split: float | None = None, rgb: np.ndarray | None = None,
                 reach_px: float = 0.0) -> Interior | None:
    """Cut the interior of the inner-lip polygon ``inner`` (20, 2, LIPS_INNER order) out of
    ``image`` (RGB uint8) as two layers, split at the dark gap between the teeth (or at
    ``split``, 0 at the upper lip .. 1 at the lower lip; 0.6 when there is no gap).
    ``erode_px`` pulls the edge away from the lips, ``reach_px`` (instead) takes that much of
    the lips along; ``rgb`` (float32, the pixels of the polygon's box plus
    ``2 + reach_px`` px, as clipped to the image) stands in for the image's pixels. None when
    there is no opening."""
    return _cut(image, _LipFrame(inner), erode_px=erode_px, split=split, rgb=rgb,
                reach_px=reach_px)


def _planes(image: np.ndarray) -> list[np.ndarray]:
    """The channels of an (h, w, c) image."""
    return list(cv2.split(np.ascontiguousarray(image)))


def _over(base: np.ndarray, up: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The upper layer over the lower layer over ``base`` (premultiplied layers)."""
    # channel by channel: numpy broadcasts over a trailing axis of 3 slowly (same values)
    *up_rgb, up_a = cv2.split(up)
    *lo_rgb, lo_a = cv2.split(lo)
    lo_keep, up_keep = 1.0 - lo_a, 1.0 - up_a
    return cv2.merge([u + (lw + b * lo_keep) * up_keep
                      for u, lw, b in zip(up_rgb, lo_rgb, _planes(base), strict=True)])


def _layers(interior: Interior, src: _LipFrame, ss: np.ndarray, t_up: np.ndarray,
            t_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interior's upper part sampled at source lip-frame coordinates ``(ss, t_up)`` and
    its lower part at ``(ss, t_lo)`` (per output pixel, float32)."""
    return (_sample(interior, interior.upper, src, ss, t_up),
            _sample(interior, interior.lower, src, ss, t_lo))


def _sample(interior: Interior, layer: np.ndarray, src: _LipFrame, ss: np.ndarray,
            t: np.ndarray) -> np.ndarray:
    """One part (``layer``) of ``interior`` sampled at source lip-frame ``(ss, t)``."""
    ex, ey = np.float32(src.e[0]), np.float32(src.e[1])
    sx = np.float32(src.c0[0] - interior.origin[0]) + ss * ex
    sy = np.float32(src.c0[1] - interior.origin[1]) + ss * ey
    return np.asarray(cv2.remap(layer, sx - t * ey, sy + t * ex, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=_NO_LAYER))


def _columns_over(base: np.ndarray, interior: Interior, src: _LipFrame, dst: _LipFrame,
                  grid: tuple[np.ndarray, ...]) -> np.ndarray:
    """``base`` (h, w, 3) under the interior's two parts laid column by column into the
    output's opening: output column ``s`` shows source column ``s * src.width / dst.width``;
    down a column the upper part keeps its distance from the upper lip and the lower part
    from the lower lip (both scaled by the width ratio), so nothing stretches vertically and
    the source's lips meet the output's."""
    s, t, tu, tl = grid
    k = np.float32(src.width / max(dst.width, 1e-6))
    ss = s * k
    t_up = np.interp(ss, src.su, src.tu).astype(np.float32) + (t - tu) * k
    t_lo = np.interp(ss, src.sl, src.tl).astype(np.float32) - (tl - t) * k
    return _over(base, *_layers(interior, src, ss, t_up, t_lo))


def _own_columns(s: np.ndarray, src_width: float, dst_width: float, head: float
                 ) -> np.ndarray:
    """Output lip-frame ``s`` -> the portrait's, for its own interior: the corners at the
    corners, the middle of the mouth close to the head scale (the front teeth keep about
    their size: a mouth 20 % wider widens them by 10 %), a cubic in between (a widening
    smile stretches the side teeth and the dark corners most); beyond the corners at the
    head scale."""
    half_src, half_dst = 0.5 * src_width, 0.5 * dst_width
    x = (s - np.float32(half_dst)) * np.float32(1.0 / max(half_dst, 1e-6))
    # x_src = a x + (1 - a) x^3: 1 -> 1, slope a in the middle, monotonic for a < 1.5.
    # Fully rigid (a = the width ratio at head scale) would stretch the corners threefold
    # in a broad smile: the middle takes the square root of the ratio.
    a = float(np.clip(np.sqrt(half_dst / max(half_src * head, 1e-6)), 0.2, 1.45))
    xc = np.clip(x, -1.0, 1.0)
    xs = np.float32(a) * xc + np.float32(1.0 - a) * xc * xc * xc
    xs = xs + (x - xc) * np.float32(half_dst / max(half_src * head, 1e-6))
    return np.asarray(np.float32(half_src) + xs * np.float32(half_src), np.float32)


GAP_TONE_MAX = 0.5
"""The gap between a portrait's own teeth rows is no lighter than this share of its teeth."""


def _gap_tone(style: MouthStyle, interior: Interior) -> np.ndarray:
    """The colour of a narrow gap between the two parts of the portrait's own interior: its
    own tone where they meet, no lighter than half its teeth and no darker than the
    throat's edge colour at a quarter."""
    if interior.shade is None:
        return style.edge
    shade = np.asarray(interior.shade, np.float32)
    luma = max(float(shade @ _LUMA), 1.0)
    light = float(interior.light @ _LUMA) if interior.light is not None else 255.0
    target = float(np.clip(luma, 0.25 * float(style.edge @ _LUMA), GAP_TONE_MAX * light))
    return np.asarray(shade * np.float32(target / luma), np.float32)


def _anchor_line(dst: _LipFrame, line: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The ``t`` (output lip frame) of a polyline (11, 2) of output pixels at each ``s``."""
    rel = np.asarray(line, np.float64)[:, :2] - dst.c0
    ls = np.maximum.accumulate(rel @ dst.e)
    return np.interp(s, ls, rel @ dst.n).astype(np.float32)


class DriverLower(NamedTuple):
    """The driving face's interior (:func:`_driver_cut`), its lip frame and how much of its
    lower part shows under a portrait's own teeth (:func:`_own_over`)."""

    interior: Interior
    frame: _LipFrame
    opacity: float


def _own_over(style: MouthStyle, interior: Interior, dst: _LipFrame,
              grid: tuple[np.ndarray, ...], head: float,
              anchors: tuple[np.ndarray, np.ndarray] | None = None,
              driver: DriverLower | None = None) -> np.ndarray:
    """The portrait's own interior in the output's opening: its upper part hanging from the
    upper lip, its lower part riding on the lower lip, both at the head scale ``head``
    (teeth keep their size: column by column, the middle of the mouth about rigid, see
    :func:`_own_columns`). Where the two parts come apart: the upper teeth a little longer
    (their tips, hidden by the lower lip in the portrait, fading into shadow), a throat
    below them (as dark as the gap is wide).

    ``anchors`` (the portrait's upper and lower inner lip lines, (11, 2) each, carried into
    the output by the upper jaw's and the lower jaw's motion: see :func:`jaw_anchors`) hang
    the parts from the jaws instead of the lips, as teeth are: a smile that pulls the lips
    back shows more of the same teeth (the rows continued past what the portrait shows)
    rather than pulling the rows apart; only a dropping jaw opens a gap between them. A
    lower lip dropped further than its jaw takes the lower row along, with at most
    :data:`MAX_LOWER_GUM` of the mouth's width of gum between them.

    ``driver``: the driving face's lower mouth (its interior below the gap between its teeth:
    tongue, lower teeth, the floor of the mouth) laid on the output's lower lip, column by
    column at the mouths' width ratio (its upper share drawn out towards the portrait's teeth
    where the output opens wider: :func:`_driver_lower_rows`), over the throat and under the
    portrait's own rows, at ``driver.opacity``: a wide-open mouth shows the driver's tongue,
    not a synthetic one.
    A portrait with no lower row of its own shows, in a wide gap under its teeth, the tips
    of a lower row made of its own upper teeth's tips (:func:`_own_lower_teeth`), fading out
    as the driver's lower mouth fades in."""
    s, t, tu_lip, tl_lip = grid
    if anchors is None:
        tu, tl = tu_lip, tl_lip
    else:
        tu, tl = _anchor_line(dst, anchors[0], s), _anchor_line(dst, anchors[1], s)
        # A lower lip dropped far below where the lower jaw carries the portrait's lower
        # row (a yell: the face mesh's chin reads less of the jaw's drop than its lips do)
        # takes the row along: at most MAX_LOWER_GUM of the mouth's width of gum between.
        tl = np.maximum(tl, tl_lip - np.float32(MAX_LOWER_GUM * dst.width))
        if interior.split >= 1.0:
            # No lower row in the portrait: its lower part is the lower lip's inner edge,
            # which rides on the lip (hung from the jaw, a yell's lip dropped below it left
            # a band of gum-coloured lip across the mouth).
            tl = tl_lip
    src = interior.frame
    ss = _own_columns(s, src.width, dst.width, head)
    su_t = np.interp(ss, src.su, src.tu).astype(np.float32)
    sl_t = np.interp(ss, src.sl, src.tl).astype(np.float32)
    k = np.float32(head)
    inv = np.float32(1.0 / head)
    # Where the parts meet in the portrait, and so where they end in the output.
    src_gap = np.maximum(sl_t - su_t, 0.0)
    d_lo = interior.lower_depth(src_gap)
    top = tu + (src_gap - d_lo) * k
    bottom = tl - d_lo * k
    width = max(dst.width, 1.0)
    longer = interior.split >= 1.0 and interior.light is not None
    end = tu + interior.upper_end(src_gap) * k  # the upper part whole down to here
    # Below it (teeth with no lower row in the portrait): its last row, continued.
    t_up = su_t + ((np.minimum(t, end) if longer else t) - tu) * inv
    t_lo = sl_t - (tl - t) * inv
    if anchors is not None:  # lips drawn back past the teeth the portrait shows: continue
        t_up = np.maximum(t_up, su_t + np.float32(_ROW_INSET_PX))
        t_lo = np.minimum(t_lo, sl_t - np.float32(_ROW_INSET_PX))
    up, lo = _layers(interior, src, ss, t_up, t_lo)
    if anchors is not None:
        # Above the upper row and below the lower one (lips drawn back further than in the
        # portrait): gums, in the lips' tone, a little darker towards the lip and into
        # shadow towards the corners (GUM_SIDE_SHADOW).
        gum = style.gum * np.float32(GUM_TONE)
        half = np.float32(0.5 * width)
        near, far, depth = GUM_SIDE_SHADOW
        side = 1.0 - np.float32(depth) * _smoothstep(near, far, np.abs(s - half) / half)
        for layer, beyond, lip_gap in ((up, tu - t, t - tu_lip), (lo, t - tl, tl_lip - t)):
            _gums(layer, gum, beyond, lip_gap, side)
    if longer:
        # The upper teeth continued (over 6 % of the mouth's width), darkening as they go.
        over = t - end
        ext = _smoothstep(0.0, 0.06 * width, over)
        fade = (1.0 - ext) * (1.0 - _smoothstep(0.0, 1.0, t - bottom))  # onto the lip's edge
        fade = np.where(over > 0.0, fade, 1.0).astype(np.float32)
        up[..., :3] *= (fade * (1.0 - 0.35 * ext))[..., None]
        up[..., 3] *= fade
    gap = bottom - top
    middle = float(np.median(gap[gap > 0])) if np.any(gap > 0) else 0.0
    base = _throat(style, dst, grid, tongue=True, top=top, bottom=bottom, height=middle,
                   edge=_gap_tone(style, interior), dark_top=True,
                   darkest=style.teeth_shadow)
    if longer and interior.light is not None:
        # No lower row in the portrait: a wide gap under its teeth shows the tips of lower
        # teeth made of its own (under a driver's lower mouth as it fades in).
        base = _own_lower_teeth(base, interior, dst, s, ss, bottom - t, gap,
                                band=min(0.25 * middle, 0.09 * width), opening=middle / width,
                                head=head,
                                strength=1.0 if driver is None else 1.0 - driver.opacity)
    if driver is not None and driver.opacity > 0.0:
        d = driver.frame
        k = np.float32(d.width / max(dst.width, 1e-6))
        ds = s * k
        d_tl = np.interp(ds, d.sl, d.tl).astype(np.float32)
        above = _driver_lower_rows(driver.interior, d, ds, d_tl, (tl_lip - t) * k,
                                   (tl_lip - top) * k)
        lower = _sample(driver.interior, driver.interior.lower, d, ds, d_tl - above)
        lower *= np.float32(driver.opacity)
        base = _over(base, np.zeros_like(lower), lower)
    return _over(base, up, lo)


DRIVER_LOWER_KEEP = 0.5
"""A driver's lower mouth under a portrait's own teeth (:func:`_driver_lower_rows`): this
share of it next to its lower lip (lower teeth, the tongue's front) is laid as it is ..."""
DRIVER_LOWER_STRETCH = 1.5
"""... the rest (the tongue's back, the dark of the mouth above it) drawn out to reach up to
the portrait's own teeth, to at most this many times the part's own height."""


def _driver_lower_rows(interior: Interior, d: _LipFrame, ds: np.ndarray, d_tl: np.ndarray,
                       above: np.ndarray, room: np.ndarray) -> np.ndarray:
    """How far above the driver's lower lip (``d_tl`` at its columns ``ds``, lip frame
    ``d``) each output pixel samples the driver's lower mouth (driver pixels), the pixel
    being ``above`` over the output's lower lip and the opening having ``room`` up to where
    the portrait's own upper part ends (both in driver pixels). Laid as it is, the driver's
    part ended well short of the portrait's teeth on a mouth opened wider than the
    driver's: a black band of synthetic throat under them, where the driver's own mouth
    showed its dark red palate and tongue. Its part near the lower lip
    (:data:`DRIVER_LOWER_KEEP`) keeps its size; the rest is drawn out over the room, by at
    most :data:`DRIVER_LOWER_STRETCH`."""
    d_tu = np.interp(ds, d.su, d.tu).astype(np.float32)
    depth = interior.lower_depth(np.maximum(d_tl - d_tu, 0.0))
    keep = np.float32(DRIVER_LOWER_KEEP) * depth
    reach = np.minimum(np.maximum(room, 0.0), np.float32(DRIVER_LOWER_STRETCH) * depth)
    span = np.maximum(reach - keep, np.float32(1e-3))
    drawn = np.where(above <= keep, above,
                     np.where(above <= reach, keep + (above - keep) * (depth - keep) / span,
                              above - reach + depth))
    return np.asarray(np.where(reach > depth, drawn, above), np.float32)


LOWER_FROM_UPPER = (1.25, 0.92)
"""A portrait showing no lower teeth of its own gets, in a wide opening, the tips of a lower
row drawn from its own upper teeth turned upside down (:func:`_own_lower_teeth`): this many
of the portrait's teeth widths in one of the lower row's (lower incisors are narrower), at
this shade (in the upper row's shadow)."""


def _own_lower_teeth(base: np.ndarray, interior: Interior, dst: _LipFrame, s: np.ndarray,
                     ss: np.ndarray, above: np.ndarray, gap: np.ndarray, *, band: float,
                     opening: float, head: float, strength: float = 1.0) -> np.ndarray:
    """The tips of lower teeth over ``base`` for a portrait with upper teeth only: its own
    upper teeth's tips, turned upside down (:data:`LOWER_FROM_UPPER`), up to ``band`` px
    high over the line they rise from (``above``: each pixel's height over it; ``ss`` the
    portrait's lip-frame column of each pixel), no more than 0.3 of the opening ``gap``,
    along the lower row's arch (:data:`LOWER_TEETH`) and as far as ``opening`` is past
    :data:`LOWER_TEETH_SHOW`, times ``strength``. The photo's own teeth: its sharpness,
    colour and grain (drawn teeth in its colour read as a grey comb)."""
    show = strength * float(_smoothstep(LOWER_TEETH_SHOW[0], LOWER_TEETH_SHOW[1],
                                        np.array(opening)))
    if show <= 0.0 or band < 0.8:
        return np.asarray(base, np.float32)
    narrow, tone = LOWER_FROM_UPPER
    src = interior.frame
    facing, _, length = _row_shape(LOWER_TEETH, dst, s)
    local = np.minimum(np.float32(band), 0.3 * gap) * np.where(length > 0.0,
                                                               0.7 + 0.3 * facing, 0.0)
    a = 1.0 - _smoothstep(-0.7, 0.7, above - local)
    mid = np.float32(0.5 * src.width)
    ss_lo = mid + (ss - mid) * np.float32(narrow)
    su = np.interp(ss_lo, src.su, src.tu).astype(np.float32)
    sl = np.interp(ss_lo, src.sl, src.tl).astype(np.float32)
    tips = su + interior.upper_end(np.maximum(sl - su, 0.0))
    layer = _sample(interior, interior.upper, src, ss_lo,
                    tips - (local - above) * np.float32(1.0 / head))
    weight = layer[..., 3]
    rgb = layer[..., :3] / np.maximum(weight, 1e-3)[..., None]
    shade = np.float32(tone) * (0.5 + 0.5 * facing)
    # teeth only: the dark between and beside them (the portrait's corners) shows what is
    # behind (a dark wedge where the row runs past the teeth the portrait shows)
    light = float(np.asarray(interior.light, np.float32) @ _LUMA) if interior.light is not None \
        else 255.0
    tooth = _smoothstep(0.45 * light, 0.7 * light, rgb @ _LUMA)
    a = a * weight * tooth * np.sqrt(facing) * np.float32(show)
    return np.asarray(base + (rgb * shade[..., None] - base) * a[..., None], np.float32)


def _gums(layer: np.ndarray, gum: np.ndarray, beyond: np.ndarray, lip_gap: np.ndarray,
          side: np.ndarray | None = None) -> None:
    """In place: ``layer`` (premultiplied, (h, w, 4)) turns into ``gum`` where it is
    ``beyond`` (px) past its row, darker within 3 px of the lip (``lip_gap``) and by
    ``side`` (a factor per pixel: the mouth's sides in shadow). Only those pixels are worked
    on: elsewhere the blend gives the layer back as it was."""
    sel = beyond > 0.0
    if not sel.any():
        return
    a = _smoothstep(0.0, 1.5, beyond[sel])[:, None]
    shade = (GUM_BY_LIP + (1.0 - GUM_BY_LIP) * _smoothstep(0.0, 3.0, lip_gap[sel]))[:, None]
    if side is not None:
        shade = shade * side[sel][:, None]
    px = layer[sel]
    px[:, :3] = px[:, :3] * (1.0 - a) + gum * shade * a
    px[:, 3:4] = px[:, 3:4] * (1.0 - a) + a
    layer[sel] = px


# -- the portrait's mouth ----------------------------------------------------------------------


def _default(values: tuple[float, ...]) -> np.ndarray:
    return np.array(values, np.float32)


@dataclass(frozen=True)
class MouthStyle:
    """What the mouth of one portrait looks like (:func:`prepare_mouth`)."""

    edge: np.ndarray
    """RGB float32 (3,): throat colour next to the lips."""
    core: np.ndarray
    """RGB float32 (3,): throat colour deep inside."""
    own_area: float
    """Area in portrait pixels of the portrait's own mouth opening."""
    lip: np.ndarray = field(default_factory=lambda: _default((150.0, 80.0, 80.0)))
    """RGB float32 (3,): the lips' median colour."""
    skin: np.ndarray = field(default_factory=lambda: _default((190.0, 150.0, 130.0)))
    """RGB float32 (3,): the face skin's median colour."""
    cheek: np.ndarray = field(default_factory=lambda: _default((190.0, 150.0, 130.0)))
    """RGB float32 (3,): the skin beside the mouth corners (median), the colour reference a
    transplanted interior is matched against."""
    chroma: float = 20.0
    """Median chroma (Lab) of the lips and the skin: about 0 for a black-and-white photo."""
    teeth: np.ndarray = field(default_factory=lambda: _default((205.0, 200.0, 190.0)))
    """RGB float32 (3,): the synthetic teeth's colour (the portrait's eye whites,
    desaturated)."""
    own_height: float = 0.0
    """Mean height in portrait pixels of the portrait's own mouth opening."""
    interior: Interior | None = None
    """The portrait's own mouth interior (when its mouth is open), split for rigid teeth."""
    own_pixels: tuple[Box, tuple[int, int], np.ndarray] | None = None
    """The portrait's pixels around its mouth: (box, (image width, height), RGB uint8), to
    recognise the portrait itself handed over as the driving image (:func:`is_portrait`)."""

    @property
    def greyscale(self) -> bool:
        """Whether the portrait has (almost) no colour."""
        return self.chroma < 4.0

    @property
    def own_teeth(self) -> bool:
        """Whether the portrait shows teeth of its own (kept rigid by synthetic mode)."""
        return self.interior is not None and self.interior.teeth

    @functools.cached_property
    def tongue(self) -> tuple[np.ndarray, np.ndarray]:
        """The synthetic tongue's colours in its middle and at its edge (:data:`TONGUE`'s
        shades of the lips, :func:`lip_shade`), made once for the portrait."""
        _, _, middle, rim = TONGUE
        return lip_shade(self.lip, middle), lip_shade(self.lip, rim)

    @functools.cached_property
    def gum(self) -> np.ndarray:
        """The gums' colour (RGB float32): the lips' colour with no more chroma than the
        skin's plus :data:`GUM_CHROMA` (lipstick is not the colour of gums), made once."""
        lab = _to_lab(np.asarray([self.lip, self.skin], np.float32))
        chroma = np.hypot(lab[:, 1], lab[:, 2])
        most = float(chroma[1]) + GUM_CHROMA
        if chroma[0] <= most:
            return np.asarray(self.lip, np.float32)
        lab[0, 1:] *= np.float32(most / chroma[0])
        return np.clip(_to_rgb(lab[:1])[0], 0.0, 255.0).astype(np.float32)

    @functools.cached_property
    def teeth_shadow(self) -> np.ndarray:
        """The darkest of the throat under a portrait's own teeth (:data:`OWN_TEETH_SHADOW`'s
        shade of the lips), made once for the portrait."""
        return lip_shade(self.lip, OWN_TEETH_SHADOW)


def _cheek(image: np.ndarray, frame: _LipFrame) -> np.ndarray | None:
    """RGB of the skin beside the mouth corners (per-channel median of two squares 0.7 mouth
    widths out from the mouth's centre, 0.4 widths wide); None when off the image."""
    if frame.width < 4.0:
        return None
    centre = (frame.inner[0] + frame.inner[10]) * 0.5
    half = 0.5 * frame.width
    patches = []
    for side in (-1.0, 1.0):
        box = _box((centre + side * 1.4 * half * frame.e)[None, :], 0.4 * half, image.shape)
        if box is not None:
            x0, y0, w, h = box
            patches.append(image[y0:y0 + h, x0:x0 + w].reshape(-1, 3))
    if not patches or sum(len(p) for p in patches) < 8:
        return None
    return np.asarray(np.median(np.concatenate(patches), axis=0), np.float32)


def _region(shape: tuple[int, ...], polys: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(p[:, :2]).astype(np.int32) for p in polys], (255,))
    return mask


def _teeth_colour(image: np.ndarray, landmarks: np.ndarray, skin: np.ndarray,
                  lip: np.ndarray) -> np.ndarray:
    """A plausible teeth colour: the brightest eighth of the eyes' whites (else the skin,
    lightened), a little shaded, lighter than the skin (:data:`TEETH_OVER_SKIN`) and no
    darker than the lips; its tint a third of the whites' and some of the skin's warmth
    (:data:`TEETH_WARMTH`)."""
    eyes = _region(image.shape, [landmarks[list(lm.RIGHT_EYE)], landmarks[list(lm.LEFT_EYE)]])
    pixels = image[eyes > 0].astype(np.float32)
    skin_lab = _to_lab(skin)
    if len(pixels) < 20:
        lab = skin_lab.copy()
        lab[0] = min(lab[0] * 1.15 + 8.0, 92.0)
    else:
        labs = _to_lab(pixels)
        lab = labs[labs[:, 0] >= np.percentile(labs[:, 0], 88)].mean(axis=0)
    lab = lab.astype(np.float32)
    floor = max(float(skin_lab[0]) + TEETH_OVER_SKIN, float(_to_lab(lip)[0]))
    lab[0] = float(np.clip(0.9 * lab[0], min(floor, 85.0), 90.0))  # inside the mouth: shade
    # eye whites photograph grey or blue, teeth are a warmer white: some of the skin's
    # warmth (a black-and-white photo's stays grey)
    lab[1:] = 0.3 * lab[1:] + np.asarray(TEETH_WARMTH, np.float32) * skin_lab[1:]
    return np.asarray(_to_rgb(lab), np.float32)


TEETH_OVER_SKIN = 7.0
"""Synthetic teeth are at least this much lighter than the face's skin (Lab L) ..."""
TEETH_WARMTH = (0.4, 0.6)
"""... and take these shares of the skin's a and b (red, yellow) besides a third of the eye
whites' tint. Measured on the real teeth of the fixture clips lp_d0 and lp_d18 (the lightest
15 % of the upper third of the opening, in openings of 0.12 mouth widths or more): L 6-10
over the skin, a 0.45-0.85 and b 0.9-0.95 of the skin's; the eye-white rule before gave L
no more than the skin's and a fifth of its a and b: grey teeth."""


def _shows_teeth(interior: Interior, lip: np.ndarray) -> bool:
    """Whether the upper part of an interior shows teeth: its brightest tenth is about as
    light as the lips or lighter, and clearly lighter than its dark part."""
    w = interior.upper[..., 3]
    sel = w > 0.5
    if sel.sum() < 6:
        return False
    lum = (interior.upper[..., :3] @ _LUMA)[sel] / w[sel]
    p10, p90 = np.percentile(lum, [10, 90])
    return bool(p90 > 0.9 * float(lip @ _LUMA) and p90 > 1.4 * p10 + 8.0)


def _own_pixels(image: np.ndarray, outer: np.ndarray
                ) -> tuple[Box, tuple[int, int], np.ndarray] | None:
    """The pixels around the outer lips ``outer`` (box plus 4 px) for :func:`is_portrait`."""
    box = _box(outer, 4.0, image.shape)
    if box is None:
        return None
    x0, y0, w, h = box
    return box, (image.shape[1], image.shape[0]), image[y0:y0 + h, x0:x0 + w].copy()


def is_portrait(style: MouthStyle, image: np.ndarray) -> bool:
    """Whether ``image`` (RGB uint8, the portrait's aspect, any size) shows the portrait's
    own mouth where the portrait shows it (mean difference below 4 levels): the portrait
    itself handed over as the driving image, as a scripted performance does (it moves
    landmarks over the still portrait). Its pixels then do not show its landmarks' mouth
    and have no interior to give."""
    if style.own_pixels is None:
        return False
    (x0, y0, w, h), (pw, ph), pix = style.own_pixels
    ih, iw = image.shape[:2]
    k = iw / pw
    if abs(ih / ph - k) > 0.01 * k:
        return False
    bx0, by0 = round(x0 * k), round(y0 * k)
    bx1, by1 = round((x0 + w) * k), round((y0 + h) * k)
    if bx1 > iw or by1 > ih or bx1 - bx0 < 2 or by1 - by0 < 2:
        return False
    roi = image[by0:by1, bx0:bx1]
    if roi.shape[:2] != pix.shape[:2]:
        roi = cv2.resize(roi, (w, h), interpolation=cv2.INTER_AREA)
    return float(np.abs(roi.astype(np.float32) - pix.astype(np.float32)).mean()) < 4.0


def _lip_and_skin(image: np.ndarray, pts: np.ndarray
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The lips' and the face skin's median colours (RGB float32 (3,)) and their pixels, of a
    face with landmarks ``pts`` (N, 2) in ``image`` pixels; defaults where too few show."""
    inner, outer = pts[list(lm.LIPS_INNER)], pts[list(lm.LIPS_OUTER)]
    lips_mask = _region(image.shape, [outer])
    cv2.fillPoly(lips_mask, [np.round(inner).astype(np.int32)], (0,))
    lip_px = image[lips_mask > 0]
    lip = (np.median(lip_px.astype(np.float32), axis=0).astype(np.float32)
           if len(lip_px) >= 10 else _default((150.0, 80.0, 80.0)))
    face = _region(image.shape, [pts[list(lm.FACE_OVAL)]])
    k = max(3, round(0.04 * float(np.linalg.norm(outer[10] - outer[0]))) | 1)
    holes = _region(image.shape, [outer, pts[list(lm.RIGHT_EYE)], pts[list(lm.LEFT_EYE)],
                                  pts[list(lm.RIGHT_BROW)], pts[list(lm.LEFT_BROW)]])
    holes = cv2.dilate(holes, np.ones((k, k), np.uint8))
    skin_px = image[(face > 0) & (holes == 0)]
    skin = (np.median(skin_px.astype(np.float32), axis=0).astype(np.float32)
            if len(skin_px) >= 20 else _default((190.0, 150.0, 130.0)))
    return (lip, lip_px), (skin, skin_px)


def teeth_reference(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A face's teeth colour as the portrait's is estimated (:attr:`MouthStyle.teeth`: from
    its eye whites, skin and lips), RGB float32 (3,): a driving face's, measured once on its
    neutral frame (eyes open), matches its teeth to the portrait's in
    :func:`match_colours`."""
    pts = np.asarray(landmarks, np.float64)[:, :2]
    (lip, _), (skin, _) = _lip_and_skin(image, pts)
    return _teeth_colour(image, pts, skin, lip)


def prepare_mouth(image: np.ndarray, landmarks: np.ndarray, *, edge_gain: float = 0.5,
                  core_gain: float = 0.3) -> MouthStyle:
    """Measure once what the mouth modes need of a portrait (``image`` RGB uint8, its face
    mesh ``landmarks`` (N, 2+) in its pixels): lip colour (the throat is its shade,
    :func:`lip_shade`, at ``edge_gain`` by the lips and ``core_gain`` inside), skin colour
    beside the mouth, chroma level (greyscale detection), a teeth colour, the own opening,
    and, when the mouth is open, its interior split for rigid teeth."""
    pts = np.asarray(landmarks, np.float64)[:, :2]
    inner, outer = pts[list(lm.LIPS_INNER)], pts[list(lm.LIPS_OUTER)]
    (lip, lip_px), (skin, skin_px) = _lip_and_skin(image, pts)
    both = np.concatenate([lip_px.reshape(-1, 3), skin_px.reshape(-1, 3)])
    chroma = (float(np.median(np.hypot(*_to_lab(both)[:, 1:].T))) if len(both) >= 10
              else 20.0)
    frame = _LipFrame(inner)
    cheek = _cheek(image, frame)
    interior = None
    if frame.height >= _OWN_OPEN_PX:
        interior = _cut(image, frame, erode_px=0.0, split=None, rgb=None)
        if interior is not None and _shows_teeth(interior, lip):
            # Kept for rigid teeth: cut again, taking a little of the lips' inner edge along
            # (it moves with its lip: the rim of the opening stays the lip), all hanging from
            # the upper lip but the lower lip's edge when there is no gap between teeth rows.
            teeth = _cut(image, frame, erode_px=0.0, split=None, rgb=None, reach_px=_REACH_PX,
                         band_px=max(1.5, 0.025 * frame.width))
            interior = dataclasses.replace(teeth if teeth is not None else interior,
                                           teeth=True)
    return MouthStyle(
        edge=lip_shade(lip, edge_gain), core=lip_shade(lip, core_gain),
        own_area=frame.area, lip=lip, skin=skin,
        cheek=cheek if cheek is not None else skin,
        chroma=chroma, teeth=_teeth_colour(image, pts, skin, lip),
        own_height=frame.height, interior=interior,
        own_pixels=_own_pixels(image, outer))


def mouth_style(image: np.ndarray, landmarks: np.ndarray, *, edge_gain: float = 0.5,
                core_gain: float = 0.3) -> MouthStyle:
    """The portrait's :class:`MouthStyle` (the same as :func:`prepare_mouth`)."""
    return prepare_mouth(image, landmarks, edge_gain=edge_gain, core_gain=core_gain)


# -- the closed mouth's seam -------------------------------------------------------------------

SEAM_BAND = 0.05
"""Half-width (mouth widths, at least 1.5 px) of the band along a closed mouth's lip line in
which :func:`lip_seam` looks for the dark seam ..."""
SEAM_REACH = 0.1
"""... and how far (mouth widths) past the mouth corners it goes (the creases there)."""
SEAM_DARK = 6.0
"""A seam pixel is this many levels darker than its surroundings (a black-hat of about
three band half-widths) and than the lips' median, or more (not the tapering ends of lips
darker than the skin)."""
SEAM_CORNERS = (0.05, 0.2)
"""The corners' part of the seam: fully up to the first distance (mouth widths) in from a
corner, none from the second on. Parted lips keep it while the mouth is as wide as the
portrait's: a smile's corners are dark ..."""
SEAM_NARROW = 0.15
"""... and lose it as the mouth narrows to this share less than the portrait's width (an
"o": the creases would be drawn out into dark wedges beside it)."""


@dataclass(frozen=True, eq=False)
class LipSeam:
    """A closed mouth's pixels with the dark line where its lips meet (and the creases it
    runs into at the corners) filled from the lips and the skin around it
    (:func:`lip_seam`)."""

    box: Box
    """Where the pixels are in the portrait."""
    patch: np.ndarray
    """(h, w, 4) uint8: the box's pixels with the seam filled (RGB) and how much of the
    corners' part of the seam each is (255: all)."""
    mask: np.ndarray
    """(h, w) uint8: 255 where the seam was."""
    width: float
    """The mouth's width (inner corner to inner corner, portrait pixels)."""


def lip_seam(image: np.ndarray, landmarks: np.ndarray, style: MouthStyle) -> LipSeam | None:
    """The seam of the portrait's closed mouth filled in (``image`` RGB uint8, its face mesh
    ``landmarks`` (N, 2+) in its pixels); None when the mouth is open (its own interior is
    painted instead) or shows no dark line.

    Warped, the seam goes wherever the lips go: open the mouth and the line is drawn out
    around the opening as a dark rim, and its ends at the corners into dark wedges. Where
    the lips have parted they show their own colour instead (:func:`open_lip_seam`). The
    seam: pixels within :data:`SEAM_BAND` of the line between the inner lips (carried on
    :data:`SEAM_REACH` past the corners) that are :data:`SEAM_DARK` darker than around them
    and than the lips; filled by OpenCV's Telea inpainting."""
    if style.interior is not None:
        return None
    pts = np.asarray(landmarks, np.float64)[:, :2]
    frame = _LipFrame(pts[list(lm.LIPS_INNER)])
    if frame.width < 4.0:
        return None
    mid = 0.5 * (pts[list(lm.LIPS_INNER_UPPER)] + pts[list(lm.LIPS_INNER_LOWER)])
    c0, c1 = pts[lm.LIPS_OUTER_UPPER[0]], pts[lm.LIPS_OUTER_UPPER[-1]]
    reach = SEAM_REACH * frame.width * frame.e
    line = np.vstack([c0 - reach, c0, mid, c1, c1 + reach])
    half = max(1.5, SEAM_BAND * frame.width)
    box = _box(line, 3.0 * half + 2.0, image.shape)
    if box is None:
        return None
    x0, y0, w, h = box
    roi = np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w])
    band = np.zeros((h, w), np.uint8)
    cv2.polylines(band, [np.round((line - [x0, y0]) * 16.0).astype(np.int32)], False, (255,),
                  max(1, round(2.0 * half)), cv2.LINE_8, 4)
    k = 2 * round(1.5 * half) + 1
    grey = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY)
    dark = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    below_lips = grey.astype(np.float32) <= float(style.lip @ _LUMA) - SEAM_DARK
    found = ((band > 0) & (dark >= SEAM_DARK) & below_lips).astype(np.uint8) * 255
    if int(np.count_nonzero(found)) < 4:
        return None
    mask = np.asarray(cv2.dilate(found, np.ones((3, 3), np.uint8)), np.uint8)
    s = frame.along(box)
    near, far = SEAM_CORNERS
    inward = np.minimum(s, frame.width - s) / frame.width
    corners = 1.0 - _smoothstep(near, far, inward)
    filled = cv2.inpaint(roi, mask, 3.0, cv2.INPAINT_TELEA)
    # Between the corners the fill is lip, and no lighter than the lips: the inpainting
    # also draws on the lips' highlights and the skin past the corners, and a light fill
    # drawn out around an opened mouth was a pale rim inside the lips.
    lighter = filled.astype(np.float32)
    luma = lighter @ _LUMA
    cap = np.minimum(np.float32(float(style.lip @ _LUMA)) / np.maximum(luma, 1.0), 1.0)
    gain = 1.0 + (cap - 1.0) * (1.0 - corners)
    keep = (mask > 0)[..., None]
    filled = np.where(keep, np.clip(lighter * gain[..., None] + 0.5, 0, 255), filled
                      ).astype(np.uint8)
    patch = np.dstack([filled, np.rint(corners * 255.0).astype(np.uint8)])
    return LipSeam(box=box, patch=patch, mask=mask, width=frame.width)


def _parted(gap: np.ndarray | float, own_height: float, head: float) -> np.ndarray:
    """How far lips ``gap`` px apart have parted, 0 .. 1: from 0.5 to 3 px beyond the
    portrait's own opening ``own_height`` at the head scale ``head`` (as the synthetic
    interior fades in)."""
    return np.asarray(np.clip((np.asarray(gap, np.float32) - np.float32(own_height * head + 0.5))
                              * np.float32(1.0 / 2.5), 0.0, 1.0), np.float32)


def _seam_state(points: np.ndarray, seam: LipSeam, own_height: float, head: float
                ) -> tuple[_LipFrame, np.ndarray, float]:
    """The output's lip frame, how far its lips have parted at each upper inner lip point
    (:func:`_parted`) and the corners' share (:func:`seam_shares`)."""
    frame = _LipFrame(np.asarray(points, np.float64)[list(lm.LIPS_INNER), :2])
    at = _parted(frame.gaps(), own_height, head)
    narrow = 1.0 - frame.width / max(seam.width * head, 1e-6)
    corners = float(_parted(frame.height, own_height, head)) * float(
        np.clip(narrow / SEAM_NARROW, 0.0, 1.0))
    return frame, at, corners


def seam_shares(points: np.ndarray, seam: LipSeam, *, own_height: float, head: float
                ) -> tuple[float, float]:
    """How much of the seam the output's lips (``points`` (N, 2+)) lose, 0 .. 1, in the
    middle where they have parted most and at the corners: the middle as the lips part
    (:func:`_parted`; the portrait's own opening ``own_height``, the head scale ``head``),
    the corners as the mouth, parted on the whole, also narrows (:data:`SEAM_NARROW`)."""
    _, at, corners = _seam_state(points, seam, own_height, head)
    return float(at.max()), corners


def open_lip_seam(out: np.ndarray, source: np.ndarray, seam: LipSeam, points: np.ndarray,
                  *, own_height: float, head: float) -> None:
    """In place: around the output's lips (``points`` (N, 2+) in ``out`` pixels) the warp's
    pixels are sampled again from the seam-free mouth (``source``: the warp's source map,
    (H, W, 2) float32 portrait positions per output pixel) and blended in as far as the
    lips have parted there (along the mouth: a lopsided grin keeps the line where its lips
    still meet; :func:`seam_shares`). Pixels whose source is outside the seam's box, or
    unchanged by the fill, stay bit for bit as they were."""
    frame, at, corners = _seam_state(points, seam, own_height, head)
    if float(at.max()) <= 0.0 and corners <= 0.0:
        return
    outer = np.asarray(points, np.float64)[list(lm.LIPS_OUTER), :2]
    width = float(np.linalg.norm(outer[10] - outer[0]))
    box = _box(outer, (SEAM_REACH + 0.1) * width + 2.0, out.shape)
    if box is None:
        return
    x0, y0, w, h = box
    sx, sy = seam.box[:2]
    maps = np.asarray(source[y0:y0 + h, x0:x0 + w] - np.array([sx, sy], np.float32),
                      np.float32)
    roi = out[y0:y0 + h, x0:x0 + w]
    # outside the patch the remap leaves the portrait's own pixels: they blend to themselves
    filled = cv2.cvtColor(roi, cv2.COLOR_RGB2RGBA)
    sample_at(seam.patch, maps, interpolation=SHARP_SAMPLING,  # as the warp samples the face
              border=cv2.BORDER_TRANSPARENT, dst=filled)
    parted = np.interp(frame.along(box), frame.su, at).astype(np.float32)  # each column's own
    c = cv2.extractChannel(filled, 3).astype(np.float32) * np.float32(1.0 / 255.0)
    share = np.asarray(parted + c * (np.float32(corners) - parted), np.float32)
    roi[...] = cv2.blendLinear(roi, cv2.cvtColor(filled, cv2.COLOR_RGBA2RGB), 1.0 - share,
                               share)


# -- painting: the flat fill of old ------------------------------------------------------------


def fill_mouth(image: np.ndarray, inner_lips: np.ndarray, style: MouthStyle,
               area_scale: float = 1.0) -> float:
    """Paint a flat dark interior inside the output's inner-lip polygon ``inner_lips`` (20, 2,
    in :data:`calibrate.landmarks.LIPS_INNER` order: mouth corners at 0 and 10),
    in place. ``area_scale`` converts portrait areas to output areas (head scale squared).
    Returns the paint's opacity (0 when nothing was painted). The simple predecessor of
    :func:`synthetic_mouth`."""
    area = polygon_area(inner_lips)
    if area < 1.0:
        return 0.0
    opacity = float(np.clip(1.0 - style.own_area * area_scale / area, 0.0, 1.0))
    # A barely parted mouth is a shadow, not a black line: fade in over 0.5 .. 3 px of
    # mean opening height.
    width = float(np.linalg.norm(inner_lips[0] - inner_lips[len(inner_lips) // 2]))
    height = area / max(width, 1.0)
    opacity *= float(np.clip((height - 0.5) / 2.5, 0.0, 1.0))
    if opacity <= 0.01:
        return 0.0
    h, w = image.shape[:2]
    x0, y0 = np.floor(inner_lips.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(inner_lips.max(axis=0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    roi = image[y0:y1, x0:x1]
    poly = np.round((inner_lips - [x0, y0]) * 16.0).astype(np.int32)
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [poly], (255,), cv2.LINE_AA, 4)
    if height >= 4.0:
        # Cover the rim of a real opening too: the coarse warp grid leaves a jagged seam.
        cv2.polylines(mask, [poly], True, (255,), 2, cv2.LINE_AA, 4)
    # Depth: distance from the lips, relative to the opening's half-height.
    depth = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 3)
    half = max(float(depth.max()), 1.0)
    t = np.clip(depth / half, 0.0, 1.0)[..., None]
    colour = style.edge * (1.0 - t) + style.core * t
    alpha = (mask.astype(np.float32) * (opacity / 255.0))[..., None]
    blended = roi.astype(np.float32) * (1.0 - alpha) + colour * alpha
    roi[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return opacity


# -- painting: the synthetic interior ----------------------------------------------------------


def _throat(style: MouthStyle, frame: _LipFrame, grid: tuple[np.ndarray, ...],
            *, tongue: bool, top: np.ndarray | None = None, bottom: np.ndarray | None = None,
            height: float | None = None, edge: np.ndarray | None = None,
            dark_top: bool = False, darkest: np.ndarray | None = None) -> np.ndarray:
    """The synthetic interior (h, w, 3) float32 between ``top`` and ``bottom`` (output lip
    frame ``t`` per pixel; default: the lips): a throat in the lip hue, darkest in the middle
    and towards the back corners, but only as dark as the gap is wide (a narrow gap is a
    soft shadow, fully dark from :data:`THROAT_DARK_AT` mouth widths); with ``tongue`` a
    tongue low in a wide opening (``height``: the mean gap, default the opening's);
    ``edge``: the colour next to the lips (default ``style.edge``); ``dark_top``: in a wide
    gap (from :data:`DARK_TOP_FROM` to :data:`DARK_TOP_FULL` mouth widths) dark from the
    top down to the middle too: the shadow under a portrait's own upper teeth, which end in
    the darkness between its rows (lit at the top, the throat met them in a hard step);
    ``darkest``: a colour the throat is nowhere lighter than, with ``dark_top`` as far as
    the gap is a yell's (under a portrait's own teeth: :data:`OWN_TEETH_SHADOW` of the lips'
    colour, no lighter step under them; speech keeps the lighter throat)."""
    s, t, tu, tl = grid
    top = tu if top is None else top
    bottom = tl if bottom is None else bottom
    gap = np.maximum(bottom - top, 1e-3)
    v = np.clip((t - top) / gap, 0.0, 1.0)
    width = max(frame.width, 1.0)
    u = np.clip(s * np.float32(1.0 / width), 0.0, 1.0)
    if dark_top:
        shadow = _smoothstep(DARK_TOP_FROM * width, DARK_TOP_FULL * width, gap)
        depth = np.minimum(2.0 * v + (1.0 - 2.0 * v) * shadow, 2.0 * (1.0 - v))
    else:
        depth = np.minimum(v, 1.0 - v) * 2.0
    depth = np.clip(np.maximum(depth, 1.0 - np.minimum(u, 1.0 - u) * 6.0), 0.0, 1.0)
    depth *= _smoothstep(0.0, THROAT_DARK_AT * width, gap)
    edge = style.edge if edge is None else edge
    core: list[Any] = list(style.core)
    if darkest is not None:  # with dark_top: as the gap widens into a yell's
        weight = shadow if dark_top else np.float32(1.0)
        core = [c + (min(c, d) - c) * weight for c, d in zip(core, darkest, strict=True)]
    # channel by channel: numpy broadcasts over a trailing axis of 3 slowly (same values)
    colour = [e + (k - e) * depth for e, k in zip(edge, core, strict=True)]
    height = frame.height if height is None else height
    if tongue and height > 5.0:
        # An ellipse resting on the lower lip, lit from the front (TONGUE).
        reach, most, _, _ = TONGUE
        du = (u - 0.5) * np.float32(1.0 / 0.36)
        dv = (1.0 - v) * np.minimum(gap, 1.6 * height) * np.float32(
            1.0 / min(reach * height, most * width))
        r = np.sqrt(du * du + dv * dv)
        a = (1.0 - _smoothstep(0.75, 1.0, r)) * np.float32(min((height - 5.0) / 6.0, 1.0))
        towards_edge = np.clip(r, 0.0, 1.0)
        middle, rim = style.tongue
        for c, m, e in zip(colour, middle, rim, strict=True):
            c += (m + (e - m) * towards_edge - c) * a
    return np.asarray(cv2.merge(colour), np.float32)


OWN_TEETH_SHADOW = 0.16
"""Under a portrait's own upper teeth the throat is no lighter than the lips' colour's shade
at this share (:func:`lip_shade`; the shadow of the teeth and the palate: a yell's dark under
the teeth)."""
DARK_TOP_FROM = 0.15
DARK_TOP_FULL = 0.3
"""The gap (mouth widths) between a portrait's own teeth rows from which the throat under
them is dark from the top, and from which fully (:func:`_throat`: speech keeps its lit
top, a yell gets the shadow under the teeth)."""
TONGUE = (0.8, 0.35, 0.9, 0.55)
"""The synthetic tongue: how high its top rises over the lower lip (a share of the
opening's height, at most the second value of the mouth's width), how light its middle is
and how light its edge (shades of the lips' colour at these shares: :func:`lip_shade`).
Measured on the fixture clips' real mouths open a quarter of their width or more (inner-lip
polygon cut into four bands, top to bottom): 0.5-0.9, 0.4-0.65, 0.65-0.8 and 0.7-1.5 of the
lips' colour; lp_d18's yell (open two thirds of its width) shows its tongue up to about a
third of the width over its lower lip. Before: half the opening's height, 0.45-0.65 of the
lips' colour over a throat at 0.16 of it: a black hole with a dim tongue."""
THROAT_DARK_AT = 0.12
"""A gap between the lips (or teeth rows) this wide, in mouth widths, is fully dark inside;
a narrower one only partly (a soft shadow, not a black slit)."""


@dataclass(frozen=True)
class _Row:
    """A row of teeth as seen from the front: its teeth's edges along the dental arch (angle
    from the middle, radians) and, for each tooth from one end to the other (one more than
    edges: the outermost runs on past the last edge), its length (a share of the row's
    height) and its tip: how much shorter it is at its sides (a share of its length) and how
    the tip rounds (the power of the distance from its middle: 4 a flat edge with rounded
    corners, an incisor; 1.5 a point, a canine). ``arch``: the arch's half width, a share of
    the mouth's half width."""

    edges: tuple[float, ...]
    lengths: tuple[float, ...]
    tips: tuple[float, ...]
    powers: tuple[float, ...]
    arch: float

    def tables(self, width: float) -> tuple[np.ndarray, ...]:
        """Along a mouth ``width`` px wide, tabulated: ``(s, facing, edge, length)``: how
        squarely each place of the row faces the camera (0..1), how near it is to an edge
        between teeth (1 on it), and the length of its tooth there (a share of the row's
        height, 0 beyond the arch)."""
        s = np.linspace(0.0, width, max(int(width * 3), 8))
        x = (s / width - 0.5) * (2.0 / self.arch)
        phi = np.arcsin(np.clip(x, -1.0, 1.0))
        facing = np.maximum(np.cos(phi), 0.0) ** 1.5
        edges = np.asarray(self.edges)
        d = (phi[:, None] - edges[None, :]) * (0.5 * width)
        near = np.exp(-(d * d) / 0.9).max(axis=1)
        k = np.searchsorted(edges, phi)  # the tooth: 0 .. len(edges)
        lo = edges[np.clip(k - 1, 0, len(edges) - 1)]
        hi = edges[np.clip(k, 0, len(edges) - 1)]
        inside = (k > 0) & (k < len(edges))
        w = np.where(inside, 2.0 * (phi - lo) / np.maximum(hi - lo, 1e-6) - 1.0, 0.0)
        tip, power = np.asarray(self.tips)[k], np.asarray(self.powers)[k]
        length = np.asarray(self.lengths)[k] * (1.0 - tip * np.abs(w) ** power)
        return s, facing, near, np.where(np.abs(x) <= 1.0, length, 0.0)


UPPER_TEETH = _Row(edges=(-1.1, -0.88, -0.62, -0.33, 0.0, 0.33, 0.62, 0.88, 1.1),
                   lengths=(0.7, 0.8, 0.95, 0.86, 1.0, 1.0, 0.86, 0.95, 0.8, 0.7),
                   tips=(0.0, 0.15, 0.3, 0.2, 0.16, 0.16, 0.2, 0.3, 0.15, 0.0),
                   powers=(4.0, 4.0, 1.5, 4.0, 4.0, 4.0, 4.0, 1.5, 4.0, 4.0), arch=0.92)
"""The upper teeth: central and lateral incisors, canines (pointed), premolars; the central
incisors longest."""
LOWER_TEETH = _Row(edges=(-1.1, -0.72, -0.42, -0.2, 0.0, 0.2, 0.42, 0.72, 1.1),
                   lengths=(0.6, 0.75, 1.0, 0.95, 0.9, 0.9, 0.95, 1.0, 0.75, 0.6),
                   tips=(0.0, 0.15, 0.3, 0.15, 0.15, 0.15, 0.15, 0.3, 0.15, 0.0),
                   powers=(4.0, 4.0, 1.5, 4.0, 4.0, 4.0, 4.0, 1.5, 4.0, 4.0), arch=0.72)
"""The lower teeth: a narrower arch of smaller incisors, the canines pointed."""
UPPER_SHOW = (0.4, 0.15)
"""The synthetic upper teeth show under the upper lip over this share of the opening's
height, at most the second value of the mouth's width (front teeth about a sixth of a
smiling mouth's width high)."""
LOWER_TEETH_SHOW = (0.1, 0.2)
"""A synthetic interior shows lower teeth from this opening (height over width) on, fully
from the second value: a mouth opened that far shows the tips of its lower teeth over the
lower lip."""


def _row_shape(row: _Row, frame: _LipFrame, s: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`_Row.tables` at each pixel's ``s``: facing, edge nearness, tooth length."""
    s_tab, *tabs = row.tables(max(frame.width, 1.0))
    facing, near, length = (np.interp(s, s_tab, tab).astype(np.float32) for tab in tabs)
    return facing, near, length


def _teeth_hint(style: MouthStyle, frame: _LipFrame, grid: tuple[np.ndarray, ...],
                base: np.ndarray) -> np.ndarray:
    """Teeth over ``base``: upper teeth under the upper lip, a band of
    :data:`UPPER_SHOW` of the opening's height, and in a wider opening
    (:data:`LOWER_TEETH_SHOW`) the tips of the lower teeth over the lower lip; each row
    shaded along its dental arch (darker and narrower towards the corners, faint edges
    between teeth, each tooth's own length and rounded tip: :data:`UPPER_TEETH`,
    :data:`LOWER_TEETH`) and into shadow at its lip."""
    s, t, tu, tl = grid
    band = min(UPPER_SHOW[0] * frame.height, UPPER_SHOW[1] * frame.width)
    if band < 0.8:
        return base
    gap = np.maximum(tl - tu, 0.0)
    # corners close over the teeth
    out = _upper_teeth(style, frame, s, t - tu, np.minimum(band, 0.45 * gap), base)
    band = min(0.22 * frame.height, 0.08 * frame.width)
    return _lower_teeth(out, style.teeth, frame, s, tl - t, gap, band=band,
                        opening=frame.height / max(frame.width, 1.0))


def _lower_teeth(base: np.ndarray, colour: np.ndarray, frame: _LipFrame, s: np.ndarray,
                 above: np.ndarray, gap: np.ndarray, *, band: float | np.ndarray,
                 opening: float, strength: float = 1.0, most: float = 0.3) -> np.ndarray:
    """The tips of the lower teeth (:data:`LOWER_TEETH`, in ``colour``) over ``base``, up
    to ``band`` px high (a number, or one per pixel) over the line they rise from
    (``above``: each pixel's height over it) and no more than ``most`` of the opening
    ``gap`` there; shown as far as ``opening`` (height over width) is past
    :data:`LOWER_TEETH_SHOW`, times ``strength`` (none: ``base`` itself)."""
    show = strength * float(_smoothstep(LOWER_TEETH_SHOW[0], LOWER_TEETH_SHOW[1],
                                        np.array(opening)))
    if show <= 0.0 or float(np.max(band)) < 0.8:
        return np.asarray(base, np.float32)
    facing, near, length = _row_shape(LOWER_TEETH, frame, s)
    local = np.minimum(band, most * gap) * length
    a = 1.0 - _smoothstep(-0.7, 0.7, above - local)
    lit = 0.8 + 0.2 * _smoothstep(0.2, 0.9, above / np.maximum(local, 1e-3))  # the tips
    shade = 0.95 * (0.45 + 0.55 * facing) * (1.0 - 0.15 * near) * lit
    a *= np.sqrt(facing) * np.float32(show)
    return np.asarray(base + (colour * shade[..., None] - base) * a[..., None], np.float32)


JAW_ROWS = (0.03, 0.2, 0.1)
"""Synthetic teeth on the jaws (:func:`_jaw_rows`): the upper teeth's tips this far (a share
of the mouth's width) below the portrait's closed lip line as the upper jaw carries it; the
most of the upper teeth a retracted upper lip shows, and of the lower teeth a dropped lower
lip shows (it rests on them: a lower lip further down takes the row along). Measured on the
fixture clips (tracked landmarks against frame 0): a smile parts the lips by 0.19-0.24 of the
mouth's width while the jaws part by 0.02-0.04, the upper lip 0.13-0.19 above the upper jaw's
line; a yell (lp_d18) parts the jaws by 0.21-0.24."""


def _jaw_rows(style: MouthStyle, frame: _LipFrame, grid: tuple[np.ndarray, ...],
              anchors: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The synthetic interior of a portrait without teeth of its own, its teeth on the jaws
    (``anchors``: :func:`jaw_anchors`): the upper row hangs from the upper jaw with its tips
    a little below the portrait's closed lip line (:data:`JAW_ROWS`), the lower row rises
    from the lower jaw to that line, in front of it the upper row; only a dropped jaw opens a
    gap between them, where the throat and the tongue show. A smile that draws the lips back
    shows the teeth together, as real smiles do (the opening's share of teeth used to follow
    the lips' gap alone: a smile opened onto a dark throat)."""
    s, t, tu, tl = grid
    width = max(frame.width, 1.0)
    tip, most_up, most_low = (np.float32(v * width) for v in JAW_ROWS)
    up_tips = _anchor_line(frame, anchors[0], s) + tip
    low_tips = np.maximum(_anchor_line(frame, anchors[1], s), tl - most_low)
    low_tips = np.maximum(low_tips, up_tips - tip)  # (no higher than the closed line)
    gap = np.maximum(low_tips - up_tips, 0.0)
    middle = float(np.median(gap[gap > 0])) if np.any(gap > 0) else 0.0
    base = _throat(style, frame, grid, tongue=True, top=np.minimum(up_tips, tl),
                   bottom=np.maximum(low_tips, tu), height=middle)
    # the lower row first: the upper one is in front of it
    base = _lower_teeth(base, style.teeth, frame, s, tl - t, np.maximum(tl - tu, 0.0),
                        band=np.clip(tl - low_tips, 0.0, most_low), opening=1.0, most=1.0)
    return _upper_teeth(style, frame, s, t - tu, np.clip(up_tips - tu, 0.0, most_up), base)


def _upper_teeth(style: MouthStyle, frame: _LipFrame, s: np.ndarray, below: np.ndarray,
                 band: np.ndarray | float, base: np.ndarray) -> np.ndarray:
    """The upper teeth (:data:`UPPER_TEETH`) over ``base``, ``band`` px long (a number, or
    one per pixel) under the upper lip (``below``: each pixel's depth under it), shaded
    along the arch, towards their tips and into the lip's shadow."""
    facing, near, length = _row_shape(UPPER_TEETH, frame, s)
    local = band * length
    a = 1.0 - _smoothstep(-0.7, 0.7, below - local)
    tip = 0.82 + 0.18 * (1.0 - _smoothstep(0.55, 1.0, below / np.maximum(local, 1e-3)))
    lip_shadow = 0.72 + 0.28 * _smoothstep(0.0, 2.0, below)
    shade = (0.45 + 0.55 * facing) * (1.0 - 0.15 * near) * tip * lip_shadow
    a *= 0.25 + 0.75 * np.sqrt(facing)
    return np.asarray(base + (style.teeth * shade[..., None] - base) * a[..., None], np.float32)


def jaw_anchors(portrait: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the portrait's teeth rows go: its upper inner lip line moved as the upper jaw
    moved (a similarity fitted on :data:`UPPER_JAW`, portrait -> output landmarks) and its
    lower inner lip line moved as the lower jaw did (:data:`LOWER_JAW`); (11, 2) each, in
    output pixels."""
    p = np.asarray(portrait, np.float64)[:, :2]
    q = np.asarray(output, np.float64)[:, :2]
    upper = apply_affine(_jaw_fit(p, q, _UPPER_JAW), p[_INNER_UPPER])
    lower = apply_affine(_jaw_fit(p, q, _LOWER_JAW), p[_INNER_LOWER])
    return upper, lower


_UPPER_JAW, _LOWER_JAW = np.array(UPPER_JAW), np.array(LOWER_JAW)
_INNER_UPPER, _INNER_LOWER = np.array(lm.LIPS_INNER_UPPER), np.array(lm.LIPS_INNER_LOWER)
_JAW_SOURCES: dict[bytes, tuple[np.ndarray, np.ndarray, float]] = {}


def _jaw_fit(p: np.ndarray, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``fit_similarity(p[ids], q[ids])``, the portrait's side (the same every frame) kept
    by its bytes."""
    src = p[ids]
    key = src.tobytes()
    fixed = _JAW_SOURCES.get(key)
    if fixed is None:
        if len(_JAW_SOURCES) > 16:
            _JAW_SOURCES.clear()
        centre = src.mean(axis=0)
        centred = src - centre
        fixed = _JAW_SOURCES[key] = (centre, centred, float(np.sum(centred * centred)))
    return fit_similarity_from(*fixed, q[ids])


MAX_GUM_SHOW = 0.0
"""How far (share of the mouth's width) the upper lip may draw back above the portrait's
own upper teeth, between the :data:`CORNER_TAPER` zones: not at all. What a photo hides
above its teeth (the rest of their crowns, the gums) is not in it, and drawn there as gum
it showed as a mauve band across the mouth on every broad smile (0.06: deepface_img1 and
lp_s42 driven by lp_d0)."""
CORNER_TAPER = 0.3
""":func:`limit_lip_retraction` holds the upper lip down fully from this share of the
mouth's width in from either corner, less and less towards the corner, where it does not."""
GUM_SIDE_SHADOW = (0.4, 0.9, 0.65)
"""Gums darken towards the mouth's corners, as a real mouth's sides fall into shadow: from
the first share of the half-width out from the middle to the second, by the third share."""


GUM_TONE = 1.0
"""Gums (where a lip drawn back shows more than a portrait's own teeth) in the lips' median
colour (no redder than :data:`GUM_CHROMA` allows: :attr:`MouthStyle.gum`) times this: at
0.92, and 0.8 of that within 3 px of the lip, the demo's broad smile (frames 78-100) showed
a dull brown band with a dark line under the lip, read as a gap."""
GUM_CHROMA = 15.0
"""Gums have at most this much more chroma (Lab) than the skin beside the mouth
(:attr:`MouthStyle.gum`). Natural lips on the fixture portraits have at most 12.5 more
than their skin (the demo's astronaut 23 against 21, the glasses man 30 against 18, the
Mona Lisa 34 against 38); lp_s42's lipstick has 44 against 11, and its gums showed
lipstick red."""
GUM_BY_LIP = 0.93
"""... and this much of it within 3 px of the lip (its shadow)."""


MAX_LOWER_GUM = 0.03
"""How much gum (share of the mouth's width) shows between a dropped lower lip and the
portrait's own lower row (:func:`_own_over`)."""


def limit_lip_retraction(points: np.ndarray, anchors: tuple[np.ndarray, np.ndarray], *,
                         max_share: float = MAX_GUM_SHOW) -> None:
    """In place: an upper lip drawn back further than ``max_share`` of the mouth's width
    above where the upper teeth are (``anchors[0]``, :func:`jaw_anchors`) is put back down to
    that limit: for a portrait that shows its teeth, relative motion from a closed driving
    mouth would otherwise lift an already smiling lip far above its teeth.

    The hold is full from :data:`CORNER_TAPER` of the width in from either corner and fades
    to nothing at the corners (held down as far next to its corners as in the middle, a
    grin's lip hooked below its own corners and crossed the lower lip: thin dark strokes
    past the corners), and never takes the upper lip below the lower one. The whole lip
    (its four rows, corners aside) moves by one amount per place along the mouth, a smooth
    function of that place: rows and neighbouring triangles cannot fold over."""
    inner_up = list(lm.LIPS_INNER_UPPER)
    pts = points[:, :2]
    c0 = pts[inner_up[0]].copy()
    across = pts[inner_up[-1]] - c0
    width = float(np.hypot(across[0], across[1]))
    if width < 1e-6:
        return
    e = across / width
    down = np.array([-e[1], e[0]])  # image y is down
    rise = (np.asarray(anchors[0], np.float64)[1:-1] - pts[inner_up[1:-1]]) @ down
    excess = np.maximum(rise - max_share * width, 0.0)
    if not excess.any():
        return
    along = np.maximum.accumulate(((pts[inner_up[1:-1]] - c0) @ e) / width)
    excess *= _smoothstep(0.0, CORNER_TAPER, np.minimum(along, 1.0 - along))
    gap = (pts[list(lm.LIPS_INNER_LOWER)[1:-1]] - pts[inner_up[1:-1]]) @ down
    excess = np.minimum(excess, np.maximum(gap, 0.0))
    at = np.concatenate([[min(0.0, float(along[0]))], along, [max(1.0, float(along[-1]))]])
    amount = np.concatenate([[0.0], excess, [0.0]])
    lip = sorted({i for row in (lm.LIPS_OUTER_UPPER, *lm.LIPS_UPPER_MIDDLE, lm.LIPS_INNER_UPPER)
                  for i in row[1:-1]})
    place = ((pts[lip] - c0) @ e) / width
    pts[lip] += np.interp(place, at, amount)[:, None] * down


def _synthetic(out: np.ndarray, frame: _LipFrame, style: MouthStyle, area_scale: float,
               feather_px: float,
               anchors: tuple[np.ndarray, np.ndarray] | None = None,
               driver: DriverLower | None = None) -> float:
    if frame.area < 1.0 or frame.width < 3.0:
        return 0.0
    opacity = float(np.clip((frame.height - 0.5) / 2.5, 0.0, 1.0))
    head = float(np.sqrt(max(area_scale, 1e-9)))
    # How much more (or less) open than the portrait's own mouth, in opening height.
    ratio = frame.height / max(style.own_height * head, 1e-6)
    rigid = style.own_teeth
    own_width = 0.0
    if rigid:  # the warp stretches or squeezes the teeth: replace as soon as it shows
        assert style.interior is not None
        own_width = style.interior.frame.width * head
        change = max(abs(ratio - 1.0), abs(frame.width / max(own_width, 1e-6) - 1.0))
        opacity *= float(np.clip(change / 0.05, 0.0, 1.0))
    else:
        opacity *= float(np.clip((ratio - 1.05) / 0.6, 0.0, 1.0))
    if opacity <= 0.01:
        return 0.0
    box = _box(frame.inner, 2.0 + feather_px, out.shape)
    if box is None:
        return 0.0
    grid = frame.grid(box)
    if rigid:
        assert style.interior is not None
        colour = _own_over(style, style.interior, frame, grid, head, anchors, driver)
        colour *= np.float32(pursed_shade(frame.width, own_width))
    elif anchors is not None:
        colour = _jaw_rows(style, frame, grid, anchors)
    else:
        colour = _teeth_hint(style, frame, grid, _throat(style, frame, grid, tongue=True))
    soft = SYNTHETIC_SOFTNESS * min(frame.width, 4.0 * frame.height)
    if not rigid and soft > 0.2:
        # drawn, not photographed: as soft as a photo's mouth, not crisper than the lips
        colour = cv2.GaussianBlur(colour, (0, 0), soft)
    _composite(out, box, colour, _polygon_mask(frame.inner, box, feather_px)
               * np.float32(opacity))
    return opacity


SYNTHETIC_SOFTNESS = 0.01
"""A drawn interior (:func:`_teeth_hint`, :func:`_jaw_rows`) is blurred by this share of the
mouth's width (Gaussian sigma; about 1 px for a mouth 100 px wide), or of four times its
opening's height when that is less (a narrow opening's thin bands stay apart): drawn sharp,
its teeth's edges and the tongue's rim were crisper than any photo's mouth around them."""
PURSED_DARK_AT = 0.35
"""An opening this narrow (of the portrait's own mouth width) or narrower shows its inside at
:data:`PURSED_DARKEST` of its light ..."""
PURSED_DARKEST = 0.25
PURSED_LIGHT_AT = 0.85
"""... and one this wide or wider at full light."""


def pursed_shade(width: float, own_width: float) -> float:
    """How much light reaches the inside of a mouth opening ``width`` px wide whose own (the
    portrait's, at output scale) is ``own_width``: pursed lips, pushed forward around a small
    opening, shadow the teeth behind them (a round "o" shows dark, not a row of teeth)."""
    narrow = width / max(own_width, 1e-6)
    k = (narrow - PURSED_DARK_AT) / (PURSED_LIGHT_AT - PURSED_DARK_AT)
    return float(PURSED_DARKEST + (1.0 - PURSED_DARKEST) * np.clip(k, 0.0, 1.0))


def synthetic_mouth(out: np.ndarray, out_inner: np.ndarray, style: MouthStyle, *,
                    area_scale: float = 1.0, feather_px: float = 1.0) -> float:
    """Paint a synthesised interior into ``out`` (RGB uint8, in place) inside the inner-lip
    polygon ``out_inner`` (20, 2, :data:`calibrate.landmarks.LIPS_INNER` order):

    - a portrait with teeth of its own: its interior's upper part hanging from the upper
      inner lip, its lower part riding on the lower one, at the head scale
      ``sqrt(area_scale)`` (:func:`_own_over`), the teeth a little longer and a throat (as
      dark as the gap is wide) between them; painted as soon as the opening differs from the
      portrait's own by 5 % (else the warp shows the teeth as they are);
    - otherwise a dark throat in the lip hue with a hint of upper teeth and a tongue, fading
      in as the mouth opens beyond the portrait's own opening.

    ``area_scale``: portrait -> output area ratio (head scale squared); ``feather_px``: the
    soft edge. Returns the opacity (0: nothing painted)."""
    return _synthetic(out, _LipFrame(out_inner), style, area_scale, feather_px)


# -- painting: the driving face's interior -----------------------------------------------------


def match_colours(rgb: np.ndarray, reference: np.ndarray, style: MouthStyle, *,
                  shift: float = 0.5, teeth: np.ndarray | None = None) -> np.ndarray:
    """Driving-face RGB pixels (..., 3) in the portrait's colours; ``reference`` is the RGB of
    the driver's skin beside its mouth, matched to ``style.cheek``:

    - saturation is scaled by the portrait's chroma level (``style.chroma`` / 10, at most 1:
      a black-and-white portrait gives grey);
    - lightness by (the skins' luma ratio) ** 0.7, within 0.6 .. 1.5;
    - each channel by (the skins' ratio, lightness aside) ** ``shift``, within 0.6 .. 1.6:
      the portrait's colour cast (a painting's palette, a sepia print), proportional, so a
      dark throat stays dark.

    With ``teeth`` (the driver's teeth colour, :func:`teeth_reference`), the pixels that look
    like it (light and no redder than it: :data:`TEETH_LIKE_LIGHT`,
    :data:`TEETH_LIKE_RED`) take the portrait's teeth colour (``style.teeth``) instead,
    as light as they are against the driver's (a ratio within :data:`TEETH_GAIN`): the skins'
    ratio holds for flesh, but teeth are no darker or greener for a darker or olive skin (a
    painting's brown skin made the driver's teeth khaki).

    Returns RGB float32 (not clipped)."""
    k = np.float32(np.clip(style.chroma / 10.0, 0.0, 1.0))
    ref = np.asarray(reference, np.float32)
    ref_luma = float(ref @ _LUMA)
    ref = ref_luma + (ref - ref_luma) * k  # the driver's skin, as desaturated as the pixels
    own = np.asarray(style.cheek, np.float32)
    lum = float(own @ _LUMA) / max(ref_luma, 1.0)
    cast = np.clip((own + 1.0) / (ref + 1.0) / max(lum, 1e-3), 0.6, 1.6) ** shift
    gain = (cast * np.clip(lum ** 0.7, 0.6, 1.5)).astype(np.float32)
    pix = np.asarray(rgb, np.float32)
    luma = (pix @ _LUMA)[..., None]
    grey = luma + (pix - luma) * k
    flesh = np.asarray(grey * gain, np.float32)
    if teeth is None:
        return flesh
    drv = np.asarray(teeth, np.float32)
    drv_luma = float(drv @ _LUMA)
    share = luma[..., 0] / max(drv_luma, 1.0)
    red = _to_lab(pix)[..., 1] - float(_to_lab(drv)[1])  # Lab a* over the teeth colour's
    like = (_smoothstep(*TEETH_LIKE_LIGHT, share)
            * (1.0 - _smoothstep(*TEETH_LIKE_RED, red)))[..., None]
    # the portrait's teeth colour, lit as the driver's teeth are (their tint is the
    # driver's light: lp_d13's purple-grey teeth came out blue beside a warm skin)
    lit = np.clip(share, *TEETH_GAIN)[..., None] * np.asarray(style.teeth, np.float32)
    return np.asarray(flesh + like * (lit - flesh), np.float32)


TEETH_LIKE_LIGHT = (0.55, 0.85)
"""A driving pixel is matched as teeth (:func:`match_colours`) as its luma rises over these
shares of the driver's teeth colour's ..."""
TEETH_LIKE_RED = (4.0, 12.0)
"""... and as its redness (Lab a*) stays below the teeth colour's plus these (full below the
first, none above the second): a tongue and the lips are red (a* 20-40), the teeth not
(0-10), whatever the light's tint."""
TEETH_GAIN = (0.5, 1.5)
"""A matched tooth's lightness against the portrait's teeth colour: its own against the
driver's teeth colour, within these."""


LIP_EDGE_FALL = 0.5
"""The lower lip's inner edge in a driving image: where, going up from the lip, its redness
(Lab a*) has fallen this share of the way from the lip's to the mouth's above it."""
LIP_EDGE_SEARCH = 0.1
"""How far (share of the mouth's width) above the face mesh's lower inner-lip line the edge
is looked for."""
LIP_EDGE_CONTRAST = 4.0
"""A fall of redness smaller than this (Lab a*) is no edge (a tongue against the lip): there
the line stays."""
LIP_EDGE_MAX = 0.3
"""The line moves up by at most this share of the opening's height where it is."""
LIP_EDGE_WIDE = (0.3, 0.45)
"""A driving mouth's opening (mean height over width) over which its lower lip's strip
inside the line comes in: below, (speech, a smile over the teeth) the face mesh's line lies
on the edge, and a strip read there would be teeth."""


def _inward_normals(inner: np.ndarray, idx: np.ndarray, inward: np.ndarray) -> np.ndarray:
    """Unit normals (len(idx), 2) of the polygon ``inner`` at its points ``idx``, on the side
    of ``inward``."""
    tangent = inner[(idx + 1) % len(inner)] - inner[idx - 1]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.maximum(np.hypot(normal[:, 0], normal[:, 1]), 1e-9)[:, None]
    return np.asarray(np.where((normal @ inward)[:, None] < 0.0, -normal, normal))


def lower_lip_edge(image: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The inner-lip polygon ``inner`` (20, 2, LIPS_INNER order, ``image`` pixels) with its
    lower line moved up onto the lower lip's inner edge as ``image`` (RGB uint8) shows it.

    On wide openings the face mesh puts the lower inner lip a few pixels inside the lip
    (measured: 2-3 px of a 256 px driving crop on a yell); an interior cut along it brings
    a strip of the lip along, a second lower lip in the portrait's opening. Along each
    point's normal the redness profile is read from 3 px below the line to
    :data:`LIP_EDGE_SEARCH` of the width above it: from its peak on the lip, the first steep
    fall (at least half the steepest; not a fall further in, from a dark red throat to
    teeth) is the edge, where it has come :data:`LIP_EDGE_FALL` of the way down. A profile
    with no fall of :data:`LIP_EDGE_CONTRAST` keeps its point; no point moves up by more
    than :data:`LIP_EDGE_MAX` of the opening there, or down; the corners stay."""
    inner = np.asarray(inner, np.float64)[:, :2]
    frame = _LipFrame(inner)
    reach = LIP_EDGE_SEARCH * frame.width
    if frame.width < 8.0 or frame.height < 1.0:
        return inner.copy()
    idx = _LOWER[1:-1]
    normal = _inward_normals(inner, idx, -frame.n)
    ds = np.arange(-3.0, reach + 0.25, 0.5)
    where = inner[idx][:, None, :] + ds[None, :, None] * normal[:, None, :]
    box = _box(where.reshape(-1, 2), 2.0, image.shape)
    if box is None:
        return inner.copy()
    x0, y0, w, h = box
    rgb = cv2.remap(np.asarray(image[y0:y0 + h, x0:x0 + w], np.float32),
                    (where[..., 0] - x0).astype(np.float32),
                    (where[..., 1] - y0).astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    red = cv2.cvtColor(rgb * np.float32(1 / 255), cv2.COLOR_RGB2Lab)[..., 1]
    red = cv2.GaussianBlur(red, (3, 1), 0)  # along each profile: 1/4, 1/2, 1/4
    gap = np.interp(frame.sl[1:-1], frame.su, frame.tu)  # upper lip above each point
    gap = frame.tl[1:-1] - gap
    moved = inner.copy()
    for j, profile in enumerate(red):
        peak = int(np.argmax(np.where(ds <= 2.0, profile, -np.inf)))
        drop = -np.diff(profile[peak:])  # per step, going up from the lip's reddest
        if drop.size == 0 or float(profile[peak] - profile[peak:].min()) < LIP_EDGE_CONTRAST:
            continue
        # The first steep fall (at least half the steepest): the lip's edge, not a fall
        # further in (a dark red throat at a corner, then teeth).
        start = int(np.flatnonzero(drop >= 0.5 * drop.max())[0])
        end = start
        while end + 1 < drop.size and drop[end + 1] > 0.25 * drop.max():
            end += 1
        top, low = float(profile[peak + start]), float(profile[peak + end + 1])
        if top - low < LIP_EDGE_CONTRAST:
            continue
        level = top - LIP_EDGE_FALL * (top - low)
        k = peak + start + 1 + int(np.flatnonzero(profile[peak + start + 1:] <= level)[0])
        share = (profile[k - 1] - level) / max(float(profile[k - 1] - profile[k]), 1e-6)
        edge = ds[k - 1] + (ds[k] - ds[k - 1]) * share  # between the two samples
        up = float(np.clip(edge, 0.0, LIP_EDGE_MAX * max(gap[j], 0.0)))
        moved[idx[j]] += up * normal[j]
    return moved


def _driver_opening(out: _LipFrame, drv: _LipFrame) -> float:
    """The driver's mean opening height at output scale (not above the output's own)."""
    if drv.width < 3.0 or out.width < 3.0:
        return 0.0
    return min(drv.height * out.width / drv.width, out.height)


def _transplant_opacity(frame: _LipFrame, drv: _LipFrame, style: MouthStyle,
                        area_scale: float) -> float:
    """Fades in as the driver's opening grows from 2 to 4 px (output scale) and as the
    output opens from 1.05 to 1.35 times the portrait's own opening."""
    if frame.area < 1.0:
        return 0.0
    opacity = float(np.clip((_driver_opening(frame, drv) - _MIN_OPEN_PX) / 2.0, 0.0, 1.0))
    own = style.own_height * float(np.sqrt(max(area_scale, 1e-9)))
    ratio = frame.height / max(own, 1e-6)
    return opacity * float(np.clip((ratio - 1.05) / 0.3, 0.0, 1.0))


class _DriverMouth(NamedTuple):
    frame: _LipFrame
    """The driving mouth's lip frame (the face mesh's lines)."""
    opacity: float
    """How much of its interior shows (:func:`_transplant_opacity`)."""
    strip: tuple[np.ndarray, np.ndarray] | None
    """Where its lower lip reaches above its lower line (:func:`lower_lip_edge`): at shares
    of the mouth's width (11,), how far (output px, (11,)); None where it does not."""


def _driver_mouth(image: np.ndarray, inner: np.ndarray, frame: _LipFrame, style: MouthStyle,
                  area_scale: float) -> _DriverMouth:
    """The driving mouth (inner-lip polygon ``inner`` in ``image``) as it shows in the
    output's opening ``frame``."""
    drv = _LipFrame(inner)
    opacity = _transplant_opacity(frame, drv, style, area_scale)
    wide = float(_smoothstep(*LIP_EDGE_WIDE, np.array(drv.height / max(drv.width, 1.0))))
    if opacity <= 0.01 or wide <= 0.0:
        return _DriverMouth(drv, opacity, None)
    edge = lower_lip_edge(image, inner)[_LOWER]
    rise = np.hypot(*(edge - inner[_LOWER]).T) * wide * frame.width / drv.width
    for _ in range(2):  # a smooth band along the lip (one point's miss made a notch)
        rise[1:-1] = 0.25 * rise[:-2] + 0.5 * rise[1:-1] + 0.25 * rise[2:]
    if rise.max() < 0.25:
        return _DriverMouth(drv, opacity, None)
    return _DriverMouth(drv, opacity, (drv.sl / drv.width, rise))


def _lip_over_strip(out: np.ndarray, frame: _LipFrame, strip: tuple[np.ndarray, np.ndarray],
                    opacity: float) -> None:
    """The output's lower lip carried up over ``strip`` (see :class:`_DriverMouth`) above
    its inner line, in place: the lip's inner edge drawn out, feathered at the top. The
    driving interior there shows the driver's own lip; laid into the portrait's opening,
    that was a second lower lip (grey or pale once colour-matched)."""
    along, rise = strip
    box = _box(frame.inner[_LOWER], float(rise.max()) + 3.0, out.shape)
    if box is None:
        return
    x0, y0, _, _ = box
    s, t, _, tl = frame.grid(box)
    reach = np.interp(s / np.float32(max(frame.width, 1e-6)), along, rise).astype(np.float32)
    above = tl - t  # px above the lower line
    # 2 px below the line (clear of its feathered edge and a dark seam) and down: the
    # lip's inner edge drawn out 4x (mirrored whole, the lip's highlight showed as a light
    # line at the top)
    mirror = tl + np.float32(2.0) + np.float32(0.25) * np.maximum(above, 0.0)
    ex, ey = np.float32(frame.e[0]), np.float32(frame.e[1])
    mx = np.float32(frame.c0[0] - x0) + s * ex - mirror * ey
    my = np.float32(frame.c0[1] - y0) + s * ey + mirror * ex
    roi = out[y0:y0 + s.shape[0], x0:x0 + s.shape[1]].astype(np.float32)
    lip = cv2.remap(roi, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # drawn out, the lip's texture streaks: smoothed along the mouth
    lip = cv2.GaussianBlur(lip, (0, 0), sigmaX=2.0, sigmaY=0.5)
    alpha = ((1.0 - _smoothstep(-0.75, 0.75, above - reach)) * _smoothstep(-1.0, 0.0, above)
             * _smoothstep(0.0, 1.0, s) * _smoothstep(0.0, 1.0, frame.width - s))
    _composite(out, box, lip, alpha * np.float32(opacity))


DRIVER_SPLIT = ((0.15, 0.85), 0.1)
"""Where a driving interior is split into the part hanging from the upper lip and the part
riding on the lower (:func:`_split_at_gap`): within these shares of the opening from the
upper lip, the highest band no more than this share of the lightness profile's range above
its darkest. A yell shows its throat right under the upper teeth and its tongue, lying on
the jaw, below; the line under the tongue is often a little darker than the throat (lp_d18,
frame 140), and split there (the darkest band below 0.35, as a portrait's own teeth are
split) the tongue hung from the upper lip."""


def _driver_cut(driver_image: np.ndarray, drv: _LipFrame, style: MouthStyle,
                teeth: np.ndarray | None = None) -> Interior | None:
    """The driving face's interior, in the portrait's colours (:func:`match_colours`, its
    teeth by ``teeth``); None when its mouth is (partly) off the driving crop or has no
    opening."""
    hd, wd = driver_image.shape[:2]
    pts = drv.inner
    if pts.min() < 0 or pts[:, 0].max() > wd - 1 or pts[:, 1].max() > hd - 1:
        return None
    reference = _cheek(driver_image, drv)
    dbox = _box(pts, 2.0 + TRANSPLANT_REACH_PX, driver_image.shape)
    if reference is None or dbox is None:
        return None
    x0, y0, w, h = dbox
    rgb = np.clip(match_colours(driver_image[y0:y0 + h, x0:x0 + w], reference, style,
                                teeth=teeth), 0.0, 255.0)
    return _cut(driver_image, drv, erode_px=0.0, split=None, rgb=rgb, search=DRIVER_SPLIT,
                reach_px=TRANSPLANT_REACH_PX)


def _transplant(out: np.ndarray, frame: _LipFrame, driver_image: np.ndarray,
                mouth: _DriverMouth, style: MouthStyle, feather_px: float,
                base: np.ndarray | None, teeth: np.ndarray | None = None) -> float:
    opacity = mouth.opacity
    if opacity <= 0.01:
        return 0.0
    box = _box(frame.inner, 2.0 + feather_px, out.shape)
    interior = _driver_cut(driver_image, mouth.frame, style, teeth) if box is not None \
        else None
    if box is None or interior is None:
        return 0.0
    grid = frame.grid(box)
    under = base if base is not None else _throat(style, frame, grid, tongue=False)
    colour = _columns_over(under, interior, mouth.frame, frame, grid)
    _composite(out, box, colour, _polygon_mask(frame.inner, box, feather_px)
               * np.float32(opacity))
    if mouth.strip is not None:
        _lip_over_strip(out, frame, mouth.strip, opacity)
    return opacity


def transplant_mouth(out: np.ndarray, out_inner: np.ndarray, driver_image: np.ndarray,
                     driver_inner: np.ndarray, portrait_stats: MouthStyle, *,
                     feather_px: float = 1.0, area_scale: float = 1.0,
                     base: np.ndarray | None = None,
                     driver_teeth: np.ndarray | None = None) -> float:
    """Carry the driving face's mouth interior into ``out`` (RGB uint8, in place) inside the
    output's inner-lip polygon ``out_inner`` (20, 2, LIPS_INNER order); ``driver_inner``
    (20, 2) is the driver's inner-lip polygon in ``driver_image`` (RGB uint8) pixels. Where
    a wide-open driver's lower lip reaches above its lower line (:func:`lower_lip_edge`), the
    output's lower lip is carried on over that strip (its inner edge drawn out) instead of
    showing the driver's lip, colour-matched, as a second lower lip.

    The driver's interior is split at the gap between its teeth and laid into the output's
    opening column by column: the upper part keeps its distance from the upper lip, the lower
    part from the lower lip (scaled by the mouths' width ratio); where the output opens
    further than the driver, a dark throat in the portrait's lip hue shows between them
    (``base``: another colour under the layers, (h, w, 3) over the output polygon's box
    plus ``2 + feather_px``). Colours are matched to ``portrait_stats``
    (:func:`match_colours`; its teeth to the portrait's teeth by ``driver_teeth``, the
    driver's :func:`teeth_reference`); the edge is feathered over ``feather_px``.

    Returns the opacity: 0 (nothing done) when the driver's mouth is closed (opening below
    2 px at output scale), off its image, the output's opening is below 2 px or no larger
    than the portrait's own (``area_scale``: portrait -> output area ratio; the portrait's
    own mouth stays as it is); it fades in from 2 to 4 px and from 1.05 to 1.35 times the
    portrait's own opening."""
    frame = _LipFrame(out_inner)
    mouth = _driver_mouth(driver_image, driver_inner, frame, portrait_stats, area_scale)
    return _transplant(out, frame, driver_image, mouth, portrait_stats, feather_px, base,
                       driver_teeth)


def render_mouth(out: np.ndarray, out_points: np.ndarray, style: MouthStyle, *,
                 mode: str, driver_image: np.ndarray | None = None,
                 driver_points: np.ndarray | None = None, area_scale: float = 1.0,
                 feather_px: float = 1.0,
                 anchors: tuple[np.ndarray, np.ndarray] | None = None,
                 driver_teeth: np.ndarray | None = None) -> str:
    """Paint the mouth interior of one output frame in place; says what was painted:
    ``"driver"``, ``"synthetic"`` or ``"none"``.

    ``out_points``: the output landmarks (N, 2+) in ``out`` pixels; ``style``: the
    portrait's :class:`MouthStyle`; ``mode``: ``"driver"`` (the driving face's interior:
    ``driver_image`` RGB uint8 and its landmarks ``driver_points`` (N, 2+) in its pixels;
    falls back to synthetic when they are None, the driving image is the portrait itself
    (:func:`is_portrait`), the driving mouth is closed or off its image, or the output is no
    more open than the portrait's own mouth; while the transplant
    fades in the synthetic interior shows under it), ``"synthetic"``
    (:func:`synthetic_mouth`) or ``"off"``; ``area_scale``: portrait ->
    output area ratio (head scale squared); ``feather_px``: the soft edge; ``anchors``: the
    jaws' lines (:func:`jaw_anchors`) the teeth hang from (a portrait's own, or the
    synthetic ones: :func:`_jaw_rows`; without them the synthetic teeth follow the lips);
    ``driver_teeth``: the driving face's teeth colour (:func:`teeth_reference`), by which its
    teeth are told and given the portrait's teeth colour (None: they take the skins' match).
    A portrait that
    shows teeth of its own keeps them in both modes (the driver's would replace its
    identity's teeth): they move with the jaws, not the lips; in driver mode, where its mouth
    opens wider than the portrait's own, the driver's lower mouth (tongue, lower teeth) shows
    between them (:class:`DriverLower`; then ``"driver"`` is returned)."""
    if mode not in MOUTH_MODES:
        raise ValueError(f"mouth mode must be one of {', '.join(MOUTH_MODES)}, got {mode!r}")
    if mode == "off":
        return "none"
    frame = _LipFrame(np.asarray(out_points, np.float64)[list(lm.LIPS_INNER), :2])
    painted = -1.0  # synthetic mode not run yet
    if (mode == "driver" and driver_image is not None and driver_points is not None
            and not is_portrait(style, driver_image)):
        mouth = _driver_mouth(
            driver_image, np.asarray(driver_points, np.float64)[list(lm.LIPS_INNER), :2],
            frame, style, area_scale)
        drv, shown = mouth.frame, mouth.opacity
        if style.own_teeth:  # its own teeth, over the driver's lower mouth
            cut = _driver_cut(driver_image, drv, style, driver_teeth) if shown > 0.01 \
                else None
            lower = DriverLower(cut, drv, shown) if cut is not None else None
            painted = _synthetic(out, frame, style, area_scale, feather_px, anchors, lower)
            if painted > 0.0 and lower is not None:
                if mouth.strip is not None:
                    _lip_over_strip(out, frame, mouth.strip, shown * painted)
                return "driver"
        else:
            if shown < 1.0:  # shows what is under
                painted = _synthetic(out, frame, style, area_scale, feather_px, anchors)
            if _transplant(out, frame, driver_image, mouth, style, feather_px, None,
                           driver_teeth) > 0.0:
                return "driver"
    if painted < 0.0:
        painted = _synthetic(out, frame, style, area_scale, feather_px, anchors)
    return "synthetic" if painted > 0.0 else "none"
