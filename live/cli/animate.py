"""The ``mimicam animate`` sub-command (see :mod:`live.jobs.animate`).

Flags follow PaddleGAN's first-order demo (``--source_image``, ``--driving_video``,
``--relative``, ``--adapt_scale``, ``--ratio``, ``--multi_person``, ``--find_best_frame``,
``--image_size``, ``--weight_path`` are accepted as aliases), with ``--output`` naming the
video file to write.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from live.background import BACKGROUND_HELP
from live.cli.engine_flags import (
    add_engine_flags,
    add_remote_flags,
    engine_options_from_args,
    remote_flag_values,
)
from live.config import FRAMINGS

log = logging.getLogger(__name__)

RATIO_HELP_RANGE = "0.2-1.0"


def _ratio(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.4, got {text!r}") from None


def _max_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if value != 0 and value < 64:
        raise argparse.ArgumentTypeError(f"expected 0 (keep the size) or >= 64 pixels, "
                                         f"got {value}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "animate",
        help="animate a portrait (one face or several) with a driving video, into a video file",
        description="Animate the face(s) of a portrait with the face in a driving video and "
        "write a video at the driving video's frame rate, with its audio: .mp4, .mov or .mkv "
        "(H.264 + AAC), .webm (VP9 + Opus) or .gif (animated GIF, no sound). Frames without a "
        "face in the driving video hold the previous pose. An existing output file is kept "
        "unless --overwrite is given; an output that is one of the inputs is refused.",
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--source-image", "--source_image", dest="source_image", required=True,
                    metavar="IMG", help="the portrait: a photo or painting")
    io.add_argument("--driving-video", "--driving_video", dest="driving_video", required=True,
                    metavar="VIDEO", help="the video whose face drives the portrait")
    io.add_argument("--output", "-o", required=True, metavar="VIDEO",
                    help="the video to write: .mp4, .mov, .mkv (H.264), .webm (VP9) or .gif "
                    "(written to a temporary name, renamed when complete)")
    io.add_argument("--overwrite", "-y", action="store_true",
                    help="replace the output file if it exists (default: keep it and stop)")
    io.add_argument("--max-size", dest="max_size", type=_max_size, default=None, metavar="PX",
                    help="long side of the output in pixels: a larger portrait is scaled down "
                    "to it before it is animated (default 1920; 0 keeps the portrait's size)")
    io.add_argument("--framing", choices=FRAMINGS, default=None,
                    help="full (default): the whole picture at its size; shoulders or head: a "
                    "16:9 video framed around the (largest) face like a webcam picture (the "
                    "face a third, or half, of the height), as 'mimicam live' shows it")
    io.add_argument("--background", default=None, metavar="SPEC",
                    help="what goes behind the portrait's people: "
                    + BACKGROUND_HELP.replace("%", "%%") + ", or transparent: an alpha "
                    "channel, for an output ending in .webm (VP9 with alpha) or .mov (ProRes "
                    "4444)")
    io.add_argument("--max-frames", dest="max_frames", type=int, default=None, metavar="N",
                    help="only the first N driving frames (a quick preview)")
    audio = io.add_mutually_exclusive_group()
    audio.add_argument("--audio", metavar="FILE",
                       help="take the sound from this file (default: the driving video's)")
    audio.add_argument("--no-audio", dest="no_audio", action="store_true",
                       help="write a silent video")

    motion = parser.add_argument_group("motion")
    motion.add_argument("--best-frame", "--find_best_frame", dest="best_frame",
                        action="store_true",
                        help="start the motion from the driving frame whose pose best matches "
                        "the portrait (a first pass over the video's landmarks)")
    motion.add_argument("--lookahead", type=int, default=None, metavar="N",
                        help="mesh engine: smooth the driving landmarks over N frames before "
                        "and after each one, without lag (default 3; 0: the causal filter "
                        "live uses)")

    faces = parser.add_argument_group("faces")
    faces.add_argument("--multi-face", "--multi_person", dest="multi_face", action="store_true",
                       help="animate every face in the source image (each its own crop and "
                       "paste-back), all driven by the same face")
    faces.add_argument("--ratio", type=_ratio, default=None, metavar="R",
                       help="with --multi-face: radius of the pasted region around each face, "
                       "as a share of its face crop's side (default 0.4; the seed used "
                       f"0.4-0.5; allowed {RATIO_HELP_RANGE})")

    eng = parser.add_argument_group("engine")
    eng.add_argument("--engine", choices=("fomm", "mesh"), default=None,
                     help="fomm (First Order Motion Model, needs weights) or mesh "
                     "(weight-free); default: fomm when weights are available, else mesh")
    eng.add_argument("--weights", "--weight_path", dest="weights", metavar="PDPARAMS",
                     help="FOMM checkpoint (vox-cpk.pdparams); default: the one fetched with "
                     "'mimicam weights fetch'")
    eng.add_argument("--model-dir", dest="model_dir", metavar="DIR",
                     help="a FOMM model directory written by 'mimicam export' (instead of "
                     "--weights)")
    eng.add_argument("--config", type=Path, metavar="FILE.toml",
                     help="settings file: keys of AnimateConfig (engine, multi_face, ratio, "
                     "crop_scale, crf, ...) and the engines' options in [engine.mesh] / "
                     "[engine.fomm]; flags override it")
    add_engine_flags(parser)
    add_remote_flags(parser)
    parser.set_defaults(handler=run)


# AnimateConfig's engine shorthands are flags here; in a settings file each has one place.
_SHORTHANDS = {
    "backend": "[engine.fomm] backend",
    "image_size": "[engine.fomm] image_size and [engine.mesh] size",
    "relative": "[engine.fomm] relative",
    "adapt_scale": "adapt_scale in [engine.mesh] / [engine.fomm]",
}
_FROM_FLAGS = ("source_image", "driving_video", "output", "overwrite")


def _settings(path: Path | None) -> dict[str, Any]:
    """The keys of ``--config`` (strict: the engine shorthands and the paths given as flags
    are refused, naming the key)."""
    from calibrate.errors import InputError
    from live.config import read_toml

    if path is None:
        return {}
    data = read_toml(path)
    for key in sorted(set(data) & {*_SHORTHANDS, *_FROM_FLAGS}):
        where = _SHORTHANDS.get(key, f"--{key.replace('_', '-')} on the command line")
        raise InputError(f"config key {key!r} does not belong in an animate settings file",
                         path=path, expected=f"{where}", got=f"{key} = {data[key]!r}")
    return data


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~live.jobs.animate.AnimateConfig` for parsed arguments (raises InputError):
    defaults, then ``--config FILE.toml``, then the flags that were given."""
    from calibrate.errors import InputError
    from live.config import from_mapping, override
    from live.jobs.animate import AnimateConfig

    try:
        config = from_mapping(AnimateConfig, {
            **_settings(args.config),
            "source_image": Path(args.source_image),
            "driving_video": Path(args.driving_video),
            "output": Path(args.output),
            "overwrite": bool(args.overwrite),
        })
    except InputError as exc:
        if args.config is None or exc.path is not None:
            raise
        raise InputError(str(exc), path=args.config) from None
    config = override(
        config,
        engine=args.engine,
        weights=Path(args.weights) if args.weights else None,
        model_dir=Path(args.model_dir) if args.model_dir else None,
        multi_face=True if args.multi_face else None,
        best_frame=True if args.best_frame else None,
        audio=Path(args.audio) if args.audio else None,
        keep_audio=False if args.no_audio else None,
        max_frames=args.max_frames,
        lookahead=args.lookahead,
        max_size=args.max_size,
        framing=args.framing,
        ratio=args.ratio,
        background=args.background,
        **remote_flag_values(args),
    )
    return override(config, engine_options=engine_options_from_args(args,
                                                                     config.engine_options))


def run(args: argparse.Namespace) -> int:
    from live.blas import limit_openblas_threads
    from live.jobs.animate import run_animate

    limit_openblas_threads(1)  # spinning BLAS threads cost ~15 ms of CPU a frame (blas.py)

    config = config_from_args(args)
    if args.ratio is not None and not config.multi_face:
        log.warning("--ratio only applies with --multi-face; a single face is pasted back "
                    "as its whole crop with a soft edge")
    report = run_animate(config)
    print(f"mimicam animate: {report.summary()}", file=sys.stdout)
    return 0
