"""Calibration of the driving face: neutral pose, relative motion, adapt scale, smoothing.

The lowest layer of mimicam (pure numpy): it also holds what every layer above shares, the
errors (:mod:`calibrate.errors`), the landmark index sets (:mod:`calibrate.landmarks`) and the
keypoint packet (:class:`calibrate.keypoints.Keypoints`), and the distribution's version.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mimicam")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
