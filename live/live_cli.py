"""``mimicam live``: animate a portrait with your face, live, to a virtual camera and more.

Heavy libraries (MediaPipe, the engines, PyAV, pyvirtualcam) are imported inside the handler
and :func:`build_pipeline`, never when the parser is built.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from live.config import load_toml, override
from live.errors import InputError, NoFaceError
from live.hotkeys import HOTKEY_HELP
from live.live_config import LiveConfig

if TYPE_CHECKING:
    from live.pipeline import LivePipeline

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Animate a portrait with your face, live. Frames from the webcam (or a driver video) are
tracked, animated by the engine, pasted back into the full portrait and sent to the virtual
camera (v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS), a preview window, an
MJPEG stream (--http) and/or a file (--record). The neutral pose is taken when your face
first holds still; press C to take it again."""


def _epilog() -> str:
    width = max(len(k) for k, _ in HOTKEY_HELP)
    keys = "\n".join(f"  {k:<{width}}  {d}" for k, d in HOTKEY_HELP)
    return (f"hotkeys (in the preview window; system-wide with --global-hotkeys):\n{keys}\n\n"
            "examples:\n"
            "  mimicam live --portrait me_as_a_painting.jpg\n"
            "  mimicam live --portrait portraits/ --http 8090 --no-vcam\n"
            "  mimicam live --portrait p.png --driver clip.mp4 --no-preview --duration 10 \\\n"
            "      --record out.mp4 --stats stats.json")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, "
                                         f"got {text!r}") from None
    return w, h


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "live", help="animate a portrait live: webcam -> virtual camera, preview, stream",
        description=_DESCRIPTION, epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input")
    src.add_argument("--portrait", type=Path, metavar="IMG|DIR",
                     help="portrait image, or a folder of them (keys 1-9, left/right switch)")
    src.add_argument("--engine", choices=("mesh", "fomm"),
                     help="animation engine (default: mesh, weight-free)")
    src.add_argument("--weights", type=Path, metavar="FILE|DIR",
                     help="FOMM checkpoint (vox-cpk.pdparams), or a model directory from "
                          "'mimicam export', for --engine fomm")
    src.add_argument("--camera", type=int, metavar="N", help="webcam index (default: 0)")
    src.add_argument("--camera-size", type=_size, metavar="WxH",
                     help="webcam resolution to ask for (default: 640x480)")
    src.add_argument("--driver", type=Path, metavar="VIDEO",
                     help="drive with a video file instead of the webcam (loops)")
    src.add_argument("--no-loop", dest="loop_driver", action="store_const", const=False,
                     help="stop when the driver video ends")
    out = p.add_argument_group("output")
    out.add_argument("--size", type=_size, metavar="WxH", help="output size (default 1280x720)")
    out.add_argument("--fps", type=float, help="output frame rate (default 30)")
    out.add_argument("--no-vcam", dest="vcam", action="store_const", const=False,
                     help="do not send to a virtual camera")
    out.add_argument("--vcam-device", metavar="NAME",
                     help="virtual camera device (e.g. /dev/video10)")
    out.add_argument("--no-preview", dest="preview", action="store_const", const=False,
                     help="no preview window")
    out.add_argument("--no-overlay", dest="overlay", action="store_const", const=False,
                     help="start with the preview overlay off (O toggles it)")
    out.add_argument("--http", metavar="HOST:PORT",
                     help="serve an MJPEG stream and a page showing it (PORT alone: "
                          "127.0.0.1:PORT)")
    out.add_argument("--record", type=Path, metavar="FILE.mp4", help="also record to a file")
    run = p.add_argument_group("run")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    run.add_argument("--stats", type=Path, metavar="FILE.json",
                     help="write final statistics (fps, latency median/p95, drops) here")
    run.add_argument("--auto-match", dest="auto_match", action="store_const", const=True,
                     help="calibrate on the moment your pose best matches the portrait's")
    run.add_argument("--global-hotkeys", dest="global_hotkeys", action="store_const",
                     const=True, help="hotkeys system-wide too (needs pynput)")
    run.add_argument("--config", type=Path, metavar="FILE.toml",
                     help="settings file (keys of LiveConfig); flags override it")
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
        vcam=args.vcam, vcam_device=args.vcam_device, preview=args.preview,
        overlay=args.overlay, http=args.http, record=args.record, duration=args.duration,
        stats=args.stats, auto_match=args.auto_match, global_hotkeys=args.global_hotkeys)


def _first_portrait_with_face(library: Any) -> int:
    problems = []
    for i in range(len(library)):
        try:
            library.prepare(i)
            return i
        except NoFaceError as exc:
            log.warning("skipping %s", exc)
            problems.append(library.paths[i].name)
    raise NoFaceError("no usable portrait", expected="at least one picture with a face",
                      got=f"no face in {', '.join(problems)}")


def build_pipeline(cfg: LiveConfig, *, realtime: bool = True,
                   driver_size: tuple[int, int] | None = None) -> LivePipeline:
    """Open everything ``cfg`` asks for and return the (not yet running) pipeline.

    A sink that cannot run here (no virtual camera device, no display) is skipped with one
    warning saying how to set it up. ``realtime=False`` plays a driver video as fast as the
    pipeline takes frames, ``driver_size`` letterboxes its frames (benchmarks).
    """
    from live.blas import limit_openblas_threads
    from live.capture import CameraSource, VideoFileSource
    from live.engines.base import create_engine
    from live.pipeline import LivePipeline
    from live.portraits import PortraitLibrary, portrait_paths
    from live.sinks import (
        MjpegHttpSink,
        PreviewSink,
        RecorderSink,
        Sink,
        SinkUnavailable,
        VirtualCameraSink,
    )
    from live.tracking import FaceTracker

    if cfg.portrait is None:
        raise InputError("no portrait given", expected="--portrait IMAGE or FOLDER",
                         got="nothing")
    paths = portrait_paths(cfg.portrait)
    limit_openblas_threads(1)  # its spinning threads cost ~20 ms of CPU a frame (live/blas.py)
    with ExitStack() as stack:
        options: dict[str, Any] = {}
        if cfg.crop_size is not None:
            options["size"] = cfg.crop_size
        if cfg.weights is not None:
            # a checkpoint file, or a model directory written by 'mimicam export'
            options["model_dir" if cfg.weights.is_dir() else "weights"] = cfg.weights
        engine = create_engine(cfg.engine, **options)
        stack.callback(engine.close)
        library = PortraitLibrary(paths, engine, output_size=cfg.output_size,
                                  crop_scale=cfg.crop_scale, feather=cfg.feather,
                                  color_transfer=cfg.color_transfer)
        stack.callback(library.close)
        start = _first_portrait_with_face(library)
        source: Any
        if cfg.driver is not None:
            source = VideoFileSource(cfg.driver, loop=cfg.loop_driver, realtime=realtime,
                                     size=driver_size)
        else:
            source = CameraSource(cfg.camera, width=cfg.camera_width,
                                  height=cfg.camera_height, fps=cfg.camera_fps)
        stack.callback(source.close)
        tracker = FaceTracker(crop_size=engine.size, crop_scale=cfg.crop_scale)
        stack.callback(tracker.close)
        sinks: list[Sink] = []
        if cfg.vcam:
            try:
                sinks.append(VirtualCameraSink(cfg.width, cfg.height, cfg.fps,
                                               device=cfg.vcam_device,
                                               backend=cfg.vcam_backend))
                stack.callback(sinks[-1].close)
            except SinkUnavailable as exc:
                log.warning("%s. Continuing without the virtual camera.", exc)
        if cfg.http is not None:
            from live.live_config import parse_host_port

            host, port = parse_host_port(cfg.http)
            sinks.append(MjpegHttpSink(host, port, quality=cfg.jpeg_quality))
            stack.callback(sinks[-1].close)
        if cfg.record is not None:
            sinks.append(RecorderSink(cfg.record, fps=cfg.fps, size=cfg.output_size))
            stack.callback(sinks[-1].close)
        preview = None
        if cfg.preview:
            try:
                preview = PreviewSink("mimicam live")
            except SinkUnavailable as exc:
                log.warning("%s", exc)
        if not sinks and preview is None:
            log.warning("no output: nothing will be sent anywhere (add --http, --record, "
                        "or set up a virtual camera)")
        pipeline = LivePipeline(cfg, source=source, tracker=tracker, engine=engine,
                                library=library, sinks=sinks, preview=preview,
                                start_index=start)
        stack.pop_all()
    return pipeline


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
    cfg = config_from_args(args)
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
