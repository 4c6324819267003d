"""Peak memory of ``mimicam animate`` vs the driving video's length (it must not grow).

Builds a 10 s driving clip (the first 300 frames of the shared fixture ``lp_d3.mp4``,
512x512 at 30 fps) and a 60 s one (those frames six times over), each with a tone as its
audio track, in a temporary folder; then runs ``mimicam animate`` (mesh engine, portrait
``lp_s42.jpg``) on each in a fresh subprocess and prints frames, wall time, processing fps and
the peak resident set size. Streaming decode/encode keeps the two peaks about equal.

    .venv/bin/python benchmarks/animate_memory.py [--engine mesh] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared" / "fixtures"
DRIVING = SHARED / "driving" / "lp_d3.mp4"
PORTRAIT = SHARED / "portraits" / "lp_s42.jpg"
CLIP_FRAMES = 300  # 10 s at 30 fps


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(argv: list[str]) -> dict[str, float]:
    """In the subprocess: run the real command line and report its peak memory."""
    from live.cli import main

    t0 = time.perf_counter()
    code = main(["-q", "animate", *argv])
    return {"code": code, "wall_s": time.perf_counter() - t0, "peak_mib": peak_rss_mib()}


def write_tone(path: Path, seconds: float, rate: int = 44100) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.codec_context.layout = "stereo"
        for start in range(0, int(seconds * rate), rate):
            n = min(rate, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            tone = (np.sin(2 * np.pi * 330 * t) * 8000).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None], format="s16",
                                               layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def make_clip(dst: Path, loops: int, folder: Path) -> None:
    """The fixture's first CLIP_FRAMES frames ``loops`` times over, with a tone as audio."""
    import itertools

    from live.video import VideoReader, VideoWriter, probe_video

    info = probe_video(DRIVING)
    wav = folder / f"tone_{loops}.wav"
    write_tone(wav, CLIP_FRAMES * loops / info.fps)
    with VideoWriter(dst, fps=info.fps_fraction, size=info.size, audio_from=wav,
                     preset="veryfast") as writer:
        for _ in range(loops):
            with VideoReader(DRIVING) as reader:
                for frame in itertools.islice(reader, CLIP_FRAMES):
                    writer.write(frame.image)


def run_child(argv: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv)], check=True,
                         capture_output=True, text=True, cwd=REPO_ROOT)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="mesh", choices=("mesh", "fomm"))
    parser.add_argument("--weights", help="FOMM checkpoint (with --engine fomm)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    for need in (DRIVING, PORTRAIT):
        if not need.exists():
            print(f"needs {need.relative_to(REPO_ROOT.parent)} (the team's shared data)",
                  file=sys.stderr)
            return 1
    folder = Path(tempfile.mkdtemp(prefix="mimicam-animate-memory-"))
    try:
        print(f"{'input':<17}{'frames':>8}{'video s':>9}{'wall s':>8}{'fps':>7}{'peak MiB':>10}")
        for loops in (1, 6):
            clip = folder / f"driving_{loops * 10}s.mp4"
            make_clip(clip, loops, folder)
            out = folder / f"out_{loops * 10}s.mp4"
            argv = ["--source-image", str(PORTRAIT), "--driving-video", str(clip),
                    "--output", str(out), "--engine", args.engine]
            if args.weights:
                argv += ["--weights", args.weights]
            r = run_child(argv)
            if r["code"] != 0:
                print(f"mimicam animate failed on {clip.name} (exit {r['code']})",
                      file=sys.stderr)
                return 1
            frames = CLIP_FRAMES * loops
            print(f"{clip.name:<17}{frames:>8}{frames / 30:>9.1f}{r['wall_s']:>8.1f}"
                  f"{frames / r['wall_s']:>7.1f}{r['peak_mib']:>10.1f}")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
