"""The live loop's tracking pacer (live.jobs.pipeline.TrackPacer), on a simulated clock: a
camera, a tracking thread and a loop slower than the camera, as the mesh engine is on 2 cores."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from live.jobs.pipeline import TrackPacer
from live.packets import Frame

_IMAGE = np.zeros((2, 2, 3), np.uint8)


class _Always:
    """No pacing: every frame is tracked (the pipeline before the pacer)."""

    def loop_started(self, t: float) -> None:
        pass

    def loop_finished(self, t: float) -> None:
        pass

    def tracked(self, seconds: float) -> None:
        pass

    def should_track(self, frame: Frame) -> bool:
        return True


def _simulate(pacer: TrackPacer | _Always, *, interval: float, track: float,
              loop: tuple[float, ...], seconds: float = 10.0) -> dict[str, float]:
    """Frames every ``interval`` s; tracking takes ``track`` s (less than the interval, so the
    tracker is free for each new frame); the loop's frames take ``loop`` s in turn and it
    takes the newest tracked frame when it is free. Returns counts and the mean age (s) of
    the frames the loop took, at the moment it took them."""
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, frame index)
    for k in range(int(seconds / interval)):
        heapq.heappush(events, (k * interval, 1, "arrive", k))
    slot: int | None = None
    busy = False
    done = tracked = replaced = 0
    ages: list[float] = []
    idle = 0.0
    idle_since: float | None = 0.0

    def start(t: float, k: int) -> None:
        nonlocal busy, done, idle, idle_since
        busy = True
        if idle_since is not None:
            idle += t - idle_since
            idle_since = None
        pacer.loop_started(t)
        ages.append(t - k * interval)
        heapq.heappush(events, (t + loop[done % len(loop)], 0, "finish", k))
        done += 1

    while events:
        t, _, kind, k = heapq.heappop(events)
        if kind == "arrive":
            if pacer.should_track(Frame(_IMAGE, k, t)):
                heapq.heappush(events, (t + track, 2, "tracked", k))
        elif kind == "tracked":
            pacer.tracked(track)
            tracked += 1
            if slot is not None:
                replaced += 1
            slot = k
            if not busy:
                slot = None
                start(t, k)
        else:  # the loop finished a frame
            pacer.loop_finished(t)
            busy = False
            if slot is not None:
                k, slot = slot, None
                start(t, k)
            else:
                idle_since = t
    return {"frames": done, "tracked": tracked, "replaced": replaced,
            "age": float(np.mean(ages[5:])), "idle": idle}


def test_a_loop_slower_than_the_camera_gets_about_one_tracked_frame_each_as_fresh():
    timing = {"interval": 1 / 30, "track": 0.016, "loop": (0.052, 0.058, 0.055)}
    before = _simulate(_Always(), **timing)
    after = _simulate(TrackPacer(), **timing)
    # every frame tracked, a third of them replaced unseen, before
    assert before["tracked"] >= 295 and before["replaced"] >= 100
    # about one tracked frame for each the loop took, none of them much older than before
    assert after["tracked"] <= 1.1 * after["frames"]
    assert after["replaced"] <= 0.05 * after["tracked"]
    assert after["frames"] >= before["frames"] - 3
    assert after["age"] <= before["age"] + 0.004
    assert after["idle"] <= before["idle"] + 0.2


def test_a_loop_faster_than_the_camera_gets_every_frame():
    timing = {"interval": 1 / 30, "track": 0.012, "loop": (0.015,)}
    after = _simulate(TrackPacer(), **timing)
    assert after["tracked"] == int(10.0 * 30) and after["frames"] == after["tracked"]


def test_an_idle_loop_or_a_new_pacer_tracks_every_frame():
    pacer = TrackPacer()
    for k in range(5):  # nothing known yet: frames every 1/30 s
        assert pacer.should_track(Frame(_IMAGE, k, k / 30))
        pacer.tracked(0.016)
        pacer.loop_started(k / 30 + 0.016)
        pacer.loop_finished(k / 30 + 0.016 + 0.055)
    # the loop waits for a frame: this one is tracked whatever comes next
    assert pacer.should_track(Frame(_IMAGE, 8, 8 / 30))
    pacer.loop_started(0.3)
    # busy until 0.355: frame 9 (0.300) is skipped, since frame 10 (0.333) is tracked by
    # 0.352; frame 10 is tracked, frame 11 would not be ready before 0.386
    assert not pacer.should_track(Frame(_IMAGE, 9, 9 / 30))
    assert pacer.should_track(Frame(_IMAGE, 10, 10 / 30))


def test_the_tracking_thread_reads_its_clock_once_for_the_stats_and_the_pacer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # one reading of each frame's tracking time feeds both the "track" stage and the pacer;
    # a frame the tracker fails on is timed and counted, and the pacer does not learn from it
    import live.jobs.pipeline as pipeline
    from live.packets import Tracked
    from live.stats import LiveStats

    class Tracker:
        def __init__(self) -> None:
            self.calls = 0

        def process(self, frame: Frame) -> Tracked:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("mesh failed")
            return Tracked(frame, None)

    stats = LiveStats()
    stage = pipeline._TrackingStage(object(), Tracker(), stats)  # type: ignore[arg-type]
    learned: list[float] = []
    monkeypatch.setattr(stage.pacer, "tracked", learned.append)
    clock = iter([10.0, 10.025, 20.0, 20.004])
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: next(clock))
    assert stage._track(Frame(_IMAGE, 0, 0.0)) is not None
    assert stage._track(Frame(_IMAGE, 1, 0.1)) is None
    track = stats.stages["track"]
    assert track.count == 2 and track.total == pytest.approx(25.0 + 4.0)
    assert learned == [pytest.approx(0.025)]
    assert stats.counters["tracker_errors"] == 1 and stats.counters["frames_without_face"] == 1
