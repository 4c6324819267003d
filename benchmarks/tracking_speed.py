"""Face-tracker speed: FaceTracker.process ms a frame on 640x480 frames, with and without iris
refinement, plus one-off costs (still-image detection and landmarks on the fixture portraits).

Frames come from the shared fixture videos (``../shared/fixtures/driving``): ``lp_d3.mp4``
(512x512, resized to 640x480) and ``lp_d13.mp4`` (720x1280 phone video, letterboxed into
640x480: a small face). Frames are decoded and resized before timing; the first frame of each
run (graph start-up and the detector) is reported separately. ``cpu`` is the process's CPU time
(all threads) a frame, which other jobs on the machine disturb less than wall time.

    .venv/bin/python benchmarks/tracking_speed.py [--frames 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


def decode(path: Path, n: int, mode: str) -> list[tuple[np.ndarray, float]]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for vf in container.decode(container.streams.video[0]):
            img = vf.to_ndarray(format="rgb24")
            if mode == "resize":
                out = cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA)
            else:  # letterbox
                h, w = img.shape[:2]
                s = min(640 / w, 480 / h)
                small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
                out = np.zeros((480, 640, 3), np.uint8)
                y0, x0 = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
                out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
            frames.append((np.ascontiguousarray(out), float(vf.time)))
            if len(frames) >= n:
                break
    return frames


def time_tracker(frames: list[tuple[np.ndarray, float]], refine: bool) -> dict[str, float]:
    from live.face.tracking import FaceTracker
    from live.packets import Frame

    ms, cpu_ms = [], []
    with FaceTracker(refine_landmarks=refine) as tracker:
        for i, (img, t) in enumerate(frames):
            c0, t0 = time.process_time(), time.perf_counter()
            tracker.process(Frame(img, i, t0, t))
            ms.append((time.perf_counter() - t0) * 1000)
            cpu_ms.append((time.process_time() - c0) * 1000)
        stats = tracker.stats
    steady = sorted(ms[1:])
    return {
        "first_ms": round(ms[0], 1),
        "median_ms": round(statistics.median(steady), 2),
        "p95_ms": round(steady[int(0.95 * (len(steady) - 1))], 2),
        # CPU time of all threads: less sensitive to other jobs sharing the machine
        "median_cpu_ms": round(statistics.median(cpu_ms[1:]), 2),
        "faces": stats.faces,
        "frames": stats.frames,
        "detections": stats.detections,
    }


def time_stills() -> dict[str, dict[str, float]]:
    from calibrate.errors import InputError
    from live.face.portraits import load_image
    from live.face.tracking import detect_faces, face_landmarks

    out = {}
    for path in sorted((FIXTURES / "portraits").iterdir()):
        try:
            img = load_image(path)  # upright (EXIF), RGB
        except InputError:
            continue
        detect_faces(img)  # warm up the graphs
        t0 = time.perf_counter()
        faces = detect_faces(img)
        t1 = time.perf_counter()
        lm = face_landmarks(img, box=faces[0]) if faces else None
        t2 = time.perf_counter()
        out[path.name] = {"faces": len(faces), "detect_ms": round((t1 - t0) * 1000, 1),
                          "landmarks_ms": round((t2 - t1) * 1000, 1) if lm is not None else -1}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not FIXTURES.exists():
        raise SystemExit(f"needs {FIXTURES} (the team's shared data)")
    results: dict[str, object] = {}
    for name, mode in (("lp_d3.mp4", "resize"), ("lp_d13.mp4", "letterbox")):
        frames = decode(FIXTURES / "driving" / name, args.frames, mode)
        for refine in (False, True):
            key = f"{name} 640x480 ({mode}) refine={refine}"
            results[key] = r = time_tracker(frames, refine)
            print(f"{key:44s} median {r['median_ms']:6.2f} ms  p95 {r['p95_ms']:6.2f} ms  "
                  f"cpu {r['median_cpu_ms']:6.2f} ms  first {r['first_ms']:6.1f} ms  "
                  f"faces {r['faces']}/{r['frames']}  detections {r['detections']}")
    stills = time_stills()
    results["stills"] = stills
    for name, r in stills.items():
        print(f"{name:34s} faces {r['faces']}  detect_faces {r['detect_ms']:6.1f} ms  "
              f"face_landmarks(box) {r['landmarks_ms']:5.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
