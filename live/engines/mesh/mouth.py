"""The mouth interior shown when the portrait's mouth opens further than it is open.

A closed mouth has no interior to warp: stretching the lip line would smear lip texture over
the opening. Where the output mouth opening is larger than the portrait's own, it is painted
with a dark interior whose colour comes from the portrait's lips (darkened: so a black-and-
white photo gets a grey mouth, a painting its own hue), darkest at the middle and a little
lighter at the lips. The part of the opening the portrait already shows (an open mouth with
teeth) keeps the warped original: the paint's opacity is ``1 - own area / output area``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibrate import landmarks as lm


def polygon_area(poly: np.ndarray) -> float:
    """Absolute area of a simple polygon (N, 2)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class MouthStyle:
    """What the mouth interior of one portrait looks like."""

    edge: np.ndarray
    """RGB float32 (3,): colour next to the lips."""
    core: np.ndarray
    """RGB float32 (3,): colour deep inside."""
    own_area: float
    """Area in portrait pixels of the portrait's own mouth opening."""


def mouth_style(image: np.ndarray, landmarks: np.ndarray, *, edge_gain: float = 0.42,
                core_gain: float = 0.16) -> MouthStyle:
    """Measure the portrait's lip colour (median over the lips) and its own mouth opening."""
    h, w = image.shape[:2]
    outer = np.round(landmarks[list(lm.LIPS_OUTER), :2]).astype(np.int32)
    inner = np.round(landmarks[list(lm.LIPS_INNER), :2]).astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [outer], (255,))
    cv2.fillPoly(mask, [inner], (0,))
    pixels = image[mask > 0]
    if len(pixels) < 10:  # lips off the crop or degenerate: a neutral dark red
        lip = np.array([150.0, 80.0, 80.0], np.float32)
    else:
        lip = np.median(pixels.astype(np.float32), axis=0)
    return MouthStyle(edge=(lip * edge_gain).astype(np.float32),
                      core=(lip * core_gain).astype(np.float32),
                      own_area=polygon_area(landmarks[list(lm.LIPS_INNER), :2]))


def fill_mouth(image: np.ndarray, inner_lips: np.ndarray, style: MouthStyle,
               area_scale: float = 1.0) -> float:
    """Paint the mouth interior inside the output's inner-lip polygon ``inner_lips`` (20, 2,
    in :data:`calibrate.landmarks.LIPS_INNER` order: mouth corners at 0 and 10),
    in place. ``area_scale`` converts portrait areas to output areas (head scale squared).
    Returns the paint's opacity (0 when nothing was painted)."""
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
