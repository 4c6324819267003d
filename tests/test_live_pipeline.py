"""The live loop on real driving frames (MediaPipe tracker, mesh engine): face loss, camera
loss, engine errors, hotkeys through the window's KeyHandler, portrait switching and the
per-portrait calibration memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _live_fakes import ListSource, RecordingSink, SpyEngine, psnr, read_frames

from calibrate.neutral import pose_distance
from live.compose import letterbox
from live.config import LiveConfig
from live.engines.base import create_engine
from live.face.portraits import PortraitLibrary
from live.face.tracking import FaceTracker
from live.io.capture import CameraSource
from live.jobs.pipeline import LivePipeline, _frame_landmarks

pytestmark = pytest.mark.fixtures

CROP = 256
OUT = (480, 270)
PORTRAITS = ("lp_s42.jpg", "lp_s9_mona_lisa.jpg")


@pytest.fixture(scope="module")
def driver_frames(driving_dir: Path) -> list[np.ndarray]:
    """150 frames (5 s at 30 fps) of a driver with strong expressions, at 320x320."""
    frames = read_frames(driving_dir / "lp_d3.mp4", 150)
    return [cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA) for f in frames]


@pytest.fixture
def make_pipeline(portraits_dir: Path) -> Iterator[Callable[..., LivePipeline]]:
    made: list[LivePipeline] = []

    def make(source: Any, *, sinks: Any = (), engine: Any = None,
             portraits: tuple[str, ...] = PORTRAITS, **cfg: Any) -> LivePipeline:
        engine = engine or create_engine("mesh", size=CROP)
        config = LiveConfig(width=OUT[0], height=OUT[1], vcam=False, preview=False, **cfg)
        library = PortraitLibrary([portraits_dir / p for p in portraits], engine,
                                  output_size=OUT)
        p = LivePipeline(config, source=source, tracker=FaceTracker(crop_size=CROP),
                         engine=engine, library=library, sinks=list(sinks))
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _face_box(p: LivePipeline) -> tuple[slice, slice]:
    """Output rows/cols of the current portrait's face crop."""
    m = p.current.compositor.crop_to_output
    x0, y0 = m[:, 2]
    side = m[0, 0] * CROP
    return slice(int(y0), int(y0 + side)), slice(int(x0), int(x0 + side))


@pytest.mark.slow
def test_face_loss_holds_then_eases_back_to_the_neutral_portrait(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray]) -> None:
    blank = np.zeros_like(driver_frames[0])
    n = 100
    frames = driver_frames[:n] + [blank] * 40
    # 3.3 s with a face at 30 fps, then 4 s without one (a frame every 0.1 s)
    pts = [i / 30 for i in range(n)] + [n / 30 + 0.1 * k for k in range(40)]
    sink = RecordingSink()
    p = make_pipeline(ListSource(frames, pts=pts), sinks=[sink])
    stats = p.run()
    assert stats.counters["frames_sent"] == len(frames)
    assert stats.counters["tracking_losses"] == 1
    assert stats.counters["frames_without_face"] >= 40
    assert p.calibrated
    rows, cols = _face_box(p)
    # the neutral portrait as the pipeline shows it: its own face crop pasted back
    neutral = p.current.compositor.compose(p.current.portrait.crop.image)[rows, cols]
    animated = [psnr(f[rows, cols], neutral) for f in sink.frames[:n]]
    assert min(animated) < 35  # the face moved away from neutral while tracked
    last_face, first_lost = sink.frames[n - 1][rows, cols], sink.frames[n + 1][rows, cols]
    assert psnr(first_lost, last_face) > 35  # held right after the loss
    assert psnr(sink.frames[-1][rows, cols], neutral) > 45  # eased back to neutral
    assert psnr(sink.frames[-1][rows, cols], neutral) > psnr(first_lost, neutral)


def test_an_engine_error_skips_that_frame_and_the_loop_lives(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray],
        caplog: pytest.LogCaptureFixture) -> None:
    engine = SpyEngine(create_engine("mesh", size=CROP), fail_on=(5, 6, 40))
    sink = RecordingSink()
    p = make_pipeline(ListSource(driver_frames[:60]), sinks=[sink], engine=engine)
    with caplog.at_level("ERROR"):
        stats = p.run()
    assert stats.counters["engine_errors"] == 3
    assert stats.counters["frames_in"] == 60
    assert stats.counters["frames_sent"] == len(sink.frames) == 57
    assert "injected engine failure" in caplog.text
    p.close()
    assert engine.closed and sink.closed == 1
    p.close()
    assert sink.closed == 1  # close() is idempotent


def test_hotkeys_passthrough_freeze_recalibrate_and_quit(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray]) -> None:
    holder: dict[str, LivePipeline] = {}
    script = {70: "p", 80: "p", 90: "f", 100: "f", 110: "c", 140: "q"}

    def on_send(i: int) -> None:
        if i in script:  # the same handler the preview window feeds with cv2.waitKeyEx codes
            holder["p"].keys.press(ord(script[i]))

    frames = driver_frames[:150]
    source = ListSource(frames)
    engine = SpyEngine(create_engine("mesh", size=CROP))
    sink = RecordingSink(on_send)
    p = holder["p"] = make_pipeline(source, sinks=[sink], engine=engine)
    stats = p.run()
    out = sink.frames  # one output per frame, in order (no engine errors here)
    # keys pressed after output i apply from frame i + 1 on
    for i in range(71, 81):  # passthrough: the camera image itself
        assert (out[i] == letterbox(frames[i], OUT)).all()
    assert not (out[60] == letterbox(frames[60], OUT)).all()
    for i in range(92, 101):  # frozen: the frame of 91 repeated while the driver moves
        assert out[i] is out[91]
    assert out[102] is not out[91]
    assert stats.counters["frozen"] >= 9
    assert engine.recalibrations == 1  # C
    assert stats.counters["calibrations"] == 2  # first stable face, and again after C
    assert stats.counters["frames_in"] == 141  # Q stopped the loop
    assert not source.ended


def test_switching_portraits_prepares_off_the_hot_path(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray]) -> None:
    holder: dict[str, LivePipeline] = {}
    gate = threading.Event()

    def on_send(i: int) -> None:
        if i == 10:
            holder["p"].keys.press("2")
        if i == 25:  # the preparation may finish only once 15 more frames went out
            gate.set()

    engine = SpyEngine(create_engine("mesh", size=CROP))
    sink = RecordingSink(on_send)
    p = holder["p"] = make_pipeline(ListSource(driver_frames[:90]), sinks=[sink],
                                    engine=engine)
    engine.prepare_gate = gate
    first_bg = p.current.compositor.background
    stats = p.run()
    assert stats.counters["portrait_switches"] == 1 and p.portrait_index == 1
    second_bg = p.current.compositor.background
    # every frame was processed and sent: the background preparation stalled nothing
    assert stats.counters["frames_sent"] == stats.counters["frames_in"] == 90
    which = [int(psnr(f, second_bg) > psnr(f, first_bg)) for f in sink.frames]
    switch_at = which.index(1)
    assert which[switch_at:] == [1] * (90 - switch_at)
    assert switch_at > 25  # frames kept flowing while the new portrait was prepared


@pytest.mark.slow
def test_calibration_is_remembered_per_portrait(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray]) -> None:
    holder: dict[str, LivePipeline] = {}
    script = {60: "2", 75: "c", 120: "1"}

    def on_send(i: int) -> None:
        if i in script:
            holder["p"].keys.press(script[i])

    engine = SpyEngine(create_engine("mesh", size=CROP))
    p = holder["p"] = make_pipeline(ListSource(driver_frames[:150]),
                                    sinks=[RecordingSink(on_send)], engine=engine)
    p.run()
    assert p.portrait_index == 0
    assert engine.recalibrations == 1
    # first portrait's neutral N1; the second kept N1, was recalibrated to N2; back on the
    # first portrait, N1 was restored
    assert len(engine.calibrations) == 3
    n1, n2, restored = engine.calibrations
    assert restored is n1 and n2 is not n1
    assert n2.frame_index > 75 > n1.frame_index


@pytest.mark.slow
def test_auto_match_picks_a_pose_at_least_as_close_to_the_portrait(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray]) -> None:
    chosen = []
    for auto in (False, True):
        engine = SpyEngine(create_engine("mesh", size=CROP))
        p = make_pipeline(ListSource(driver_frames[:150]), engine=engine, auto_match=auto,
                          match_window=1.5, portraits=("lp_s42.jpg",))
        p.run()
        assert len(engine.calibrations) == 1
        lm = _frame_landmarks(engine.calibrations[0])
        chosen.append((engine.calibrations[0].frame_index,
                       pose_distance(p.current.portrait.landmarks, lm)))
    (plain_index, plain_d), (auto_index, auto_d) = chosen
    assert auto_index >= plain_index
    assert auto_d <= plain_d + 1e-9


class _Rig:
    """A fake webcam delivering driver frames (BGR) until 'unplugged'."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
        self.unplugged = threading.Event()
        self.opens = 0
        self.i = 0

    def opener(self, *args: Any) -> Any:
        self.opens += 1
        if self.unplugged.is_set():
            return None
        rig = self

        class Cap:
            def isOpened(self) -> bool:
                return True

            def read(self) -> tuple[bool, np.ndarray | None]:
                time.sleep(1 / 30)
                if rig.unplugged.is_set():
                    return False, None
                rig.i += 1
                return True, rig.frames[rig.i % len(rig.frames)]

            def release(self) -> None:
                pass

        return Cap()


def _has_badge(image: np.ndarray) -> bool:
    corner = image[: image.shape[0] // 5, image.shape[1] // 2:]
    red = (corner[..., 0] > 180) & (corner[..., 1] < 80) & (corner[..., 2] < 80)
    return bool(red.mean() > 0.02)


@pytest.mark.slow
def test_camera_loss_keeps_sending_with_a_badge_and_recovers(
        make_pipeline: Callable[..., LivePipeline], driver_frames: list[np.ndarray]) -> None:
    rig = _Rig(driver_frames[:60])
    cam = CameraSource(0, opener=rig.opener, retry_initial=0.05, retry_max=0.2, fail_after=1)
    sink = RecordingSink()
    p = make_pipeline(cam, sinks=[sink], fps=20)
    events: list[tuple[str, int]] = []

    def unplug_and_replug() -> None:
        time.sleep(2.0)
        events.append(("unplug", len(sink.frames)))
        rig.unplugged.set()
        time.sleep(2.0)
        events.append(("replug", len(sink.frames)))
        rig.unplugged.clear()

    chaos = threading.Thread(target=unplug_and_replug)
    chaos.start()
    stats = p.run(duration=6.5)
    chaos.join()
    (_, at_unplug), (_, at_replug) = events
    assert stats.counters["repeated"] >= 10  # ~20 fps of badged frames while lost
    lost_part = sink.frames[at_unplug + 3: at_replug]
    assert lost_part and all(_has_badge(f) for f in lost_part[2:])
    assert not _has_badge(sink.frames[-1])  # back to live frames after the replug
    assert not _has_badge(sink.frames[max(0, at_unplug - 5)])
    assert rig.opens >= 3  # retried while unplugged
    assert not cam.lost


def test_no_camera_at_all_sends_the_still_portrait_with_a_badge(
        make_pipeline: Callable[..., LivePipeline]) -> None:
    rig = _Rig([np.zeros((32, 32, 3), np.uint8)])
    rig.unplugged.set()
    cam = CameraSource(0, opener=rig.opener, retry_initial=0.05, retry_max=0.1)
    sink = RecordingSink()
    p = make_pipeline(cam, sinks=[sink], fps=20)
    p.run(duration=1.0)
    assert len(sink.frames) >= 3
    assert all(_has_badge(f) for f in sink.frames)
    rows, cols = _face_box(p)
    bg = p.current.compositor.background
    assert psnr(sink.frames[-1][rows, cols], bg[rows, cols]) > 45  # the portrait itself


class _FakeWindow:
    """Stands in for PreviewSink (no display here): records what is shown, returns scripted
    cv2.waitKeyEx codes from poll_key, exactly where the real window's keys enter."""

    name = "preview"

    def __init__(self, keys: dict[int, int]) -> None:
        self.keys = keys
        self.shown: list[np.ndarray] = []
        self.closed = False

    def send(self, image: np.ndarray, t_capture: float) -> None:
        self.shown.append(image)

    def poll_key(self, wait_ms: int = 1) -> int:
        return self.keys.get(len(self.shown) - 1, -1)

    def close(self) -> None:
        self.closed = True


def test_preview_window_keys_and_overlay(make_pipeline: Callable[..., LivePipeline],
                                         driver_frames: list[np.ndarray]) -> None:
    right_arrow = 65363  # cv2.waitKeyEx on Linux
    window = _FakeWindow({5: right_arrow, 30: ord("o"), 45: ord("q")})
    sink = RecordingSink()
    p = make_pipeline(ListSource(driver_frames[:80]), sinks=[sink])
    p.preview = window  # type: ignore[assignment]
    stats = p.run()
    assert stats.counters["frames_in"] == 46  # Q in the window stopped the loop
    assert p.portrait_index == 1 and stats.counters["portrait_switches"] == 1
    assert len(window.shown) == len(sink.frames) == 46
    # overlay on: status text top left, pose guide (camera picture) bottom right
    first, out0 = window.shown[0], sink.frames[0]
    assert (first[:40, :200] != out0[:40, :200]).any()
    assert (first[-60:, -120:] != out0[-60:, -120:]).any()
    # O turned it off: the window shows exactly what is sent
    assert all((w == s).all() for w, s in zip(window.shown[32:], sink.frames[32:], strict=True))
    p.close()
    assert window.closed
