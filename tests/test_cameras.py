"""Camera listing (``mimicam cameras``, ``mimicam live --camera list``) and the check that
``--camera N`` exists, on fake V4L2 devices (sysfs entries, device nodes, ioctls) and a fake
OpenCV, and for real on this machine."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from calibrate.errors import InputError
from live.cli.main import main
from live.io import cameras
from live.io.cameras import (
    CAP_DEVICE_CAPS,
    CAP_VIDEO_CAPTURE,
    CAP_VIDEO_OUTPUT,
    VIDIOC_ENUM_FMT,
    VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_QUERYCAP,
    CameraInfo,
    CameraScan,
    require_camera,
    scan_linux,
    scan_opencv,
)

META_CAPTURE = 0x00800000


class FakeV4l2:
    """Fake device nodes under ``root``: each has (driver, card, caps, {fourcc: sizes})."""

    def __init__(self, root: Path) -> None:
        self.sysfs = root / "sys" / "class" / "video4linux"
        self.dev = root / "dev"
        self.virtual_root = root / "sys" / "devices" / "virtual" / "video4linux"
        self.sysfs.mkdir(parents=True)
        self.dev.mkdir()
        self.devices: dict[str, tuple[str, str, int, dict[int, list[Any]]]] = {}

    def add(self, n: int, name: str, *, driver: str = "uvcvideo", caps: int = CAP_VIDEO_CAPTURE,
            formats: dict[int, list[Any]] | None = None, virtual: bool = False) -> None:
        if virtual:
            target = self.virtual_root / f"video{n}"
            target.mkdir(parents=True)
            (self.sysfs / f"video{n}").symlink_to(target)
        else:
            (self.sysfs / f"video{n}").mkdir()
        (self.sysfs / f"video{n}" / "name").write_text(name + "\n")
        node = self.dev / f"video{n}"
        node.write_bytes(b"")
        self.devices[str(node)] = (driver, name, caps, formats or {})

    def ioctl(self, fd: int, request: int, buf: bytearray) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        driver, card, caps, formats = self.devices[path]
        if request == VIDIOC_QUERYCAP:
            buf[:] = struct.pack("<16s32s32sIII12x", driver.encode(), card.encode(), b"usb",
                                 1, caps | CAP_DEVICE_CAPS, caps)
            return
        if request == VIDIOC_ENUM_FMT:
            index = struct.unpack_from("<I", buf)[0]
            fourccs = list(formats)
            if index >= len(fourccs):
                raise OSError(22, "Invalid argument")
            struct.pack_into("<I", buf, 12 + 32, fourccs[index])  # after the description
            return
        if request == VIDIOC_ENUM_FRAMESIZES:
            index, fourcc = struct.unpack_from("<II", buf)
            sizes = formats.get(fourcc, [])
            if index >= len(sizes):
                raise OSError(22, "Invalid argument")
            size = sizes[index]
            if size[0] == "stepwise":
                struct.pack_into("<I6I", buf, 8, 3, *size[1:])
            else:
                struct.pack_into("<III", buf, 8, 1, *size)
            return
        raise OSError(25, "Inappropriate ioctl")


MJPG, YUYV = 0x47504A4D, 0x56595559


@pytest.fixture
def fake(tmp_path: Path) -> FakeV4l2:
    return FakeV4l2(tmp_path)


def test_the_v4l2_request_numbers_are_the_kernel_ones() -> None:
    assert (VIDIOC_QUERYCAP, VIDIOC_ENUM_FMT, VIDIOC_ENUM_FRAMESIZES) == (
        0x80685600, 0xC0405602, 0xC02C564A)


def test_linux_lists_capture_devices_with_their_sizes(fake: FakeV4l2) -> None:
    fake.add(0, "HD Webcam", formats={MJPG: [(1280, 720), (640, 480), (1920, 1080)],
                                      YUYV: [(640, 480), (320, 240)]})
    fake.add(1, "HD Webcam", caps=META_CAPTURE)  # the camera's metadata node
    fake.add(4, "Capture card", formats={YUYV: [("stepwise", 160, 3840, 16, 120, 2160, 8)]})
    fake.add(10, "mimicam", driver="v4l2 loopback", caps=CAP_VIDEO_OUTPUT, virtual=True)
    scan = scan_linux(sysfs=fake.sysfs, dev=fake.dev, ioctl=fake.ioctl)
    assert [c.index for c in scan.cameras] == [0, 4]
    cam = scan.cameras[0]
    assert cam.name == "HD Webcam" and cam.device == str(fake.dev / "video0")
    assert cam.resolutions == ((320, 240), (640, 480), (1280, 720), (1920, 1080))
    assert cam.describe() == (f"0: HD Webcam ({fake.dev / 'video0'}): 320x240, 640x480, "
                              "1280x720, 1920x1080")
    assert scan.cameras[1].sizes() == "any size from 160x120 to 3840x2160"
    assert [(c.index, c.name, c.virtual) for c in scan.virtual] == [(10, "mimicam", True)]
    assert scan.find(10) is scan.virtual[0] and scan.find(1) is None


def test_a_camera_this_user_may_not_open_says_how_to_fix_it(
        fake: FakeV4l2, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add(0, "HD Webcam")

    def denied(node: Path) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cameras, "_open_node", denied)
    scan = scan_linux(sysfs=fake.sysfs, dev=fake.dev, ioctl=fake.ioctl)
    assert len(scan.cameras) == 1 and "usermod -aG video" in scan.cameras[0].problem
    with pytest.raises(InputError, match="camera 0 cannot be used: no permission"):
        require_camera(0, system="Linux", scan=lambda: scan)


def test_a_missing_camera_names_the_ones_there_are(fake: FakeV4l2) -> None:
    fake.add(0, "HD Webcam", formats={MJPG: [(640, 480)]})
    fake.add(2, "USB Camera", formats={MJPG: [(1280, 720)]})
    scan = scan_linux(sysfs=fake.sysfs, dev=fake.dev, ioctl=fake.ioctl)
    require_camera(2, system="Linux", scan=lambda: scan)  # there: no error
    with pytest.raises(InputError) as info:
        require_camera(3, system="Linux", scan=lambda: scan)
    msg = str(info.value)
    assert msg.startswith("camera 3 not found; the cameras here are ")
    assert f"0: HD Webcam ({fake.dev / 'video0'})" in msg and "2: USB Camera" in msg
    with pytest.raises(InputError, match=r"this machine has no camera.*--driver"):
        require_camera(0, system="Linux", scan=lambda: CameraScan())


class FakeCapture:
    def __init__(self, opened: bool, sizes: set[tuple[int, int]]) -> None:
        self.opened, self.sizes = opened, sizes
        self.w, self.h = 640, 480
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def get(self, prop: int) -> float:
        import cv2

        return float(self.w if prop == cv2.CAP_PROP_FRAME_WIDTH else self.h)

    def set(self, prop: int, value: float) -> bool:
        import cv2

        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self._want_w = int(value)
        else:
            want = (self._want_w, int(value))
            if want in self.sizes:
                self.w, self.h = want
        return True

    def release(self) -> None:
        self.released = True


def test_opencv_probing_elsewhere() -> None:
    caps = {0: FakeCapture(True, {(640, 480), (1280, 720)}), 1: FakeCapture(False, set()),
            2: FakeCapture(True, {(640, 480), (1920, 1080)})}
    opened: list[int] = []

    def opener(index: int) -> Any:
        opened.append(index)
        return caps.get(index, FakeCapture(False, set()))

    scan = scan_opencv(opener=opener, names=["FaceTime HD Camera", "Iriun"])
    assert [(c.index, c.name, c.resolutions) for c in scan.cameras] == [
        (0, "FaceTime HD Camera", ((640, 480), (1280, 720))),
        (2, "Iriun", ((640, 480), (1920, 1080)))]
    assert opened == [0, 1, 2, 3, 4]  # stops after two misses in a row
    assert all(c.released for c in caps.values())
    # --camera 5 on Windows: it cannot be opened, the ones that can are named
    with pytest.raises(InputError, match=r"camera 5 not found .*0: FaceTime HD Camera"):
        require_camera(5, system="Windows", opener=opener, scan=lambda: scan)
    require_camera(2, system="Darwin", opener=opener, scan=lambda: scan)


def test_camera_info_keeps_long_size_lists_short() -> None:
    sizes = tuple((w, w * 3 // 4) for w in range(160, 2000, 160))
    text = CameraInfo(0, "cam", resolutions=sizes).sizes(limit=4)
    assert text == "160x120, 1600x1200, 1760x1320, 1920x1440 (+8 more)"


@pytest.mark.skipif(Path("/sys/class/video4linux").exists() or list(Path("/dev").glob("video*")),
                    reason="this machine has video devices")
def test_on_this_machine_there_is_no_camera(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cameras"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("no camera found; plug in a webcam") and "--driver" in out
    assert main(["live", "--camera", "list"]) == 1
    assert "no camera found" in capsys.readouterr().out
    assert main(["cameras", "--json"]) == 1
    assert '"cameras": []' in capsys.readouterr().out


def test_camera_flag_takes_an_index_or_list(capsys: pytest.CaptureFixture[str]) -> None:
    from live.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["live", "--camera", "2"]).camera == 2
    assert parser.parse_args(["live", "--camera", "LIST"]).camera == "list"
    with pytest.raises(SystemExit):
        parser.parse_args(["live", "--camera", "-1"])
    assert "camera index >= 0 or 'list'" in capsys.readouterr().err
