"""The live tracker tracks no more frames than the loop takes (live/jobs/pipeline.py,
TrackPacer): a loop slower than the camera used to leave most tracked frames to be
replaced unseen, their tracking time taken from the engine on a 2-core machine."""

from __future__ import annotations

import time

import numpy as np
import pytest

from live.jobs.pipeline import TRACK_AHEAD_S, TrackPacer, _TrackingStage
from live.packets import Frame, Tracked
from live.stats import LiveStats


def test_the_pacer_starts_the_next_frame_just_before_the_loop_wants_it() -> None:
    pacer = TrackPacer()
    assert pacer.start_at() is None  # nothing known: at once
    for t in (0.0, 0.05, 0.10):
        pacer.taken(t)
    assert pacer.start_at() is None  # no tracking time known yet
    pacer.tracked(0.012)
    # a frame is waiting for the take due at 0.15: the next one is for the take after it
    assert pacer.start_at() == pytest.approx(0.10 + 2 * 0.05 - 0.012 - TRACK_AHEAD_S)
    pacer.taken(0.15)  # taken: the next frame is for the take due at 0.20
    assert pacer.start_at() == pytest.approx(0.15 + 0.05 - 0.012 - TRACK_AHEAD_S)
    # one long stall (a portrait switch) does not move the loop's rate
    pacer.taken(0.65)
    for t in (0.70, 0.75):
        pacer.taken(t)
    assert pacer.start_at() == pytest.approx(0.75 + 0.05 - 0.012 - TRACK_AHEAD_S)


def test_a_loop_quicker_than_the_tracker_is_never_waited_for() -> None:
    pacer = TrackPacer()
    for k in range(5):
        pacer.taken(0.02 * k)  # the loop takes each frame as the tracker hands it over
        pacer.tracked(0.02)
    start = pacer.start_at()
    assert start is not None and start <= 0.08 + 0.02  # at once: by the time it is asked


class _Camera:
    """A live source: a new frame every ``interval`` s, only the newest kept."""

    realtime = True

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.t0 = time.perf_counter()
        self.last = -1
        self.image = np.zeros((8, 8, 3), np.uint8)

    def start(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        end = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            newest = int((now - self.t0) / self.interval)
            if newest > self.last:
                self.last = newest
                return Frame(image=self.image, index=newest, t_capture=now)
            if now >= end:
                return None
            time.sleep(min(self.interval / 4, end - now))

    lost = False
    ended = False
    dropped = 0
    fps = 100.0


class _Tracker:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def process(self, frame: Frame) -> Tracked:
        self.calls += 1
        time.sleep(self.seconds)
        return Tracked(frame, None)

    def close(self) -> None:
        pass


def _run(loop_s: float, seconds: float = 1.0) -> tuple[int, int]:
    """A camera at 100 fps, a 4 ms tracker and a loop spending ``loop_s`` on each frame:
    (frames tracked, frames the loop took)."""
    tracker = _Tracker(0.004)
    stage = _TrackingStage(_Camera(0.01), tracker, LiveStats())
    stage.start()
    taken = 0
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            if stage.read(timeout=0.1) is not None:
                taken += 1
                time.sleep(loop_s)
    finally:
        stage.stop()
    return tracker.calls, taken


def test_a_slow_loop_gets_about_one_tracked_frame_per_frame_it_takes() -> None:
    tracked, taken = _run(0.04)
    assert taken >= 10
    # unpaced, the tracker followed the camera: ~4 frames tracked for each one taken
    assert tracked <= 1.3 * taken + 3, (tracked, taken)


def test_a_quick_loop_is_handed_every_frame_the_tracker_can_track() -> None:
    tracked, taken = _run(0.0)
    assert tracked >= 40  # the tracker was never held back (~100 camera frames, 4 ms each)
    assert taken >= tracked - 2  # and the loop took them all (at most the last one left)


def test_stop_ends_a_tracker_waiting_for_its_turn() -> None:
    tracker = _Tracker(0.001)
    stage = _TrackingStage(_Camera(0.01), tracker, LiveStats())
    now = time.perf_counter()
    for k in range(5):  # a loop that took a frame every 10 s, the last one just now
        stage.pacer.taken(now + 10.0 * (k - 4))
    stage.pacer.tracked(0.001)
    stage.start()
    time.sleep(0.2)
    assert tracker.calls == 0  # waiting for its turn, ~10 s away
    stage.stop()  # (joins for up to 10 s)
    assert stage._thread is not None and not stage._thread.is_alive()
