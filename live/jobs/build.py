"""Building the live pipeline from a :class:`~live.config.LiveConfig`: engine, portrait library,
source, tracker and sinks, opened in order and closed again if a later one fails."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from calibrate.errors import InputError, MimicamError
from live.config import LiveConfig

if TYPE_CHECKING:
    from live.jobs.pipeline import LivePipeline

log = logging.getLogger(__name__)


def _first_portrait_with_face(library: Any) -> int:
    """The first portrait the engine can prepare (the files were checked for a face already;
    an engine may still refuse one)."""
    problems = []
    for i in range(len(library)):
        try:
            library.prepare(i)
            return i
        except MimicamError as exc:
            log.warning("skipping portrait %s: %s", library.paths[i].name, exc)
            problems.append(f"{library.paths[i].name} ({exc})")
    raise InputError("no usable portrait", expected="at least one picture the engine can use",
                     got="; ".join(problems))


def build_pipeline(cfg: LiveConfig, *, realtime: bool = True,
                   driver_size: tuple[int, int] | None = None) -> LivePipeline:
    """Open everything ``cfg`` asks for and return the (not yet running) pipeline.

    A sink that cannot run here (no virtual camera device, no display) is skipped with one
    warning saying how to set it up. ``realtime=False`` plays a driver video as fast as the
    pipeline takes frames, ``driver_size`` letterboxes its frames (benchmarks).
    """
    from live.engines.base import create_engine, driving_crop_limit, driving_crop_size
    from live.face.framing import read_portrait_options
    from live.face.portraits import PortraitLibrary, portrait_paths, usable_portraits
    from live.face.tracking import FaceTracker
    from live.io.capture import CameraSource, VideoFileSource
    from live.io.sinks import (
        MjpegHttpSink,
        PreviewSink,
        RecorderSink,
        Sink,
        SinkUnavailable,
        VirtualCameraSink,
    )
    from live.io.video import check_output, check_output_file
    from live.jobs.pipeline import LivePipeline

    if cfg.portrait is None:
        raise InputError("no portrait given", expected="--portrait IMAGE or FOLDER",
                         got="nothing")
    if cfg.record is not None:  # before any work: a bad or taken name, or an input's name
        check_output(cfg.record, inputs={"driver video": cfg.driver, "portrait": cfg.portrait},
                     overwrite=cfg.overwrite)
    if cfg.stats is not None:  # written at the end: its folder and name checked now
        check_output_file(cfg.stats, what="stats file",
                          inputs={"driver video": cfg.driver, "portrait": cfg.portrait,
                                  "recording": cfg.record}, overwrite=cfg.overwrite)
    paths = portrait_paths(cfg.portrait)
    # a folder's portraits.toml: framing and face per picture (strict, read before any work)
    options = (read_portrait_options(cfg.portrait, [p.name for p in paths])
               if cfg.portrait.is_dir() else {})
    # unreadable and faceless files are skipped (one warning each); none left is an error
    paths = usable_portraits(paths, folder=cfg.portrait if cfg.portrait.is_dir() else None)
    if cfg.driver is None:  # a camera that is not there: name the ones that are
        from live.io.cameras import require_camera

        require_camera(cfg.camera)
    if cfg.http is not None:  # the network only with --allow-remote, before any work
        from live.config import parse_host_port
        from live.io.web import check_bind

        check_bind(parse_host_port(cfg.http)[0], cfg.allow_remote)
    with ExitStack() as stack:
        # weights: a checkpoint file, or a model directory written by 'mimicam export'
        engine = create_engine(cfg.engine, cfg.engine_options, weights=cfg.weights,
                               remote=cfg.remote, token=cfg.remote_token,
                               fallback=cfg.fallback)
        stack.callback(engine.close)
        library = PortraitLibrary(paths, engine, output_size=cfg.output_size,
                                  crop_scale=cfg.crop_scale, feather=cfg.feather,
                                  color_transfer=cfg.color_transfer, framing=cfg.framing,
                                  face=cfg.face, options=options,
                                  backgrounds=cfg.backgrounds)
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
        tracker = FaceTracker(crop_size=driving_crop_size(engine),
                              max_crop_size=driving_crop_limit(engine), crop_scale=cfg.crop_scale)
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
            from live.config import parse_host_port

            host, port = parse_host_port(cfg.http)
            sinks.append(MjpegHttpSink(host, port, quality=cfg.jpeg_quality,
                                       allow_remote=cfg.allow_remote))
            stack.callback(sinks[-1].close)
        if cfg.record is not None:
            sinks.append(RecorderSink(cfg.record, fps=cfg.fps, size=cfg.output_size,
                                      overwrite=cfg.overwrite))
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
        for sink in sinks:  # the page drives this pipeline (live/jobs/control.py)
            if isinstance(sink, MjpegHttpSink):
                from live.jobs.control import LiveControl

                sink.set_control(LiveControl.for_portrait(pipeline, cfg.portrait))
        stack.pop_all()
    return pipeline
