"""A running ``mimicam live`` with its control page, for the page's tests: two built-in
portraits (scikit-image's astronaut, and the same mirrored with red and blue swapped) in a
folder, driven by the astronaut's still face, real tracker and mesh engine, the HTTP sink with
a :class:`~live.jobs.control.LiveControl`. Needs nothing outside the repository."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from live.config import LiveConfig
from live.engines.base import create_engine
from live.face.portraits import PortraitLibrary
from live.face.tracking import FaceTracker
from live.io.sinks import MjpegHttpSink
from live.jobs.control import LiveControl
from live.jobs.pipeline import LivePipeline
from live.packets import Frame

OUTPUT = (640, 360)
CROP = 256


class StillSource:
    """A camera that shows the same picture at ``fps`` (each frame stamped anew)."""

    realtime = True

    def __init__(self, image: np.ndarray, fps: float = 30.0) -> None:
        self.image = image
        self._fps = fps
        self._i = 0
        self._next = 0.0

    def start(self) -> None:
        self._next = time.perf_counter()

    def read(self, timeout: float) -> Frame | None:
        wait = self._next - time.perf_counter()
        if wait > timeout:
            time.sleep(timeout)
            return None
        if wait > 0:
            time.sleep(wait)
        self._next += 1.0 / self._fps
        self._i += 1
        return Frame(image=self.image, index=self._i, t_capture=time.perf_counter())

    lost = False
    ended = False
    dropped = 0

    @property
    def fps(self) -> float:
        return self._fps

    def close(self) -> None:
        pass


def builtin_portraits(folder: Path) -> list[Path]:
    """Two portraits in ``folder``: the astronaut, and her mirror image with red and blue
    swapped (so the stream changes colour when the portrait switches)."""
    from live.jobs.demo import builtin_portrait

    folder.mkdir(parents=True, exist_ok=True)
    astronaut = builtin_portrait()
    a, b = folder / "astronaut.png", folder / "blue_astronaut.png"
    cv2.imwrite(str(a), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(b), astronaut[:, ::-1].copy())  # RGB written as BGR: red <-> blue
    return [a, b]


@dataclass
class Rig:
    pipeline: LivePipeline
    sink: MjpegHttpSink
    control: LiveControl
    folder: Path

    @property
    def port(self) -> int:
        return self.sink.address[1]


@contextmanager
def running_live(folder: Path) -> Iterator[Rig]:
    """``mimicam live --portrait FOLDER --http 127.0.0.1:0`` on the built-in portraits, in a
    thread; stopped and closed at the end."""
    from live.jobs.demo import builtin_portrait

    paths = builtin_portraits(folder)
    engine = create_engine("mesh", size=CROP)
    config = LiveConfig(width=OUTPUT[0], height=OUTPUT[1], vcam=False, preview=False)
    library = PortraitLibrary(paths, engine, output_size=OUTPUT)
    sink = MjpegHttpSink("127.0.0.1", 0)
    pipeline = LivePipeline(config, source=StillSource(builtin_portrait()),
                            tracker=FaceTracker(crop_size=CROP), engine=engine,
                            library=library, sinks=[sink])
    control = LiveControl(pipeline, portrait_dir=folder)
    sink.set_control(control)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="live-under-test", daemon=True)
    thread.start()
    try:
        yield Rig(pipeline, sink, control, folder)
    finally:
        pipeline.stop()
        thread.join(timeout=30)
        pipeline.close()
    if errors:
        raise errors[0]
