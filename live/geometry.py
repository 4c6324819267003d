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
- :func:`framing_transform` and :func:`frame_picture`: a portrait framed around its face in an
  output size, like a webcam would (``shoulders``, ``head``), or letterboxed (``full``);
- :func:`frame_matte`: a portrait's person matte placed like :func:`frame_picture` places it;
- :func:`cover`: a picture scaled to cover an output size (aspect kept, centred, cut);
- :func:`covered_region` and :func:`offset_affine`: the part of a canvas a warped crop covers;
- :class:`Orientation`: how a stored picture or video frame is turned to be seen upright
  (EXIF orientation, a video's display matrix), :func:`fit_size`: a size capped on its long side.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from live.config import FRAMINGS, FramingMode
from live.packets import FaceCrop, check_rgb

__all__ = [
    "EXTENSION_SHARP",
    "FRAMINGS",
    "MATTE_FADE",
    "Border",
    "Framing",
    "FramingMode",
    "Orientation",
    "apply_affine",
    "blur",
    "border_args",
    "compose_affine",
    "cover",
    "covered_region",
    "crop_square",
    "crop_transform",
    "extension_blend",
    "fit_size",
    "fit_square",
    "frame_matte",
    "frame_picture",
    "framed_output_size",
    "framing_transform",
    "invert_affine",
    "letterbox",
    "letterbox_transform",
    "matte_keep",
    "normalized_to_pixels",
    "offset_affine",
    "photo_box",
    "picture_box",
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


def transform_points(points: np.ndarray, affine: np.ndarray, *,
                     dtype: type[np.floating[Any]] = np.float32) -> np.ndarray:
    """Apply a 2x3 similarity ``affine`` to points ``(N, 2)`` or ``(N, 3)``; z (if any) is
    multiplied by the affine's scale. Computed in float64, returned as ``dtype`` (float32 by
    default: landmarks in packets; float64 for motion computed from them)."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(affine, dtype=np.float64)
    out = pts.copy()
    out[:, :2] = apply_affine(pts, m)
    if pts.shape[1] > 2:
        out[:, 2:] *= math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    return out.astype(dtype, copy=False)


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
    face in a big photo does not alias; enlargements are bicubic (bilinear left a small
    portrait's face blocky and soft: the demo's crop is its photo enlarged 2.7x); the result
    still follows ``crop_to_frame`` exactly.
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
    interpolation = cv2.INTER_CUBIC if s < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(source, m, (out_size, out_size),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
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


def fit_square(center_xy: Sequence[float] | np.ndarray, side: float,
               frame_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """``(center, side)``: the square of ``side`` frame pixels centred on ``center_xy``,
    moved into a picture of ``frame_size`` (w, h), and shrunk to the picture's shorter side
    when it is larger: :func:`crop_square` of it makes up no border."""
    w, h = frame_size
    side = min(float(side), float(w), float(h))
    half = side / 2.0
    # the square spans [c - side / 2, c + side / 2] of the picture's [0, w] (crop_transform)
    cx = min(max(float(center_xy[0]), half), w - half)
    cy = min(max(float(center_xy[1]), half), h - half)
    return np.array([cx, cy]), side


def picture_box(crop_to_frame: np.ndarray, frame_size: tuple[int, int],
                crop_size: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the pixels of a ``crop_size`` square crop (sampled with
    ``crop_to_frame``, as :func:`crop_square` does) that show its picture of ``frame_size``
    (w, h); the rest is the border :func:`crop_square` made up. ``(0, 0, crop_size,
    crop_size)`` for a crop inside its picture. A side that cuts the picture stops a
    picture pixel short of its edge (what the interpolation there blends with the border)."""
    # picture pixels whose (cubic) interpolation never reaches past the picture's edge
    return _crop_box(crop_to_frame, frame_size, crop_size, inset=1.0)


def photo_box(crop_to_frame: np.ndarray, frame_size: tuple[int, int],
              crop_size: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the pixels of a ``crop_size`` square crop (as :func:`picture_box`
    takes it) whose centres lie on its picture of ``frame_size`` (w, h), up to the picture's
    own edge: :func:`picture_box` and the picture's last pixel or so beyond it, where the
    crop's interpolation blended the picture with its made-up border."""
    return _crop_box(crop_to_frame, frame_size, crop_size, inset=-0.5)


def _crop_box(crop_to_frame: np.ndarray, frame_size: tuple[int, int], crop_size: int, *,
              inset: float) -> tuple[int, int, int, int]:
    """The crop's pixels whose centres lie within the picture's pixels ``inset`` in from its
    first and last (-0.5: the picture's own edge), clipped to the crop."""
    n = int(crop_size)
    inverse = invert_affine(np.asarray(crop_to_frame, dtype=np.float64))
    w, h = frame_size
    (ax, ay), (bx, by) = apply_affine(
        np.array([[inset, inset], [w - 1.0 - inset, h - 1.0 - inset]]), inverse)
    x0, x1 = sorted((ax, bx))
    y0, y1 = sorted((ay, by))
    box = (max(0, min(n, math.ceil(x0))), max(0, min(n, math.ceil(y0))),
           max(0, min(n, math.floor(x1) + 1)), max(0, min(n, math.floor(y1) + 1)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"the crop shows none of its {w}x{h} picture")
    return box


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


AREA_FILTER_BELOW = 0.8
"""Scale below which :func:`letterbox` shrinks with OpenCV's area filter. A milder shrink is
bilinear: every source pixel still counts, the two differ by ~0.1 grey levels (PSNR 58 dB on
a 512 px frame into 640x480) and bilinear takes a fifth of the time (0.17 against 0.86 ms)."""


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled into ``size`` = (width, height), aspect kept, with black bars."""
    check_rgb(image)
    dw, dh = int(size[0]), int(size[1])
    sh, sw = image.shape[:2]
    if (sw, sh) == (dw, dh):
        return image.copy()
    m = letterbox_transform((sw, sh), (dw, dh))
    return _letterbox_at(image, (dw, dh), (round(m[0, 0] * sw), round(m[1, 1] * sh)),
                         (int(m[0, 2]), int(m[1, 2])))


def _letterbox_at(image: np.ndarray, size: tuple[int, int], resized: tuple[int, int],
                  offset: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``resized`` (w, h) and put at ``offset`` (x, y) of a black
    ``size`` (w, h) picture (what :func:`letterbox` draws)."""
    (dw, dh), (nw, nh), (ox, oy) = size, resized, offset
    interp = cv2.INTER_AREA if nw < AREA_FILTER_BELOW * image.shape[1] else cv2.INTER_LINEAR
    out = np.zeros((dh, dw, 3), np.uint8)
    out[oy:oy + nh, ox:ox + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out


# ----------------------------------------------------------------------------------------------
# framing: a portrait placed in the output like a webcam picture of its person


FACE_SHARE = {"shoulders": 1.0 / 3.0, "head": 0.5}
"""The face box's height as a share of the output height, per framing."""
EYES_DOWN = 0.40
"""The eye line's place in the output, as a share of its height from the top."""
MAX_CLEAN_UPSCALE = 1.5
"""A framing zooms in at most this far past the portrait's own pixels (more looks soft), or
as far as the letterboxed whole portrait would need, when that is more (a tiny portrait)."""
_SLACK_X = 0.03  # the face may sit this share of the width off centre to stay inside the photo
_SLACK_EYES = (0.33, 0.45)  # ... and the eye line between these shares of the height
REACH_EYES_LOWEST = 0.6
"""``reach_bottom`` framings (:func:`framing_transform`) put the eye line no lower than this
share of the height: a photo that would need it lower is left where it was."""


@dataclass(frozen=True, eq=False)
class Framing:
    """A portrait placed in an output frame, fixed for the portrait.

    ``affine`` maps portrait pixels to output pixels (a scale and a shift): the portrait is
    resized to ``resized`` (w, h) and its top-left pixel put at ``offset`` (x, y) of the output
    (whole pixels, so nothing is resampled but the resize). :func:`framing_transform` chooses
    it, :func:`frame_picture` draws the output's still picture with it.
    """

    mode: FramingMode
    affine: np.ndarray
    portrait_size: tuple[int, int]
    output_size: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]

    @property
    def scale(self) -> float:
        """Output pixels per portrait pixel (> 1: the portrait is upscaled)."""
        return max(self.resized[0] / self.portrait_size[0],
                   self.resized[1] / self.portrait_size[1])

    @property
    def photo_rect(self) -> tuple[int, int, int, int]:
        """The output rectangle ``(x0, y0, x1, y1)`` (ends exclusive) the portrait covers."""
        (ox, oy), (nw, nh), (w, h) = self.offset, self.resized, self.output_size
        return max(ox, 0), max(oy, 0), min(ox + nw, w), min(oy + nh, h)

    @property
    def padded(self) -> bool:
        """The output shows more than the portrait (black bars for ``full``; the portrait's
        edge extended for the other framings)."""
        return self.photo_rect != (0, 0, *self.output_size)


def _settle(ideal: float, n: int, out: int, moves: tuple[float, float]) -> float:
    """An offset near ``ideal`` (moved by at most ``moves`` = (down, up)) at which ``n`` pixels
    cover all ``out`` output pixels, as far as that goes."""
    if n < out:
        return ideal
    covering = min(max(ideal, float(out - n)), 0.0)
    return ideal + min(max(covering - ideal, moves[0]), moves[1])


def framing_transform(face_box: Sequence[float] | np.ndarray | None,
                      portrait_size: tuple[int, int], output_size: tuple[int, int],
                      mode: FramingMode = "shoulders", *, eyes_y: float | None = None,
                      max_upscale: float = MAX_CLEAN_UPSCALE,
                      reach_bottom: bool = False) -> Framing:
    """How a ``portrait_size`` (w, h) portrait fills a ``output_size`` (w, h) frame.

    ``full``: the whole portrait letterboxed (exactly :func:`letterbox_transform`).
    ``shoulders``: cut to the output's aspect around the face, like a webcam picture: the
    face box ``(x0, y0, x1, y1)`` (portrait pixels, e.g. the face mesh's extent) a third of
    the output height, its centre in the middle, the eyes (``eyes_y``, portrait pixels;
    default: a third down the box) 40 % down. ``head``: the same with the face half the
    height. Where keeping the face exactly there would show more than the photo, it moves
    (by at most 3 % of the width, or the eye line to between 33 % and 45 %) to stay inside.

    The framing never zooms in further than ``max_upscale`` times the portrait's pixels, or
    than the letterboxed whole portrait would when that is more (a tiny portrait): beyond
    that the face is framed smaller. The portrait may then not cover the output
    (:attr:`Framing.padded`): :func:`frame_picture` extends its edge.

    ``reach_bottom``: a photo that would end above the output's bottom (a head-and-shoulders
    crop: its person would be cut off in mid-air in front of a background) is zoomed in until
    its bottom edge is the output's with the eye line 45 % down, or until it is as high as
    the output (the eye line then where the photo has it, down to
    :data:`REACH_EYES_LOWEST`; further, up to the zoom limit above, when it has the eyes
    lower), and put there. The face is then framed larger than ``mode`` says.
    """
    if mode not in FRAMINGS:
        raise ValueError(f"framing: expected one of {', '.join(FRAMINGS)}, got {mode!r}")
    pw, ph = int(portrait_size[0]), int(portrait_size[1])
    ow, oh = int(output_size[0]), int(output_size[1])
    if min(pw, ph, ow, oh) < 1:
        raise ValueError(f"sizes must be >= 1, got portrait {portrait_size} output {output_size}")
    if mode == "full":
        m = letterbox_transform((pw, ph), (ow, oh))
        nw, nh = round(m[0, 0] * pw), round(m[1, 1] * ph)
        return Framing(mode, m, (pw, ph), (ow, oh), (nw, nh), (int(m[0, 2]), int(m[1, 2])))
    box = np.asarray(face_box if face_box is not None else (), dtype=np.float64).ravel()
    if box.shape != (4,) or not np.all(np.isfinite(box)) or not box[3] > box[1]:
        raise ValueError(f"face_box: expected finite (x0, y0, x1, y1) with y1 > y0, "
                         f"got {face_box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    face_h = y1 - y0
    target = FACE_SHARE[mode] * oh / face_h
    letterboxed = min(ow / pw, oh / ph)
    s = min(target, max(float(max_upscale), letterboxed))
    nw, nh = max(1, round(pw * s)), max(1, round(ph * s))
    sx, sy = nw / pw, nh / ph
    eye = float(eyes_y) if eyes_y is not None else y0 + face_h / 3.0
    # pixel centres at integers: resizing maps x to (x + 0.5) * sx - 0.5
    ideal_x = (ow - 1) / 2.0 - ((x0 + x1) / 2.0 + 0.5) * sx + 0.5
    ideal_y = EYES_DOWN * oh - 0.5 - ((eye + 0.5) * sy - 0.5)
    oy = round(_settle(ideal_y, nh, oh, ((_SLACK_EYES[0] - EYES_DOWN) * oh,
                                         (_SLACK_EYES[1] - EYES_DOWN) * oh)))
    below = ph - eye - 0.5  # photo pixels from the eye line down to the photo's bottom edge
    if reach_bottom and oy + nh < oh and below > 0:
        need = (1.0 - _SLACK_EYES[1]) * oh / below  # the bottom reached, the eyes 45 % down
        fit = oh / ph  # the photo as high as the output
        for most in (max(s, fit), max(s, fit, float(max_upscale), letterboxed)):
            zoom = min(max(s, need), most)  # the eye line goes up as the photo grows upwards
            zw, zh = max(1, round(pw * zoom)), max(1, round(ph * zoom))
            if (oh - zh + (eye + 0.5) * (zh / ph)) / oh <= REACH_EYES_LOWEST:
                nw, nh, oy = zw, zh, oh - zh
                sx, sy = nw / pw, nh / ph
                ideal_x = (ow - 1) / 2.0 - ((x0 + x1) / 2.0 + 0.5) * sx + 0.5
                break
    slack_x = _SLACK_X * ow
    ox = round(_settle(ideal_x, nw, ow, (-slack_x, slack_x)))
    m = np.array([[sx, 0.0, 0.5 * sx - 0.5 + ox], [0.0, sy, 0.5 * sy - 0.5 + oy]])
    return Framing(mode, m, (pw, ph), (ow, oh), (nw, nh), (ox, oy))


def framed_output_size(face_height: float, mode: FramingMode, *,
                       aspect: tuple[int, int] = (16, 9), max_width: int | None = None,
                       min_height: int = 360) -> tuple[int, int]:
    """An output size (w, h) of ``aspect`` for framing ``mode`` (not ``full``) of a face
    ``face_height`` pixels high, at the portrait's own resolution (the face keeps its size),
    at least ``min_height`` high and at most ``max_width`` wide; both even (video codecs)."""
    if mode == "full" or mode not in FACE_SHARE:
        raise ValueError(f"framed_output_size: expected shoulders or head, got {mode!r}")
    if not face_height > 0:
        raise ValueError(f"face_height: expected > 0 pixels, got {face_height}")
    aw, ah = aspect
    h = max(float(min_height), face_height / FACE_SHARE[mode])
    if max_width:
        h = min(h, max_width * ah / aw)
    h_even = max(2, 2 * round(h / 2))
    return max(2, 2 * round(h_even * aw / ah / 2)), h_even


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


EXTENSION_SHARP = 0.02
"""Over this share of the output's height beyond the photo, :func:`frame_picture`'s extension
goes from the photo's plain mirror image to a light blur of it."""


def extension_blend(distance: np.ndarray, output_height: int) -> np.ndarray:
    """How much of :func:`frame_picture`'s extension at ``distance`` px beyond the photo is
    blurred (0 at the photo's edge: there it is the photo's plain mirror image; 1 from
    :data:`EXTENSION_SHARP` of the output's height on)."""
    return _smoothstep(np.asarray(distance, np.float32) / (EXTENSION_SHARP * output_height))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A strong Gaussian blur (``sigma`` pixels), done at a reduced size (by a quarter of
    ``sigma``, at most 8) when ``sigma`` is 8 px or more: cheap, and on a photo 0.2-0.3 levels
    on average (at most 4-9) from the blur at full size; edges mirrored."""
    h, w = image.shape[:2]
    k = max(1, min(int(sigma // 4), 8))
    if k == 1:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    small = cv2.resize(image, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / k,
                             borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _beyond_photo(rect: tuple[int, int, int, int], ow: int, oh: int
                  ) -> Iterator[tuple[tuple[int, int, int, int], np.ndarray]]:
    """The bands of a ``(ow, oh)`` output beyond the photo's ``rect`` (x0, y0, x1, y1): above,
    below, left and right of it, the empty ones left out; each with its pixels' distance
    from the photo (float32, 1 at the first pixel outside it)."""
    x0, y0, x1, y1 = rect
    for bx0, by0, bx1, by1 in ((0, 0, ow, y0), (0, y1, ow, oh), (0, y0, x0, y1),
                               (x1, y0, ow, y1)):
        if bx1 <= bx0 or by1 <= by0:
            continue
        cols, rows = np.arange(bx0, bx1), np.arange(by0, by1)
        dx = np.maximum(np.maximum(x0 - cols, cols - (x1 - 1)), 0)
        dy = np.maximum(np.maximum(y0 - rows, rows - (y1 - 1)), 0)
        yield (bx0, by0, bx1, by1), np.hypot(dy[:, None].astype(np.float32),
                                              dx[None, :].astype(np.float32))


def _check_copy(width: int, height: int, framing: Framing, what: str) -> None:
    """Raise :class:`ValueError` unless a ``width`` x ``height`` picture is the portrait of
    ``framing`` or a copy of it at another size (the portrait's aspect, to a pixel's
    rounding: a person matte or plate worked out smaller than the picture)."""
    pw, ph = framing.portrait_size
    if (width, height) == (pw, ph) or (
            width >= 1 and height >= 1 and abs(width * ph - height * pw) <= (pw + ph) / 2):
        return
    raise ValueError(f"{what}: expected the framing's portrait size {pw}x{ph} or a copy of it "
                     f"at another size (its aspect), got {width}x{height}")


def frame_picture(image: np.ndarray, framing: Framing) -> np.ndarray:
    """``image`` (the portrait of ``framing``, or a copy of it at another size) as the output
    picture of ``framing``.

    ``full`` is :func:`letterbox` (black bars). The other framings resize the portrait (area
    averaging down; Lanczos up) and place it; where the output shows more than the photo, the
    photo's own edge is extended: mirrored, blurred more and dimmed a little with the
    distance from the photo (feathered, so the photo's edge shows no seam), never black.
    A copy at another size lands where the portrait does.
    """
    check_rgb(image)
    h, w = image.shape[:2]
    _check_copy(w, h, framing, "image")
    ow, oh = framing.output_size
    if framing.mode == "full":  # (the letterbox of the portrait: the same size and place)
        return _letterbox_at(image, (ow, oh), framing.resized, framing.offset)
    nw, nh = framing.resized
    ox, oy = framing.offset
    if (nw, nh) == (w, h):
        resized = image
    else:
        interp = cv2.INTER_AREA if nw < w else cv2.INTER_LANCZOS4
        resized = cv2.resize(image, (nw, nh), interpolation=interp)
    x0, y0, x1, y1 = framing.photo_rect
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"framing: the portrait does not reach the output ({framing.offset}, "
                         f"{framing.resized} in {framing.output_size})")
    visible = resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    if not framing.padded:
        return np.ascontiguousarray(visible)
    out = cv2.copyMakeBorder(visible, y0, oh - y1, x0, ow - x1, cv2.BORDER_REFLECT_101)
    # the photo's own pixels stay as they are (nothing is mixed into them); only the bands
    # beyond its edge are worked out, each with enough of the picture round it for the light
    # blur to see what a blur of the whole picture would (a third of the work for a photo
    # that fills most of the output)
    light_sigma = 0.015 * oh
    reach = int(np.ceil(4.0 * light_sigma)) + 2
    strong = blur(out, 0.1 * oh)
    mixed = out.copy()
    for (bx0, by0, bx1, by1), d in _beyond_photo(framing.photo_rect, ow, oh):
        ex0, ey0 = max(0, bx0 - reach), max(0, by0 - reach)
        ex1, ey1 = min(ow, bx1 + reach), min(oh, by1 + reach)
        light = blur(np.ascontiguousarray(out[ey0:ey1, ex0:ex1]), light_sigma)[
            by0 - ey0:by1 - ey0, bx0 - ex0:bx1 - ex0].astype(np.float32)
        near = cv2.merge([extension_blend(d, oh)] * 3)  # sharp -> lightly blurred
        far = cv2.merge([_smoothstep(d / (0.2 * oh))] * 3)  # lightly -> strongly blurred, dimmed
        # ext = (light (1 - far) + strong far) (1 - far / 4); band = out (1 - near) + ext near:
        # float32 products and sums of whole 3-channel planes (a quarter of the time numpy's
        # broadcasting of one-channel weights took; the same steps, so the same pixels)
        ext = cv2.add(cv2.multiply(light, 1.0 - far),
                      cv2.multiply(strong[by0:by1, bx0:bx1].astype(np.float32), far))
        ext = cv2.multiply(cv2.multiply(ext, 1.0 - 0.25 * far), near)
        band = np.asarray(cv2.add(cv2.multiply(out[by0:by1, bx0:bx1].astype(np.float32),
                                               1.0 - near), ext), np.float32)
        band += np.float32(0.5)
        np.clip(band, 0, 255, out=band)
        mixed[by0:by1, bx0:bx1] = band  # (truncated, as astype(np.uint8) does)
    return mixed


MATTE_FADE = 0.03
"""Beyond the photo's edge a framed person matte fades out over this share of the height."""


def matte_keep(distance: np.ndarray, output_height: int) -> np.ndarray:
    """How much of the photo's edge row :func:`frame_matte`'s extension keeps at ``distance``
    px beyond the photo (1 at its edge, 0 from :data:`MATTE_FADE` of the output's height)."""
    return 1.0 - _smoothstep(np.asarray(distance, np.float32) / (MATTE_FADE * output_height))


def frame_matte(matte: np.ndarray, framing: Framing) -> np.ndarray:
    """A portrait's person matte (uint8 0..255, or float 0..1; the portrait's (H, W), or a
    copy's at another size) placed in the output the way :func:`frame_picture` places the
    portrait: uint8 of the output's (H, W). ``full``: letterboxed, 0 in the bars. The other
    framings: where the output shows more than the photo (its edge extended, blurred), a
    person cut by the photo's edge fades out within :data:`MATTE_FADE` of the height, so a
    background shows there instead of a smeared body."""
    m = np.asarray(matte)
    if m.dtype != np.uint8:  # round(255 m), clipped (in place: a 2048 px matte's copies)
        scaled = np.multiply(m, np.float32(255.0), dtype=np.float32)
        scaled += 0.5
        m = np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    h, w = m.shape[:2]
    if m.ndim != 2:
        raise ValueError(f"matte: expected a ({framing.portrait_size[1]}, "
                         f"{framing.portrait_size[0]}) array, got shape {m.shape}")
    _check_copy(w, h, framing, "matte")
    ow, oh = framing.output_size
    nw, nh = framing.resized
    ox, oy = framing.offset
    resized = m if (nw, nh) == (w, h) else cv2.resize(
        m, (nw, nh), interpolation=cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR)
    x0, y0, x1, y1 = framing.photo_rect
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"framing: the portrait does not reach the output ({framing.offset}, "
                         f"{framing.resized} in {framing.output_size})")
    visible = resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    if framing.mode == "full":
        out = np.zeros((oh, ow), np.uint8)
        out[y0:y1, x0:x1] = visible
        return out
    if not framing.padded:
        return np.ascontiguousarray(visible)
    extended = cv2.copyMakeBorder(visible, y0, oh - y1, x0, ow - x1, cv2.BORDER_REPLICATE)
    # the photo's own matte as it is; beyond its edge (measured as frame_picture measures
    # it) it fades out
    for (bx0, by0, bx1, by1), d in _beyond_photo(framing.photo_rect, ow, oh):
        keep = matte_keep(d, oh)
        extended[by0:by1, bx0:bx1] = np.clip(extended[by0:by1, bx0:bx1] * keep + 0.5,
                                             0, 255).astype(np.uint8)
    return np.asarray(extended)


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled, aspect kept, until it covers ``size`` (w, h), and cut to it around
    its centre: never stretched, no bars (area averaging down, bicubic up)."""
    check_rgb(image)
    dw, dh = int(size[0]), int(size[1])
    sh, sw = image.shape[:2]
    if min(dw, dh) < 1:
        raise ValueError(f"size: expected (width, height) >= 1, got {size}")
    scale = max(dw / sw, dh / sh)
    nw, nh = max(dw, round(sw * scale)), max(dh, round(sh * scale))
    resized = image if (nw, nh) == (sw, sh) else cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x0, y0 = (nw - dw) // 2, (nh - dh) // 2
    return np.ascontiguousarray(resized[y0:y0 + dh, x0:x0 + dw])


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


# ----------------------------------------------------------------------------------------------
# orientation and size caps


# EXIF Orientation tag value -> (transpose, flip_x, flip_y)
_EXIF_ORIENTATIONS = {1: (False, False, False), 2: (False, True, False), 3: (False, True, True),
                      4: (False, False, True), 5: (True, False, False), 6: (True, True, False),
                      7: (True, True, True), 8: (True, False, True)}


@dataclass(frozen=True, slots=True)
class Orientation:
    """How a stored picture is turned to be seen upright: first ``transpose`` (rows become
    columns), then mirror left-right (``flip_x``) and/or top-bottom (``flip_y``).

    The eight combinations are the eight EXIF orientations (:meth:`from_exif`) and every
    display matrix of a video rotated in steps of 90 degrees (phones store an upright video
    as landscape frames plus such a matrix).
    """

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @classmethod
    def from_exif(cls, value: int) -> Orientation:
        """The orientation of EXIF tag 274 (1 = upright ... 6 = turn 90 degrees clockwise to
        view, 8 = counter-clockwise); values outside 1..8 mean upright."""
        return cls(*_EXIF_ORIENTATIONS.get(int(value), (False, False, False)))

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_x or self.flip_y)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The upright (width, height) of a stored ``width`` x ``height`` picture."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H x W or H x W x C) turned upright; the same array when upright."""
        key = (self.transpose, self.flip_x, self.flip_y)
        if key == (False, False, False):
            return image
        if key == (True, True, False):
            return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        if key == (True, False, True):
            return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
        if key == (False, True, True):
            return cv2.rotate(image, cv2.ROTATE_180)
        out = cv2.transpose(image) if self.transpose else image
        if self.flip_x or self.flip_y:
            out = cv2.flip(out, 1 if not self.flip_y else (0 if not self.flip_x else -1))
        return out

    def describe(self) -> str:
        """A few words for logs, e.g. ``turned 90 degrees clockwise``."""
        names = {(False, False, False): "upright", (False, True, False): "mirrored left-right",
                 (False, True, True): "turned 180 degrees",
                 (False, False, True): "mirrored top-bottom",
                 (True, False, False): "transposed",
                 (True, True, False): "turned 90 degrees clockwise",
                 (True, True, True): "transposed and turned 180 degrees",
                 (True, False, True): "turned 90 degrees counter-clockwise"}
        return names[(self.transpose, self.flip_x, self.flip_y)]


def fit_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size`` (w, h) scaled down, aspect kept, so that its long side is at most ``max_side``
    (None or 0: no cap; a size already within it is returned as it is)."""
    w, h = int(size[0]), int(size[1])
    if not max_side or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))
