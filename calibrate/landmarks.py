"""Index constants for MediaPipe's face mesh (468 points, 478 with the iris refinement).

"Left" and "right" are the *subject's* sides, as in MediaPipe: the subject's right eye
(``RIGHT_EYE``, outer corner 33) appears on the left of an unmirrored image. Contours are
ordered polylines (loops are closed implicitly: the last point connects to the first); they
were written from ``mediapipe.solutions.face_mesh_connections`` (the ``FACEMESH_*`` edge
sets) and ``tests/test_landmarks.py`` checks them against those sets edge by edge, so
importing this module needs neither mediapipe nor anything heavy.

Landmark arrays are ``(N, 2)`` or ``(N, 3)`` (x, y[, z]) with N = 468 or 478; functions
accept extra leading batch dimensions, ``(..., N, D)``.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 468
"""Face-mesh points without the iris refinement."""
NUM_LANDMARKS_WITH_IRISES = 478
"""Face-mesh points with ``refine_landmarks=True`` (adds 468-477, the irises)."""

# --- single points -------------------------------------------------------------------------
FOREHEAD_TOP = 10
CHIN = 152
NOSE_TIP = 1
NOSE_BRIDGE = 168
RIGHT_EYE_OUTER = 33
RIGHT_EYE_INNER = 133
LEFT_EYE_OUTER = 263
LEFT_EYE_INNER = 362
MOUTH_RIGHT = 61
MOUTH_LEFT = 291
UPPER_LIP_TOP = 0
LOWER_LIP_BOTTOM = 17
UPPER_LIP_INNER = 13
LOWER_LIP_INNER = 14
RIGHT_CHEEK = 234
LEFT_CHEEK = 454

# --- eyes ----------------------------------------------------------------------------------
# Each lid runs from the outer corner to the inner corner (both corners included).
RIGHT_EYE_UPPER: tuple[int, ...] = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER: tuple[int, ...] = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362)
# Closed contours (16 points): upper lid outer -> inner, then the lower lid back.
RIGHT_EYE: tuple[int, ...] = RIGHT_EYE_UPPER + RIGHT_EYE_LOWER[-2:0:-1]
LEFT_EYE: tuple[int, ...] = LEFT_EYE_UPPER + LEFT_EYE_LOWER[-2:0:-1]
# Mid-lid points used for eye openness (upper, lower).
RIGHT_EYE_LID_MID: tuple[int, int] = (159, 145)
LEFT_EYE_LID_MID: tuple[int, int] = (386, 374)

# --- irises (only with refine_landmarks=True) ------------------------------------------
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473
RIGHT_IRIS: tuple[int, ...] = (469, 470, 471, 472)
"""Ring around the subject's right iris (closed loop), centre is ``RIGHT_IRIS_CENTER``."""
LEFT_IRIS: tuple[int, ...] = (474, 475, 476, 477)
"""Ring around the subject's left iris (closed loop), centre is ``LEFT_IRIS_CENTER``."""
IRISES: tuple[int, ...] = tuple(range(468, 478))

# --- brows ---------------------------------------------------------------------------------
# Each brow: an upper and a lower line, both from the outer end to the inner end.
RIGHT_BROW_UPPER: tuple[int, ...] = (70, 63, 105, 66, 107)
RIGHT_BROW_LOWER: tuple[int, ...] = (46, 53, 52, 65, 55)
LEFT_BROW_UPPER: tuple[int, ...] = (300, 293, 334, 296, 336)
LEFT_BROW_LOWER: tuple[int, ...] = (276, 283, 282, 295, 285)
RIGHT_BROW: tuple[int, ...] = RIGHT_BROW_UPPER + RIGHT_BROW_LOWER
LEFT_BROW: tuple[int, ...] = LEFT_BROW_UPPER + LEFT_BROW_LOWER
# The two rows of points between each upper lid and its brow, each row from the outer end to
# the inner end, point for point above the upper lid's seven middle points.
RIGHT_LID_RING_NEAR: tuple[int, ...] = (247, 30, 29, 27, 28, 56, 190)
RIGHT_LID_RING_FAR: tuple[int, ...] = (113, 225, 224, 223, 222, 221, 189)
LEFT_LID_RING_NEAR: tuple[int, ...] = (467, 260, 259, 257, 258, 286, 414)
LEFT_LID_RING_FAR: tuple[int, ...] = (342, 445, 444, 443, 442, 441, 413)

# --- lips ----------------------------------------------------------------------------------
# Lines run from the subject's right mouth corner (61 outer / 78 inner) to the left one.
LIPS_OUTER_UPPER: tuple[int, ...] = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER: tuple[int, ...] = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER: tuple[int, ...] = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LIPS_UPPER_MIDDLE: tuple[tuple[int, ...], ...] = (
    (184, 74, 73, 72, 11, 302, 303, 304, 408),
    (183, 42, 41, 38, 12, 268, 271, 272, 407),
)
"""The upper lip's two rows between its outer and inner line (outer first), corners aside,
column by column under ``LIPS_OUTER_UPPER[1:-1]``."""
LIPS_LOWER_MIDDLE: tuple[tuple[int, ...], ...] = (
    (77, 90, 180, 85, 16, 315, 404, 320, 307),
    (96, 89, 179, 86, 15, 316, 403, 319, 325),
)
"""The lower lip's two rows between its outer and inner line (outer first), corners aside,
column by column over ``LIPS_OUTER_LOWER[1:-1]``."""
LIPS_CORNER_MIDDLE: tuple[tuple[int, ...], ...] = ((76, 62), (306, 292))
"""Between each outer and inner mouth corner (outer first): the subject's right (61 -> 78),
then left (291 -> 308)."""
# Closed contours (20 points each): upper line right -> left, then the lower line back.
LIPS_OUTER: tuple[int, ...] = LIPS_OUTER_UPPER + LIPS_OUTER_LOWER[-2:0:-1]
LIPS_INNER: tuple[int, ...] = LIPS_INNER_UPPER + LIPS_INNER_LOWER[-2:0:-1]
"""The mouth opening (closed loop)."""
LIPS: tuple[int, ...] = LIPS_OUTER + LIPS_INNER

# --- face oval -----------------------------------------------------------------------------
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
"""Closed loop of 36 points from the forehead top (10) over the subject's left cheek, the chin
(152) and the right cheek."""

# --- nose ----------------------------------------------------------------------------------
NOSE_BRIDGE_LINE: tuple[int, ...] = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2)
"""From between the eyes down the ridge, over the tip (1), to below the nose (2)."""
NOSE: tuple[int, ...] = (
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326,
    327, 344, 440,
)
"""The 24 points of MediaPipe's ``FACEMESH_NOSE`` (sorted)."""

# --- a stable subset for pose comparison ---------------------------------------------------
EYE_CORNERS: tuple[int, ...] = (
    RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER,
)
MOUTH_CORNERS: tuple[int, ...] = (MOUTH_RIGHT, MOUTH_LEFT)
POSE_POINTS: tuple[int, ...] = tuple(
    dict.fromkeys(EYE_CORNERS + NOSE_BRIDGE_LINE + MOUTH_CORNERS + FACE_OVAL)
)
"""Points that follow the head with little expression change: eye corners, the nose ridge,
mouth corners and the face oval (52 points, no duplicates)."""


def inter_ocular_distance(landmarks: np.ndarray) -> np.ndarray | float:
    """Distance in the image plane between the outer eye corners (points 33 and 263).

    ``landmarks`` is ``(N, D)`` with D >= 2 (N >= 468) or a batch ``(..., N, D)``; returns a
    float for one face, an array of shape ``(...)`` for a batch. The outer corners do not
    move when the eyes blink or the gaze turns, which is why they are used rather than the
    pupils; this is the usual normaliser of face-landmark errors.
    """
    pts = np.asarray(landmarks)
    if pts.ndim < 2 or pts.shape[-2] < NUM_LANDMARKS or pts.shape[-1] < 2:
        raise ValueError(
            f"expected face-mesh landmarks of shape (..., N>={NUM_LANDMARKS}, D>=2), "
            f"got shape {pts.shape}"
        )
    d = np.linalg.norm(
        pts[..., LEFT_EYE_OUTER, :2].astype(np.float64)
        - pts[..., RIGHT_EYE_OUTER, :2].astype(np.float64),
        axis=-1,
    )
    return float(d) if d.ndim == 0 else d


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors across the face (its right eye's outer corner -> its left eye's; image
    right for a frontal face) and down the face (across turned a quarter clockwise), (2,)
    each, in the image plane of one face's ``(N, D)`` landmarks."""
    pts = np.asarray(landmarks)
    across = pts[LEFT_EYE_OUTER, :2] - pts[RIGHT_EYE_OUTER, :2]  # (in the landmarks' dtype)
    across = across / max(float(np.linalg.norm(across)), 1e-9)
    return across, np.array([-across[1], across[0]])


def eye_centers(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(right, left)`` of the two eye contours (mean of their 16 points), (..., D)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return pts[..., list(RIGHT_EYE), :].mean(axis=-2), pts[..., list(LEFT_EYE), :].mean(axis=-2)
