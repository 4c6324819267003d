"""``mimicam bench --job engine --engine mesh``: decode, track, the mesh engine and the composite,
per stage and end to end."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError
from live.bench.common import DRIVING_SIZE, stats


def bench_engine_mesh(*, driving: Path, portrait: Path, frames: int = 300, warmup: int = 10,
                      size: int = 512) -> dict[str, Any]:
    """Time decode -> 640x480 -> track -> mesh engine -> composite over ``frames`` frames
    (after ``warmup``); the video loops when it is shorter. Returns a JSON-able dict."""
    from live.compose import letterbox
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import find_portrait, load_image
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader, probe_video
    from live.packets import Frame

    if frames < 1 or warmup < 0:
        raise InputError("bad frame counts", expected="--frames >= 1 and --warmup >= 0",
                         got=f"{frames}, {warmup}")
    info = probe_video(driving)
    crop = find_portrait(load_image(portrait), size, path=portrait).crop.image
    stages: dict[str, list[float]] = {}
    faces = 0
    with MeshEngine(size=size) as engine, FaceTracker(crop_size=256) as tracker:
        t0 = time.perf_counter()
        engine.set_portrait(engine.prepare(crop))
        prepare_ms = (time.perf_counter() - t0) * 1e3
        output = np.empty((size, size, 3), np.uint8)
        done = 0
        offset = 0.0  # video time keeps rising when the clip loops
        wall_start = None
        while done < warmup + frames:
            last_t = offset
            with VideoReader(driving) as reader:
                it = iter(reader)
                while done < warmup + frames:
                    t_a = time.perf_counter()
                    frame = next(it, None)
                    if frame is None:
                        break
                    t_b = time.perf_counter()
                    image = letterbox(frame.image, DRIVING_SIZE)
                    pts = offset + frame.time(info.fps)
                    last_t = pts
                    t_c = time.perf_counter()
                    tracked = tracker.process(Frame(image, done, t_c, pts))
                    t_d = time.perf_counter()
                    animated = engine.process(tracked.face, pts)
                    t_e = time.perf_counter()
                    np.copyto(output, animated)  # the engine crop is this job's output
                    t_f = time.perf_counter()
                    done += 1
                    if done == warmup:
                        wall_start = t_f
                    if done <= warmup:
                        continue
                    faces += tracked.face is not None
                    row = {"decode": t_b - t_a, "resize": t_c - t_b, "track": t_d - t_c,
                           "engine": t_e - t_d, "composite": t_f - t_e, "total": t_f - t_a}
                    for name, sec in row.items():
                        stages.setdefault(name, []).append(sec * 1e3)
                    for name, ms in engine.last_timings.items():
                        stages.setdefault(f"engine.{name}", []).append(ms)
            offset = last_t + 1.0 / 30.0
            if done == 0:
                raise InputError("the driving video has no frames", path=driving)
        wall = time.perf_counter() - (wall_start if wall_start is not None else t0)
    total = stats(stages.get("total", []))
    order = ["decode", "resize", "track", "engine",
             *sorted(k for k in stages if k.startswith("engine.")), "composite", "total"]
    return {
        "job": "engine", "engine": "mesh",
        "driving": driving.name, "driving_size": list(info.size),
        "input_size": list(DRIVING_SIZE), "portrait": portrait.name, "output_size": size,
        "frames": frames, "warmup": warmup, "faces": faces,
        "prepare_ms": prepare_ms,
        "stages": {k: stats(stages[k]) for k in order if k in stages},
        "fps_median": 1000.0 / total["median"] if total["median"] > 0 else math.nan,
        "fps_wall": frames / wall if wall > 0 else math.nan,
        "date": time.strftime("%Y-%m-%d"),
    }


def format_engine_report(r: dict[str, Any]) -> str:
    """A plain-text table of :func:`bench_engine_mesh`'s result."""
    w, h = r["driving_size"]
    lines = [
        f"mimicam bench: job {r['job']}, engine {r['engine']}",
        f"driving {r['driving']} ({w}x{h} -> {r['input_size'][0]}x{r['input_size'][1]}), "
        f"portrait {r['portrait']} ({r['output_size']} px, prepared in "
        f"{r['prepare_ms']:.0f} ms)",
        f"{r['frames']} frames after {r['warmup']} warm-up, face found in {r['faces']}",
        "",
        f"{'stage':20s} {'median ms':>10s} {'p95 ms':>8s}",
    ]
    for name, s in r["stages"].items():
        label = "  " + name.split(".", 1)[1] if name.startswith("engine.") else name
        lines.append(f"{label:20s} {s['median']:10.2f} {s['p95']:8.2f}")
    lines.append("")
    lines.append(f"end to end: {r['fps_median']:.1f} fps (median frame), "
                 f"{r['fps_wall']:.1f} fps (wall clock)")
    return "\n".join(lines)
