"""Keep OpenBLAS from busy-waiting between frames.

numpy's and OpenCV's bundled OpenBLAS start a pool of worker threads that spin after every
call. The live loop makes many small calls at 30 fps, so the pool spins between frames: on
a 2-core machine that burnt ~20 ms of CPU per frame (53 instead of 33 ms at 30 fps), time
the tracker and the engine need. The matrices here are tiny, so one BLAS thread is also
faster. :func:`limit_openblas_threads` sets the thread count of every OpenBLAS already
loaded in the process (what ``threadpoolctl`` does, without the dependency).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["limit_openblas_threads"]

_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")


def _loaded_openblas() -> list[str]:
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: nothing found, nothing changed
        return []
    paths = {line.split(None, 5)[-1] for line in text.splitlines()
             if "openblas" in line.lower() and line.count(" ") >= 5}
    return sorted(p for p in paths if p.startswith("/"))


def limit_openblas_threads(n: int = 1) -> int:
    """Set every loaded OpenBLAS to ``n`` threads; returns how many libraries were set.

    Call it after numpy and OpenCV are imported. Works on Linux (reads /proc/self/maps);
    elsewhere it does nothing and returns 0. Never raises.
    """
    import cv2  # noqa: F401 - load both BLAS copies before looking for them
    import numpy  # noqa: F401

    done = 0
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter(int(n))
                done += 1
                log.debug("%s: %s(%d)", Path(path).name, name, n)
                break
    return done
