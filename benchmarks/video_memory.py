"""Peak memory of streaming re-encoding (VideoReader -> VideoWriter with audio) vs video length.

Re-encodes a ~10 s clip (the shared fixture ``lp_d3.mp4``: 512x512, 30 fps, 354 frames, AAC)
and a ~60 s clip made from it (its frames played five times over, with a 60 s tone as audio,
written to a temporary folder), each in a fresh subprocess, and prints the peak resident set
size of each run. With streaming I/O the two peaks should be about the same.

    .venv/bin/python benchmarks/video_memory.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _memory

FIXTURE = _memory.REPO_ROOT.parent / "shared" / "fixtures" / "driving" / "lp_d3.mp4"


def reencode(src: Path, dst: Path) -> dict[str, float]:
    """Child process: stream ``src`` into ``dst`` (audio copied) and report memory."""
    import numpy  # noqa: F401  (import the heavy modules before taking the baseline)

    from live.io.video import VideoReader, VideoWriter, probe_video

    info = probe_video(src)
    baseline = _memory.peak_rss_mib()
    t0 = time.perf_counter()
    frames = 0
    with VideoReader(src) as reader, VideoWriter(
            dst, fps=info.fps_fraction, size=info.size,
            audio_from=src if info.has_audio else None) as writer:
        for frame in reader:
            writer.write(frame.image)
            frames += 1
    seconds = time.perf_counter() - t0
    return {"frames": frames, "video_s": frames / info.fps, "wall_s": seconds,
            "baseline_mib": baseline, "peak_mib": _memory.peak_rss_mib()}


def make_long_clip(src: Path, dst: Path, loops: int, folder: Path) -> None:
    """``src``'s frames ``loops`` times over, with a tone at least as long as the result as
    audio (the writer trims it to the video)."""
    from live.io.video import VideoReader, VideoWriter, probe_video

    info = probe_video(src)
    seconds = (info.frame_count or 0) * loops / info.fps
    wav = folder / "tone.wav"
    _memory.write_tone(wav, seconds + 1.0)
    with VideoWriter(dst, fps=info.fps_fraction, size=info.size, audio_from=wav,
                     preset="veryfast") as writer:
        for _ in range(loops):
            with VideoReader(src) as reader:
                for picture in reader:
                    writer.write(picture.image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    parser.add_argument("--loops", type=int, default=5,
                        help="how many times the long clip repeats the fixture (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(reencode(Path(args.child[0]), Path(args.child[1]))))
        return 0
    if _memory.missing_shared_data((FIXTURE,)):
        return 1
    with _memory.scratch_folder("mimicam-video-memory-", keep=args.keep) as folder:
        long_clip = folder / f"lp_d3_x{args.loops}.mp4"
        t0 = time.perf_counter()
        make_long_clip(FIXTURE, long_clip, args.loops, folder)
        print(f"made {long_clip.name} in {time.perf_counter() - t0:.1f} s")
        print(f"{'input':<18}{'frames':>8}{'video s':>9}{'wall s':>8}{'enc fps':>9}"
              f"{'base MiB':>10}{'peak MiB':>10}{'growth':>8}")
        for src in (FIXTURE, long_clip):
            r = _memory.run_child(__file__, [str(src), str(folder / f"out_{src.name}")])
            print(f"{src.name:<18}{r['frames']:>8.0f}{r['video_s']:>9.1f}{r['wall_s']:>8.1f}"
                  f"{r['frames'] / r['wall_s']:>9.1f}{r['baseline_mib']:>10.1f}"
                  f"{r['peak_mib']:>10.1f}{r['peak_mib'] - r['baseline_mib']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
