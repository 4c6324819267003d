"""The one engine interface every animation engine implements.

Life cycle::

    engine = create_engine("mesh", size=512)
    prepared = engine.prepare(portrait_crop)   # heavy; may run on another thread
    engine.set_portrait(prepared)              # cheap swap on the hot path
    for tracked in frames:
        out = engine.process(tracked.face, t)  # face None -> hold, then ease back to neutral
    engine.recalibrate()                       # next driving face becomes the neutral pose

The neutral driving pose is taken from the first face given to :meth:`process` after
construction or :meth:`recalibrate`, unless :meth:`calibrate` is called with a chosen one
(``calibrate/`` picks a stable frame, or the best-matching one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from live.packets import FaceCrop


@runtime_checkable
class Engine(Protocol):
    """Animates one portrait crop with the relative motion of a driving face crop."""

    name: str
    size: int

    def prepare(self, portrait: np.ndarray) -> Any:
        """Analyse a portrait face crop (RGB uint8, size x size); returns an opaque handle.

        Raises :class:`calibrate.errors.NoFaceError` when the crop holds no usable face. Must not
        touch the engine's current state, so it can run off the hot path.
        """
        ...

    def set_portrait(self, prepared: Any) -> None:
        """Switch to a prepared portrait (keeps the calibration of the driving face)."""
        ...

    def calibrate(self, neutral: FaceCrop) -> None:
        """Use ``neutral`` as the driving face's neutral pose."""
        ...

    def recalibrate(self) -> None:
        """Forget the neutral pose; the next face given to :meth:`process` becomes it."""
        ...

    @property
    def calibrated(self) -> bool:
        """True once a neutral driving pose is known."""
        ...

    def process(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        """One animated portrait crop (RGB uint8, size x size) for this driving face.

        ``driving`` None means no face this frame: hold the last pose and ease back to
        neutral. ``t`` is the frame's time in seconds (capture time or video time), used
        for smoothing with real time steps.
        """
        ...

    def close(self) -> None:
        """Release resources; calling it twice is harmless."""
        ...


EngineFactory = Callable[..., Engine]
_FACTORIES: dict[str, str] = {
    # name -> "module:callable"; imported only when asked for (no heavy imports here).
    "mesh": "live.engines.mesh.engine:MeshEngine",
    "fomm": "live.engines.fomm:FommEngine",
}


def engine_names() -> list[str]:
    return sorted(_FACTORIES)


def create_engine(name: str, **options: Any) -> Engine:
    """Build the engine called ``name`` with keyword options of that engine."""
    try:
        target = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown engine {name!r}; expected one of {', '.join(engine_names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    import importlib

    factory: EngineFactory = getattr(importlib.import_module(module_name), attr)
    return factory(**options)
