"""``mimicam bench``: per-stage and end-to-end speed.

Jobs (``--job``) and engines (``--engine``) map to runner functions in :data:`JOBS`:

- ``--job engine --engine mesh`` (the default): a fixture driving video decoded and
  letterboxed to 640x480 (a webcam-sized frame), the face tracker, the mesh engine at 512
  px, and the composite into the 512 px output (for this job the engine crop is the output).
  Reports median and p95 ms per stage (with the engine's own sub-stages) and end-to-end fps.
- ``--job engine --engine fomm``: the FOMM graphs on a runtime (``model_export.bench_fomm``).
- ``--job live`` / ``--job animate``: the live pipeline and the offline job
  (``live.bench_live``, ``live.bench_animate``); ``--engine`` picks one engine for them.
  Those modules share the option, fixture-check and table helpers below (``split_list``,
  ``missing_inputs``, ``stage_header``, ``stage_cells``, ``job_main``).

Heavy libraries are imported inside the runners.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from live.errors import InputError, MimicamError

log = logging.getLogger(__name__)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DRIVING_SIZE = (640, 480)

Runner = Callable[[argparse.Namespace], int]


def _first_fixture(kind: str, suffixes: tuple[str, ...], flag: str) -> Path:
    folder = FIXTURES / kind
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) \
        if folder.is_dir() else []
    if not files:
        raise InputError(f"no {kind} file given and none found in ../shared/fixtures/{kind}",
                         expected=f"{flag} FILE")
    return files[0]


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": math.nan, "p95": math.nan}
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "p95": float(np.percentile(arr, 95))}


def bench_engine_mesh(*, driving: Path, portrait: Path, frames: int = 300, warmup: int = 10,
                      size: int = 512) -> dict[str, Any]:
    """Time decode -> 640x480 -> track -> mesh engine -> composite over ``frames`` frames
    (after ``warmup``); the video loops when it is shorter. Returns a JSON-able dict."""
    from live.compose import letterbox
    from live.engines.mesh import MeshEngine
    from live.packets import Frame
    from live.portraits import find_portrait, load_image
    from live.tracking import FaceTracker
    from live.video import VideoReader, probe_video

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
                    pts = offset + (frame.pts if frame.pts is not None else frame.index / 30.0)
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
    total = _stats(stages.get("total", []))
    order = ["decode", "resize", "track", "engine",
             *sorted(k for k in stages if k.startswith("engine.")), "composite", "total"]
    return {
        "job": "engine", "engine": "mesh",
        "driving": driving.name, "driving_size": list(info.size),
        "input_size": list(DRIVING_SIZE), "portrait": portrait.name, "output_size": size,
        "frames": frames, "warmup": warmup, "faces": faces,
        "prepare_ms": prepare_ms,
        "stages": {k: _stats(stages[k]) for k in order if k in stages},
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


# -- shared by the job modules (live.bench_live, live.bench_animate) --------------------------


def add_engines_argument(parser: Any) -> None:
    """The ``--engines`` option of a job (``parser``: an ``ArgumentParser`` or the shared
    parser's proxy)."""
    parser.add_argument("--engines", default="mesh,fomm",
                        help="comma-separated engines to run (default: mesh,fomm)")


def split_list(text: str) -> list[str]:
    """A comma-separated option as a list: ``"mesh, fomm,"`` -> ``["mesh", "fomm"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def missing_inputs(job: str, paths: Iterable[Path], flags: str) -> bool:
    """True, after a line on stderr naming it, when one of ``paths`` does not exist (the
    job's fixtures; ``flags`` are the options that replace them)."""
    for need in paths:
        if not need.exists():
            print(f"bench {job}: {need} not found (the team's shared fixtures, or pass "
                  f"{flags})", file=sys.stderr)
            return True
    return False


def stage_header(stages: Sequence[str]) -> str:
    """The per-stage columns' heading of a job's table (11 characters a stage)."""
    return "".join(f"{s + ' ms':>11}" for s in stages)


def stage_cells(stage_ms: Mapping[str, float], stages: Sequence[str]) -> str:
    """One row's per-stage medians under :func:`stage_header` (nan for a missing stage)."""
    return "".join(f"{stage_ms.get(s, float('nan')):>11.1f}" for s in stages)


def job_main(argv: Sequence[str] | None, *, prog: str, doc: str | None,
             add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Runner) -> int:
    """``python -m <job module>``: parse ``argv`` with the job's options, run the job."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


# -- runners -----------------------------------------------------------------------------------


def _run_engine_mesh(args: argparse.Namespace) -> int:
    driving = args.driving or _first_fixture("driving", VIDEO_SUFFIXES, "--driving")
    portrait = args.portrait or _first_fixture("portraits", IMAGE_SUFFIXES, "--portrait")
    for p in (driving, portrait):
        if not Path(p).is_file():
            raise InputError("file not found", path=p)
    result = bench_engine_mesh(
        driving=Path(driving), portrait=Path(portrait),
        frames=args.frames if args.frames is not None else 300,
        warmup=args.warmup if args.warmup is not None else 10, size=args.size)
    print(json.dumps(result, indent=1) if args.json else format_engine_report(result))
    return 0


def _delegate(module: str, func: str) -> Runner:
    """A runner implemented in another module (imported when the job runs)."""

    def run(args: argparse.Namespace) -> int:
        try:
            target = getattr(importlib.import_module(module), func)
        except (ModuleNotFoundError, AttributeError) as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name != module:
                raise
            raise MimicamError(f"not implemented yet: mimicam bench --job {args.job} "
                               f"--engine {args.engine or 'mesh'}") from None
        code: int = target(args)
        return code

    return run


def _run_live_job(module: str) -> Runner:
    inner = _delegate(module, "run")

    def run(args: argparse.Namespace) -> int:
        # the shared flags feed the job's own ones when those were not given
        if args.engine is not None and getattr(args, "engines", None) in (None, "mesh,fomm"):
            args.engines = args.engine
        if getattr(args, "driver", "absent") is None:
            args.driver = args.driving
        if getattr(args, "video", "absent") is None:
            args.video = args.driving
        if getattr(args, "max_frames", "absent") is None:
            args.max_frames = args.frames
        return inner(args)

    return run


JOBS: dict[tuple[str, str], Runner] = {
    ("engine", "mesh"): _run_engine_mesh,
    ("engine", "fomm"): _delegate("model_export.bench_fomm", "run_from_args"),
    ("live", "mesh"): _run_live_job("live.bench_live"),
    ("live", "fomm"): _run_live_job("live.bench_live"),
    ("animate", "mesh"): _run_live_job("live.bench_animate"),
    ("animate", "fomm"): _run_live_job("live.bench_animate"),
}
"""(job, engine) -> runner(args) -> exit code. Add jobs and engines here."""

# Modules whose ``add_arguments(parser)`` / ``add_fomm_arguments(parser)`` contribute the
# options of their jobs (flags that already exist are kept as they are).
_JOB_OPTIONS: tuple[tuple[str, str], ...] = (
    ("model_export.bench_fomm", "add_fomm_arguments"),
    ("live.bench_live", "add_arguments"),
    ("live.bench_animate", "add_arguments"),
)


class _SkipExisting:
    """Lets a job module add its options to the shared parser, skipping flags it has."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser
        self._option_string_actions = parser._option_string_actions

    def add_argument(self, *flags: str, **kwargs: Any) -> Any:
        if any(f in self._parser._option_string_actions for f in flags):
            return None
        return self._parser.add_argument(*flags, **kwargs)


def run(args: argparse.Namespace) -> int:
    engine = args.engine or "mesh"
    runner = JOBS.get((args.job, engine))
    if runner is None:
        raise MimicamError(f"not implemented yet: mimicam bench --job {args.job} "
                           f"--engine {engine}")
    return runner(args)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="measure per-stage and end-to-end speed",
        description="Measure per-stage times (median, p95) and end-to-end fps of a job.")
    p.add_argument("--engine", choices=("mesh", "fomm"), default=None,
                   help="engine to time (default: mesh)")
    p.add_argument("--job", choices=("engine", "live", "animate"), default="engine",
                   help="engine: decode+track+engine+composite on a video (default); "
                   "live: the live pipeline; animate: the offline job")
    p.add_argument("--driving", type=Path, default=None,
                   help="driving video (default: the first in ../shared/fixtures/driving)")
    p.add_argument("--portrait", type=Path, default=None,
                   help="portrait image (default: the first in ../shared/fixtures/portraits)")
    p.add_argument("--frames", type=int, default=None,
                   help="timed frames (default: 300 for the mesh engine)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed frames first (default: 10 for the mesh engine)")
    p.add_argument("--size", type=int, default=512, help="engine crop size (default 512)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    proxy: Any = _SkipExisting(p)
    for module, func in _JOB_OPTIONS:
        try:
            add = getattr(importlib.import_module(module), func)
        except (ModuleNotFoundError, AttributeError) as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name != module:
                raise
            continue  # that job is not built in this version
        add(proxy)
    p.set_defaults(handler=run)
