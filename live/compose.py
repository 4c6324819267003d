"""Compositing: paste animated face crops back into a picture, and fit pictures to an output.

- :func:`paste_back` warps a square crop into a canvas with its ``crop_to_frame`` affine and
  blends it through a feathered mask (an ellipse by default, or the convex hull of landmarks),
  so no seam or box edge shows; optionally it matches the crop's colours to the canvas in the
  mask's soft ring. Only the region the crop covers is touched, so it is cheap for a small face
  in a large picture, and it can be called several times on one canvas (several faces).
- :func:`letterbox` scales an image into an output size, keeping its aspect, with black bars;
  :func:`letterbox_transform` is the same mapping as a 2x3 affine (both live in
  :mod:`live.geometry`, with the other crop and point maths, and are re-exported here).
- :class:`Compositor` is the live hot path: one portrait letterboxed once to the output size,
  its face mask warped once; each frame only the face region is warped and blended.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from live.geometry import (
    compose_affine,
    covered_region,
    letterbox,
    letterbox_transform,
    offset_affine,
)
from live.packets import check_rgb

log = logging.getLogger(__name__)

__all__ = [
    "Compositor",
    "ellipse_mask",
    "hull_mask",
    "letterbox",
    "letterbox_transform",
    "paste_back",
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


@dataclass(frozen=True, slots=True)
class _Prepared:
    roi: tuple[int, int, int, int] | None
    local: np.ndarray
    alpha: np.ndarray | None


class Compositor:
    """Paste animated crops of one portrait into its letterboxed full picture, fast.

    ``portrait`` is the full portrait (RGB), ``crop_to_portrait`` the 2x3 affine of the face
    crop in it, ``crop_size`` the engine's crop size, ``output_size`` (w, h). Everything that
    does not change between frames (the letterboxed background, the mask warped into its
    output region) is computed once here, off the hot path; :meth:`compose` then warps and
    blends only the face region.
    """

    def __init__(self, portrait: np.ndarray, crop_to_portrait: np.ndarray, crop_size: int,
                 output_size: tuple[int, int], *, feather: float = 0.08,
                 mask: np.ndarray | None = None, color_transfer: bool = False) -> None:
        check_rgb(portrait, "portrait")
        m = _check_affine(crop_to_portrait, "crop_to_portrait")
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.crop_size = int(crop_size)
        self.color_transfer = color_transfer
        h, w = portrait.shape[:2]
        box = letterbox_transform((w, h), self.output_size)
        self.background = letterbox(portrait, self.output_size)
        self.background.flags.writeable = False
        # crop -> portrait -> output
        self.crop_to_output = compose_affine(box, m)
        if mask is None:
            mask = ellipse_mask(self.crop_size, feather=feather)
        mask = np.asarray(mask, np.float32)
        if mask.shape != (self.crop_size, self.crop_size):
            raise ValueError(f"mask: expected shape {(self.crop_size, self.crop_size)}, "
                             f"got {mask.shape}")
        roi = covered_region(self.crop_to_output, self.crop_size, self.crop_size,
                             *self.output_size)
        if roi is None:
            self._prep = _Prepared(None, np.zeros((2, 3)), None)
        else:
            x0, y0, x1, y1 = roi
            local = offset_affine(self.crop_to_output, x0, y0)
            alpha = cv2.warpAffine(mask, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))
            self._prep = _Prepared(roi, local, alpha)

    def compose(self, crop_rgb: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """The output frame with ``crop_rgb`` pasted in (None: the still portrait)."""
        if out is None:
            out = self.background.copy()
        else:
            out[...] = self.background
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
