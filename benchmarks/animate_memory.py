"""Peak memory of ``mimicam animate`` vs the driving video's length (it must not grow) and vs
the portrait's size (capped by ``--max-size``).

Length: builds a 10 s driving clip (the first 300 frames of the shared fixture ``lp_d3.mp4``,
512x512 at 30 fps) and a 60 s one (those frames six times over), each with a tone as its
audio track, in a temporary folder; then runs ``mimicam animate`` (mesh engine, portrait
``lp_s42.jpg``) on each in a fresh subprocess and prints frames, wall time, processing fps and
the peak resident set size. Streaming decode/encode keeps the two peaks about equal.

Size: a 2 s clip (the first 60 frames, with the tone) drives a photo
(``deepface_img1_smile_teeth.jpg``, 1382x1868, scaled and padded by reflection) saved as JPEG
portraits of 2000x3000 and 8000x6000 pixels, each after the same picture as a 1920-px photo
(its reference: the same job, the same face, nothing to scale down), with the default
``--max-size 1920``; each row prints the output size, wall time (the best of ``--repeat`` runs,
default 2, each in a fresh process), its ratio to the reference and the peak RSS (the highest
of the runs).

    .venv/bin/python benchmarks/animate_memory.py [--part length|size|all] [--engine mesh] [--keep]
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
PHOTO = SHARED / "portraits" / "deepface_img1_smile_teeth.jpg"
CLIP_FRAMES = 300  # 10 s at 30 fps
SHORT_FRAMES = 60  # 2 s at 30 fps
PORTRAIT_SIZES = ((2000, 3000), (8000, 6000))  # each after its 1920-px reference


def child(argv: list[str]) -> dict[str, float]:
    """In the subprocess: run the real command line and report its peak memory."""
    from live.cli.main import main

    t0 = time.perf_counter()
    code = main(["-q", "animate", *argv])
    return {"code": code, "wall_s": time.perf_counter() - t0, "peak_mib": _memory.peak_rss_mib()}


def make_clip(dst: Path, loops: int, folder: Path, frames: int = CLIP_FRAMES) -> None:
    """The fixture's first ``frames`` frames ``loops`` times over, with a tone as audio."""
    import itertools

    from live.io.video import VideoReader, VideoWriter, probe_video

    info = probe_video(DRIVING)
    wav = folder / f"tone_{loops}_{frames}.wav"
    _memory.write_tone(wav, frames * loops / info.fps)
    with VideoWriter(dst, fps=info.fps_fraction, size=info.size, audio_from=wav,
                     preset="veryfast") as writer:
        for _ in range(loops):
            with VideoReader(DRIVING) as reader:
                for frame in itertools.islice(reader, frames):
                    writer.write(frame.image)


def make_portrait(dst: Path, size: tuple[int, int], reference: Path) -> None:
    """``PHOTO`` scaled to fit ``size`` (w, h), padded to it by reflection, saved as a JPEG;
    the same picture scaled to 1920 px on its long side as ``reference``."""
    import cv2

    from live.geometry import fit_size

    photo = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    w, h = size
    scale = min(w / photo.shape[1], h / photo.shape[0])
    fit = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)),
                     interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    top, left = (h - fit.shape[0]) // 2, (w - fit.shape[1]) // 2
    padded = cv2.copyMakeBorder(fit, top, h - fit.shape[0] - top, left,
                                w - fit.shape[1] - left, cv2.BORDER_REFLECT)
    cv2.imwrite(str(dst), padded, [cv2.IMWRITE_JPEG_QUALITY, 92])
    small = cv2.resize(padded, fit_size((w, h), 1920), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(reference), small, [cv2.IMWRITE_JPEG_QUALITY, 92])


def run_lengths(folder: Path, args: argparse.Namespace) -> int:
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
            print(f"mimicam animate failed on {clip.name} (exit {r['code']})", file=sys.stderr)
            return 1
        frames = CLIP_FRAMES * loops
        print(f"{clip.name:<17}{frames:>8}{frames / 30:>9.1f}{r['wall_s']:>8.1f}"
              f"{frames / r['wall_s']:>7.1f}{r['peak_mib']:>10.1f}")
    return 0


def run_sizes(folder: Path, args: argparse.Namespace) -> int:
    from live.io.video import probe_video

    clip = folder / "driving_2s.mp4"
    make_clip(clip, 1, folder, SHORT_FRAMES)
    print(f"{'portrait':<22}{'JPEG MB':>8}{'output':>11}{'wall s':>8}{'x ref':>7}"
          f"{'peak MiB':>10}")
    for w, h in PORTRAIT_SIZES:
        big = folder / f"portrait_{w}x{h}.jpg"
        ref = folder / f"portrait_{w}x{h}_1920px.jpg"
        make_portrait(big, (w, h), ref)
        reference = None
        for portrait in (ref, big):
            out = folder / f"out_{portrait.stem}.mp4"
            argv = ["--source-image", str(portrait), "--driving-video", str(clip),
                    "--output", str(out), "--overwrite", "--engine", args.engine]
            if args.weights:
                argv += ["--weights", args.weights]
            runs = [_memory.run_child(__file__, [json.dumps(argv)])
                    for _ in range(max(1, args.repeat))]
            if any(r["code"] != 0 for r in runs):
                print(f"mimicam animate failed on {portrait.name}", file=sys.stderr)
                return 1
            wall = min(r["wall_s"] for r in runs)
            peak = max(r["peak_mib"] for r in runs)
            reference = reference or wall
            info = probe_video(out)
            name = f"{w}x{h}" if portrait == big else f"{w}x{h} as 1920 px"
            print(f"{name:<22}{portrait.stat().st_size / 1e6:>8.1f}"
                  f"{f'{info.width}x{info.height}':>11}{wall:>8.1f}{wall / reference:>7.2f}"
                  f"{peak:>10.1f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="mesh", choices=("mesh", "fomm"))
    parser.add_argument("--weights", help="FOMM checkpoint (with --engine fomm)")
    parser.add_argument("--part", choices=("length", "size", "all"), default="all",
                        help="video length, portrait size, or both (default)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per portrait size (the best time is shown)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if _memory.missing_shared_data((DRIVING, PORTRAIT, PHOTO)):
        return 1
    with _memory.scratch_folder("mimicam-animate-memory-", keep=args.keep) as folder:
        if args.part in ("length", "all") and run_lengths(folder, args):
            return 1
        if args.part == "all":
            print()
        if args.part in ("size", "all") and run_sizes(folder, args):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
