"""``mimicam bench --job serve``: the engine behind ``mimicam serve`` for 1, 2, 4, 8 clients.

A fixture clip is tracked once; then the same driving crops are animated in this process (the
baseline), and by N concurrent :class:`~live.engines.remote.RemoteEngine` clients (threads;
they only wait on the network) against a ``mimicam serve`` started as a subprocess on free
loopback ports (gRPC). Reports frames/s (all clients together), per-client frames/s and the
round-trip latency p50/p95 per frame, Triton's mean batch size (from its metrics), the serving
overhead at one client (in pairs: each frame in this process, then remote), and the CPU
time per frame of the server (its whole process tree: Python, Triton, the Python-backend
stubs; from ``/proc``, Linux) and of the clients (this process): wall-clock rates depend on
whatever else runs on the machine, CPU time per frame much less so.

Engines (``--engine``): ``mesh`` (the default, 512 px) or ``fomm``: the FOMM graphs of a
``mimicam export`` directory (``--model-dir``), by default the vox-256 architecture with
seeded random weights exported into a temporary folder (the same computation as vox-cpk: the
speed is real, the picture is not), at the model's size (256 px).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError, MimicamError
from live.bench import common as bench_common

log = logging.getLogger(__name__)

DEFAULT_VIDEO = bench_common.FIXTURES / "driving" / "lp_d3.mp4"
DEFAULT_PORTRAIT = bench_common.FIXTURES / "portraits" / "lp_s42.jpg"
ENGINES = ("mesh", "fomm")
RANDOM_SEED = 0
"""Seed of the random vox-256 weights exported when no model directory is given."""


def add_arguments(parser: Any) -> None:
    parser.add_argument("--clients", default="1,2,4,8", metavar="N,N,...",
                        help="serve job: concurrent client counts (default 1,2,4,8)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="serve job: the server's largest dynamic batch (default 8)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _faces(video: Path, portrait: Path, size: int, frames: int) -> tuple[np.ndarray, list[Any]]:
    from live.face.portraits import find_portrait, load_image
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    crop = find_portrait(load_image(portrait), size).crop.image
    faces: list[Any] = []
    with FaceTracker(crop_size=256) as tracker, VideoReader(video) as reader:
        for frame in reader:
            if len(faces) >= frames:
                break
            faces.append(tracker.process(frame).face)
    return crop, faces


def _metric(text: str, name: str, model: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="{model}"'):
            total += float(line.rsplit(" ", 1)[1])
    return total


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants that are
    alive now (Linux ``/proc``; NaN elsewhere)."""
    proc = Path("/proc")
    if not (proc / str(pid) / "stat").exists():
        return float("nan")
    tick = float(os.sysconf("SC_CLK_TCK"))
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        for child, pp in parents.items():
            if pp == parent and child not in tree:
                tree.add(child)
                todo.append(child)
    return sum(used.get(p, 0.0) for p in tree)


def check_engine(engine: str) -> None:
    """Raise :class:`InputError` unless ``engine`` is one this job measures."""
    if engine not in ENGINES:
        raise InputError("mimicam bench --job serve: unknown engine",
                         expected=" or ".join(ENGINES), got=repr(engine))


def bench_serve(*, video: Path, portrait: Path, clients: list[int], frames: int = 60,
                size: int | None = None, max_batch: int = 8, engine: str = "mesh",
                model_dir: Path | None = None, backend: str | None = None) -> dict[str, Any]:
    """Time ``engine`` in process, then behind ``mimicam serve`` for each of ``clients``.

    ``size``: the crop side (mesh: default 512; fomm: default the model's size, else the
    engine's output size). ``model_dir`` (fomm): a ``mimicam export`` directory; without it
    the vox-256 architecture with seeded random weights is exported into a temporary folder.
    ``backend`` (fomm): the model runtime of both the baseline and the server.
    """
    check_engine(engine)
    if engine == "mesh":
        if model_dir is not None:
            log.warning("the mesh engine uses no model directory; ignoring %s", model_dir)
        return _bench(video=video, portrait=portrait, clients=clients, frames=frames,
                      size=512 if size is None else size, max_batch=max_batch)
    if model_dir is not None:
        return _bench(video=video, portrait=portrait, clients=clients, frames=frames,
                      size=size, max_batch=max_batch, engine="fomm", model_dir=Path(model_dir),
                      backend=backend, weights=f"model directory {model_dir}")
    from model_export.export import export_fomm

    with tempfile.TemporaryDirectory(prefix="mimicam-bench-serve-") as tmp:
        folder = Path(tmp) / "fomm-random"
        log.warning("exporting random-weight vox-256 FOMM graphs for the serve bench (~1 min)")
        export_fomm(None, folder, seed=RANDOM_SEED)
        return _bench(video=video, portrait=portrait, clients=clients, frames=frames,
                      size=size, max_batch=max_batch, engine="fomm", model_dir=folder,
                      backend=backend, weights=f"random vox-256 (seed {RANDOM_SEED})")


def _bench(*, video: Path, portrait: Path, clients: list[int], frames: int, size: int | None,
           max_batch: int, engine: str = "mesh", model_dir: Path | None = None,
           backend: str | None = None, weights: str | None = None) -> dict[str, Any]:
    from live.engines.base import create_engine

    overrides: dict[str, Any] = {} if size is None else {"size": size}
    if backend is not None:
        overrides["backend"] = backend

    def make_local() -> Any:
        if engine == "mesh":
            return create_engine("mesh", **overrides)
        return create_engine("fomm", model_dir=model_dir, **overrides)

    local = make_local()
    size = int(local.size)  # fomm: the model's size unless ``size`` was given
    crop, faces = _faces(video, portrait, size, frames)
    local.set_portrait(local.prepare(crop))
    lat = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i, f in enumerate(faces):
        t = time.perf_counter()
        local.process(f, i / 25)
        lat.append((time.perf_counter() - t) * 1e3)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    local.close()
    rows: list[dict[str, Any]] = [{"clients": 0, "fps": len(faces) / wall,
                                   "fps_per_client": len(faces) / wall,
                                   **_percentiles(lat), "mean_batch": 1.0,
                                   "server_cpu_ms": float("nan"),
                                   "client_cpu_ms": cpu / len(faces) * 1e3}]
    with contextlib.ExitStack() as stack:
        # a server that exits at once (a port taken between choosing and binding it) is
        # started again on other ports, once
        for attempt in (1, 2):
            ports = [_free_port() for _ in range(3)]
            cmd = [sys.executable, "-m", "live.cli", "-q", "serve", "--engine", engine,
                   "--crop-size", str(size), "--http-port", str(ports[0]),
                   "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
                   "--max-batch", str(max_batch), "--max-sessions", str(max(clients) * 2 + 2)]
            if engine == "fomm":
                cmd += ["--model-dir", str(model_dir)]
                if backend is not None:
                    cmd += ["--backend", backend]
            server_log = stack.enter_context(tempfile.TemporaryFile())
            server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=server_log)
            stack.callback(_stop, server)
            url = f"grpc://127.0.0.1:{ports[1]}"
            if _wait_ready(server, server_log, url, cmd, engine, last_try=attempt == 2):
                break
        metrics_url = f"http://127.0.0.1:{ports[2]}/metrics"
        overhead = _paired_overhead(url, make_local, crop, faces)
        for n in clients:
            before = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
            rows.append(_run_clients(url, crop, faces, n, server=server.pid))
            after = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
            reqs = (_metric(after, "nv_inference_request_success", "animate")
                    - _metric(before, "nv_inference_request_success", "animate"))
            execs = (_metric(after, "nv_inference_exec_count", "animate")
                     - _metric(before, "nv_inference_exec_count", "animate"))
            rows[-1]["mean_batch"] = reqs / execs if execs else float("nan")
    result: dict[str, Any] = {"engine": engine, "frames": len(faces), "size": size,
                              "max_batch": max_batch, "rows": rows, **overhead}
    if weights is not None:
        result["weights"] = weights
    return result


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def _wait_ready(server: subprocess.Popen[bytes], server_log: Any, url: str, cmd: list[str],
                engine: str, *, last_try: bool) -> bool:
    """Whether the server answers at ``url``; False when it exited early and this is not the
    last try; MimicamError (with the end of its log) when it never came up."""
    from live.engines.remote import RemoteEngine

    deadline = time.monotonic() + (120 if engine == "mesh" else 300)
    while True:
        try:
            RemoteEngine(url, timeout_s=2).close()
            return True
        except MimicamError:
            exited = server.poll() is not None
            if exited and not last_try:
                log.warning("the bench server exited at once; starting it again")
                return False
            if exited or time.monotonic() > deadline:
                server_log.seek(0)
                tail = server_log.read().decode(errors="replace").strip()
                last = " | ".join(tail.splitlines()[-3:]) if tail else "no output"
                raise MimicamError(f"the bench server did not start: {' '.join(cmd)} "
                                   f"({last})") from None
            time.sleep(0.5)


def _percentiles(lat: list[float]) -> dict[str, float]:
    arr = np.asarray(lat, dtype=np.float64)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95))}


def _paired_overhead(url: str, make_local: Any, crop: np.ndarray,
                     faces: list[Any]) -> dict[str, float]:
    """The serving overhead at one client, measured in pairs: each frame animated in this
    process, then by one client of the server, in turn; the median and p95 of the per-frame
    differences. A machine whose speed drifts (other jobs) moves both alike, where the rows'
    separate medians, minutes apart, can differ by more than the overhead itself."""
    from live.engines.remote import RemoteEngine

    local, remote = make_local(), RemoteEngine(url)
    try:
        for e in (local, remote):
            e.set_portrait(e.prepare(crop))
            e.process(faces[0], 0.0)
        diff = []
        for i, f in enumerate(faces[1:], start=1):
            t0 = time.perf_counter()
            local.process(f, i / 25)
            t1 = time.perf_counter()
            remote.process(f, i / 25)
            diff.append((time.perf_counter() - t1 - (t1 - t0)) * 1e3)
    finally:
        local.close()
        remote.close()
    arr = np.asarray(diff)
    return {"overhead_p50_ms": float(np.median(arr)),
            "overhead_p95_ms": float(np.percentile(arr, 95))}


def _run_clients(url: str, crop: np.ndarray, faces: list[Any], n: int,
                 server: int | None = None) -> dict[str, Any]:
    """``n`` clients (threads) animating ``faces`` at ``url``; ``server``: the server's pid
    (for its CPU time per frame)."""
    from live.engines.remote import RemoteEngine

    engines = []
    for _ in range(n):
        e = RemoteEngine(url)
        e.set_portrait(e.prepare(crop))
        e.process(faces[0], 0.0)  # warm: session open, neutral pose
        engines.append(e)
    lat: list[list[float]] = [[] for _ in range(n)]
    barrier = threading.Barrier(n)

    def run(k: int) -> None:
        barrier.wait()
        for i, f in enumerate(faces[1:], start=1):
            t = time.perf_counter()
            engines[k].process(f, i / 25)
            lat[k].append((time.perf_counter() - t) * 1e3)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    server_cpu = process_tree_cpu(server) if server is not None else float("nan")
    t0, c0 = time.perf_counter(), time.process_time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if server is not None:
        server_cpu = process_tree_cpu(server) - server_cpu
    for e in engines:
        e.close()
    total = sum(len(x) for x in lat)
    return {"clients": n, "fps": total / wall, "fps_per_client": total / wall / n,
            **_percentiles([v for x in lat for v in x]),
            "server_cpu_ms": server_cpu / total * 1e3, "client_cpu_ms": cpu / total * 1e3}


def format_report(r: dict[str, Any]) -> str:
    weights = f", weights: {r['weights']}" if r.get("weights") else ""
    lines = [f"{r.get('engine', 'mesh')} engine, {r['size']} px, {r['frames']} frames per "
             f"client, max batch {r['max_batch']}{weights}",
             "| clients | frames/s (all) | frames/s per client | p50 ms | p95 ms | mean batch "
             "| CPU ms/frame server | CPU ms/frame clients |",
             "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        who = "in-process" if row["clients"] == 0 else str(row["clients"])
        lines.append(f"| {who} | {row['fps']:.1f} | {row['fps_per_client']:.1f} | "
                     f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['mean_batch']:.2f} | "
                     f"{_ms(row.get('server_cpu_ms'))} | {_ms(row.get('client_cpu_ms'))} |")
    if "overhead_p50_ms" in r:
        lines.append(f"serving overhead at one client (each frame in process, then remote, "
                     f"in turn): p50 {r['overhead_p50_ms']:.1f} ms, p95 "
                     f"{r['overhead_p95_ms']:.1f} ms a frame")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _client_counts(text: str) -> list[int]:
    """``--clients`` as numbers of clients, each at least 1."""
    items = bench_common.split_list(text)
    counts = [int(c) if c.isdecimal() else 0 for c in items]  # ("²" is a digit, not a number)
    if not counts or min(counts) < 1:
        raise InputError("bad --clients", expected="numbers of clients >= 1, e.g. 1,2,4,8",
                         got=repr(text))
    return counts


def run(args: argparse.Namespace) -> int:
    engine = getattr(args, "engine", None) or "mesh"
    check_engine(engine)
    video = args.driving or DEFAULT_VIDEO
    portrait = args.portrait or DEFAULT_PORTRAIT
    if bench_common.missing_inputs("serve", (video, portrait), "--driving/--portrait"):
        return 1
    clients = _client_counts(args.clients)
    if args.frames is not None and args.frames < 1:
        raise InputError("bad frame count", expected="--frames >= 1", got=str(args.frames))
    fomm = engine == "fomm"
    model_dir = (getattr(args, "model_dir", None) or getattr(args, "model", None)) if fomm \
        else None
    r = bench_serve(video=Path(video), portrait=Path(portrait), clients=clients,
                    frames=args.frames if args.frames is not None else 60,
                    size=None if fomm else args.size, max_batch=args.max_batch, engine=engine,
                    model_dir=model_dir,
                    backend=getattr(args, "backend", None) if fomm else None)
    print(json.dumps(r, indent=1) if args.json else format_report(r))
    return 0
