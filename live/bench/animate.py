"""``mimicam bench --job animate``: frames per second of the offline job, per engine.

Runs the real :func:`live.jobs.animate.run_animate` (decode, track, animate, paste back, encode
H.264 with audio) on a fixture driving video (default ``lp_d3.mp4``, 512x512, 30 fps) and
portrait (default ``lp_s42.jpg``, 512x512), once per engine, into a temporary folder, and
prints the processing fps and the median milliseconds of each stage. An engine that cannot
run here (fomm without weights) is listed as skipped with the reason.

Also runnable on its own: ``python -m live.bench.animate [--engines mesh,fomm] ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from live.bench import common as bench_common
from live.bench.common import FIXTURES

log = logging.getLogger(__name__)

DEFAULT_VIDEO = FIXTURES / "driving" / "lp_d3.mp4"
DEFAULT_PORTRAIT = FIXTURES / "portraits" / "lp_s42.jpg"
STAGES = ("track", "animate", "paste", "encode")


@dataclass(frozen=True)
class AnimateBenchResult:
    """One engine's run: frames, wall seconds, fps, per-stage medians (ms), or why skipped."""

    engine: str
    frames: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    size: tuple[int, int] = (0, 0)
    faces: int = 0

    @property
    def fps(self) -> float:
        """Frames per second of the frame loop (what a long video sees)."""
        return self.frames / self.loop_seconds if self.loop_seconds > 0 else 0.0

    @property
    def job_fps(self) -> float:
        """Frames per second of the whole job, set-up included."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def bench_animate(*, engines: Sequence[str] = ("mesh", "fomm"),
                  video: Path = DEFAULT_VIDEO, portrait: Path = DEFAULT_PORTRAIT,
                  max_frames: int | None = None, weights: Path | None = None,
                  model_dir: Path | None = None, image_size: int | None = None,
                  multi_face: bool = False,
                  progress: bool = False) -> list[AnimateBenchResult]:
    """Run the animate job once per engine; returns one result per engine."""
    from calibrate.errors import MimicamError, WeightsError
    from live.jobs.animate import AnimateConfig, run_animate

    results = []
    with tempfile.TemporaryDirectory(prefix="mimicam-bench-animate-") as tmp:
        for name in engines:
            engine: Any = name
            config = AnimateConfig(source_image=portrait, driving_video=video,
                                   output=Path(tmp) / f"{name}.mp4", engine=engine,
                                   weights=weights if name == "fomm" else None,
                                   model_dir=model_dir if name == "fomm" else None,
                                   image_size=image_size,
                                   multi_face=multi_face, max_frames=max_frames)
            try:
                report = run_animate(config, progress=progress)
            except WeightsError as exc:
                results.append(AnimateBenchResult(name, skipped=str(exc)))
                continue
            except MimicamError as exc:
                results.append(AnimateBenchResult(name, skipped=f"failed: {exc}"))
                continue
            results.append(AnimateBenchResult(
                name, frames=report.frames, seconds=report.seconds,
                loop_seconds=report.loop_seconds,
                stage_ms=report.stage_ms, size=report.size, faces=report.faces))
    return results


def print_results(results: Sequence[AnimateBenchResult], *, video: Path, portrait: Path,
                  out: TextIO = sys.stdout) -> None:
    print(f"animate job: driving {video.name}, portrait {portrait.name}", file=out)
    print(f"{'engine':<8}{'frames':>7}{'job s':>7}{'job fps':>8}{'loop fps':>9}"
          f"{bench_common.stage_header(STAGES)}", file=out)
    for r in results:
        if r.skipped is not None:
            print(f"{r.engine:<8}  skipped: {r.skipped}", file=out)
            continue
        print(f"{r.engine:<8}{r.frames:>7}{r.seconds:>7.1f}{r.job_fps:>8.1f}{r.fps:>9.1f}"
              f"{bench_common.stage_cells(r.stage_ms, STAGES)}", file=out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the animate job (for ``mimicam bench --job animate`` and ``-m``)."""
    bench_common.add_engines_argument(parser)
    parser.add_argument("--video", type=Path, default=None,
                        help="driving video (default: the fixture lp_d3.mp4, 512x512)")
    parser.add_argument("--portrait", type=Path, default=None,
                        help="portrait (default: the fixture lp_s42.jpg)")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="only the first N frames (default: all)")
    parser.add_argument("--weights", type=Path, default=None, help="FOMM checkpoint")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="FOMM model directory from 'mimicam export' (e.g. random weights "
                        "for a speed-only run)")
    parser.add_argument("--image-size", type=int, choices=(256, 512), default=None)
    parser.add_argument("--multi-face", action="store_true",
                        help="animate every face of the portrait")


def run(args: argparse.Namespace) -> int:
    """Handler: run the job per engine and print the table; 1 when the fixtures are absent."""
    video = args.video or DEFAULT_VIDEO
    portrait = args.portrait or DEFAULT_PORTRAIT
    if bench_common.missing_inputs("animate", (video, portrait), "--video/--portrait"):
        return 1
    engines = bench_common.split_list(args.engines)
    results = bench_animate(engines=engines, video=video, portrait=portrait,
                            max_frames=args.max_frames, weights=args.weights,
                            model_dir=args.model_dir,
                            image_size=args.image_size, multi_face=args.multi_face)
    print_results(results, video=video, portrait=portrait)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_common.job_main(argv, prog="python -m live.bench.animate", doc=__doc__,
                              add_arguments=add_arguments, run=run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["AnimateBenchResult", "add_arguments", "bench_animate", "main", "print_results",
           "run"]
