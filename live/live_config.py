"""Settings of ``mimicam live``: one frozen dataclass, one set of defaults.

``mimicam live --config FILE.toml`` loads a file strictly (:func:`live.config.load_toml`:
unknown keys and wrong types are errors) and command-line flags override it. Example::

    portrait = "portraits/"
    engine = "mesh"
    width = 1920
    height = 1080
    http = "127.0.0.1:8090"
    preview = false
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from live.errors import InputError

__all__ = ["LiveConfig", "parse_host_port"]


@dataclass(frozen=True)
class LiveConfig:
    """Everything ``mimicam live`` can be told (see ``mimicam live --help``)."""

    portrait: Path | None = None
    """A portrait image, or a folder of them (hotkeys 1-9 and left/right switch)."""
    engine: str = "mesh"
    """Animation engine: ``mesh`` (weight-free) or ``fomm`` (needs weights)."""
    weights: Path | None = None
    """FOMM checkpoint (``vox-cpk.pdparams`` or ``.pth.tar``), or a model directory written
    by ``mimicam export``, for ``engine = "fomm"``."""
    crop_size: int | None = None
    """Side of the face crops the engine animates (None: the engine's own default)."""
    crop_scale: float = 1.8
    """Face crop side in face sizes, for the portrait and the driving face alike."""

    camera: int = 0
    """Webcam index (when no driver video is given)."""
    camera_width: int = 640
    camera_height: int = 480
    camera_fps: float = 30.0
    driver: Path | None = None
    """A driving video used instead of the webcam, played at its own frame rate."""
    loop_driver: bool = True
    """Start the driver video again when it ends (else stop)."""

    width: int = 1280
    """Output width in pixels."""
    height: int = 720
    """Output height in pixels."""
    fps: float = 30.0
    """Output frame rate (virtual camera, recorder, resend rate while the camera is lost)."""
    feather: float = 0.03
    """Softness of the pasted face's edge, as a fraction of the crop size."""
    color_transfer: bool = False
    """Match the animated face's colours to the portrait around its edge."""

    vcam: bool = True
    """Send to a virtual camera (v4l2loopback, OBS Virtual Camera)."""
    vcam_device: str | None = None
    vcam_backend: str | None = None
    preview: bool = True
    """Show a preview window (skipped with a warning when there is no display)."""
    overlay: bool = True
    """Start with the preview overlay on (O toggles it)."""
    http: str | None = None
    """Serve an MJPEG stream on ``HOST:PORT`` (``PORT`` alone binds 127.0.0.1)."""
    jpeg_quality: int = 80
    record: Path | None = None
    """Also record the output to this video file (.mp4)."""

    duration: float | None = None
    """Stop after this many seconds (None: until Q, Ctrl-C or SIGTERM)."""
    stats: Path | None = None
    """Write the final statistics to this JSON file."""

    auto_match: bool = False
    """Calibrate on the frame whose pose best matches the portrait's, within ``match_window``
    seconds after the face first holds still."""
    match_window: float = 2.0
    global_hotkeys: bool = False
    """Also listen to hotkeys system-wide (needs pynput; off by default because digits typed
    in other applications would switch portraits)."""

    def __post_init__(self) -> None:
        checks = [
            (self.engine in ("mesh", "fomm"), "engine", "'mesh' or 'fomm'", self.engine),
            (self.width >= 16 and self.height >= 16, "width/height", ">= 16 pixels",
             f"{self.width}x{self.height}"),
            (0 < self.fps <= 240, "fps", "0 < fps <= 240", self.fps),
            (0 < self.camera_fps <= 240, "camera_fps", "0 < fps <= 240", self.camera_fps),
            (self.camera >= 0, "camera", "an index >= 0", self.camera),
            (self.camera_width >= 16 and self.camera_height >= 16, "camera_width/height",
             ">= 16 pixels", f"{self.camera_width}x{self.camera_height}"),
            (self.crop_size is None or self.crop_size >= 64, "crop_size", ">= 64",
             self.crop_size),
            (self.crop_scale > 0, "crop_scale", "> 0", self.crop_scale),
            (0 <= self.feather <= 0.3, "feather", "0 .. 0.3", self.feather),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality", "1 .. 100", self.jpeg_quality),
            (self.duration is None or self.duration > 0, "duration", "> 0 seconds",
             self.duration),
            (self.match_window >= 0, "match_window", ">= 0 seconds", self.match_window),
        ]
        for ok, name, expected, got in checks:
            if not ok:
                raise InputError(f"live setting {name} is out of range", expected=expected,
                                 got=repr(got))
        if self.http is not None:
            parse_host_port(self.http)

    @property
    def output_size(self) -> tuple[int, int]:
        return self.width, self.height


def parse_host_port(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"`` or ``"PORT"`` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = str(text).rpartition(":")
    if not sep:
        host, port_text = "", str(text)
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise InputError("bad HTTP address", expected="HOST:PORT or PORT with a port 0-65535",
                         got=repr(text))
    return host, port
