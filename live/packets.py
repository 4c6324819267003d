"""Typed packets passed between pipeline stages.

Inside mimicam every image is RGB ``uint8`` with shape ``(H, W, 3)``; conversion from and to
BGR (OpenCV) or other layouts happens once, at the edges (capture, decode, sinks, encode).
Each packet is a frozen dataclass; "no face" is a value (``face is None``), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is an RGB uint8 HxWx3 array, else raise ``ValueError``."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{name}: expected an RGB uint8 array of shape (H, W, 3), "
            f"got dtype {image.dtype} shape {image.shape}"
        )
    return image


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured or decoded frame.

    ``t_capture`` is ``time.perf_counter()`` when the frame entered mimicam; ``pts`` is the
    presentation time in seconds within its source (video time), when known.
    """

    image: np.ndarray
    index: int
    t_capture: float
    pts: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def time(self, fps: float | None = None) -> float:
        """The frame's time in seconds, the one rule for it: ``pts`` when known; else
        ``index / fps`` when the source's frame rate ``fps`` is given (a decoded video without
        timestamps); else ``t_capture`` (a live camera: the capture clock)."""
        if self.pts is not None:
            return self.pts
        if fps is not None:
            return self.index / fps
        return self.t_capture


@dataclass(frozen=True, slots=True)
class FaceCrop:
    """A square face crop and where it came from.

    ``crop_to_frame`` is the 2x3 affine matrix that maps crop pixel coordinates to frame
    pixel coordinates (used to paste an animated crop back). ``landmarks`` are face-mesh
    points in crop pixel coordinates, shape (N, 3) float32 (x, y, z with z in the same
    pixel scale), or None when the tracker did not compute them.
    """

    image: np.ndarray
    crop_to_frame: np.ndarray
    frame_index: int
    t_capture: float
    landmarks: np.ndarray | None = None
    score: float = 1.0

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def frame_to_crop(self) -> np.ndarray:
        """The inverse 2x3 affine (frame pixels -> crop pixels)."""
        from live.geometry import invert_affine  # geometry builds on these packets

        return invert_affine(self.crop_to_frame)


@dataclass(frozen=True, slots=True)
class Tracked:
    """The tracker's result for one frame: the frame and its face, or ``face=None``."""

    frame: Frame
    face: FaceCrop | None


@dataclass(frozen=True, slots=True)
class Animated:
    """An engine's output for one frame: the animated portrait crop (RGB uint8 SxSx3)."""

    image: np.ndarray
    frame_index: int
    t_capture: float
    face_found: bool
    timings: dict[str, float] = field(default_factory=dict)
