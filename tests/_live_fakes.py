"""Fakes shared by the ``test_live_*`` tests: a pyvirtualcam backend, frame sources, engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from live.packets import FaceCrop, Frame

FAKE_BACKEND = "mimicam-test"


class FakeVcamBackend:
    """A pyvirtualcam backend that records what it receives (not the frames: their stats)."""

    instances: ClassVar[list[FakeVcamBackend]] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int,
                 device: str | None, **kw: Any) -> None:
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.count = 0
        self.times: list[float] = []
        self.means: list[np.ndarray] = []
        self.samples: dict[int, np.ndarray] = {}
        self.last: np.ndarray | None = None
        self.closed = False
        self.lock = threading.Lock()
        FakeVcamBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        image = frame.reshape(self.height, self.width, 3)
        with self.lock:
            self.times.append(time.perf_counter())
            self.means.append(image.reshape(-1, 3).mean(axis=0))
            if self.count % 10 == 0:
                self.samples[self.count] = image.copy()
            self.last = image.copy()
            self.count += 1

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return "fake-vcam0"

    def native_fourcc(self) -> int | None:
        return None


@contextmanager
def fake_vcam_backend() -> Iterator[type[FakeVcamBackend]]:
    """Register :class:`FakeVcamBackend` with pyvirtualcam for the duration of the block."""
    import pyvirtualcam
    from pyvirtualcam import camera

    FakeVcamBackend.instances = []
    pyvirtualcam.register_backend(FAKE_BACKEND, FakeVcamBackend)
    try:
        yield FakeVcamBackend
    finally:
        camera.BACKENDS.pop(FAKE_BACKEND, None)


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a video, RGB."""
    from live.io.video import VideoReader

    out = []
    with VideoReader(path) as reader:
        for frame in reader:
            out.append(frame.image)
            if len(out) >= n:
                break
    return out


class ListSource:
    """A FrameSource over images, handed out one per read without waiting (never drops:
    ``realtime`` is False). ``fps`` sets the pts step, unless ``pts`` gives each frame's
    time. ``on_read(i)`` (optional) runs before frame ``i`` is handed out."""

    realtime = False

    def __init__(self, images: Sequence[np.ndarray], *, fps: float = 30.0,
                 pts: Sequence[float] | None = None, on_read: Any = None) -> None:
        self.images = list(images)
        self._fps = fps
        self.pts = list(pts) if pts is not None else [i / fps for i in range(len(self.images))]
        self.i = 0
        self.on_read = on_read
        self.closed = False
        self.started = False

    def start(self) -> None:
        self.started = True

    def read(self, timeout: float) -> Frame | None:
        if self.i >= len(self.images):
            return None
        if self.on_read is not None:
            self.on_read(self.i)
        frame = Frame(image=self.images[self.i], index=self.i, t_capture=time.perf_counter(),
                      pts=self.pts[self.i])
        self.i += 1
        return frame

    @property
    def lost(self) -> bool:
        return False

    @property
    def ended(self) -> bool:
        return self.i >= len(self.images)

    @property
    def dropped(self) -> int:
        return 0

    @property
    def fps(self) -> float:
        return self._fps

    def close(self) -> None:
        self.closed = True


class SpyEngine:
    """Wraps a real engine: records calls, can fail on chosen frames, and ``prepare`` can be
    held until ``prepare_gate`` (a threading.Event, when set as attribute) opens."""

    def __init__(self, inner: Any, *, fail_on: Sequence[int] = ()):
        self.inner = inner
        self.name = inner.name
        self.size = inner.size
        self.pastes_whole_crop = getattr(inner, "pastes_whole_crop", False)
        self.fail_on = set(fail_on)
        self.prepare_gate: threading.Event | None = None
        self.calls = 0
        self.calibrations: list[FaceCrop] = []
        self.recalibrations = 0
        self.closed = False
        self.pictures: list[tuple[int, int, int, int] | None] = []  # prepare's picture boxes
        self.contexts: list[Any] = []  # ... and contexts

    def prepare(self, portrait: np.ndarray, *,
                picture: tuple[int, int, int, int] | None = None,
                context: np.ndarray | Callable[[], np.ndarray | None] | None = None) -> Any:
        if self.prepare_gate is not None and not self.prepare_gate.wait(60):
            raise TimeoutError("prepare_gate never opened")
        self.pictures.append(picture)
        self.contexts.append(context)
        return self.inner.prepare(portrait, picture=picture)

    def set_portrait(self, prepared: Any) -> None:
        self.inner.set_portrait(prepared)

    def calibrate(self, neutral: FaceCrop) -> None:
        self.calibrations.append(neutral)
        self.inner.calibrate(neutral)

    def recalibrate(self) -> None:
        self.recalibrations += 1
        self.inner.recalibrate()

    @property
    def calibrated(self) -> bool:
        return bool(self.inner.calibrated)

    @property
    def last_matte(self) -> np.ndarray | None:
        """The inner engine's matte of its last crop (backgrounds)."""
        return getattr(self.inner, "last_matte", None)

    def process(self, driving: FaceCrop | None, t: float) -> np.ndarray:
        i = self.calls
        self.calls += 1
        if i in self.fail_on:
            raise RuntimeError(f"injected engine failure on call {i}")
        return np.asarray(self.inner.process(driving, t))

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class RecordingSink:
    """A sink keeping every frame it is sent (short runs only). ``on_send(i)`` runs after
    frame ``i`` arrived, on the pipeline's loop thread (tests press keys there: a key
    pressed after output ``i`` applies from the next frame on)."""

    name = "recording"

    def __init__(self, on_send: Any = None) -> None:
        self.frames: list[np.ndarray] = []
        self.closed = 0
        self.on_send = on_send

    def send(self, image: np.ndarray, t_capture: float) -> None:
        self.frames.append(image)
        if self.on_send is not None:
            self.on_send(len(self.frames) - 1)

    def close(self) -> None:
        self.closed += 1

    def __enter__(self) -> RecordingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)
