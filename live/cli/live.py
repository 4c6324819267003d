"""``mimicam live``: animate a portrait with your face, live, to a virtual camera and more.

Heavy libraries (MediaPipe, the engines, PyAV, pyvirtualcam) are imported inside the handler
and :func:`live.jobs.build.build_pipeline`, never when the parser is built.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from live.background import BACKGROUND_HELP, Background
from live.cli.engine_flags import (
    add_engine_flags,
    add_remote_flags,
    engine_options_from_args,
    remote_flag_values,
)
from live.config import FRAMINGS, LiveConfig, load_toml, override
from live.io.hotkeys import HOTKEY_HELP

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Animate a portrait with your face, live. Frames from the webcam (or a driver video) are
tracked, animated by the engine, pasted back into the full portrait and sent to the virtual
camera (v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS), a preview window, an
MJPEG stream (--http) and/or a file (--record). Every output shows the portrait framed like
a webcam picture of its person (--framing shoulders, the default; head; or full, the whole
picture letterboxed). The neutral pose is taken when your face first holds still; press C
to take it again."""


def _epilog() -> str:
    width = max(len(k) for k, _ in HOTKEY_HELP)
    keys = "\n".join(f"  {k:<{width}}  {d}" for k, d in HOTKEY_HELP)
    return (f"hotkeys (in the preview window; system-wide with --global-hotkeys):\n{keys}\n\n"
            "examples:\n"
            "  mimicam live --portrait me_as_a_painting.jpg\n"
            "  mimicam live --camera list\n"
            "  mimicam live --portrait portraits/ --http 8090 --no-vcam\n"
            "  mimicam live --portrait portraits/ --http 0.0.0.0:8090 --allow-remote   # a phone\n"
            "  mimicam live --portrait p.png --driver clip.mp4 --no-preview --duration 10 \\\n"
            "      --record out.mp4 --stats stats.json\n"
            "  mimicam live --portrait p.png --config live.toml --no-adapt-scale\n"
            "  mimicam live --portrait group_photo.jpg --face 3 --framing head\n"
            "  mimicam live --portrait p.png --background blur --background green "
            "--background office.jpg\n\n"
            "settings file (--config live.toml; flags override it):\n"
            "  portrait = \"portraits/\"\n"
            "  http = \"127.0.0.1:8090\"\n"
            "  background = [\"blur\", \"green\"]\n"
            "  [engine]\n"
            "  name = \"mesh\"\n"
            "  [engine.mesh]\n"
            "  smoothing = true\n"
            "  lip_gain = 1.2")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, "
                                         f"got {text!r}") from None
    return w, h


def camera_arg(text: str) -> int | str:
    """``--camera N`` (an index >= 0) or ``--camera list``."""
    if text.strip().lower() == "list":
        return "list"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a camera index >= 0 or 'list', got {text!r}")
    return n


def face_number(text: str) -> int:
    """``--face N``: a face number >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a face number >= 1 (1 = the leftmost), "
                                         f"got {text!r}")
    return n


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "live", help="animate a portrait live: webcam -> virtual camera, preview, stream",
        description=_DESCRIPTION, epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input")
    src.add_argument("--portrait", type=Path, metavar="IMG|DIR",
                     help="portrait image, or a folder of them (keys 1-9, left/right switch)")
    src.add_argument("--face", type=face_number, metavar="N",
                     help="in a group photo, frame and animate face N counted from the left "
                          "(default: the largest face)")
    src.add_argument("--engine", choices=("mesh", "fomm"),
                     help="animation engine (default: mesh, weight-free)")
    src.add_argument("--weights", type=Path, metavar="FILE|DIR",
                     help="FOMM checkpoint (vox-cpk.pdparams), or a model directory from "
                          "'mimicam export', for --engine fomm")
    src.add_argument("--camera", type=camera_arg, metavar="N|list",
                     help="webcam index (default: 0); 'list' lists the cameras and exits "
                          "(as 'mimicam cameras')")
    src.add_argument("--camera-size", type=_size, metavar="WxH",
                     help="webcam resolution to ask for (default: 640x480)")
    src.add_argument("--driver", type=Path, metavar="VIDEO",
                     help="drive with a video file instead of the webcam (loops)")
    src.add_argument("--no-loop", dest="loop_driver", action="store_const", const=False,
                     help="stop when the driver video ends")
    out = p.add_argument_group("output")
    out.add_argument("--size", type=_size, metavar="WxH", help="output size (default 1280x720)")
    out.add_argument("--fps", type=float, help="output frame rate (default 30)")
    out.add_argument("--framing", choices=FRAMINGS,
                     help="how the portrait fills the output: shoulders (default: head and "
                          "shoulders like a webcam, the face a third of the height), head "
                          "(the face half the height) or full (the whole portrait, "
                          "letterboxed); per picture in a folder's portraits.toml")
    out.add_argument("--background", action="append", metavar="SPEC",
                     help="what goes behind the portrait's person: "
                          + BACKGROUND_HELP.replace("%", "%%")
                          + "; give it again for more, which B cycles through (then keep)")
    out.add_argument("--no-vcam", dest="vcam", action="store_const", const=False,
                     help="do not send to a virtual camera")
    out.add_argument("--vcam-device", metavar="NAME",
                     help="virtual camera device (e.g. /dev/video10)")
    out.add_argument("--no-preview", dest="preview", action="store_const", const=False,
                     help="no preview window")
    out.add_argument("--no-overlay", dest="overlay", action="store_const", const=False,
                     help="start with the preview overlay off (O toggles it)")
    out.add_argument("--http", metavar="HOST:PORT",
                     help="serve a control page around the stream, and the MJPEG stream "
                          "(PORT alone: 127.0.0.1:PORT); open the URL with the token printed "
                          "at start-up")
    out.add_argument("--allow-remote", dest="allow_remote", action="store_const", const=True,
                     help="let --http bind an address other devices reach (a phone on your "
                          "network): the page and stream are unencrypted HTTP")
    out.add_argument("--record", type=Path, metavar="FILE.mp4",
                     help="also record to a file (.mp4, .mov, .mkv: H.264; .webm: VP9; .gif)")
    out.add_argument("--overwrite", "-y", dest="overwrite", action="store_const", const=True,
                     help="replace an existing --record or --stats file (default: keep it "
                          "and stop)")
    run = p.add_argument_group("run")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    run.add_argument("--stats", type=Path, metavar="FILE.json",
                     help="write final statistics (fps, latency median/p95, drops) here")
    run.add_argument("--auto-match", dest="auto_match", action="store_const", const=True,
                     help="calibrate on the moment your pose best matches the portrait's")
    run.add_argument("--global-hotkeys", dest="global_hotkeys", action="store_const",
                     const=True, help="hotkeys system-wide too (needs pynput)")
    run.add_argument("--config", type=Path, metavar="FILE.toml",
                     help="settings file (keys of LiveConfig, the engines' options in "
                          "[engine.mesh] / [engine.fomm]); flags override it")
    add_engine_flags(p)
    add_remote_flags(p)
    p.set_defaults(handler=_handle)


def config_from_args(args: argparse.Namespace) -> LiveConfig:
    """Defaults, then ``--config FILE.toml``, then the flags that were given."""
    cfg = load_toml(args.config, LiveConfig) if args.config is not None else LiveConfig()
    size = args.size or (None, None)
    cam = args.camera_size or (None, None)
    return override(
        cfg, portrait=args.portrait, engine=args.engine, weights=args.weights,
        camera=args.camera, camera_width=cam[0], camera_height=cam[1], driver=args.driver,
        loop_driver=args.loop_driver, width=size[0], height=size[1], fps=args.fps,
        framing=args.framing, face=args.face,
        background=tuple(Background.parse(b) for b in args.background)
        if args.background else None,
        vcam=args.vcam, vcam_device=args.vcam_device, preview=args.preview,
        overlay=args.overlay, http=args.http, allow_remote=args.allow_remote,
        record=args.record, overwrite=args.overwrite,
        duration=args.duration,
        stats=args.stats, auto_match=args.auto_match, global_hotkeys=args.global_hotkeys,
        **remote_flag_values(args),
        # --crop-size is LiveConfig.crop_size too, so the flag beats the file's crop_size
        crop_size=args.crop_size,
        engine_options=engine_options_from_args(args, cfg.engine_options))


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` (a clean shutdown) while inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _handle(args: argparse.Namespace) -> int:
    from live.blas import limit_openblas_threads
    from live.jobs.build import build_pipeline

    if args.camera == "list":
        from live.cli.cameras import print_cameras

        return print_cameras()
    cfg = config_from_args(args)
    limit_openblas_threads(1)  # its spinning threads cost ~20 ms of CPU a frame (blas.py)
    pipeline = build_pipeline(cfg)
    with pipeline, stop_on_signals(pipeline.stop):
        pipeline.run()
    summary = pipeline.summary()
    if cfg.stats is not None:
        from live.stats import write_json_atomic

        write_json_atomic(cfg.stats, summary)
    c2s = summary["latency_ms"]["capture_to_send"]
    log.info("sent %d frames at %.1f fps; capture-to-send median %s ms, p95 %s ms; "
             "%d dropped at the input, %d tracking losses, %d engine errors",
             summary["frames_sent"], summary["fps"], c2s["median"], c2s["p95"],
             summary["dropped_input"], summary["tracking_losses"], summary["engine_errors"])
    if summary["repeated"]:
        log.info("%d frames were re-sent with a badge while the camera was lost",
                 summary["repeated"])
    return 0
