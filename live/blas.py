"""Keep OpenBLAS and OpenCV's thread pools from busy-waiting between frames.

numpy's and OpenCV's bundled OpenBLAS start a pool of worker threads that spin after every
call. The animation loop makes many small calls per frame, so the pool spins between them:
on a 2-core machine that burnt ~20 ms of CPU per frame in `mimicam live` (53 instead of 33 ms
at 30 fps), time the tracker and the engine need; under `mimicam serve` a second OpenBLAS
thread burnt 9-13 ms of CPU per mesh frame (as much as the engine's own work) and fought the
other instance, while no frame got faster. The matrices here are tiny, so one BLAS thread is
as fast, and the results are the same (the split of work changes, not the arithmetic).
:func:`limit_openblas_threads` sets the thread count of every OpenBLAS already loaded in the
process (what ``threadpoolctl`` does, without the dependency).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["OPENCV_POOL_SETTINGS", "calm_opencv_pool", "limit_openblas_threads",
           "loaded_openblas", "usable_cores"]

_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")


def loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (Linux; elsewhere none)."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: nothing found, nothing changed
        return []
    paths = {line.split(None, 5)[-1] for line in text.splitlines()
             if "openblas" in line.lower() and line.count(" ") >= 5}
    return sorted(p for p in paths if p.startswith("/"))


def limit_openblas_threads(n: int = 1) -> dict[str, int]:
    """Set every loaded OpenBLAS to ``n`` threads (at least 1); returns what was set (library
    file name -> threads).

    Call it after numpy and OpenCV are imported (it imports both first). Works on Linux
    (reads /proc/self/maps); elsewhere it does nothing and returns ``{}``. Never raises.
    """
    import cv2  # noqa: F401 - load both BLAS copies before looking for them
    import numpy  # noqa: F401

    threads = max(1, int(n))
    done: dict[str, int] = {}
    for path in loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                setter(threads)
                done[Path(path).name] = threads
                log.debug("%s: %s(%d)", Path(path).name, name, threads)
                break
    return done


OPENCV_POOL_SETTINGS = {
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "0",
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "0",
}
"""The environment OpenCV reads when it loads: how long its pool's workers, and a thread
waiting for them, spin before sleeping (OpenCV's defaults: 2000 and 10000 rounds)."""


def calm_opencv_pool() -> dict[str, str]:
    """Let OpenCV's pool threads sleep between parallel calls instead of spinning (see the
    module's notes), by setting :data:`OPENCV_POOL_SETTINGS` in the environment. OpenCV reads
    them once, as it loads: call this before anything imports ``cv2``. A value already set
    (the user's own) is kept. Returns the settings in force, or ``{}`` when ``cv2`` was
    already loaded (nothing changed then)."""
    if "cv2" in sys.modules:
        log.debug("OpenCV is already loaded: its thread pool keeps its settings")
        return {}
    for name, value in OPENCV_POOL_SETTINGS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in OPENCV_POOL_SETTINGS}


def usable_cores() -> int:
    """How many CPU cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
