"""Frame sources: the latest-wins slot, a camera that fails and comes back, driver videos."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibrate.errors import InputError
from live.io.capture import CameraSource, FrameSlot, VideoFileSource
from live.packets import Frame


def _frame(i: int) -> Frame:
    return Frame(image=np.zeros((4, 4, 3), np.uint8), index=i, t_capture=time.perf_counter())


def test_slot_keeps_only_the_newest_frame_and_counts_drops() -> None:
    slot = FrameSlot()
    for i in range(5):
        slot.put(_frame(i))
    got = slot.take(0.0)
    assert got is not None and got.index == 4
    assert slot.dropped == 4 and slot.produced == 5
    assert slot.take(0.01) is None


def test_slot_wakes_a_waiting_reader() -> None:
    slot = FrameSlot()
    threading.Timer(0.05, lambda: slot.put(_frame(7))).start()
    got = slot.take(5.0)
    assert got is not None and got.index == 7


class FakeCapture:
    """A cv2.VideoCapture stand-in: BGR frames, then failures when the 'cable' is pulled."""

    def __init__(self, rig: CameraRig) -> None:
        self.rig = rig
        self.released = False

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(0.005)
        if self.rig.unplugged.is_set():
            return False, None
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[..., 0] = 200  # blue in BGR
        self.rig.reads += 1
        return True, bgr

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class CameraRig:
    def __init__(self) -> None:
        self.unplugged = threading.Event()
        self.opens = 0
        self.reads = 0
        self.captures: list[FakeCapture] = []

    def opener(self, index: int, width: int, height: int, fps: float) -> Any:
        self.opens += 1
        if self.unplugged.is_set():
            raise OSError("no such device")
        cap = FakeCapture(self)
        self.captures.append(cap)
        return cap


def _wait(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_camera_converts_to_rgb_survives_unplugging_and_recovers() -> None:
    rig = CameraRig()
    cam = CameraSource(0, opener=rig.opener, retry_initial=0.02, retry_max=0.08, fail_after=2)
    with cam:
        frame = cam.read(5.0)
        assert frame is not None
        assert frame.image.shape == (48, 64, 3)
        assert tuple(frame.image[0, 0]) == (0, 0, 200)  # BGR blue became RGB blue
        assert not cam.lost
        rig.unplugged.set()
        assert _wait(lambda: cam.lost)
        opens_when_lost = rig.opens
        assert _wait(lambda: rig.opens >= opens_when_lost + 3)  # retrying with back-off
        assert rig.captures[0].released
        while cam.read(0.0) is not None:  # drain what came before the failure
            pass
        assert cam.read(0.2) is None  # nothing new while unplugged
        rig.unplugged.clear()
        assert _wait(lambda: not cam.lost)
        again = cam.read(5.0)
        assert again is not None and again.index > frame.index
        assert cam.losses == 1
        thread = cam.thread
    assert thread is not None and not thread.is_alive()  # close() joined it
    assert all(c.released for c in rig.captures)


def test_camera_that_never_opens_is_lost_not_raising() -> None:
    rig = CameraRig()
    rig.unplugged.set()
    with CameraSource(3, opener=rig.opener, retry_initial=0.01, retry_max=0.02) as cam:
        assert _wait(lambda: rig.opens >= 3)
        assert cam.lost and cam.read(0.05) is None and not cam.ended


def test_back_off_grows_exponentially_to_the_cap() -> None:
    rig = CameraRig()
    rig.unplugged.set()
    times: list[float] = []

    def opener(*args: Any) -> Any:
        times.append(time.monotonic())
        return rig.opener(*args)

    with CameraSource(0, opener=opener, retry_initial=0.05, retry_max=0.2):
        assert _wait(lambda: len(times) >= 6, timeout=20)
    gaps = np.diff(times[:6])
    # the waits are 0.05, 0.1, 0.2, 0.2, 0.2 s: they grow, then stop growing
    assert gaps[1] > gaps[0] * 1.3 and gaps[2] > gaps[1] * 1.3
    assert gaps[4] < gaps[2] * 2.5


@pytest.mark.fixtures
def test_driver_video_loops_with_increasing_time(driving_dir: Path) -> None:
    src = VideoFileSource(driving_dir / "lp_d0.mp4", loop=True, realtime=False,
                          size=(640, 480))
    assert src.fps == pytest.approx(25.0)
    frames = []
    with src:
        while len(frames) < 100:  # the clip has 78 frames
            f = src.read(10.0)
            assert f is not None
            frames.append((f.index, f.pts, f.image.shape))
    assert [i for i, _, _ in frames] == list(range(100))  # non-realtime: nothing dropped
    pts = np.array([p for _, p, _ in frames])
    assert (np.diff(pts) > 0).all()  # keeps increasing across the loop
    assert src.loops >= 1
    assert frames[0][2] == (480, 640, 3)


@pytest.mark.fixtures
def test_driver_video_is_never_faster_than_real_time(driving_dir: Path) -> None:
    with VideoFileSource(driving_dir / "lp_d18.mp4", realtime=True) as src:
        t0 = time.perf_counter()
        got = 0
        while time.perf_counter() - t0 < 1.0:
            if src.read(0.1) is not None:
                got += 1
        produced = src.frames_captured
        elapsed = time.perf_counter() - t0
    # paced at the file's 30 fps: at most one frame per 1/30 s (plus the first one) ...
    assert produced <= elapsed * 30 + 2
    # ... and really playing: about that many (a busy machine may lose a few), nearly all
    # of them read (the reader here is fast, so few are replaced in the slot)
    assert produced >= elapsed * 30 * 0.6, (produced, elapsed)
    assert produced * 0.8 <= got <= produced, (got, produced)


@pytest.mark.fixtures
def test_driver_without_loop_ends(driving_dir: Path) -> None:
    with VideoFileSource(driving_dir / "lp_d0.mp4", loop=False, realtime=False) as src:
        n = 0
        while not src.ended:
            if src.read(2.0) is not None:
                n += 1
        assert n == 78
        assert src.read(0.1) is None


def test_bad_driver_path_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected an existing file"):
        VideoFileSource(tmp_path / "missing.mp4")
