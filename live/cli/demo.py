"""The ``mimicam demo`` sub-command (see :mod:`live.jobs.demo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from live.background import BACKGROUND_HELP
from live.cli.engine_flags import add_engine_flags, engine_options_from_args
from live.jobs.demo import DEFAULT_OUTPUT, DEFAULT_SIZE


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text}")
    return value


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if not 64 <= value <= 2048:
        raise argparse.ArgumentTypeError(f"expected 64..2048 pixels, got {value}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="animate a built-in portrait with a built-in motion and write an mp4",
        description="Animate a portrait (default: a built-in photo) with a scripted "
        "performance (blink, wink, smile, talk, brows, nod, turn, tilt) or with the face "
        "in a driving video, and write an H.264 mp4 that plays in a browser (or .mov, .mkv, "
        ".webm, .gif by the output's extension). Needs no camera and no model weights (the "
        "weight-free mesh engine).",
    )
    parser.add_argument("--output", "-o", default=None, metavar="VIDEO",
                        help=f"the video to write: .mp4, .mov, .mkv (H.264), .webm (VP9) or "
                        f".gif (default: {DEFAULT_OUTPUT}, which each demo run replaces; a file "
                        "named here is kept if it exists, unless --overwrite)")
    parser.add_argument("--overwrite", "-y", action="store_true",
                        help="replace the --output file if it exists")
    parser.add_argument("--portrait", metavar="IMG",
                        help="the portrait to animate (default: scikit-image's astronaut "
                        "photo); it must show exactly one face")
    parser.add_argument("--driving", metavar="VIDEO",
                        help="drive the portrait with the face in this video instead of the "
                        "scripted motion (its frame rate and audio are kept)")
    parser.add_argument("--seconds", type=_positive_float, metavar="S",
                        help="length of the result: the scripted motion is fitted to it "
                        "(default: its natural ~10 s); with --driving, the first S seconds")
    parser.add_argument("--size", type=_size, default=DEFAULT_SIZE, metavar="PX",
                        help=f"output width and height in pixels (default: {DEFAULT_SIZE}); "
                        "also the engine's crop size unless --crop-size, --image-size or "
                        "[engine.mesh] size sets one")
    parser.add_argument("--background", default=None, metavar="SPEC",
                        help="what goes behind the portrait's person: "
                        + BACKGROUND_HELP.replace("%", "%%"))
    parser.add_argument("--preview", action=argparse.BooleanOptionalAction, default=None,
                        help="show a preview window (default: when a display is available)")
    parser.add_argument("--config", type=Path, metavar="FILE.toml",
                        help="settings file with the engine's options ([engine.mesh]) and "
                        "background = \"...\"; flags override it")
    add_engine_flags(parser)
    parser.set_defaults(handler=run)


def _settings(args: argparse.Namespace) -> Any:
    """``--config``'s :class:`~live.config.EngineSettings` (the defaults without one)."""
    from calibrate.errors import InputError
    from live.config import EngineSettings, load_toml

    settings = EngineSettings()
    if args.config is not None:
        settings = load_toml(args.config, EngineSettings)
        if settings.engine not in (None, "mesh"):
            raise InputError("mimicam demo runs the weight-free mesh engine", path=args.config,
                             expected='engine = "mesh" or no engine name',
                             got=repr(settings.engine))
    return settings


def engine_options(args: argparse.Namespace) -> Any:
    """The engine options of ``--config`` (its ``[engine]`` table) with the engine flags."""
    return engine_options_from_args(args, _settings(args).engine_options)


def background(args: argparse.Namespace) -> Any:
    """The :class:`~live.background.Background`: ``--background``, else ``--config``'s."""
    from live.background import Background, require_opaque

    if args.background is None:
        return _settings(args).background
    chosen = Background.parse(args.background)
    require_opaque([chosen], "mimicam demo")
    return chosen


def run(args: argparse.Namespace) -> int:
    from live.blas import limit_openblas_threads
    from live.jobs.demo import run_demo

    limit_openblas_threads(1)  # spinning BLAS threads cost CPU time every frame (blas.py)

    # the default output is the demo's own file, replaced by every run; a named one is kept
    output = args.output if args.output is not None else DEFAULT_OUTPUT
    overwrite = args.overwrite or args.output is None
    result = run_demo(output, portrait=args.portrait, driving=args.driving,
                      seconds=args.seconds, size=args.size, preview=args.preview,
                      options=engine_options(args), overwrite=overwrite,
                      background=background(args))
    lost = f", {result.lost_frames} without a face" if result.driving is not None else ""
    audio = " with audio" if result.audio else ""
    print(f"mimicam demo: wrote {result.output} ({result.frames} frames, "
          f"{result.video_seconds:.1f} s at {result.fps:g} fps{audio}; processed at "
          f"{result.processing_fps:.1f} fps{lost})", file=sys.stderr)
    return 0
