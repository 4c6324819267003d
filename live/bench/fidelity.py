"""Motion-transfer fidelity of an animation engine, measured on its output frames.

Per frame, the face mesh is run on the *output* and compared with where the driving motion
says the output's landmarks should be: output frame 0's landmarks plus the driving
displacement since driving frame 0, mapped into the output's frame by a similarity fitted on
the two frame-0 faces' pose points (eye corners, nose ridge, mouth corners, face oval). The
error is the mean distance over the lips, eyes, brows and face oval, in inter-ocular
distances of output frame 0. The same error for a frozen portrait (output frame 0 shown all
the time) is the motion itself; ``transfer_ratio = sum(error) / sum(frozen error)``: 0 means
the output moved exactly as driven, 1 that it did not move at all.

Also counted: output frames where the face mesh finds no face ("lost"), and the PSNR of
output frame 0 against the portrait (the neutral pose should leave the portrait untouched).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from calibrate import landmarks as lm
from live.engines.mesh.motion import fit_similarity

REGIONS: dict[str, tuple[int, ...]] = {
    "lips": lm.LIPS,
    "eyes": lm.RIGHT_EYE + lm.LEFT_EYE,
    "brows": lm.RIGHT_BROW + lm.LEFT_BROW,
    "oval": lm.FACE_OVAL,
}
"""Landmark groups the error is averaged over."""
METRIC_POINTS: tuple[int, ...] = tuple(dict.fromkeys(sum(REGIONS.values(), ())))
FIT_POINTS: tuple[int, ...] = lm.POSE_POINTS


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 images of one shape; inf when equal."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: expected images of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0 ** 2 / mse)


def expected_points(out0: np.ndarray, drv0: np.ndarray, drv: np.ndarray) -> np.ndarray:
    """Where the output's landmarks should be, (N, 2): ``out0`` plus the driving displacement
    ``drv - drv0`` through the linear part of the similarity fitted from ``drv0`` to ``out0``."""
    fit = list(FIT_POINTS)
    s = fit_similarity(drv0[fit, :2], out0[fit, :2])
    n = min(out0.shape[0], drv.shape[0], lm.NUM_LANDMARKS)
    disp = np.asarray(drv[:n, :2], np.float64) - np.asarray(drv0[:n, :2], np.float64)
    return np.asarray(out0[:n, :2] + disp @ s[:, :2].T)


def landmark_warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """A square ``image`` (S, S, C) with its pixels moved so that the points ``src`` land on
    ``dst`` ((N, 2+) each, in pixels): affine on each triangle of a Delaunay triangulation of
    ``src`` and of points along the image's border, which stays where it is (the mesh
    engine's piecewise-affine warp, on no other rule)."""
    import cv2
    from scipy.spatial import Delaunay

    from live.engines.mesh.warp import triangle_affines, triangle_bounds

    h, w = image.shape[:2]
    a = np.asarray(src, np.float64)[:, :2]
    b = np.asarray(dst, np.float64)[:, :2]
    if a.shape != b.shape or h != w:
        raise ValueError(f"landmark_warp: expected a square image and src and dst of one "
                         f"shape (N, 2), got {w}x{h}, {a.shape} and {b.shape}")
    edge = np.linspace(0.0, w - 1.0, 9)
    border = np.array([(x, y) for x in edge for y in edge
                       if x in (edge[0], edge[-1]) or y in (edge[0], edge[-1])])
    a, b = np.vstack([a, border]), np.vstack([b, border])
    tris = Delaunay(a).simplices.astype(np.int64)
    warp = _square_warp(w)
    index = warp.index_map(b, tris)
    maps = warp.source_map(index, triangle_affines(b, a, tris), triangle_bounds(b, a, tris))
    return np.asarray(cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE))


@functools.lru_cache(maxsize=2)
def _square_warp(size: int) -> Any:
    from live.engines.mesh.warp import PiecewiseAffineWarp

    return PiecewiseAffineWarp(size, grid=size)


def frame_errors(out0: np.ndarray, out: np.ndarray, drv0: np.ndarray,
                 drv: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per region (and ``"all"``): (error, frozen error) in inter-ocular distances of
    ``out0``. All arrays are face-mesh landmarks (N >= 468, 2|3) in pixels."""
    exp = expected_points(out0, drv0, drv)
    iod = max(float(lm.inter_ocular_distance(out0)), 1e-9)
    err = np.linalg.norm(np.asarray(out[: len(exp), :2], np.float64) - exp, axis=1) / iod
    frozen = np.linalg.norm(np.asarray(out0[: len(exp), :2], np.float64) - exp, axis=1) / iod
    res = {name: (float(err[list(ids)].mean()), float(frozen[list(ids)].mean()))
           for name, ids in REGIONS.items()}
    ids = list(METRIC_POINTS)
    res["all"] = (float(err[ids].mean()), float(frozen[ids].mean()))
    return res


@dataclass
class FidelityResult:
    """Scores of one portrait x driving run."""

    frames: int = 0
    """Output frames seen."""
    scored: int = 0
    """Frames with a face in both the driving and the output frame."""
    lost: int = 0
    """Output frames without a detectable face."""
    driving_lost: int = 0
    """Frames where the driving face was missing (not scored)."""
    neutral_psnr: float = math.nan
    error_sum: dict[str, float] = field(default_factory=dict)
    frozen_sum: dict[str, float] = field(default_factory=dict)

    def ratio(self, region: str = "all") -> float:
        frozen = self.frozen_sum.get(region, 0.0)
        return self.error_sum.get(region, 0.0) / frozen if frozen > 0 else math.nan

    @property
    def transfer_ratio(self) -> float:
        return self.ratio("all")

    @property
    def mean_error(self) -> float:
        return self.error_sum.get("all", 0.0) / self.scored if self.scored else math.nan

    @property
    def mean_motion(self) -> float:
        """Mean frozen error: how much the driving face moved, in inter-ocular distances."""
        return self.frozen_sum.get("all", 0.0) / self.scored if self.scored else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "scored": self.scored, "lost": self.lost,
            "driving_lost": self.driving_lost, "neutral_psnr": self.neutral_psnr,
            "transfer_ratio": self.transfer_ratio, "mean_error_iod": self.mean_error,
            "mean_motion_iod": self.mean_motion,
            "region_ratio": {r: self.ratio(r) for r in (*REGIONS, "all")},
        }


class FidelityMeter:
    """Scores an engine's output frames one by one (the face mesh runs on each output).

    ``add(output, driving)`` takes the output image (RGB uint8) and the driving landmarks
    of that frame in driving-frame pixels ((N, 3), or None when the driving face was lost).
    The first call is frame 0 (the reference). Pass the ``portrait`` to get the neutral PSNR.

    Output frames are measured as still images (``still=True``, the default): the face
    mesh's video mode smooths landmarks over time, which would add its lag to the engine's
    and count as error. ``still=False`` uses a :class:`~live.face.tracking.FaceTracker` instead.
    """

    def __init__(self, *, portrait: np.ndarray | None = None, still: bool = True,
                 tracker: Any = None) -> None:
        if tracker is None and not still:
            from live.face.tracking import FaceTracker

            tracker = FaceTracker(crop_size=256, smooth_box=False)
        self._tracker = tracker
        self._portrait = portrait
        self.result = FidelityResult()
        self._out0: np.ndarray | None = None
        self._drv0: np.ndarray | None = None
        self._closed = False

    def output_landmarks(self, image: np.ndarray, index: int, t: float) -> np.ndarray | None:
        """Face-mesh landmarks of an output frame in its pixels, or None."""
        from live.engines.mesh.engine import driving_points
        from live.packets import Frame

        if self._tracker is None:
            from live.face.tracking import face_landmarks

            pts = face_landmarks(image, refine=True)
            return None if pts is None else pts.astype(np.float64)

        face = self._tracker.process(Frame(image, index, t, t)).face
        if face is None or face.landmarks is None:
            return None
        return driving_points(face, face.landmarks)

    def add(self, output: np.ndarray, driving: np.ndarray | None) -> np.ndarray | None:
        """Score one frame; returns the output's landmarks (None when its face was lost)."""
        r = self.result
        index = r.frames
        if index == 0 and self._portrait is not None:
            r.neutral_psnr = psnr(output, self._portrait)
        r.frames += 1
        out = self.output_landmarks(output, index, index / 30.0)
        if out is None:
            r.lost += 1
        if driving is None:
            r.driving_lost += 1
        if out is None or driving is None:
            return out
        if self._out0 is None or self._drv0 is None:
            self._out0, self._drv0 = out, np.asarray(driving, np.float64)
        for name, (e, f) in frame_errors(self._out0, out, self._drv0, driving).items():
            r.error_sum[name] = r.error_sum.get(name, 0.0) + e
            r.frozen_sum[name] = r.frozen_sum.get(name, 0.0) + f
        r.scored += 1
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close = getattr(self._tracker, "close", None) if self._tracker is not None else None
            if close is not None:
                close()

    def __enter__(self) -> FidelityMeter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
