"""``mimicam bench``: per-stage and end-to-end speed.

Jobs (``--job``) and engines (``--engine``) map to runner functions in :data:`JOBS`:

- ``--job engine --engine mesh`` (the default): a fixture driving video decoded and
  letterboxed to 640x480 (a webcam-sized frame), the face tracker, the mesh engine at 512
  px, and the composite into the 512 px output (for this job the engine crop is the output).
  Reports median and p95 ms per stage (with the engine's own sub-stages) and end-to-end fps.
- ``--job engine --engine fomm``: the FOMM graphs on a runtime (``live.bench.fomm``).
- ``--job live`` / ``--job animate``: the live pipeline and the offline job
  (``live.bench.live``, ``live.bench.animate``); ``--engine`` picks one engine for them.
  Those modules share the option, fixture-check and table helpers of
  :mod:`live.bench.common`.
- ``--job serve``: the engine (mesh, or fomm: ``--model-dir`` or seeded random vox-256
  weights) behind ``mimicam serve`` for ``--clients`` concurrent remote clients vs
  in-process (``live.bench.serve``; needs the ``serve`` extra).
- ``--job reconstruct`` / ``--job identity``: the FOMM paper's self-reconstruction benchmark
  and the cross-identity guard on the offline job (``live.bench.reconstruct``; dlib from the
  ``bench`` extra).

Heavy libraries are imported inside the runners.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path
from typing import Any

from calibrate.errors import InputError, MimicamError
from live.bench.common import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Runner,
    first_fixture,
    load_engine_options,
)

log = logging.getLogger(__name__)


def _run_engine_mesh(args: argparse.Namespace) -> int:
    from live.bench.engine import bench_engine_mesh, format_engine_report
    from live.blas import limit_openblas_threads

    driving = args.driving or first_fixture("driving", VIDEO_SUFFIXES, "--driving")
    portrait = args.portrait or first_fixture("portraits", IMAGE_SUFFIXES, "--portrait")
    for p in (driving, portrait):
        if not Path(p).is_file():
            raise InputError("file not found", path=p)
    limit_openblas_threads(1)  # as `mimicam live` and the other jobs do (live/blas.py)
    result = bench_engine_mesh(
        driving=Path(driving), portrait=Path(portrait),
        frames=args.frames if args.frames is not None else 300,
        warmup=args.warmup if args.warmup is not None else 10, size=args.size,
        background=args.background, pipelined=args.pipelined,
        options=None if getattr(args, "engine_config", None) is None
        else load_engine_options(args.engine_config).mesh)
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
        from live.blas import limit_openblas_threads

        limit_openblas_threads(1)  # as `mimicam live` / `mimicam animate` do
        return inner(args)

    return run


JOBS: dict[tuple[str, str], Runner] = {
    ("engine", "mesh"): _run_engine_mesh,
    ("engine", "fomm"): _delegate("live.bench.fomm", "run_from_args"),
    ("live", "mesh"): _run_live_job("live.bench.live"),
    ("live", "fomm"): _run_live_job("live.bench.live"),
    ("animate", "mesh"): _run_live_job("live.bench.animate"),
    ("animate", "fomm"): _run_live_job("live.bench.animate"),
    ("reconstruct", "mesh"): _run_live_job("live.bench.reconstruct"),
    ("reconstruct", "fomm"): _run_live_job("live.bench.reconstruct"),
    ("identity", "mesh"): _run_live_job("live.bench.reconstruct"),
    ("identity", "fomm"): _run_live_job("live.bench.reconstruct"),
    ("serve", "mesh"): _run_live_job("live.bench.serve"),
    ("serve", "fomm"): _run_live_job("live.bench.serve"),
}
"""(job, engine) -> runner(args) -> exit code. Add jobs and engines here."""

# Modules whose ``add_arguments(parser)`` / ``add_fomm_arguments(parser)`` contribute the
# options of their jobs (flags that already exist are kept as they are).
_JOB_OPTIONS: tuple[tuple[str, str], ...] = (
    ("live.bench.fomm", "add_fomm_arguments"),
    ("live.bench.live", "add_arguments"),
    ("live.bench.animate", "add_arguments"),
    ("live.bench.reconstruct", "add_arguments"),
    ("live.bench.serve", "add_arguments"),
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


ENGINES = ("mesh", "fomm")


def run(args: argparse.Namespace) -> int:
    engine = args.engine or "mesh"
    if engine not in ENGINES:  # one error line, not argparse's usage
        raise InputError("unknown engine for mimicam bench --engine",
                         expected=" or ".join(ENGINES), got=repr(engine))
    if getattr(args, "pipelined", False) and (args.job, engine) != ("engine", "mesh"):
        raise InputError("--pipelined times the mesh engine job only",
                         expected="--job engine --engine mesh",
                         got=f"--job {args.job} --engine {engine}")
    runner = JOBS.get((args.job, engine))
    if runner is None:
        raise MimicamError(f"not implemented yet: mimicam bench --job {args.job} "
                           f"--engine {engine}")
    return runner(args)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="measure per-stage and end-to-end speed",
        description="Measure per-stage times (median, p95) and end-to-end fps of a job.")
    p.add_argument("--engine", default=None, metavar="{mesh,fomm}",
                   help="engine to time (default: mesh)")
    p.add_argument("--job", choices=("engine", "live", "animate", "reconstruct", "identity",
                                           "serve"),
                   default="engine",
                   help="engine: decode+track+engine+composite on a video (default); "
                   "live: the live pipeline; animate: the offline job; reconstruct: "
                   "self-reconstruction quality (L1, PSNR, AKD, AED); identity: the portrait's "
                   "identity kept across drivers (these two need the bench extra); serve: the "
                   "engine behind 'mimicam serve' for --clients 1,2,4,8 vs in-process (fomm: "
                   "--model-dir, else seeded random vox-256 weights, at the model's size)")
    p.add_argument("--driving", type=Path, default=None,
                   help="driving video (default: the first in ../shared/fixtures/driving)")
    p.add_argument("--portrait", type=Path, default=None,
                   help="portrait image (default: the first in ../shared/fixtures/portraits)")
    p.add_argument("--frames", type=int, default=None,
                   help="timed frames (default: 300 for the mesh engine)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed frames first (default: 10 for the mesh engine)")
    p.add_argument("--size", type=int, default=512, help="engine crop size (default 512)")
    p.add_argument("--background", default=None, metavar="SPEC",
                   help="engine and live jobs: put this background (blur, a colour, an image "
                   "file) behind the person; the engine job then composites into the live "
                   "1280x720 output and times the background as a stage")
    p.add_argument("--pipelined", action="store_true",
                   help="engine job: decode and track on a thread of their own, beside the "
                   "engine, as mimicam live does (fps_wall: the pipeline's throughput)")
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
