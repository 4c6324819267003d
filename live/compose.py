"""Compositing: paste animated face crops back into a picture, and fit pictures to an output.

- :func:`paste_back` warps a square crop into a canvas with its ``crop_to_frame`` affine and
  blends it through a feathered mask (an ellipse by default, or the convex hull of landmarks),
  so no seam or box edge shows; optionally it matches the crop's colours to the canvas in the
  mask's soft ring. Only the region the crop covers is touched, so it is cheap for a small face
  in a large picture, and it can be called several times on one canvas (several faces).
- :func:`letterbox` scales an image into an output size, keeping its aspect, with black bars;
  :func:`letterbox_transform` is the same mapping as a 2x3 affine (both live in
  :mod:`live.geometry`, with the other crop and point maths, and are re-exported here).
- :class:`Compositor` is the live hot path: one portrait framed once in the output size (a
  :class:`~live.geometry.Framing`: letterboxed, or cut around the face like a webcam picture,
  the photo's edge extended where the output shows more), its face mask warped once; each
  frame only the face region is warped and blended. Given the portrait's person matte it
  frames that too, and :meth:`Compositor.compose_matte` pastes the animated crop's matte
  into it exactly where :meth:`Compositor.compose` pastes the crop (the output's person
  matte for :mod:`live.background`); :func:`paste_matte` is :func:`paste_back` for mattes.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from live.geometry import (
    EXTENSION_SHARP,
    MATTE_FADE,
    Framing,
    compose_affine,
    covered_region,
    extension_blend,
    frame_matte,
    frame_picture,
    framing_transform,
    letterbox,
    letterbox_transform,
    matte_keep,
    offset_affine,
)
from live.packets import check_rgb

log = logging.getLogger(__name__)

__all__ = [
    "Compositor",
    "crop_mask",
    "eased_mask",
    "ellipse_mask",
    "hull_mask",
    "letterbox",
    "letterbox_transform",
    "paste_back",
    "paste_matte",
]


def _check_affine(m: np.ndarray, name: str = "crop_to_frame") -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3) or not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: expected a finite 2x3 affine matrix, got shape {m.shape}")
    return m


def _blur_sigma(size: int, feather: float) -> float:
    return max(0.0, float(feather)) * size


def ellipse_mask(size: int, *, feather: float = 0.08, margin: float | None = None) -> np.ndarray:
    """A float32 (size, size) mask in [0, 1]: a blurred ellipse inscribed in the crop.

    ``feather`` is the blur's standard deviation as a fraction of ``size``. The ellipse is
    inset (``margin``, default ``2.5 * feather``, as a fraction of ``size``) so the blurred
    edge falls to ~0 before the crop border: no box edge shows after pasting.
    """
    if size < 2:
        raise ValueError(f"size: expected >= 2, got {size}")
    if margin is None:
        margin = 2.5 * max(feather, 0.0) + 0.01
    margin = min(max(margin, 0.0), 0.45)
    mask = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    axes = (max(1, round(size * (0.5 - margin))), max(1, round(size * (0.5 - margin))))
    cv2.ellipse(mask, (round(c), round(c)), axes, 0, 0, 360, (1.0,), thickness=-1,
                lineType=cv2.LINE_AA)
    return _feather(mask, _blur_sigma(size, feather))


def crop_mask(size: int, picture: tuple[int, int, int, int], *,
              feather: float = 0.08) -> np.ndarray:
    """A float32 (size, size) mask in [0, 1] to paste a whole animated crop with: 1 over
    the crop's ``picture`` part (``(x0, y0, x1, y1)``, :func:`live.geometry.photo_box`), 0
    over the border it made up beyond the photo. Along a side where the crop cuts into its
    photo the mask eases to 0 at the crop's edge over ``2.5 * feather`` of the side (where
    the feathered :func:`ellipse_mask` of ``feather`` ends); along the photo's own edge it
    stays 1 up to that edge, where the picture itself ends (:func:`eased_mask`).

    For an engine that keeps its crop's picture still away from the person (its optional
    ``pastes_whole_crop``, :class:`live.engines.base.Engine`): the ellipse left everything
    outside it as the photo has it, so hair and shoulders that moved past it were drawn
    twice, once moved and once as a faint copy where they had been."""
    return eased_mask(size, picture, ease=2.5 * max(float(feather), 0.0))


def eased_mask(size: int, picture: tuple[int, int, int, int], *, ease: float) -> np.ndarray:
    """A float32 (size, size) mask in [0, 1]: 1 over ``picture`` (``(x0, y0, x1, y1)`` of
    the crop), 0 beyond it, and along each side where ``picture`` reaches the crop's own
    edge easing (smoothstep) to 0 at that edge over ``ease`` of the side (at least a
    pixel)."""
    if size < 2:
        raise ValueError(f"size: expected >= 2, got {size}")
    x0, y0, x1, y1 = (int(v) for v in picture)
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise ValueError(f"picture: expected a box within the {size} px crop, got {picture}")
    band = max(ease * size, 1.0)
    at = np.arange(size, dtype=np.float32) + 0.5

    def along(lo: int, hi: int) -> np.ndarray:
        r = np.ones(size, np.float32)
        if lo == 0:  # the box reaches the crop's edge on this side
            r = np.minimum(r, at / band)
        if hi == size:
            r = np.minimum(r, (size - at) / band)
        r = np.clip(r, 0.0, 1.0)
        r = r * r * (3.0 - 2.0 * r)
        r[:lo] = 0.0
        r[hi:] = 0.0
        return r

    return np.outer(along(y0, y1), along(x0, x1)).astype(np.float32)


def hull_mask(landmarks: np.ndarray, size: int, *, feather: float = 0.04,
              grow: float = 0.0) -> np.ndarray:
    """A float32 (size, size) mask: the convex hull of ``landmarks`` (N, 2+) in crop pixels,
    grown by ``grow`` (fraction of the hull's size, about its centre) and blurred by ``feather``
    (fraction of ``size``)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] < 2:
        raise ValueError(f"landmarks: expected an (N>=3, 2 or 3) array, got shape {pts.shape}")
    pts = pts[:, :2]
    if grow:
        centre = pts.mean(axis=0)
        pts = centre + (pts - centre) * (1.0 + grow)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, hull, (1.0,), lineType=cv2.LINE_AA)
    return _feather(mask, _blur_sigma(size, feather))


@functools.lru_cache(maxsize=16)
def _default_mask(width: int, height: int, feather: float) -> np.ndarray:
    """The feathered ellipse mask for a crop of this size (cached: it costs a large blur)."""
    side = max(width, height)
    mask = ellipse_mask(side, feather=feather)
    if (width, height) != (side, side):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA)
    mask.flags.writeable = False
    return mask


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    if sigma > 0.3:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma,
                                borderType=cv2.BORDER_CONSTANT)
    return np.clip(mask, 0.0, 1.0).astype(np.float32, copy=False)


def _color_transfer(src: np.ndarray, ref: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Match ``src``'s per-channel mean/std to ``ref``'s over the ``ring`` pixels (bool mask)."""
    ring8 = ring.astype(np.uint8)
    if cv2.countNonZero(ring8) < 16:
        return src
    s_mean, s_std = (v.ravel() for v in cv2.meanStdDev(src, mask=ring8))
    r_mean, r_std = (v.ravel() for v in cv2.meanStdDev(ref, mask=ring8))
    gain = np.clip((r_std + 1e-3) / (s_std + 1e-3), 0.5, 2.0)
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip((levels - s_mean) * gain + r_mean + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(src, lut.reshape(1, 256, 3))


def _blend_into(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> None:
    """dst = dst * (1 - alpha) + src * alpha, in place (uint8 images, float32 alpha)."""
    inv = 1.0 - alpha
    dst[...] = cv2.blendLinear(src, dst, alpha, inv)


def paste_back(canvas_rgb: np.ndarray, crop_rgb: np.ndarray, crop_to_frame: np.ndarray, *,
               feather: float, mask: np.ndarray | None = None, color_transfer: bool = False,
               out: np.ndarray | None = None) -> np.ndarray:
    """Paste ``crop_rgb`` into ``canvas_rgb`` where ``crop_to_frame`` puts it; returns the result.

    ``crop_to_frame`` is the 2x3 affine from crop pixels to canvas pixels (as in
    :class:`~live.packets.FaceCrop`). ``mask`` is a float (crop H, crop W) weight in [0, 1]
    (for example :func:`hull_mask` of the face landmarks); when None a feathered
    :func:`ellipse_mask` of ``feather`` is used. With ``color_transfer`` the crop's colours are
    matched (mean/std per channel) to the canvas in the mask's soft ring before blending.
    The canvas is not modified unless it is passed as ``out`` (several faces in one picture:
    call again with ``out=`` the previous result).
    """
    check_rgb(canvas_rgb, "canvas_rgb")
    check_rgb(crop_rgb, "crop_rgb")
    m = _check_affine(crop_to_frame)
    ch, cw = crop_rgb.shape[:2]
    if mask is None:
        mask = _default_mask(cw, ch, round(float(feather), 4))
    else:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (ch, cw):
            raise ValueError(f"mask: expected shape {(ch, cw)} (the crop's), got {mask.shape}")
    if out is None:
        out = canvas_rgb.copy()
    elif out.shape != canvas_rgb.shape or out.dtype != np.uint8:
        raise ValueError(f"out: expected a uint8 array of shape {canvas_rgb.shape}, "
                         f"got {out.dtype} {out.shape}")
    elif out is not canvas_rgb:
        out[...] = canvas_rgb
    roi = covered_region(m, cw, ch, out.shape[1], out.shape[0])
    if roi is None:
        return out
    x0, y0, x1, y1 = roi
    local = offset_affine(m, x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(crop_rgb, local, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, local, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))
    region = out[y0:y1, x0:x1]
    if color_transfer:
        ring = (alpha > 0.05) & (alpha < 0.6)
        warped = _color_transfer(warped, region, ring)
    _blend_into(region, warped, alpha)
    return out


def _check_matte(matte: np.ndarray, size: int) -> np.ndarray:
    m = np.asarray(matte)
    if m.dtype != np.uint8 or m.shape != (size, size):
        raise ValueError(f"crop_matte: expected uint8 ({size}, {size}) (255 = person), got "
                         f"{m.dtype} {m.shape}")
    return m


def paste_matte(canvas: np.ndarray, crop_matte: np.ndarray, crop_to_frame: np.ndarray, *,
                mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """:func:`paste_back` for a person matte: ``crop_matte`` (uint8, the crop's size) blended
    into ``canvas`` (uint8 (H, W), in place) where ``crop_to_frame`` puts the crop, through
    ``mask`` (float32 in [0, 1], the crop's size; the one its picture was pasted with).
    Returns the canvas region it touched, ``(x0, y0, x1, y1)``, or None."""
    m = _check_affine(crop_to_frame)
    ch, cw = crop_matte.shape[:2]
    _check_matte(crop_matte, ch)
    roi = covered_region(m, cw, ch, canvas.shape[1], canvas.shape[0])
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    local = offset_affine(m, x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(crop_matte, local, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.asarray(mask, np.float32), local, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))
    region = canvas[y0:y1, x0:x1]
    region[...] = cv2.blendLinear(warped, region, alpha, 1.0 - alpha)
    return roi


@dataclass(frozen=True, slots=True)
class _Prepared:
    roi: tuple[int, int, int, int] | None
    local: np.ndarray
    alpha: np.ndarray | None


@dataclass(frozen=True, eq=False)
class _EdgeMirror:
    """Rows (``axis`` 0) or columns (1) of a framed output beyond the photo's edge, ``dst``,
    whose extension is made of the photo's ``src`` (mirrored; for a person matte, its edge
    row repeated); ``span`` the pasted columns (rows) along that edge; ``weight`` (float32,
    one per ``dst``) the share of ``src`` there (:func:`~live.geometry.extension_blend`,
    :func:`~live.geometry.matte_keep`)."""

    axis: int
    dst: np.ndarray
    src: np.ndarray
    span: slice
    weight: np.ndarray

    def follow(self, out: np.ndarray, background: np.ndarray) -> None:
        """In place: the extension's part made of ``src`` in ``out`` changed as the pasted
        photo pixels there changed from ``background`` (an RGB picture, or a matte)."""
        extra = (None,) * (out.ndim - 2)
        if self.axis == 0:
            now, was = out[self.src, self.span], background[self.src, self.span]
            base, w = background[self.dst, self.span], self.weight[(slice(None), None, *extra)]
        else:
            now, was = out[self.span, self.src], background[self.span, self.src]
            base, w = background[self.span, self.dst], self.weight[(None, slice(None), *extra)]
        moved = base.astype(np.float32) + w * (now.astype(np.float32) - was.astype(np.float32))
        value = np.clip(moved + 0.5, 0.0, 255.0).astype(np.uint8)
        if self.axis == 0:
            out[self.dst, self.span] = value
        else:
            out[self.span, self.dst] = value


def _edge_mirrors(region: tuple[int, int, int, int], framing: Framing, *,
                  matte: bool = False) -> tuple[_EdgeMirror, ...]:
    """The :class:`_EdgeMirror` of each side where the paste ``region`` reaches the photo's
    edge and the output goes on beyond it: of the picture's extension (the photo's edge
    mirrored, :func:`~live.geometry.frame_picture`), or with ``matte`` of the person
    matte's (the photo's edge row repeated and faded, :func:`~live.geometry.frame_matte`)."""
    x0, y0, x1, y1 = region
    px0, py0, px1, py1 = framing.photo_rect
    ow, oh = framing.output_size
    reach = int(np.ceil((MATTE_FADE if matte else EXTENSION_SHARP) * oh))
    edges = []
    # (axis, touches, the first pixel beyond the photo, outwards, room beyond, inside, span)
    for axis, touches, edge, step, beyond, inside, span in (
            (0, y0 == py0, py0 - 1, -1, py0, y1 - y0, slice(x0, x1)),
            (0, y1 == py1, py1, 1, oh - py1, y1 - y0, slice(x0, x1)),
            (1, x0 == px0, px0 - 1, -1, px0, x1 - x0, slice(y0, y1)),
            (1, x1 == px1, px1, 1, ow - px1, x1 - x0, slice(y0, y1))):
        k = min(reach, beyond, inside if matte else inside - 1)
        if not touches or k < 1:
            continue
        j = np.arange(1, k + 1)
        dst = edge + step * (j - 1)
        if matte:  # the photo's edge row, repeated
            src = np.full(k, edge - step)
            weight = matte_keep(j.astype(np.float32), oh)
        else:  # reflected about the photo's last pixel (REFLECT_101)
            src = edge - step * (j + 1)
            weight = 1.0 - extension_blend(j.astype(np.float32), oh)
        weight = np.asarray(weight, np.float32)
        keep = weight > 0.5 / 255.0
        if keep.any():
            edges.append(_EdgeMirror(axis, dst[keep], src[keep], span, weight[keep]))
    return tuple(edges)


@dataclass(frozen=True, eq=False)
class _FramedPaste:
    """The per-frame paste of a framed portrait, prepared once (see :func:`_framed_paste`):
    the crop resized to ``size`` (w, h) lands with its top-left pixel at ``origin`` (x, y);
    only ``region`` (x0, y0, x1, y1 of the output) is blended, ``alpha8`` (uint8, 3
    channels) over ``still`` (the background's share, already weighted)."""

    size: tuple[int, int]
    origin: tuple[int, int]
    region: tuple[int, int, int, int]
    alpha8: np.ndarray
    still: np.ndarray
    ring: np.ndarray  # bool: the mask's soft ring (colour transfer)
    alpha1: np.ndarray  # alpha8's one channel (mattes)
    edges: tuple[_EdgeMirror, ...] = ()
    """Where the paste reaches the photo's edge with the output going on beyond it: the
    extension's mirror image there follows the pasted pixels (:meth:`paste`)."""
    matte_edges: tuple[_EdgeMirror, ...] = ()
    """The same for the person matte's extension (:meth:`paste_matte`'s caller)."""

    @property
    def changed(self) -> tuple[int, int, int, int]:
        """:attr:`region` and the extension rows and columns that follow it."""
        x0, y0, x1, y1 = self.region
        for edge in (*self.edges, *self.matte_edges):
            lo, hi = int(edge.dst.min()), int(edge.dst.max()) + 1
            if edge.axis == 0:
                y0, y1 = min(y0, lo), max(y1, hi)
            else:
                x0, x1 = min(x0, lo), max(x1, hi)
        return x0, y0, x1, y1

    def paste(self, crop: np.ndarray, out: np.ndarray, color_transfer: bool,
              background: np.ndarray | None = None) -> None:
        """Paste ``crop`` into ``out`` (its :attr:`region`); with ``background`` (the framed
        still picture ``out`` started from) the extension beyond the photo's edges it
        reaches mirrors the pasted pixels, as :func:`~live.geometry.frame_picture` mirrors
        the photo's (a head moved away from the photo's top edge leaves no still copy of its
        hair just above it)."""
        x0, y0, x1, y1 = self.region
        ox, oy = self.origin
        warped = cv2.resize(crop, self.size, interpolation=cv2.INTER_LINEAR)
        warped = warped[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        if color_transfer:
            warped = _color_transfer(warped, out[y0:y1, x0:x1], self.ring)
        out[y0:y1, x0:x1] = cv2.add(cv2.multiply(warped, self.alpha8, scale=1.0 / 255.0),
                                    self.still)
        if background is not None:
            for edge in self.edges:
                edge.follow(out, background)

    def still_matte(self, matte: np.ndarray) -> np.ndarray:
        """The still matte's share of :meth:`paste_matte`'s region (computed once)."""
        x0, y0, x1, y1 = self.region
        return np.asarray(cv2.multiply(matte[y0:y1, x0:x1], 255 - self.alpha1,
                                       scale=1.0 / 255.0))

    def paste_matte(self, crop_matte: np.ndarray, out: np.ndarray,
                    still: np.ndarray) -> None:
        """:meth:`paste` for a person matte (uint8, one channel); ``still`` is
        :meth:`still_matte`."""
        x0, y0, x1, y1 = self.region
        ox, oy = self.origin
        warped = cv2.resize(crop_matte, self.size, interpolation=cv2.INTER_LINEAR)
        warped = warped[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        out[y0:y1, x0:x1] = cv2.add(cv2.multiply(warped, self.alpha1, scale=1.0 / 255.0),
                                    still)


def _framed_paste(framing: Framing, crop_to_output: np.ndarray, crop_size: int,
                  mask: np.ndarray, background: np.ndarray) -> tuple[np.ndarray,
                                                                     _FramedPaste | None]:
    """The paste of a framed portrait's crop and the crop's affine into the output it uses.

    The crop is placed as an exact resize at whole pixels (moved by at most half a pixel and
    scaled by at most half a pixel over its side, under the feathered mask, so nothing shows),
    which resizing does three to four times faster than a general warp; the blend is two
    8-bit operations with the background's share computed once. The mask is kept to the
    photo (its extended edge stays still: a crop reaching past the photo holds only repeated
    edge pixels) and the region cut to where it weighs anything."""
    n = int(crop_size)
    nx, ny = max(1, round(crop_to_output[0, 0] * n)), max(1, round(crop_to_output[1, 1] * n))
    sx, sy = nx / n, ny / n
    ox = round(float(crop_to_output[0, 2]) - (0.5 * sx - 0.5))
    oy = round(float(crop_to_output[1, 2]) - (0.5 * sy - 0.5))
    placed = np.array([[sx, 0.0, 0.5 * sx - 0.5 + ox], [0.0, sy, 0.5 * sy - 0.5 + oy]])
    px0, py0, px1, py1 = framing.photo_rect
    x0, y0, x1, y1 = max(ox, px0), max(oy, py0), min(ox + nx, px1), min(oy + ny, py1)
    if x1 <= x0 or y1 <= y0:
        return placed, None
    alpha = cv2.resize(mask, (nx, ny), interpolation=cv2.INTER_LINEAR)
    alpha = alpha[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    # where the crop reaches past the photo, the resize blended the mask's last row on the
    # photo with the made-up border's 0: the photo's edge row takes the next one's weight (a
    # whole-crop paste leaves no line of the still picture along the photo's edge)
    if alpha.shape[0] > 1:
        if oy < py0:
            np.maximum(alpha[0], alpha[1], out=alpha[0])
        if oy + ny > py1:
            np.maximum(alpha[-1], alpha[-2], out=alpha[-1])
    if alpha.shape[1] > 1:
        if ox < px0:
            np.maximum(alpha[:, 0], alpha[:, 1], out=alpha[:, 0])
        if ox + nx > px1:
            np.maximum(alpha[:, -1], alpha[:, -2], out=alpha[:, -1])
    used = alpha > 0.5 / 255.0  # lighter weights round to nothing
    rows, cols = np.flatnonzero(used.any(axis=1)), np.flatnonzero(used.any(axis=0))
    if not len(rows):
        return placed, None
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    alpha = alpha[r0:r1, c0:c1]
    region = (x0 + c0, y0 + r0, x0 + c1, y0 + r1)
    a8 = np.clip(np.round(alpha * 255.0), 0, 255).astype(np.uint8)
    bg = background[region[1]:region[3], region[0]:region[2]].astype(np.float32)
    still = np.round(bg * (1.0 - a8[..., None] / 255.0)).astype(np.uint8)
    ring = (alpha > 0.05) & (alpha < 0.6)
    return placed, _FramedPaste((nx, ny), (ox, oy), region, cv2.merge([a8, a8, a8]), still,
                                ring, a8, _edge_mirrors(region, framing),
                                _edge_mirrors(region, framing, matte=True))


class Compositor:
    """Paste animated crops of one portrait into its framed full picture, fast.

    ``portrait`` is the full portrait (RGB), ``crop_to_portrait`` the 2x3 affine of the face
    crop in it, ``crop_size`` the engine's crop size, ``output_size`` (w, h). ``framing``
    places the portrait in the output (:func:`~live.geometry.framing_transform`; None: the
    whole portrait letterboxed, as the ``full`` framing). Everything that does not change
    between frames (the framed background, the mask warped into its output region) is
    computed once here, off the hot path; :meth:`compose` then warps and blends only the
    face region. Where a framing extends the photo's edge, the still background stays.

    ``matte`` (optional) is the portrait's person matte (float in [0, 1] or uint8, the
    portrait's (H, W) or worked out at another size, :func:`~live.geometry.frame_matte`;
    :mod:`live.face.segmentation`): it is framed like the portrait
    (:attr:`still_matte`), and :meth:`compose_matte` gives each frame's output matte.
    """

    def __init__(self, portrait: np.ndarray, crop_to_portrait: np.ndarray, crop_size: int,
                 output_size: tuple[int, int], *, feather: float = 0.08,
                 mask: np.ndarray | None = None, color_transfer: bool = False,
                 framing: Framing | None = None, matte: np.ndarray | None = None) -> None:
        check_rgb(portrait, "portrait")
        m = _check_affine(crop_to_portrait, "crop_to_portrait")
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.crop_size = int(crop_size)
        self.color_transfer = color_transfer
        h, w = portrait.shape[:2]
        if framing is not None and (framing.portrait_size != (w, h)
                                    or framing.output_size != self.output_size):
            raise ValueError(f"framing: made for a {framing.portrait_size} portrait in a "
                             f"{framing.output_size} output, got {(w, h)} in "
                             f"{self.output_size}")
        self.framing = framing
        self.placement: Framing = framing if framing is not None else framing_transform(
            None, (w, h), self.output_size, "full")
        """Where the portrait lands in the output: ``framing``, or the ``full`` letterbox."""
        framed = framing is not None and framing.mode != "full"
        if framing is not None and framed:
            box = framing.affine
            self.background = frame_picture(portrait, framing)
        else:  # full: the letterbox, exactly as ever
            box = letterbox_transform((w, h), self.output_size)
            self.background = letterbox(portrait, self.output_size)
        self.background.flags.writeable = False
        self.portrait_to_output = box
        """The 2x3 affine from portrait pixels to output pixels (the framing)."""
        # crop -> portrait -> output
        self.crop_to_output = compose_affine(box, m)
        if mask is None:  # cached: the same for every portrait of a library
            mask = _default_mask(self.crop_size, self.crop_size, round(float(feather), 4))
        mask = np.asarray(mask, np.float32)
        if mask.shape != (self.crop_size, self.crop_size):
            raise ValueError(f"mask: expected shape {(self.crop_size, self.crop_size)}, "
                             f"got {mask.shape}")
        self._framed: _FramedPaste | None = None
        roi = covered_region(self.crop_to_output, self.crop_size, self.crop_size,
                             *self.output_size)
        if framing is not None and framed:
            self.crop_to_output, self._framed = _framed_paste(
                framing, self.crop_to_output, self.crop_size, mask, self.background)
            self._prep = _Prepared(None, np.zeros((2, 3)), None)
        elif roi is None:
            self._prep = _Prepared(None, np.zeros((2, 3)), None)
        else:
            x0, y0, x1, y1 = roi
            local = offset_affine(self.crop_to_output, x0, y0)
            alpha = cv2.warpAffine(mask, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))
            self._prep = _Prepared(roi, local, alpha)
        self.still_matte: np.ndarray | None = None
        """The portrait's person matte framed like :attr:`background` (uint8 (H, W) of the
        output, 255 = person); None without ``matte``."""
        self._matte_still: np.ndarray | None = None
        if matte is not None:
            self.still_matte = frame_matte(matte, self.placement)
            self.still_matte.flags.writeable = False
            if self._framed is not None:
                self._matte_still = self._framed.still_matte(self.still_matte)

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        """The output rectangle ``(x0, y0, x1, y1)`` (ends exclusive) that :meth:`compose`
        and :meth:`compose_matte` change; the rest is :attr:`background` (and
        :attr:`still_matte`) every frame. None: the crop lands nowhere."""
        if self._framed is not None:
            return self._framed.changed
        return self._prep.roi

    def compose_matte(self, crop_matte: np.ndarray | None,
                      out: np.ndarray | None = None) -> np.ndarray:
        """The output's person matte (uint8 (H, W), 255 = person) for a frame whose crop has
        the matte ``crop_matte`` (uint8, the crop's size; the animated head's, e.g. the mesh
        engine's warped matte): :attr:`still_matte` with ``crop_matte`` pasted in through the
        crop's mask, where :meth:`compose` pastes the crop. None: the still matte."""
        still = self.still_matte
        if still is None:
            raise ValueError("compose_matte: the compositor was made without a matte")
        if out is None:
            out = still.copy()
        else:
            out[...] = still
        if crop_matte is None:
            return out
        crop_matte = _check_matte(crop_matte, self.crop_size)
        if self._framed is not None:
            assert self._matte_still is not None
            self._framed.paste_matte(crop_matte, out, self._matte_still)
            for edge in self._framed.matte_edges:  # as :meth:`compose` does the picture's
                edge.follow(out, still)
            return out
        prep = self._prep
        if prep.roi is None or prep.alpha is None:
            return out
        x0, y0, x1, y1 = prep.roi
        warped = cv2.warpAffine(crop_matte, prep.local, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = out[y0:y1, x0:x1]
        region[...] = cv2.blendLinear(warped, region, prep.alpha, 1.0 - prep.alpha)
        return out

    def compose(self, crop_rgb: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """The output frame with ``crop_rgb`` pasted in (None: the still portrait)."""
        if out is None:
            out = self.background.copy()
        else:
            out[...] = self.background
        if self._framed is not None and crop_rgb is not None:
            if crop_rgb.shape != (self.crop_size, self.crop_size, 3) \
                    or crop_rgb.dtype != np.uint8:
                raise ValueError(f"crop: expected RGB uint8 {self.crop_size}x{self.crop_size},"
                                 f" got {crop_rgb.dtype} {crop_rgb.shape}")
            self._framed.paste(crop_rgb, out, self.color_transfer, self.background)
            return out
        prep = self._prep
        if crop_rgb is None or prep.roi is None or prep.alpha is None:
            return out
        if crop_rgb.shape != (self.crop_size, self.crop_size, 3) or crop_rgb.dtype != np.uint8:
            raise ValueError(f"crop: expected RGB uint8 {self.crop_size}x{self.crop_size}, "
                             f"got {crop_rgb.dtype} {crop_rgb.shape}")
        x0, y0, x1, y1 = prep.roi
        warped = cv2.warpAffine(crop_rgb, prep.local, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = out[y0:y1, x0:x1]
        if self.color_transfer:
            ring = (prep.alpha > 0.05) & (prep.alpha < 0.6)
            warped = _color_transfer(warped, region, ring)
        _blend_into(region, warped, prep.alpha)
        return out
