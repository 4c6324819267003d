#!/usr/bin/env python
"""Motion-transfer fidelity of the mesh engine on every portrait x driving video.

    python benchmarks/fidelity.py                      # all fixtures in ../shared/fixtures
    python benchmarks/fidelity.py --portraits A.jpg --driving B.mp4 --max-frames 100
    python benchmarks/fidelity.py --json fidelity.json --markdown

Each portrait is cropped around its largest face (detect_faces + square_box + crop_square)
to the engine size; each driving video is tracked once with FaceTracker at its own
resolution; the engine animates the portrait with those landmarks and the face mesh runs on
every output frame (:mod:`live.bench.fidelity`). Prints one line per pair: transfer_ratio (0
perfect, 1 frozen), lost output faces, neutral PSNR, and the driving motion in inter-ocular
distances; then the medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import NoFaceError
from live.bench.common import FIXTURES
from live.bench.fidelity import FidelityMeter, FidelityResult
from live.engines.mesh.engine import MeshEngine
from live.packets import FaceCrop

log = logging.getLogger("fidelity")

Track = list[tuple[np.ndarray, np.ndarray, np.ndarray, float] | None]
"""Per driving frame: (crop_to_frame, crop landmarks, the driving crop, pts) or None (no
face). The crop's pixels matter: the mesh engine's body flow and its ``mouth = "driver"``
interior read them."""


def load_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8, upright: mimicam's own reader
    (:func:`live.face.portraits.load_image`: EXIF orientation, alpha over white)."""
    from live.face.portraits import load_image as read_picture

    return read_picture(path)


def crop_portrait(path: Path, size: int, *, scale: float = 1.8) -> np.ndarray:
    """The square crop (``size`` px) around the largest face of a portrait."""
    from live.face.tracking import crop_square, detect_faces, square_box

    image = load_image(path)
    boxes = detect_faces(image)
    if not boxes:
        raise NoFaceError("no face found in the portrait", path=path,
                          expected="an image with at least one face")
    box = max(boxes, key=lambda b: b.area)
    centre, side = square_box(box, scale=scale)
    return crop_square(image, centre, side, size).image


def track_driving(path: Path, max_frames: int | None) -> Track:
    """Landmarks of a driving video, frame by frame (FaceTracker at native resolution)."""
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    out: Track = []
    with FaceTracker(crop_size=256) as tracker, VideoReader(path) as reader:
        for frame in reader:
            if max_frames is not None and len(out) >= max_frames:
                break
            face = tracker.process(frame).face
            t = frame.time()
            if face is None or face.landmarks is None:
                out.append(None)
            else:
                out.append((face.crop_to_frame, face.landmarks, face.image, t))
    return out


def run_pair(portrait: np.ndarray, track: Track, engine_options: dict[str, Any],
             *, save_dir: Path | None = None) -> FidelityResult:
    """Animate ``portrait`` with a tracked driving video and score every output frame."""
    from live.engines.mesh.engine import driving_points

    with MeshEngine(**engine_options) as engine, FidelityMeter(portrait=portrait) as meter:
        engine.set_portrait(engine.prepare(portrait))
        for i, item in enumerate(track):
            face = None
            drv = None
            t = i / 25.0
            if item is not None:
                m, pts, crop, t = item
                face = FaceCrop(image=crop, crop_to_frame=m, frame_index=i, t_capture=t,
                                landmarks=pts)
                drv = driving_points(face, pts)
            out = engine.process(face, t)
            meter.add(out, drv)
            if save_dir is not None and i % 25 == 0:
                import cv2

                cv2.imwrite(str(save_dir / f"{i:04d}.png"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
    return meter.result


def _fmt(x: float, nd: int = 3) -> str:
    return "inf" if math.isinf(x) else ("n/a" if math.isnan(x) else f"{x:.{nd}f}")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| portrait | driving | frames | transfer_ratio | lips | eyes | brows | oval "
             "| lost | neutral PSNR (dB) | motion (IOD) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rr = r["region_ratio"]
        lines.append(
            f"| {r['portrait']} | {r['driving']} | {r['frames']} | {_fmt(r['transfer_ratio'])} "
            f"| {_fmt(rr['lips'])} | {_fmt(rr['eyes'])} | {_fmt(rr['brows'])} "
            f"| {_fmt(rr['oval'])} | {r['lost']} | {_fmt(r['neutral_psnr'], 1)} "
            f"| {_fmt(r['mean_motion_iod'])} |")
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["transfer_ratio"] for r in rows if not math.isnan(r["transfer_ratio"])]
    psnrs = [r["neutral_psnr"] for r in rows]
    return {
        "pairs": len(rows),
        "median_transfer_ratio": statistics.median(ratios) if ratios else math.nan,
        "max_transfer_ratio": max(ratios) if ratios else math.nan,
        "lost_frames": sum(r["lost"] for r in rows),
        "min_neutral_psnr": min(psnrs) if psnrs else math.nan,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--portraits", nargs="+", type=Path,
                    help="portrait images (default: every file in ../shared/fixtures/portraits)")
    ap.add_argument("--driving", nargs="+", type=Path,
                    help="driving videos (default: every file in ../shared/fixtures/driving)")
    ap.add_argument("--max-frames", type=int, default=None, help="frames per driving video")
    ap.add_argument("--size", type=int, default=512, help="engine size (default 512)")
    ap.add_argument("--no-smoothing", action="store_true", help="engine without One Euro")
    ap.add_argument("--json", type=Path, help="write every result and the summary here")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table too")
    ap.add_argument("--save-frames", type=Path,
                    help="write every 25th output frame as PNG under this folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def default(kind: str, pattern: tuple[str, ...]) -> list[Path]:
        folder = FIXTURES / kind
        if not folder.is_dir():
            raise SystemExit(f"fidelity: {folder} not found; pass --{kind} explicitly")
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in pattern)

    portraits = args.portraits or default("portraits", (".jpg", ".jpeg", ".png"))
    drivings = args.driving or default("driving", (".mp4", ".mov", ".mkv", ".webm"))
    options: dict[str, Any] = {"size": args.size, "smoothing": not args.no_smoothing}

    crops = {p: crop_portrait(p, args.size) for p in portraits}
    rows: list[dict[str, Any]] = []
    print(f"{'portrait':34s} {'driving':16s} {'frames':>6s} {'ratio':>6s} {'lost':>5s} "
          f"{'psnr':>6s} {'motion':>7s} {'s':>5s}", flush=True)
    for d in drivings:
        track = track_driving(d, args.max_frames)
        for p in portraits:
            t0 = time.perf_counter()
            save = None
            if args.save_frames is not None:
                save = args.save_frames / f"{p.stem}__{d.stem}"
                save.mkdir(parents=True, exist_ok=True)
            res = run_pair(crops[p], track, options, save_dir=save)
            row = {"portrait": p.name, "driving": d.name, **res.as_dict()}
            rows.append(row)
            print(f"{p.name:34s} {d.name:16s} {res.frames:6d} {_fmt(res.transfer_ratio):>6s} "
                  f"{res.lost:5d} {_fmt(res.neutral_psnr, 1):>6s} {_fmt(res.mean_motion):>7s} "
                  f"{time.perf_counter() - t0:5.1f}", flush=True)
    summ = summary(rows)
    print(f"median transfer_ratio {_fmt(summ['median_transfer_ratio'])}, "
          f"worst {_fmt(summ['max_transfer_ratio'])}, lost output faces {summ['lost_frames']}, "
          f"lowest neutral PSNR {_fmt(summ['min_neutral_psnr'], 1)} dB")
    if args.markdown:
        print(markdown_table(rows))
    if args.json is not None:
        data = {"date": time.strftime("%Y-%m-%d"), "options": options,
                "max_frames": args.max_frames, "summary": summ, "pairs": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{args.json.name}.", dir=args.json.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, default=str)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
