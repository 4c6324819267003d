"""Which cameras this machine has, for ``mimicam cameras`` (``mimicam live --camera list``),
``mimicam doctor`` and the check that ``--camera N`` exists.

- **Linux**: ``/sys/class/video4linux`` names the devices; V4L2 ioctls on ``/dev/videoN`` tell
  whether each captures video (a camera's metadata node does not) and which frame sizes it
  offers. Nothing is captured and no setting is changed. ``v4l2loopback`` devices (virtual
  cameras, mimicam's own output) are listed apart. OpenCV's index N is ``/dev/videoN``.
- **Windows, macOS**: OpenCV opens indexes 0, 1, ... in turn (until two in a row fail) and
  asks each for a few common sizes; macOS names come from ``system_profiler`` (in the order
  it lists them), Windows gives none.

The functions take the places they look at and the ``ioctl``/``opener`` to use as arguments,
so tests drive them with fakes.
"""

from __future__ import annotations

import logging
import os
import platform
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibrate.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["CameraInfo", "CameraScan", "require_camera", "scan_cameras"]

VIDEO_GROUP_FIX = ("add yourself to the video group: sudo usermod -aG video $USER, then log "
                   "out and in again")

# V4L2 (linux/videodev2.h)
_IOC_READ, _IOC_WRITE = 2, 1


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | number


_CAP_FMT = "<16s32s32sIII12x"  # struct v4l2_capability (104 bytes)
_FMTDESC_FMT = "<III32sII12x"  # struct v4l2_fmtdesc (64 bytes)
_FRMSIZE_FMT = "<III6I8x"  # struct v4l2_frmsizeenum (44 bytes)
VIDIOC_QUERYCAP = _ioc(_IOC_READ, 0, struct.calcsize(_CAP_FMT))
VIDIOC_ENUM_FMT = _ioc(_IOC_READ | _IOC_WRITE, 2, struct.calcsize(_FMTDESC_FMT))
VIDIOC_ENUM_FRAMESIZES = _ioc(_IOC_READ | _IOC_WRITE, 74, struct.calcsize(_FRMSIZE_FMT))
CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_OUTPUT = 0x00000002
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_DEVICE_CAPS = 0x80000000
BUF_TYPE_VIDEO_CAPTURE = 1
FRMSIZE_DISCRETE, FRMSIZE_CONTINUOUS, FRMSIZE_STEPWISE = 1, 2, 3
_MAX_ENUM = 64

Ioctl = Callable[[int, int, bytearray], Any]
Opener = Callable[[int], Any]

_COMMON_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))


@dataclass(frozen=True)
class CameraInfo:
    """One camera: OpenCV ``index``, ``name``, device node, the frame sizes it offers
    (``sizes_note`` for a range instead of a list), and a ``problem`` using it (e.g. no
    permission). ``virtual``: a v4l2loopback device."""

    index: int
    name: str
    device: str | None = None
    resolutions: tuple[tuple[int, int], ...] = ()
    sizes_note: str = ""
    virtual: bool = False
    problem: str = ""
    driver: str = ""

    def label(self) -> str:
        where = f" ({self.device})" if self.device else ""
        return f"{self.index}: {self.name or 'unnamed camera'}{where}"

    def sizes(self, limit: int = 8) -> str:
        if self.sizes_note:
            return self.sizes_note
        if not self.resolutions:
            return "sizes unknown"
        shown = [f"{w}x{h}" for w, h in self.resolutions]
        more = len(shown) - limit
        if more > 0:  # keep the largest ones and the smallest
            shown = [shown[0], *shown[-(limit - 1):]]
            return ", ".join(shown) + f" (+{more} more)"
        return ", ".join(shown)

    def describe(self) -> str:
        text = f"{self.label()}: {self.sizes()}"
        return f"{text}; {self.problem}" if self.problem else text

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "device": self.device,
                "resolutions": [list(r) for r in self.resolutions],
                "sizes_note": self.sizes_note, "virtual": self.virtual,
                "problem": self.problem, "driver": self.driver}


@dataclass(frozen=True)
class CameraScan:
    """What :func:`scan_cameras` found: ``cameras`` (webcams and other capture devices),
    ``virtual`` (v4l2loopback devices, Linux) and how it looked (``method``)."""

    cameras: tuple[CameraInfo, ...] = ()
    virtual: tuple[CameraInfo, ...] = ()
    method: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def find(self, index: int) -> CameraInfo | None:
        return next((c for c in (*self.cameras, *self.virtual) if c.index == index), None)

    def as_dict(self) -> dict[str, Any]:
        return {"cameras": [c.as_dict() for c in self.cameras],
                "virtual": [c.as_dict() for c in self.virtual], "method": self.method,
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------------------------
# Linux: sysfs + V4L2


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _default_ioctl(fd: int, request: int, buf: bytearray) -> Any:
    import fcntl

    return fcntl.ioctl(fd, request, buf, True)


def _v4l2_sizes(fd: int, ioctl: Ioctl) -> tuple[tuple[tuple[int, int], ...], str]:
    """Frame sizes a capture device offers over all its pixel formats: discrete sizes
    sorted by area, or a note for a stepwise/continuous range."""
    sizes: set[tuple[int, int]] = set()
    ranges: list[str] = []
    for fmt_index in range(_MAX_ENUM):
        buf = bytearray(struct.pack(_FMTDESC_FMT, fmt_index, BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0,
                                    0))
        try:
            ioctl(fd, VIDIOC_ENUM_FMT, buf)
        except OSError:
            break
        pixelformat = struct.unpack(_FMTDESC_FMT, bytes(buf))[4]
        for size_index in range(_MAX_ENUM):
            sbuf = bytearray(struct.pack(_FRMSIZE_FMT, size_index, pixelformat, 0,
                                         0, 0, 0, 0, 0, 0))
            try:
                ioctl(fd, VIDIOC_ENUM_FRAMESIZES, sbuf)
            except OSError:
                break
            _, _, kind, a, b, _step_w, d, e, _step_h = struct.unpack(_FRMSIZE_FMT, bytes(sbuf))
            if kind == FRMSIZE_DISCRETE:
                sizes.add((a, b))
            else:  # stepwise / continuous: min_w, max_w, step_w, min_h, max_h, step_h
                ranges.append(f"{a}x{d} to {b}x{e}")
                break
    note = "" if sizes or not ranges else "any size from " + ", ".join(sorted(set(ranges)))
    return tuple(sorted(sizes, key=lambda s: (s[0] * s[1], s[0]))), note


def _open_node(node: Path) -> int:
    """Open a V4L2 node for its ioctls only (no streaming; tests replace this)."""
    return os.open(node, os.O_RDONLY | os.O_NONBLOCK)


def _query_v4l2(node: Path, ioctl: Ioctl) -> tuple[str, str, int, tuple[tuple[int, int], ...],
                                                   str]:
    """(card, driver, device caps, sizes, sizes note) of a V4L2 node; OSError when it
    cannot be opened or asked."""
    fd = _open_node(node)
    try:
        buf = bytearray(struct.calcsize(_CAP_FMT))
        ioctl(fd, VIDIOC_QUERYCAP, buf)
        driver, card, _bus, _version, caps, device_caps = struct.unpack(_CAP_FMT, bytes(buf))
        if caps & CAP_DEVICE_CAPS:
            caps = device_caps
        sizes: tuple[tuple[int, int], ...] = ()
        note = ""
        if caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE):
            sizes, note = _v4l2_sizes(fd, ioctl)
        return _cstr(card), _cstr(driver), int(caps), sizes, note
    finally:
        os.close(fd)


def _video_number(name: str) -> int | None:
    digits = name[len("video"):]
    return int(digits) if name.startswith("video") and digits.isdigit() else None


def scan_linux(*, sysfs: Path = Path("/sys/class/video4linux"), dev: Path = Path("/dev"),
               ioctl: Ioctl | None = None) -> CameraScan:
    """The V4L2 devices of a Linux machine (see the module docstring)."""
    ioctl = ioctl or _default_ioctl
    numbers: set[int] = set()
    if sysfs.is_dir():
        numbers.update(n for e in sysfs.iterdir() if (n := _video_number(e.name)) is not None)
    if dev.is_dir():
        numbers.update(n for e in dev.glob("video*") if (n := _video_number(e.name)) is not None)
    cameras: list[CameraInfo] = []
    virtual: list[CameraInfo] = []
    notes: list[str] = []
    for n in sorted(numbers):
        entry = sysfs / f"video{n}"
        node = dev / f"video{n}"
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            name = ""
        try:
            is_virtual = "/virtual/" in os.path.realpath(entry)
        except OSError:
            is_virtual = False
        if not node.exists():
            notes.append(f"video{n} has no device node {node}")
            continue
        try:
            card, driver, caps, sizes, note = _query_v4l2(node, ioctl)
        except PermissionError:
            info = CameraInfo(n, name, str(node), virtual=is_virtual,
                              problem=f"no permission to open {node} ({VIDEO_GROUP_FIX})")
            (virtual if is_virtual else cameras).append(info)
            continue
        except OSError as exc:
            notes.append(f"{node}: {exc.strerror or exc}")
            continue
        is_virtual = is_virtual or "loopback" in driver.lower()
        info = CameraInfo(n, name or card, str(node), sizes, note, is_virtual, driver=driver)
        if is_virtual:
            virtual.append(info)
        elif caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE):
            cameras.append(info)
        # other nodes (a camera's metadata node, codecs) are not cameras
    return CameraScan(tuple(cameras), tuple(virtual), "v4l2", tuple(notes))


# ----------------------------------------------------------------------------------------------
# elsewhere: OpenCV


def _cv2_opener(index: int) -> Any:
    import cv2

    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # OpenCV warns on stderr for every index that is not there
    try:
        return cv2.VideoCapture(index)
    finally:
        cv2.setLogLevel(level)


def _mac_camera_names() -> list[str]:
    import json
    import subprocess

    try:
        done = subprocess.run(["system_profiler", "SPCameraDataType", "-json"],
                              capture_output=True, text=True, timeout=15, check=False)
        items = json.loads(done.stdout or "{}").get("SPCameraDataType", [])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return [str(item.get("_name", "")) for item in items if isinstance(item, dict)]


def scan_opencv(*, opener: Opener | None = None, max_index: int = 10,
                names: Sequence[str] = (), sizes: Sequence[tuple[int, int]] = _COMMON_SIZES
                ) -> CameraScan:
    """Open indexes 0.. in turn with ``opener`` (``cv2.VideoCapture``); stops after two
    failures in a row. Each camera is asked for ``sizes`` and keeps those it accepts."""
    import cv2

    opener = opener or _cv2_opener
    cameras: list[CameraInfo] = []
    misses = 0
    for index in range(max_index):
        cap = opener(index)
        try:
            if cap is None or not cap.isOpened():
                misses += 1
                if misses >= 2:
                    break
                continue
            misses = 0
            found = {(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                      int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))}
            for w, h in sizes:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
                found.add((int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                           int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
            found.discard((0, 0))
            name = names[len(cameras)] if len(cameras) < len(names) else ""
            cameras.append(CameraInfo(index, name, None,
                                      tuple(sorted(found, key=lambda s: s[0] * s[1]))))
        finally:
            if cap is not None:
                cap.release()
    return CameraScan(tuple(cameras), (), "opencv")


def scan_cameras(*, system: str | None = None, **kw: Any) -> CameraScan:
    """The cameras of this machine (Linux: :func:`scan_linux`; else :func:`scan_opencv`)."""
    system = system or platform.system()
    if system == "Linux":
        return scan_linux(**kw)
    names = _mac_camera_names() if system == "Darwin" else []
    return scan_opencv(names=names, **kw)


def no_camera_fix(system: str | None = None) -> str:
    """What to do when no camera is found, in one line."""
    system = system or platform.system()
    tail = ("or drive the portrait with a video instead: mimicam live --driver VIDEO.MP4")
    if system == "Linux":
        return ("plug in a webcam (it appears as /dev/videoN; in a VM or container pass the "
                f"device through), {tail}")
    if system == "Darwin":
        return ("plug in a webcam and allow camera access for your terminal (System Settings > "
                f"Privacy & Security > Camera), {tail}")
    return f"plug in a webcam and close other programs that use it, {tail}"


def require_camera(index: int, *, system: str | None = None,
                   scan: Callable[[], CameraScan] | None = None,
                   opener: Opener | None = None) -> None:
    """Check that camera ``index`` is there before ``mimicam live`` uses it; raises
    :class:`~calibrate.errors.InputError` naming the cameras that are (or saying that there
    is none, and what to do), or the fix for a camera this user may not open."""
    system = system or platform.system()
    if system != "Linux":  # opening it is the only way to know
        cap = (opener or _cv2_opener)(index)
        try:
            if cap is not None and cap.isOpened():
                return
        finally:
            if cap is not None:
                cap.release()
    found = (scan or (lambda: scan_cameras(system=system)))()
    info = found.find(index)
    if info is not None:
        if info.problem:
            raise InputError(f"camera {index} cannot be used: {info.problem}")
        if info.virtual:
            log.warning("camera %d (%s) is a virtual camera (v4l2loopback), not a webcam",
                        index, info.name)
        return
    if found.cameras:
        have = "; ".join(c.label() for c in found.cameras)
        why = "" if system == "Linux" else " (or it cannot be opened: used by another program?)"
        raise InputError(f"camera {index} not found{why}; the cameras here are {have} "
                         "(mimicam cameras lists them with their sizes)")
    raise InputError(f"camera {index} not found: this machine has no camera; "
                     f"{no_camera_fix(system)}")
