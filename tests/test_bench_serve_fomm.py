"""``mimicam bench --job serve --engine fomm``: the FOMM engine in process and behind a ``mimicam
serve`` subprocess, with the tiny parity weights' export (128 px) standing in for the vox-256
random-weights export (about a minute) that the command makes without ``--model-dir``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")

from calibrate.errors import InputError
from live.bench.serve import bench_serve, format_report

pytestmark = pytest.mark.fixtures  # the tiny weights and the clip live in ../shared


@pytest.mark.slow
def test_fomm_serve_bench_reports_each_client_count(tiny_model: Path, portraits_dir: Path,
                                                     driving_dir: Path) -> None:
    r = bench_serve(video=driving_dir / "lp_d3.mp4", portrait=portraits_dir / "lp_s42.jpg",
                    clients=[1, 2], frames=3, max_batch=4, engine="fomm",
                    model_dir=tiny_model)
    assert r["engine"] == "fomm"
    assert r["size"] == 128  # the model's size
    assert r["frames"] == 3
    assert [row["clients"] for row in r["rows"]] == [0, 1, 2]
    for row in r["rows"]:
        assert row["fps"] > 0 and row["fps_per_client"] > 0, row
        assert math.isfinite(row["mean_batch"]) and row["mean_batch"] >= 1.0, row
        assert 0 < row["p50_ms"] <= row["p95_ms"], row
        assert row["client_cpu_ms"] > 0, row  # CPU time per frame, this process
    baseline, *served = r["rows"]
    assert math.isnan(baseline["server_cpu_ms"])  # no server in process
    if Path("/proc/self/stat").exists():  # the server's process tree, from /proc
        assert all(row["server_cpu_ms"] > 0 for row in served), served
    # the overhead of serving one client, from frames animated here and remote in turn
    assert math.isfinite(r["overhead_p50_ms"]) and r["overhead_p50_ms"] <= r["overhead_p95_ms"]
    report = format_report(r)
    assert report.startswith("fomm engine, 128 px, 3 frames per client")
    assert "serving overhead at one client" in report
    assert report.count("\n| ") == 4  # the heading and three rows
    assert "| CPU ms/frame server | CPU ms/frame clients |" in report
    assert report.splitlines()[3].split("|")[-3].strip() == "-"  # in-process: no server


def test_unknown_engine_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"expected mesh or fomm; got 'dagan'"):
        bench_serve(video=tmp_path / "v.mp4", portrait=tmp_path / "p.jpg", clients=[1],
                    engine="dagan")


def test_bench_command_names_an_unknown_engine_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from live.cli.main import main

    assert main(["bench", "--job", "serve", "--engine", "dagan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected mesh or fomm; got 'dagan'" in err[0], err


def test_bench_serve_refuses_client_counts_and_frames_it_cannot_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    # `--clients 0` ended in a ZeroDivisionError traceback, `--clients 2,x` in a ValueError
    from live.cli.main import main

    for argv, says in ((["--clients", "0"], "bad --clients"),
                       (["--clients", "2,x"], "bad --clients"),
                       (["--clients", ","], "bad --clients"), (["--clients", "²"], "bad --clients"),
                       (["--frames", "0"], "bad frame count")):
        assert main(["bench", "--job", "serve", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mimicam: error: {says}"), err
