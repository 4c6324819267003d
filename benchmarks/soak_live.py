"""Soak run of ``mimicam live``: memory and threads must stay flat over minutes.

Runs the real live pipeline (looping fixture driver at its own frame rate, mesh engine,
1280x720 output) into the virtual camera sink (a null pyvirtualcam backend when no device
exists) and the MJPEG server with a client reading the stream, while a "user" presses keys
every 3 s (switch portrait, recalibrate, passthrough, freeze; every portrait is visited
during the warm-up). Every
``--interval`` seconds it prints the process RSS, the thread count, frames sent and fps.
At the end it fits the RSS trend after the warm-up minute (least squares, MiB per minute),
compares the thread counts, and says whether they stayed flat. A benchmark, not a CI test.

    .venv/bin/python benchmarks/soak_live.py --minutes 3
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from live.bench.common import FIXTURES as SHARED


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _stream_reader(port: int, token: str, stop: threading.Event, counter: list[int]) -> None:
    """A browser-like client reading /stream.mjpg with the run's token (reconnects if
    dropped)."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(f"GET /stream.mjpg?token={token} HTTP/1.1\r\n"
                             f"Host: 127.0.0.1:{port}\r\n\r\n".encode())
                while not stop.is_set():
                    data = sock.recv(1 << 16)
                    if not data:
                        break
                    counter[0] += data.count(b"Content-Type: image/jpeg")
        except OSError:
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between lines")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds before the RSS baseline is taken")
    parser.add_argument("--driver", type=Path, default=SHARED / "driving" / "lp_d3.mp4")
    parser.add_argument("--portraits", type=Path, default=SHARED / "portraits")
    parser.add_argument("--engine", default="mesh")
    args = parser.parse_args(argv)
    if not args.driver.exists() or not args.portraits.exists():
        print(f"soak: fixtures not found ({args.driver}, {args.portraits})", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from live.bench.live import _ensure_vcam
    from live.config import LiveConfig
    from live.io.sinks import MjpegHttpSink
    from live.jobs.build import build_pipeline

    vcam = _ensure_vcam()
    seconds = args.minutes * 60.0
    cfg = LiveConfig(portrait=args.portraits, driver=args.driver, engine=args.engine,
                     preview=False, vcam=True, http="127.0.0.1:0", duration=seconds)
    threads_start = threading.active_count()
    pipeline = build_pipeline(cfg, driver_size=(640, 480))
    http = next(s for s in pipeline.sinks if isinstance(s, MjpegHttpSink))
    stop = threading.Event()
    parts = [0]
    reader = threading.Thread(target=_stream_reader,
                              args=(http.address[1], http.token, stop, parts), daemon=True)
    reader.start()
    print(f"soak: {args.minutes:g} min, engine {args.engine}, {len(pipeline.library)} "
          f"portraits, virtual camera {vcam}, stream {http.stream_url}")
    print(f"{'t s':>6}{'RSS MiB':>9}{'threads':>9}{'sent':>8}{'fps':>7}{'c2s med':>9}"
          f"{'mjpeg':>7}")
    samples: list[tuple[float, float, int]] = []
    # "right" every 6 s: all portraits are visited (and cached) during the warm-up minute
    keys = ["right", "c", "right", "p", "right", "p", "right", "f", "right", "f", "left", "c"]
    t0 = time.perf_counter()

    def monitor() -> None:
        k = 0
        next_key = 3.0
        next_line = 0.0
        while not stop.is_set():
            t = time.perf_counter() - t0
            if t >= next_key:
                pipeline.keys.press(keys[k % len(keys)])
                k += 1
                next_key += 3.0
            if t >= next_line:
                rss, n = rss_mib(), threading.active_count()
                samples.append((t, rss, n))
                lat = pipeline.stats.current_latency_ms()
                print(f"{t:>6.0f}{rss:>9.1f}{n:>9}{pipeline.stats.counters['frames_sent']:>8}"
                      f"{pipeline.stats.current_fps():>7.1f}"
                      f"{(f'{lat:.1f}' if lat is not None else '-'):>9}{parts[0]:>7}",
                      flush=True)
                next_line += args.interval
            time.sleep(0.05)

    mon = threading.Thread(target=monitor, daemon=True)
    mon.start()
    with pipeline:
        stats = pipeline.run()
    stop.set()
    mon.join()
    reader.join(timeout=10)
    time.sleep(0.5)
    threads_end = threading.active_count()
    summary = pipeline.summary()
    base = [s for s in samples if s[0] >= args.warmup] or samples
    rss0, rss1 = base[0][1], samples[-1][1]
    thread_counts = [n for _, _, n in base]
    print(f"frames sent {stats.counters['frames_sent']}, fps {summary['fps']}, capture-to-send "
          f"median {summary['latency_ms']['capture_to_send']['median']} ms, p95 "
          f"{summary['latency_ms']['capture_to_send']['p95']} ms, dropped "
          f"{summary['dropped_input']}, switches {summary['portrait_switches']}, "
          f"calibrations {summary['calibrations']}")
    growth = rss1 - rss0
    t_base = np.array([t for t, _, _ in base]) / 60.0
    slope = float(np.polyfit(t_base, [r for _, r, _ in base], 1)[0]) if len(base) > 2 else 0.0
    print(f"RSS after warm-up {rss0:.1f} MiB -> end {rss1:.1f} MiB ({growth:+.1f} MiB); "
          f"trend {slope:+.2f} MiB/min (least squares after the warm-up)")
    print(f"threads while running {min(thread_counts)}..{max(thread_counts)}; "
          f"before {threads_start}, after shutdown {threads_end}")
    flat = slope < 1.0 and max(thread_counts) - min(thread_counts) <= 2 \
        and threads_end <= threads_start + 1
    print("verdict:", "flat" if flat else "GROWING (look closer)")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
