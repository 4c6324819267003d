"""`mimicam bench --job live`'s table (live/bench/live.py): the frames the tracker worked on
beside the frames sent and dropped."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from live.bench.live import LiveBenchResult, print_results


def test_the_live_table_shows_the_frames_tracked() -> None:
    results = [LiveBenchResult("mesh", "paced", frames=414, fps=20.7, latency_median=77.1,
                               latency_p95=96.9, dropped=186, tracked=601,
                               cpu_ms_per_frame=65.9, stage_ms={"track": 14.8}),
               LiveBenchResult("fomm", "paced", skipped="no weights")]
    out = io.StringIO()
    print_results(results, driver=Path("d.mp4"), portrait=Path("p.jpg"),
                  driver_size=(640, 480), output_size=(1280, 720), out=out)
    header, row, skipped = out.getvalue().splitlines()[1:4]
    columns = header.split()
    cells = row.split()
    assert columns[columns.index("dropped") + 1] == "tracked"
    # (the header's "c2s med" and "c2s p95" are two words each)
    assert cells[columns.index("tracked") - 2] == "601"
    assert cells[columns.index("dropped") - 2] == "186"
    assert "skipped: no weights" in skipped


def test_the_live_job_passes_its_crop_size_to_the_pipeline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import live.jobs.build as build
    from calibrate.errors import MimicamError
    from live.bench import live as bench_live

    seen: list[Any] = []

    def fake(cfg: Any, **kwargs: Any) -> None:
        seen.append(cfg)
        raise MimicamError("not built in this test")

    monkeypatch.setattr(build, "build_pipeline", fake)
    monkeypatch.setattr(bench_live, "_ensure_vcam", lambda: "null")
    parser = argparse.ArgumentParser()
    bench_live.add_arguments(parser)
    args = parser.parse_args(["--crop-size", "384"])
    assert args.crop_size == 384
    results = bench_live.bench_live(engines=["mesh"], driver=Path("d.mp4"),
                                    portrait=Path("p.jpg"), modes=["paced"],
                                    crop_size=args.crop_size)
    assert results[0].skipped == "not built in this test"
    assert [c.crop_size for c in seen] == [384]
    bench_live.bench_live(engines=["mesh"], driver=Path("d.mp4"), portrait=Path("p.jpg"),
                          modes=["paced"])
    assert seen[-1].crop_size is None  # the engine's own size
