"""``mimicam bench --job engine --engine mesh``: decode, track, the mesh engine and the composite,
per stage and end to end; with ``--background`` the composite is the live output (1280x720,
``shoulders`` framing) and the background a stage of its own."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError
from live.bench.common import DRIVING_SIZE, stats

OUTPUT_SIZE = (1280, 720)
"""The live output the ``--background`` variant composites into."""


def _tracked(driving: Path, fps: float, tracker: Any, count: int
             ) -> Iterator[tuple[Any, dict[str, float], float]]:
    """``count`` frames of ``driving`` (looping a shorter clip, its video time rising on),
    each decoded, letterboxed to 640x480 and tracked: ``(Tracked, stage seconds, t_a)``
    with ``t_a`` the ``perf_counter()`` before its decode."""
    from live.compose import letterbox
    from live.io.video import VideoReader
    from live.packets import Frame

    done = 0
    offset = 0.0
    while done < count:
        last_t = offset
        with VideoReader(driving) as reader:
            it = iter(reader)
            while done < count:
                t_a = time.perf_counter()
                frame = next(it, None)
                if frame is None:
                    break
                t_b = time.perf_counter()
                image = letterbox(frame.image, DRIVING_SIZE)
                pts = offset + frame.time(fps)
                last_t = pts
                t_c = time.perf_counter()
                tracked = tracker.process(Frame(image, done, t_c, pts))
                t_d = time.perf_counter()
                done += 1
                yield tracked, {"decode": t_b - t_a, "resize": t_c - t_b,
                                "track": t_d - t_c}, t_a
        offset = last_t + 1.0 / 30.0
        if done == 0:
            raise InputError("the driving video has no frames", path=driving)


def bench_engine_mesh(*, driving: Path, portrait: Path, frames: int = 300, warmup: int = 10,
                      size: int = 512, background: str | None = None,
                      options: Any = None, pipelined: bool = False) -> dict[str, Any]:
    """Time decode -> 640x480 -> track -> mesh engine -> composite over ``frames`` frames
    (after ``warmup``); the video loops when it is shorter. Returns a JSON-able dict.

    ``background`` (``--background``: blur, a colour, an image file): the composite is
    ``mimicam live``'s (the crop pasted into the portrait framed ``shoulders`` at 1280x720)
    and the background, put behind the person with the engine's warped matte, is timed as a
    stage of its own (``background``); the portrait is prepared as live prepares it, and
    ``prepare_ms`` is then that whole preparation (without: the engine's). ``options``: the
    engine's
    :class:`~live.engines.options.MeshOptions` (None: the defaults; ``size`` is set).

    ``pipelined``: decode, letterbox and track run on a thread of their own, a frame or two
    ahead of the engine, as ``mimicam live``'s tracking thread runs beside its engine (no
    frame is dropped here); ``fps_wall`` is then the pipeline's throughput and ``total`` a
    frame's time from its decode to its composite, the wait in between included. Otherwise
    every stage runs in turn on one thread and ``total`` is their sum."""
    from live.engines.base import driving_crop_limit, driving_crop_size
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import find_portrait, load_image
    from live.face.tracking import FaceTracker
    from live.io.threads import Prefetch
    from live.io.video import probe_video

    if frames < 1 or warmup < 0:
        raise InputError("bad frame counts", expected="--frames >= 1 and --warmup >= 0",
                         got=f"{frames}, {warmup}")
    info = probe_video(driving)
    found = find_portrait(load_image(portrait), size, path=portrait)
    crop = found.crop.image
    stages: dict[str, list[float]] = {}
    live_output: _LiveOutput | None = None
    faces = 0
    engine_options = dataclasses.replace(options, size=size) if options is not None else None
    with MeshEngine(engine_options, size=size) as engine, \
            FaceTracker(crop_size=driving_crop_size(engine),
                        max_crop_size=driving_crop_limit(engine)) as tracker, \
            contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        if background:  # as live prepares it, the picture's side included
            live_output = _LiveOutput(portrait, engine, background)
            engine.set_portrait(live_output.handle)
        else:
            engine.set_portrait(engine.prepare(crop, picture=found.picture_box))
        prepare_ms = (time.perf_counter() - t0) * 1e3
        output = np.empty((size, size, 3), np.uint8)
        done = 0
        wall_start = None
        source: Iterable[tuple[Any, dict[str, float], float]] = _tracked(
            driving, info.fps, tracker, warmup + frames)
        if pipelined:  # two frames ahead at most: nothing dropped, as little held
            source = stack.enter_context(Prefetch(source, max_queue=2, name="bench-tracking"))
        for tracked, row, t_a in source:
            t_d = time.perf_counter()
            animated = engine.process(tracked.face, tracked.frame.pts)
            t_e = time.perf_counter()
            if live_output is None:
                np.copyto(output, animated)  # the engine crop is this job's output
            else:
                picture = live_output.compositor.compose(animated)
            t_f = time.perf_counter()
            if live_output is not None:
                live_output.apply(picture, engine.last_matte)
            t_g = time.perf_counter()
            done += 1
            if done == warmup:
                wall_start = t_g
            if done <= warmup:
                continue
            faces += tracked.face is not None
            row.update(engine=t_e - t_d, composite=t_f - t_e, total=t_g - t_a)
            if live_output is not None:
                row["background"] = t_g - t_f
            for name, sec in row.items():
                stages.setdefault(name, []).append(sec * 1e3)
            for name, ms in engine.last_timings.items():
                stages.setdefault(f"engine.{name}", []).append(ms)
        wall = time.perf_counter() - (wall_start if wall_start is not None else t0)
    total = stats(stages.get("total", []))
    order = ["decode", "resize", "track", "engine",
             *sorted(k for k in stages if k.startswith("engine.")), "composite", "background",
             "total"]
    return {
        "job": "engine", "engine": "mesh",
        "driving": driving.name, "driving_size": list(info.size),
        "input_size": list(DRIVING_SIZE), "portrait": portrait.name, "output_size": size,
        "background": background or "none",
        "composite_size": list(OUTPUT_SIZE) if live_output is not None else [size, size],
        "pipelined": pipelined,
        "frames": frames, "warmup": warmup, "faces": faces,
        "prepare_ms": prepare_ms,
        "stages": {k: stats(stages[k]) for k in order if k in stages},
        "fps_median": 1000.0 / total["median"] if total["median"] > 0 else math.nan,
        "fps_wall": frames / wall if wall > 0 else math.nan,
        "date": time.strftime("%Y-%m-%d"),
    }


class _LiveOutput:
    """The live output of the ``--background`` variant, prepared as ``mimicam live`` prepares
    it (:class:`~live.face.portraits.PortraitLibrary`, ``shoulders`` framing in 1280x720, the
    background's layer): its compositor, layer and the engine's prepared portrait."""

    def __init__(self, portrait: Path, engine: Any, background: str) -> None:
        from live.background import Background
        from live.face.portraits import PortraitLibrary

        chosen = Background.parse(background)
        if not chosen.needs_matte or chosen.transparent:
            raise InputError("bench --background", expected="blur, a colour or an image file",
                             got=background)
        with PortraitLibrary([portrait], engine, output_size=OUTPUT_SIZE,
                             framing="shoulders", backgrounds=[chosen]) as library:
            prepared = library.prepare(0)
        layer = prepared.backgrounds.get(chosen)
        if layer is None:
            raise InputError("the segmentation finds no person in the portrait",
                             path=portrait, expected="a portrait for --background")
        self.handle = prepared.handle
        self.compositor = prepared.compositor
        self.layer = layer

    def apply(self, frame: np.ndarray, crop_matte: np.ndarray | None) -> np.ndarray:
        matte = self.compositor.compose_matte(crop_matte)
        return self.layer.apply(frame, matte, (self.compositor.region,))


def format_engine_report(r: dict[str, Any]) -> str:
    """A plain-text table of :func:`bench_engine_mesh`'s result."""
    w, h = r["driving_size"]
    lines = [
        f"mimicam bench: job {r['job']}, engine {r['engine']}",
        f"driving {r['driving']} ({w}x{h} -> {r['input_size'][0]}x{r['input_size'][1]}), "
        f"portrait {r['portrait']} ({r['output_size']} px, prepared in "
        f"{r['prepare_ms']:.0f} ms)",
        f"{r['frames']} frames after {r['warmup']} warm-up, face found in {r['faces']}",
        f"composite into {r['composite_size'][0]}x{r['composite_size'][1]}, background "
        f"{r.get('background', 'none')}",
        "decode and tracking on their own thread (pipelined): total = decode to composite, "
        "waits included" if r.get("pipelined") else "every stage in turn on one thread",
        "",
        f"{'stage':20s} {'median ms':>10s} {'p95 ms':>8s}",
    ]
    for name, s in r["stages"].items():
        label = "  " + name.split(".", 1)[1] if name.startswith("engine.") else name
        lines.append(f"{label:20s} {s['median']:10.2f} {s['p95']:8.2f}")
    lines.append("")
    if r.get("pipelined"):
        lines.append(f"end to end: {r['fps_wall']:.1f} fps (wall clock, pipelined)")
    else:
        lines.append(f"end to end: {r['fps_median']:.1f} fps (median frame), "
                     f"{r['fps_wall']:.1f} fps (wall clock)")
    return "\n".join(lines)
