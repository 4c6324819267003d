"""Pixel geometry: 2x3 affines, point transforms, square crops and letterboxing.

Every pixel coordinate in mimicam follows OpenCV's convention: integer values are pixel
*centres*. An affine is a 2x3 matrix mapping the pixel coordinates of one image to those of
another (``crop_to_frame`` maps a crop into its frame; :func:`letterbox_transform` maps a
picture into an output frame). This module is the one place that maths is written:

- :func:`compose_affine`, :func:`invert_affine`, :func:`apply_affine` (points ``(N, 2)``) and
  :func:`transform_points` (points ``(N, 2)`` or ``(N, 3)``, z scaled with the affine);
- :func:`normalized_to_pixels`: MediaPipe's normalised outputs to pixels;
- :func:`crop_transform` and :func:`crop_square`: a square crop and its exact transform;
- :func:`letterbox_transform` and :func:`letterbox`: a picture scaled into an output size;
- :func:`covered_region` and :func:`offset_affine`: the part of a canvas a warped crop covers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from live.packets import FaceCrop, check_rgb

__all__ = [
    "Border",
    "apply_affine",
    "border_args",
    "compose_affine",
    "covered_region",
    "crop_square",
    "crop_transform",
    "invert_affine",
    "letterbox",
    "letterbox_transform",
    "normalized_to_pixels",
    "offset_affine",
    "transform_points",
]

Border = Literal["replicate", "constant"]


# ----------------------------------------------------------------------------------------------
# affines and points


def _homogeneous(affine: np.ndarray) -> np.ndarray:
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies ``inner`` first, then ``outer``."""
    return (_homogeneous(outer) @ _homogeneous(inner))[:2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine (e.g. ``crop_to_frame`` -> frame pixels to crop pixels)."""
    return np.linalg.inv(_homogeneous(affine))[:2]


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Points ``(N, 2)`` mapped by a 2x3 ``affine``; float64 ``(N, 2)``."""
    pts = np.asarray(points, dtype=np.float64)
    return pts[:, :2] @ affine[:, :2].T + affine[:, 2]


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a 2x3 similarity ``affine`` to points ``(N, 2)`` or ``(N, 3)``; z (if any) is
    multiplied by the affine's scale. Returns float32."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts.copy()
    out[:, :2] = apply_affine(pts, affine)
    if pts.shape[1] > 2:
        out[:, 2:] *= math.sqrt(abs(float(np.linalg.det(affine[:, :2]))))
    return out.astype(np.float32)


def normalized_to_pixels(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's normalised points ``(N, 2)`` or ``(N, 3)`` (x, y as shares of the image
    side, z scaled like x) in pixels of a ``width`` x ``height`` image: ``x * width - 0.5``,
    ``y * height - 0.5``, ``z * width``. Floating-point input keeps its dtype."""
    pts = np.array(points, copy=True)
    if not np.issubdtype(pts.dtype, np.floating):
        pts = pts.astype(np.float64)
    pts *= np.array([width, height, width][:pts.shape[1]], dtype=pts.dtype)
    pts[:, :2] -= 0.5
    return pts


# ----------------------------------------------------------------------------------------------
# square crops


def crop_transform(
    center_xy: Sequence[float] | np.ndarray, side: float, out_size: int
) -> np.ndarray:
    """The 2x3 affine mapping crop pixels to frame pixels for a square of ``side`` frame pixels
    centred on ``center_xy``, resampled to ``out_size`` pixels (pixel centres at integers)."""
    s = float(side) / float(out_size)
    cx, cy = float(center_xy[0]), float(center_xy[1])
    # The square's outer edges [c - side/2, c + side/2] match the crop's [-0.5, out - 0.5].
    return np.array([[s, 0.0, cx - side / 2.0 + 0.5 * s - 0.5],
                     [0.0, s, cy - side / 2.0 + 0.5 * s - 0.5]])


def border_args(border: Border) -> tuple[int, tuple[int, int, int]]:
    """OpenCV's border mode and value for ``border``; raises ``ValueError`` for another."""
    if border == "replicate":
        return cv2.BORDER_REPLICATE, (0, 0, 0)
    if border == "constant":
        return cv2.BORDER_CONSTANT, (0, 0, 0)
    raise ValueError(f"border: expected 'replicate' or 'constant', got {border!r}")


def _padded_region(image: np.ndarray, x0: int, y0: int, x1: int, y1: int,
                   border: Border) -> np.ndarray | None:
    """``image[y0:y1, x0:x1]`` where the rectangle may leave the image (padded by ``border``);
    None when it does not touch the image at all."""
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    region = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        mode, value = border_args(border)
        region = cv2.copyMakeBorder(region, *pads, mode, value=value)
    return region


def _warp(
    image: np.ndarray, crop_to_frame: np.ndarray, out_size: int, border: Border
) -> np.ndarray:
    """Resample the crop described by ``crop_to_frame`` (a scale + translation).

    Strong reductions are first shrunk by an integer factor with area averaging, so a big
    face in a big photo does not alias; the result still follows ``crop_to_frame`` exactly.
    """
    mode, value = border_args(border)
    s = float(crop_to_frame[0, 0])
    source, m = image, crop_to_frame
    k = int(s)
    if k >= 2:
        tx, ty = float(crop_to_frame[0, 2]), float(crop_to_frame[1, 2])
        span = s * (out_size - 1)
        bx0, by0 = math.floor(tx) - k, math.floor(ty) - k
        n = math.ceil((span + 2 * k + 2) / k)  # small pixels per side
        region = _padded_region(image, bx0, by0, bx0 + n * k, by0 + n * k, border)
        if region is not None:
            source = cv2.resize(region, (n, n), interpolation=cv2.INTER_AREA)
            # small pixel q covers region pixels k*q .. k*q+k-1, centred at k*q + (k-1)/2
            m = crop_to_frame.copy()
            m[:, :2] /= k
            m[0, 2] = (tx - bx0 - (k - 1) / 2.0) / k
            m[1, 2] = (ty - by0 - (k - 1) / 2.0) / k
    return cv2.warpAffine(source, m, (out_size, out_size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=mode, borderValue=value)


def crop_square(
    image: np.ndarray,
    center_xy: Sequence[float] | np.ndarray,
    side: float,
    out_size: int,
    *,
    landmarks: np.ndarray | None = None,
    border: Border = "replicate",
    frame_index: int = 0,
    t_capture: float = 0.0,
    score: float = 1.0,
) -> FaceCrop:
    """Cut a square of ``side`` frame pixels centred on ``center_xy`` and resize it to
    ``out_size`` x ``out_size``.

    The square may extend past the image: the missing part is filled by repeating the edge
    pixels (``border="replicate"``, the default: no black bars for the animation network to
    move) or with black (``border="constant"``). ``FaceCrop.crop_to_frame`` is the exact
    transform used to sample the crop, so pasting back with it lands on the same pixels.
    ``landmarks`` (frame pixels, ``(N, 3)``) are returned in crop pixels.
    """
    check_rgb(image)
    if not (side > 0 and math.isfinite(side)):
        raise ValueError(f"side: expected a positive number of pixels, got {side}")
    if int(out_size) < 1:
        raise ValueError(f"out_size: expected a positive number of pixels, got {out_size}")
    out_size = int(out_size)
    m = crop_transform(center_xy, side, out_size)
    crop = _warp(image, m, out_size, border)
    lm = None if landmarks is None else transform_points(landmarks, invert_affine(m))
    return FaceCrop(image=crop, crop_to_frame=m, frame_index=frame_index,
                    t_capture=t_capture, landmarks=lm, score=float(score))


# ----------------------------------------------------------------------------------------------
# letterboxing and canvas regions


def letterbox_transform(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine that scales a ``src_size`` (w, h) picture into ``dst_size`` (w, h),
    aspect kept and centred (the mapping :func:`letterbox` applies)."""
    sw, sh = src_size
    dw, dh = dst_size
    if min(sw, sh, dw, dh) < 1:
        raise ValueError(f"sizes must be >= 1, got src {src_size} dst {dst_size}")
    scale = min(dw / sw, dh / sh)
    nw, nh = max(1, round(sw * scale)), max(1, round(sh * scale))
    ox, oy = (dw - nw) // 2, (dh - nh) // 2
    return np.array([[nw / sw, 0.0, ox], [0.0, nh / sh, oy]], dtype=np.float64)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled into ``size`` = (width, height), aspect kept, with black bars."""
    check_rgb(image)
    dw, dh = int(size[0]), int(size[1])
    sh, sw = image.shape[:2]
    if (sw, sh) == (dw, dh):
        return image.copy()
    m = letterbox_transform((sw, sh), (dw, dh))
    nw, nh = round(m[0, 0] * sw), round(m[1, 1] * sh)
    ox, oy = int(m[0, 2]), int(m[1, 2])
    interp = cv2.INTER_AREA if nw < sw else cv2.INTER_LINEAR
    out = np.zeros((dh, dw, 3), np.uint8)
    out[oy:oy + nh, ox:ox + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out


def covered_region(affine: np.ndarray, src_w: int, src_h: int, dst_w: int,
                   dst_h: int) -> tuple[int, int, int, int] | None:
    """The rectangle ``(x0, y0, x1, y1)`` of a ``dst_w`` x ``dst_h`` canvas that a
    ``src_w`` x ``src_h`` image warped by ``affine`` covers (one pixel of margin, clipped to
    the canvas); None when it covers none of it."""
    corners = np.array([[0, 0], [src_w, 0], [0, src_h], [src_w, src_h]], dtype=np.float64)
    mapped = apply_affine(corners, affine)
    x0 = max(0, int(np.floor(mapped[:, 0].min())) - 1)
    y0 = max(0, int(np.floor(mapped[:, 1].min())) - 1)
    x1 = min(dst_w, int(np.ceil(mapped[:, 0].max())) + 1)
    y1 = min(dst_h, int(np.ceil(mapped[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def offset_affine(affine: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``affine`` followed by a shift to a sub-region whose top-left is ``(x0, y0)``."""
    out = affine.copy()
    out[0, 2] -= x0
    out[1, 2] -= y0
    return out
