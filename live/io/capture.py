"""Frame sources for ``mimicam live``: a webcam and a driver video, each on its own thread.

Both hand out only the newest frame (a latest-wins slot): when the pipeline is busy, stale
frames are dropped at the input and counted, so latency never builds up in a queue. Every
frame is stamped with ``time.perf_counter()`` when it is captured (``Frame.t_capture``) and
converted to RGB once, here.

- :class:`CameraSource` reads a ``cv2.VideoCapture``. A failing read marks the camera lost
  and the thread retries opening it with exponential back-off; nothing is raised into the
  pipeline, which reads :attr:`CameraSource.lost` and keeps sending its last frame.
- :class:`VideoFileSource` plays a video file at its own frame rate (``realtime=True``) and
  loops it; with ``realtime=False`` it hands over every frame as fast as they are taken
  (benchmarks, offline checks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import cv2
import numpy as np

from calibrate.errors import InputError
from live.packets import Frame

log = logging.getLogger(__name__)

__all__ = ["CameraSource", "FrameSlot", "FrameSource", "VideoFileSource"]

T = TypeVar("T")


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline needs from a source of driving frames."""

    realtime: bool
    """True when frames come at their own pace and stale ones may be dropped (a camera);
    False when every frame must be processed (a video played as fast as it is taken)."""

    def start(self) -> None: ...

    def read(self, timeout: float) -> Frame | None:
        """The newest frame not read yet, waiting up to ``timeout`` s; None if none came."""
        ...

    @property
    def lost(self) -> bool:
        """True while the source is failing (camera unplugged, read errors)."""
        ...

    @property
    def ended(self) -> bool:
        """True when a finite source has no more frames (never for a camera)."""
        ...

    @property
    def dropped(self) -> int:
        """Frames replaced in the slot before the pipeline read them."""
        ...

    @property
    def fps(self) -> float: ...

    def close(self) -> None: ...


class FrameSlot(Generic[T]):
    """A one-item, latest-wins hand-over between a producer thread and a consumer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: T | None = None
        self.dropped = 0
        self.produced = 0
        self._closed = False

    def put(self, frame: T) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.produced += 1
            self._cond.notify_all()

    def wait_empty(self, stop: threading.Event) -> bool:
        """Wait until the last frame was taken; False if ``stop`` was set or the slot closed."""
        with self._cond:
            while self._frame is not None and not stop.is_set() and not self._closed:
                self._cond.wait(0.05)
            return not (stop.is_set() or self._closed)

    @property
    def empty(self) -> bool:
        with self._cond:
            return self._frame is None

    def take(self, timeout: float) -> T | None:
        with self._cond:
            if self._frame is None and timeout > 0:
                self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frame = None
            self._cond.notify_all()


class _ThreadedSource:
    """Shared life cycle: a producer thread feeding a :class:`FrameSlot`."""

    _thread_name = "capture"
    realtime = True

    def __init__(self) -> None:
        self._slot: FrameSlot[Frame] = FrameSlot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False
        self._ended = False
        self._closed = False
        self._fps = 0.0

    def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__}: closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_safe, name=self._thread_name,
                                            daemon=True)
            self._thread.start()

    def _run_safe(self) -> None:
        try:
            self._run()
        except Exception:  # the thread must never die silently
            log.exception("%s: capture thread failed", self._thread_name)
            self._lost = True

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def read(self, timeout: float) -> Frame | None:
        return self._slot.take(timeout)

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def ended(self) -> bool:
        """True once the source finished and its last frame was read."""
        return self._ended and self._slot.empty

    @property
    def dropped(self) -> int:
        return self._slot.dropped

    @property
    def frames_captured(self) -> int:
        return self._slot.produced

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def close(self) -> None:
        """Stop the thread and release the device or file; harmless to call again."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._slot.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():  # pragma: no cover - a driver stuck in read()
                log.warning("%s: capture thread did not stop within 5 s", self._thread_name)

    def __enter__(self) -> _ThreadedSource:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _open_camera(index: int, width: int, height: int, fps: float) -> Any:
    cap = cv2.VideoCapture(index)
    if cap.isOpened():
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's own queue short
    return cap


class CameraSource(_ThreadedSource):
    """A webcam read on a thread; the newest frame wins.

    ``opener(index, width, height, fps)`` returns an object with ``isOpened()``, ``read()``
    and ``release()`` (``cv2.VideoCapture`` by default; tests pass fakes). When a read fails
    the camera is marked :attr:`lost`, released and reopened with exponential back-off
    (``retry_initial`` doubling up to ``retry_max`` seconds); :attr:`reopen_attempts` counts
    the tries. ``fail_after`` consecutive failed reads count as a failure (drivers sometimes
    drop a single frame).
    """

    def __init__(self, index: int = 0, *, width: int = 640, height: int = 480,
                 fps: float = 30.0,
                 opener: Callable[[int, int, int, float], Any] | None = None,
                 retry_initial: float = 0.5, retry_max: float = 5.0,
                 fail_after: int = 3) -> None:
        super().__init__()
        self.index = int(index)
        self.width, self.height = int(width), int(height)
        self._fps = float(fps)
        self._opener = opener or _open_camera
        self.retry_initial = float(retry_initial)
        self.retry_max = float(retry_max)
        self.fail_after = max(1, int(fail_after))
        self.reopen_attempts = 0
        self.losses = 0
        self._thread_name = f"camera-{self.index}"
        self._cap: Any = None
        self._opened = threading.Event()

    def wait_opened(self, timeout: float) -> bool:
        """Wait until the camera opened once; False on timeout."""
        return self._opened.wait(timeout)

    def _try_open(self) -> bool:
        self.reopen_attempts += 1
        # OpenCV prints its own warning for every failed open: only the first one shows.
        quiet = self.reopen_attempts > 1
        level = cv2.getLogLevel()
        if quiet:
            cv2.setLogLevel(0)  # silent
        try:
            cap = self._opener(self.index, self.width, self.height, self._fps)
        except Exception as exc:
            log.debug("camera %d: open failed: %s", self.index, exc)
            return False
        finally:
            if quiet:
                cv2.setLogLevel(level)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return False
        self._cap = cap
        try:
            reported = float(cap.get(cv2.CAP_PROP_FPS)) if hasattr(cap, "get") else 0.0
        except Exception:
            reported = 0.0
        if 1.0 <= reported <= 240.0:
            self._fps = reported
        return True

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:  # pragma: no cover
                log.debug("camera %d: release failed", self.index, exc_info=True)

    def _mark_lost(self, why: str) -> None:
        if not self._lost:
            self.losses += 1
            log.warning("camera %d lost (%s); retrying with back-off", self.index, why)
        self._lost = True

    def _run(self) -> None:
        delay = self.retry_initial
        index = 0
        failures = 0
        try:
            while not self._stop.is_set():
                if self._cap is None:
                    if not self._try_open():
                        self._mark_lost("cannot open it")
                        self._stop.wait(delay)
                        delay = min(delay * 2.0, self.retry_max)
                        continue
                    if self._lost:
                        log.warning("camera %d is back", self.index)
                    self._lost = False
                    self._opened.set()
                    delay = self.retry_initial
                    failures = 0
                try:
                    ok, bgr = self._cap.read()
                except Exception as exc:
                    ok, bgr = False, None
                    log.debug("camera %d: read raised %s", self.index, exc)
                t = time.perf_counter()
                if not ok or bgr is None or getattr(bgr, "ndim", 0) < 2:
                    failures += 1
                    if failures >= self.fail_after:
                        self._mark_lost("reading a frame failed")
                        self._release()
                    continue
                failures = 0
                rgb = _to_rgb(bgr)
                self._slot.put(Frame(image=rgb, index=index, t_capture=t))
                index += 1
        finally:
            self._release()


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class VideoFileSource(_ThreadedSource):
    """A driver video played as if it were a camera.

    With ``realtime=True`` frames are released at the file's frame rate (the newest wins, so
    a slow pipeline drops frames like with a webcam); with ``realtime=False`` every frame is
    handed over as soon as the previous one was taken. ``loop=True`` starts again at the end.
    ``size=(w, h)`` letterboxes the frames to that size (e.g. to drive with 640x480 frames).
    Frame indices and ``pts`` keep increasing across loops, so smoothing filters see
    monotonic time. The file is probed at construction: a bad path, or a video that ends
    before its first frame, raises :class:`~calibrate.errors.InputError` right away; a video
    none of whose frames decode ends the source with :attr:`error` set to one.
    """

    def __init__(self, path: str | Path, *, loop: bool = True, realtime: bool = True,
                 size: tuple[int, int] | None = None) -> None:
        from live.io.video import probe_video

        super().__init__()
        self.path = Path(path)
        self.info = probe_video(self.path)
        if self.info.frame_count == 0:
            raise InputError("the driver video has no frames", path=self.path,
                             expected="a video with at least one frame", got="0 frames")
        self.loop = loop
        self.realtime = realtime
        self.size = (int(size[0]), int(size[1])) if size is not None else self.info.size
        self._resize = size is not None and tuple(size) != self.info.size
        self._fps = float(self.info.fps)
        self.loops = 0
        self.error: InputError | None = None
        """Set when the video ended without giving a single frame."""
        self._thread_name = f"driver-{self.path.name}"

    def _run(self) -> None:
        from live.geometry import letterbox
        from live.io.video import VideoReader

        period = 1.0 / self._fps
        index = 0
        t0 = time.perf_counter()
        while not self._stop.is_set():
            with VideoReader(self.path, max_queue=4, on_error="stop") as reader:
                start_index = index
                for frame in reader:
                    if self._stop.is_set():
                        return
                    image = letterbox(frame.image, self.size) if self._resize else frame.image
                    pts = index * period
                    if self.realtime:
                        delay = t0 + pts - time.perf_counter()
                        if delay > 0 and self._stop.wait(delay):
                            return
                        if delay < -0.25:  # fell far behind (machine busy): resync the clock
                            t0 = time.perf_counter() - pts
                    elif not self._slot.wait_empty(self._stop):
                        return
                    self._slot.put(Frame(image=image, index=index,
                                         t_capture=time.perf_counter(), pts=pts))
                    index += 1
            if index == start_index:
                if index == 0:
                    self.error = InputError("no frame of the driver video could be decoded",
                                            path=self.path,
                                            expected="a video with at least one decodable "
                                            "frame", got="0 frames")
                else:
                    log.warning("%s: no frames decoded; stopping", self.path)
                break
            if not self.loop:
                break
            self.loops += 1
        self._ended = True
