"""How long ``mimicam live`` takes to prepare a large portrait (#11: under 1 s for a 2048 px
photo with its segmentation and background fill), and what the prepared portraits hold.

Each fixture portrait (``../shared/fixtures/portraits``) is enlarged (bicubic) to ``--side``
px on its long side and written as PNG to a temporary folder. ``PortraitLibrary.prepare``
(mesh engine at 512 px, ``shoulders`` framing into 1280x720) then prepares each in turn:
first in a warm-up library (MediaPipe's graphs start), then ``--runs`` times in new libraries,
with ``--background blur`` and without a background. ``--big`` adds the first portrait at
that long side as a JPEG (a phone photo or larger) and reports the memory one prepared
portrait of it holds in the library's cache (the process's RSS growth over three more of
them, per portrait, MB).

    .venv/bin/python benchmarks/prepare_speed.py [--side 2048] [--runs 3] [--big 6000]
        [--portraits lp_s42.jpg,deepface_img1_smile_teeth.jpg,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "portraits"
DEFAULT_PORTRAITS = ("lp_s42.jpg", "deepface_img1_smile_teeth.jpg", "lp_s2_bw_photo.jpg",
                     "sadtalker_art_14.png")
OUTPUT = (1280, 720)


def enlarged(name: str, side: int, folder: Path, *, suffix: str = ".png") -> Path:
    """The fixture ``name`` enlarged to ``side`` px on its long side, written to ``folder``
    (PNG; ``.jpg``: JPEG at quality 92, as a camera writes)."""
    image = cv2.imread(str(FIXTURES / name), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {FIXTURES / name} (the shared fixtures are needed)")
    h, w = image.shape[:2]
    s = side / max(h, w)
    out = folder / f"{Path(name).stem}_{side}{suffix}"
    cv2.imwrite(str(out), cv2.resize(image, (round(w * s), round(h * s)),
                                     interpolation=cv2.INTER_CUBIC),
                [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix == ".jpg" else [])
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def time_prepare(paths: list[Path], background: str | None, runs: int
                 ) -> tuple[list[list[float]], list[list[float]]]:
    """Seconds of ``PortraitLibrary.prepare`` per portrait (rows) and run (columns), after a
    warm-up library: wall-clock, and the process's CPU time (all its threads: steadier than
    the wall clock on a shared machine)."""
    from live.background import Background
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import PortraitLibrary

    backgrounds = [Background.parse(background)] if background else []
    seconds: list[list[float]] = [[] for _ in paths]
    cpu: list[list[float]] = [[] for _ in paths]
    with MeshEngine(size=512) as engine:
        for run in range(runs + 1):
            with PortraitLibrary(paths, engine, output_size=OUTPUT, framing="shoulders",
                                 backgrounds=backgrounds) as library:
                for i in range(len(paths)):
                    c0, t0 = time.process_time(), time.perf_counter()
                    library.prepare(i)
                    if run:  # run 0 warms up
                        seconds[i].append(time.perf_counter() - t0)
                        cpu[i].append(time.process_time() - c0)
    return seconds, cpu


def held_memory(path: Path, copies: int = 4) -> float:
    """MB a cached prepared portrait of ``path`` (blur) holds: the process's growth while a
    library prepares ``copies`` - 1 more after the first, per portrait."""
    from live.background import Background
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import PortraitLibrary

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(copies):  # different names: each is prepared and cached on its own
            link = Path(tmp) / f"{k}_{path.name}"
            link.symlink_to(path)
            paths.append(link)
        with MeshEngine(size=512) as engine, \
                PortraitLibrary(paths, engine, output_size=OUTPUT, framing="shoulders",
                                backgrounds=[Background.parse("blur")]) as library:
            library.prepare(0)  # graphs and buffers first
            gc.collect()
            base = rss_mb()
            for i in range(1, copies):
                library.prepare(i)
            gc.collect()
            return (rss_mb() - base) / (copies - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big", type=int, default=0, help="also one photo this large (px)")
    ap.add_argument("--portraits", default=",".join(DEFAULT_PORTRAITS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    names = [n for n in args.portraits.split(",") if n]
    report: dict[str, Any] = {"side": args.side, "output": list(OUTPUT), "runs": args.runs,
                              "portraits": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = [enlarged(n, args.side, Path(tmp)) for n in names]
        if args.big:
            paths.append(enlarged(names[0], args.big, Path(tmp), suffix=".jpg"))
        rows: dict[str, dict[str, list[float]]] = {}
        for background in ("blur", None):
            kind = background or "none"
            walls, cpus = time_prepare(paths, background, args.runs)
            for path, secs, cpu in zip(paths, walls, cpus, strict=True):
                rows.setdefault(path.name, {})[kind] = secs
                rows[path.name][f"{kind}_cpu"] = cpu
        print(f"PortraitLibrary.prepare, mesh engine 512 px, shoulders into "
              f"{OUTPUT[0]}x{OUTPUT[1]}, {args.runs} runs after a warm-up (s; CPU: all "
              f"threads)")
        print(f"{'portrait':40} {'blur: median (min-max)':>24} {'CPU':>5} "
              f"{'none: median (min-max)':>24} {'CPU':>5}")
        for name, by in rows.items():
            cells = [f"{statistics.median(by[k]):.2f} ({min(by[k]):.2f}-{max(by[k]):.2f})"
                     f" {statistics.median(by[k + '_cpu']):5.2f}" for k in ("blur", "none")]
            print(f"{name:40} {cells[0]:>30} {cells[1]:>30}")
            report["portraits"][name] = by
        if args.big:
            held = held_memory(paths[-1])
            print(f"memory held per prepared {paths[-1].name} (blur): {held:.0f} MB")
            report["held_mb_per_big"] = held
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
