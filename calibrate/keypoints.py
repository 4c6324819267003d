"""Relative FOMM keypoint motion and adapt-movement-scale (pure numpy).

The maths of first-order-model's / PaddleGAN's ``normalize_kp``:

* value = (kp_driving - kp_driving_initial) * scale + kp_source
* jacobian = (J_driving @ inv(J_driving_initial)) @ J_source, in that order
* scale = sqrt(hull area of kp_source) / sqrt(hull area of kp_driving_initial), from batch
  element 0 only, in float64 (1.0 unless ``adapt_scale``)

Keypoint values are (x, y) in [-1, 1], shaped [K, 2] or [B, K, 2]; jacobians [..., K, 2, 2].
Leading batch dimensions broadcast (e.g. one source against B driving frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError


@dataclass(frozen=True, slots=True)
class Keypoints:
    """FOMM keypoints for one image: values (K, 2) in [-1, 1] (x, y) and jacobians (K, 2, 2)."""

    value: np.ndarray
    jacobian: np.ndarray | None = None


def _check_value(value: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim not in (2, 3) or arr.shape[-1] != 2 or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected keypoint values of shape (K, 2) or (B, K, 2), "
                         f"got {arr.dtype} array of shape {arr.shape}")
    return arr


def _check_jacobian(jacobian: np.ndarray, value: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(jacobian)
    expected = (*value.shape[:-1], 2, 2)
    if arr.shape != expected or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected jacobians of shape {expected} to match the values, "
                         f"got {arr.dtype} array of shape {arr.shape}")
    return arr


def _first(value: np.ndarray) -> np.ndarray:
    """Batch element 0 of a [B, K, 2] array (a [K, 2] array as is), as float64."""
    return np.asarray(value[0] if value.ndim == 3 else value, dtype=np.float64)


def hull_area(points: np.ndarray) -> float:
    """Area of the 2-D convex hull of ``points`` [N, 2] (N >= 3, not all on one line)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise ValueError(f"hull_area: expected points of shape (N>=3, 2), got shape {pts.shape}")
    try:
        # For 2-D input ConvexHull.volume is the area (.area would be the perimeter).
        return float(ConvexHull(pts).volume)
    except QhullError as exc:
        raise ValueError(f"hull_area: the {pts.shape[0]} points span no area "
                         "(coincident or collinear)") from exc


def adapt_movement_scale(kp_source_value: np.ndarray,
                         kp_driving_initial_value: np.ndarray) -> float:
    """sqrt(hull area of the source keypoints) / sqrt(hull area of the initial driving ones).

    Uses batch element 0 of each (the values may be [K, 2] or [B, K, 2]).
    """
    src = _check_value(kp_source_value, "kp_source_value")
    init = _check_value(kp_driving_initial_value, "kp_driving_initial_value")
    if src.shape[-2] != init.shape[-2]:
        raise ValueError(f"adapt_movement_scale: keypoint counts differ: source has "
                         f"{src.shape[-2]}, initial driving has {init.shape[-2]}")
    return float(np.sqrt(hull_area(_first(src))) / np.sqrt(hull_area(_first(init))))


def normalize_kp(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints,
                 *, relative: bool = True, adapt_scale: bool = False,
                 relative_jacobian: bool | None = None) -> Keypoints:
    """The keypoints that drive the generator for one driving frame.

    ``relative``: move the source keypoints by the driving motion since
    ``kp_driving_initial`` (else the driving keypoints pass through unchanged).
    ``adapt_scale``: scale that motion by the ratio of the face sizes (keypoint hulls).
    ``relative_jacobian`` (default: same as ``relative``): apply the driving jacobian change
    to the source jacobian; when False the driving jacobian passes through.
    The result has the driving value's float dtype and the broadcast batch shape.
    """
    if relative_jacobian is None:
        relative_jacobian = relative
    d_val = _check_value(kp_driving.value, "kp_driving.value")
    s_val = _check_value(kp_source.value, "kp_source.value")
    i_val = _check_value(kp_driving_initial.value, "kp_driving_initial.value")
    k = d_val.shape[-2]
    if s_val.shape[-2] != k or i_val.shape[-2] != k:
        raise ValueError(f"normalize_kp: keypoint counts differ: source {s_val.shape}, driving "
                         f"{d_val.shape}, initial driving {i_val.shape}")
    try:
        np.broadcast_shapes(d_val.shape, s_val.shape, i_val.shape)
    except ValueError as exc:
        raise ValueError(f"normalize_kp: batch shapes do not broadcast: source {s_val.shape}, "
                         f"driving {d_val.shape}, initial driving {i_val.shape}") from exc
    d_jac = (None if kp_driving.jacobian is None
             else _check_jacobian(kp_driving.jacobian, d_val, "kp_driving.jacobian"))
    dtype = d_val.dtype if d_val.dtype.kind == "f" else np.dtype(np.float64)

    value: np.ndarray = d_val
    if relative:
        scale = adapt_movement_scale(s_val, i_val) if adapt_scale else 1.0
        moved = (d_val.astype(np.float64) - i_val) * scale + s_val
        value = moved.astype(dtype)

    jacobian = d_jac
    if relative and relative_jacobian and d_jac is not None:
        if kp_source.jacobian is None or kp_driving_initial.jacobian is None:
            raise ValueError("normalize_kp: relative jacobians need the source and initial "
                             "driving jacobians too, got None")
        s_jac = _check_jacobian(kp_source.jacobian, s_val, "kp_source.jacobian")
        i_jac = _check_jacobian(kp_driving_initial.jacobian, i_val, "kp_driving_initial.jacobian")
        try:
            i_inv = np.linalg.inv(i_jac.astype(np.float64))
        except np.linalg.LinAlgError as exc:
            raise ValueError("normalize_kp: an initial driving jacobian is singular") from exc
        change = np.matmul(d_jac.astype(np.float64), i_inv)
        jacobian = np.matmul(change, s_jac.astype(np.float64)).astype(dtype)
    return Keypoints(value=value, jacobian=jacobian)
