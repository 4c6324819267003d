"""``mimicam bench --job live``: end-to-end fps and capture-to-send latency of ``mimicam live``.

Runs the real live pipeline (capture thread, tracker, engine, compositor, virtual camera
sink) per engine on a fixture driver video letterboxed to 640x480 (a webcam-sized input),
output 1280x720, in two modes:

- ``paced``: the driver plays at its own frame rate like a webcam (stale frames dropped at
  the input); reports delivered fps and capture-to-send latency (median, p95);
- ``max``: every frame is handed over as soon as the loop takes it; reports the highest
  sustained fps (headroom).

When no virtual camera device exists (v4l2loopback not loaded) the frames go through
pyvirtualcam's own ``Camera.send`` into a null backend, so the measured path is the same up
to the device write. Without ``--weights`` the fomm engine runs the vox-256 graphs with
seeded random weights (exported once into a temporary folder): the same computation, so the
speed is real, but the picture is not. ``--no-random-fomm`` lists it as skipped instead.

Also runnable on its own: ``python -m live.bench.live [--engines mesh,fomm] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from live.bench import common as bench_common
from live.bench.common import FIXTURES

log = logging.getLogger(__name__)

DEFAULT_DRIVER = FIXTURES / "driving" / "lp_d3.mp4"
DEFAULT_PORTRAIT = FIXTURES / "portraits" / "lp_s9_mona_lisa.jpg"
STAGES = ("track", "engine", "compose", "background", "send")
NULL_BACKEND = "mimicam-null"


class _NullCamera:
    """A pyvirtualcam backend that drops frames (benchmarks without v4l2loopback)."""

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int,
                 device: str | None, **kw: Any) -> None:
        self.frames = 0

    def send(self, frame: Any) -> None:
        self.frames += 1

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "null"

    def native_fourcc(self) -> int | None:
        return None


@dataclass(frozen=True)
class LiveBenchResult:
    """One engine in one mode: fps, capture-to-send latency, stage medians, or why skipped."""

    engine: str
    mode: str
    frames: int = 0
    fps: float = 0.0
    latency_median: float | None = None
    latency_p95: float | None = None
    dropped: int = 0
    tracked: int = 0
    """Frames the tracker worked on (a loop slower than the camera takes only some)."""
    cpu_ms_per_frame: float | None = None
    """Process CPU time (all threads) per sent frame: what a frame costs, whatever else
    runs on the machine; 2 cores give 66 ms of CPU per frame at 30 fps."""
    stage_ms: dict[str, float] = field(default_factory=dict)
    vcam: str = ""
    skipped: str | None = None


def _ensure_vcam() -> str:
    """'device' when a real virtual camera opens here, else registers the null backend."""
    import pyvirtualcam

    try:
        with pyvirtualcam.Camera(width=64, height=64, fps=30) as cam:
            return f"{cam.backend}:{cam.device}"
    except RuntimeError:
        pyvirtualcam.register_backend(NULL_BACKEND, _NullCamera)
        return "null (pyvirtualcam Camera.send, no device)"


def _random_fomm(folder: Path) -> Path:
    """Export the vox-256 FOMM graphs with seeded random weights into ``folder``."""
    from model_export.export import export_fomm

    log.warning("exporting random-weight FOMM graphs for the speed test (once, ~1 min)")
    export_fomm(None, folder)
    return folder


def bench_live(*, engines: Sequence[str] = ("mesh", "fomm"), driver: Path = DEFAULT_DRIVER,
               portrait: Path = DEFAULT_PORTRAIT, seconds: float = 20.0,
               modes: Sequence[str] = ("paced", "max"), driver_size: tuple[int, int] = (640, 480),
               output_size: tuple[int, int] = (1280, 720), weights: Path | None = None,
               random_fomm: bool = True, background: str | None = None,
               crop_size: int | None = None) -> list[LiveBenchResult]:
    """Run the live pipeline per engine and mode for ``seconds`` each (with
    ``background``, ``mimicam live --background``; ``crop_size``, ``--crop-size``)."""
    import tempfile

    vcam = _ensure_vcam()
    results: list[LiveBenchResult] = []
    with tempfile.TemporaryDirectory(prefix="mimicam-bench-live-") as tmp:
        for name in engines:
            engine_weights, label = weights, name
            if name == "fomm" and weights is None and random_fomm:
                engine_weights, label = _random_fomm(Path(tmp) / "fomm-random"), "fomm*"
            for mode in modes:
                result = _bench_one(name, mode, engine_weights, portrait=portrait,
                                    driver=driver, seconds=seconds, driver_size=driver_size,
                                    output_size=output_size, background=background,
                                    crop_size=crop_size)
                results.append(dataclasses.replace(result, engine=label, vcam=vcam))
                if result.skipped is not None:
                    break
    return results


def _cpu_seconds() -> float:
    import os

    t = os.times()
    return t.user + t.system


def _bench_one(name: str, mode: str, weights: Path | None, *, portrait: Path, driver: Path,
               seconds: float, driver_size: tuple[int, int],
               output_size: tuple[int, int], background: str | None = None,
               crop_size: int | None = None) -> LiveBenchResult:
    from calibrate.errors import MimicamError
    from live.background import Background
    from live.config import LiveConfig
    from live.jobs.build import build_pipeline

    cfg = LiveConfig(portrait=portrait, driver=driver, engine=name, weights=weights,
                     width=output_size[0], height=output_size[1], preview=False, vcam=True,
                     duration=seconds, crop_size=crop_size,
                     background=Background.parse(background or "keep"))
    try:
        pipeline = build_pipeline(cfg, realtime=mode == "paced", driver_size=driver_size)
    except MimicamError as exc:
        return LiveBenchResult(name, mode, skipped=str(exc))
    with pipeline:
        cpu0 = _cpu_seconds()
        pipeline.run()
        cpu = _cpu_seconds() - cpu0
        d = pipeline.summary()
    lat = d["latency_ms"]
    frames = int(d["frames_sent"])
    return LiveBenchResult(
        name, mode, frames=frames, fps=d["fps"],
        cpu_ms_per_frame=round(cpu * 1000.0 / frames, 1) if frames else None,
        latency_median=lat["capture_to_send"]["median"],
        latency_p95=lat["capture_to_send"]["p95"], dropped=d["dropped_input"],
        tracked=int(lat["stages"].get("track", {}).get("count") or 0),
        stage_ms={k: v["median"] for k, v in lat["stages"].items() if v["median"] is not None})


def print_results(results: Sequence[LiveBenchResult], *, driver: Path, portrait: Path,
                  driver_size: tuple[int, int], output_size: tuple[int, int],
                  out: TextIO = sys.stdout) -> None:
    vcam = next((r.vcam for r in results if r.vcam), "")
    print(f"live job: driver {driver.name} letterboxed to {driver_size[0]}x{driver_size[1]}, "
          f"portrait {portrait.name}, output {output_size[0]}x{output_size[1]}; "
          f"virtual camera: {vcam}", file=out)
    print(f"{'engine':<7}{'mode':<7}{'frames':>7}{'fps':>7}{'c2s med':>9}{'c2s p95':>9}"
          f"{'dropped':>9}{'tracked':>9}{'cpu ms/f':>9}{bench_common.stage_header(STAGES)}",
          file=out)
    for r in results:
        if r.skipped is not None:
            print(f"{r.engine:<7}{r.mode:<7}  skipped: {r.skipped}", file=out)
            continue
        med = f"{r.latency_median:.1f}" if r.latency_median is not None else "-"
        p95 = f"{r.latency_p95:.1f}" if r.latency_p95 is not None else "-"
        cpu = f"{r.cpu_ms_per_frame:.1f}" if r.cpu_ms_per_frame is not None else "-"
        print(f"{r.engine:<7}{r.mode:<7}{r.frames:>7}{r.fps:>7.1f}{med:>9}{p95:>9}"
              f"{r.dropped:>9}{r.tracked:>9}{cpu:>9}"
              f"{bench_common.stage_cells(r.stage_ms, STAGES)}", file=out)
    if any(r.engine.endswith("*") for r in results):
        print("* random weights (same computation as vox-cpk: the speed is real, the picture "
              "is not)", file=out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the live job (for ``mimicam bench --job live`` and ``-m``)."""
    bench_common.add_engines_argument(parser)
    parser.add_argument("--background", default=None, metavar="SPEC",
                        help="mimicam live --background (blur, a colour, an image file)")
    parser.add_argument("--driver", type=Path, default=None,
                        help="driver video (default: the fixture lp_d3.mp4, 30 fps)")
    parser.add_argument("--portrait", type=Path, default=None,
                        help="portrait (default: the fixture lp_s9_mona_lisa.jpg)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="seconds per engine and mode (default 20)")
    parser.add_argument("--modes", default="paced,max",
                        help="paced (driver at its own fps), max (as fast as possible)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="FOMM checkpoint or exported model directory")
    parser.add_argument("--no-random-fomm", dest="random_fomm", action="store_false",
                        help="without --weights, skip fomm instead of timing random weights")
    parser.add_argument("--crop-size", type=int, default=None, metavar="PX",
                        help="mimicam live --crop-size: the side of the face crop the engine "
                             "animates (default: the engine's own)")


def run(args: argparse.Namespace) -> int:
    """Handler: run the job and print the table; 1 when the fixtures are absent."""
    driver = args.driver or DEFAULT_DRIVER
    portrait = args.portrait or DEFAULT_PORTRAIT
    if bench_common.missing_inputs("live", (driver, portrait), "--driver/--portrait"):
        return 1
    engines = bench_common.split_list(args.engines)
    modes = bench_common.split_list(args.modes)
    bad = sorted(set(modes) - {"paced", "max"})
    if bad:
        print(f"bench live: unknown mode(s) {', '.join(bad)}; expected paced, max",
              file=sys.stderr)
        return 2
    driver_size, output_size = (640, 480), (1280, 720)
    results = bench_live(engines=engines, driver=driver, portrait=portrait,
                         seconds=args.seconds, modes=modes, driver_size=driver_size,
                         output_size=output_size, weights=args.weights,
                         random_fomm=args.random_fomm,
                         background=getattr(args, "background", None),
                         crop_size=getattr(args, "crop_size", None))
    print_results(results, driver=driver, portrait=portrait, driver_size=driver_size,
                  output_size=output_size)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_common.job_main(argv, prog="python -m live.bench.live", doc=__doc__,
                              add_arguments=add_arguments, run=run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["LiveBenchResult", "add_arguments", "bench_live", "main", "print_results", "run"]
