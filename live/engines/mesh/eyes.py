"""The eyes' interior, drawn again after the warp so the gaze can move.

The warp fans the eye opening around the iris centre: when the driving eyes look aside, the
iris centre moves but the iris's edges stay pinned to the lids, so the iris smears instead of
sliding. Here each eye is split once per portrait (:func:`prepare_eyes`) into an iris disc (its
colour and a soft round alpha) and the eye's white with the iris filled in from the white
around it; per frame (:func:`render_eyes`) the white follows the eye opening (a least-squares
affine from the portrait's eye contour to the output's), the iris is placed at the output's iris
centre at head scale, and both are drawn inside the output's eye opening only, so the lids
cover the iris as they do in life. A closed or nearly closed eye is left to the warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibrate import landmarks as lm
from live.engines.mesh.motion import apply_affine
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
    upper = contour[1:8]
    lower = contour[9:16][::-1]
    return float(np.linalg.norm(upper - lower, axis=1).mean())


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
        white = np.asarray(cv2.GaussianBlur(fill_holes(roi, white_px).astype(np.float32),
                                            (0, 0), 0.6))
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
    white = cv2.warpAffine(eye.white, to_out, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    # The iris: the portrait's disc at the output centre, at head scale (no shear).
    s = float(scale)
    c_src = eye.centre - eye.origin
    c_dst = centre - [x0, y0]
    iris_m = np.array([[s, 0.0, c_dst[0] - s * c_src[0]], [0.0, s, c_dst[1] - s * c_src[1]]])
    iris = cv2.warpAffine(eye.iris, iris_m, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(eye.iris_alpha, iris_m, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))[..., None]
    # Drawn inside the output eye opening only (soft by a pixel): the lids cover the iris.
    mask = np.zeros((size[1], size[0]), np.uint8)
    poly = np.round((contour - [x0, y0]) * 16.0).astype(np.int32)
    cv2.fillPoly(mask, [poly], (255,), cv2.LINE_AA, 4)
    m = cv2.erode(mask, np.ones((2, 2), np.uint8)).astype(np.float32)[..., None] \
        * np.float32(strength / 255.0)
    roi = out[y0:y1, x0:x1]
    eye_px = iris * alpha + white * (1.0 - alpha)
    blended = roi.astype(np.float32) * (1.0 - m) + eye_px * m
    roi[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return 1


CLOSING_LID_FROM = 0.35
"""Share of an eye's lid gap closed from which its lid is smoothed (:func:`smooth_closing_lids`)
..."""
CLOSING_LID_FULL = 0.75
"""... fully from this share on."""
CLOSING_LID_TONE = 0.5
"""How far the smoothed lid is drawn towards the skin just above the open lid (a closed lid
is skin, not the lashes and shadow stretched over the eye) ..."""
CLOSING_LID_TONE_BAND = 0.12
"""... measured in a band this high (eye widths) above the open upper lid."""


def smooth_closing_lids(out: np.ndarray, points: np.ndarray, portrait: np.ndarray,
                        head: np.ndarray) -> int:
    """In place: a closing eye's upper lid is the portrait's thin visible lid stretched over
    the eye, which shows as dark vertical streaks (its lashes and crease drawn out); as the
    lid comes down, the swept area is blurred along the eye and drawn half way to the tone of
    the skin above the open lid, the lash line at the lid's edge kept dark.
    ``points``: the output landmarks; ``portrait``: the portrait's; ``head``: the head's
    portrait -> output affine (2x3). Returns the number of eyes smoothed."""
    done = 0
    h, w = out.shape[:2]
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):  # 9 upper lid points, then the lower lid back
        was = apply_affine(head, np.asarray(portrait, np.float64)[list(eye), :2])
        now = np.asarray(points, np.float64)[list(eye), :2]
        gap_open = _open_gap(was)
        if gap_open < 1.0:
            continue
        closed = 1.0 - _open_gap(now) / gap_open
        a = float(np.clip((closed - CLOSING_LID_FROM) / (CLOSING_LID_FULL - CLOSING_LID_FROM),
                          0.0, 1.0))
        if a <= 0.0:
            continue
        up_open, up_now = was[:9], now[:9]
        width = float(np.linalg.norm(up_now[-1] - up_now[0]))
        k = max(3, round(0.3 * width) | 1)
        swept = np.concatenate([up_open, up_now[::-1]])
        x0, y0 = np.floor(swept.min(axis=0)).astype(int) - k
        x1, y1 = np.ceil(swept.max(axis=0)).astype(int) + k + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        roi = out[y0:y1, x0:x1]
        mask = np.zeros(roi.shape[:2], np.float32)
        cv2.fillPoly(mask, [np.round((swept - [x0, y0]) * 16).astype(np.int32)], (1.0,),
                     cv2.LINE_AA, 4)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0) * np.float32(a)
        # the lid's own tone: the skin just above where the open lid was
        band = np.zeros(roi.shape[:2], np.uint8)
        above = up_open - [0.0, CLOSING_LID_TONE_BAND * width]
        cv2.fillPoly(band, [np.round(np.concatenate([above, up_open[::-1]]) - [x0, y0])
                            .astype(np.int32)], (1,))
        skin = roi[band > 0]
        lashes = np.zeros(roi.shape[:2], np.float32)  # the closed lid's lash line stays dark
        cv2.polylines(lashes, [np.round((up_now - [x0, y0]) * 16).astype(np.int32)], False,
                      (1.0,), max(1, round(0.05 * width)), cv2.LINE_AA, 4)
        near_lashes = np.clip(cv2.GaussianBlur(lashes, (0, 0), 1.0), 0.0, 1.0)
        colour = cv2.blur(roi, (k, 1)).astype(np.float32)
        if len(skin) >= 5:
            tone = np.median(skin.astype(np.float32), axis=0)
            t = (CLOSING_LID_TONE * (1.0 - near_lashes))[..., None]
            colour += (tone - colour) * t
        base = roi.astype(np.float32)
        roi[...] = np.clip(base + (colour - base) * mask[..., None] + 0.5, 0, 255).astype(
            np.uint8)
        done += 1
    return done

