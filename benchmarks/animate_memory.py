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
import sys
import time
from pathlib import Path

import _memory

SHARED = _memory.REPO_ROOT.parent / "shared" / "fixtures"
DRIVING = SHARED / "driving" / "lp_d3.mp4"
PORTRAIT = SHARED / "portraits" / "lp_s42.jpg"
CLIP_FRAMES = 300  # 10 s at 30 fps


def child(argv: list[str]) -> dict[str, float]:
    """In the subprocess: run the real command line and report its peak memory."""
    from live.cli.main import main

    t0 = time.perf_counter()
    code = main(["-q", "animate", *argv])
    return {"code": code, "wall_s": time.perf_counter() - t0, "peak_mib": _memory.peak_rss_mib()}


def make_clip(dst: Path, loops: int, folder: Path) -> None:
    """The fixture's first CLIP_FRAMES frames ``loops`` times over, with a tone as audio."""
    import itertools

    from live.io.video import VideoReader, VideoWriter, probe_video

    info = probe_video(DRIVING)
    wav = folder / f"tone_{loops}.wav"
    _memory.write_tone(wav, CLIP_FRAMES * loops / info.fps)
    with VideoWriter(dst, fps=info.fps_fraction, size=info.size, audio_from=wav,
                     preset="veryfast") as writer:
        for _ in range(loops):
            with VideoReader(DRIVING) as reader:
                for frame in itertools.islice(reader, CLIP_FRAMES):
                    writer.write(frame.image)


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
    if _memory.missing_shared_data((DRIVING, PORTRAIT)):
        return 1
    with _memory.scratch_folder("mimicam-animate-memory-", keep=args.keep) as folder:
        print(f"{'input':<17}{'frames':>8}{'video s':>9}{'wall s':>8}{'fps':>7}{'peak MiB':>10}")
        for loops in (1, 6):
            clip = folder / f"driving_{loops * 10}s.mp4"
            make_clip(clip, loops, folder)
            out = folder / f"out_{loops * 10}s.mp4"
            argv = ["--source-image", str(PORTRAIT), "--driving-video", str(clip),
                    "--output", str(out), "--engine", args.engine]
            if args.weights:
                argv += ["--weights", args.weights]
            r = _memory.run_child(__file__, [json.dumps(argv)])
            if r["code"] != 0:
                print(f"mimicam animate failed on {clip.name} (exit {r['code']})",
                      file=sys.stderr)
                return 1
            frames = CLIP_FRAMES * loops
            print(f"{clip.name:<17}{frames:>8}{frames / 30:>9.1f}{r['wall_s']:>8.1f}"
                  f"{frames / r['wall_s']:>7.1f}{r['peak_mib']:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
