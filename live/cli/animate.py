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

log = logging.getLogger(__name__)

RATIO_HELP_RANGE = "0.2-1.0"


def _ratio(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.4, got {text!r}") from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "animate",
        help="animate a portrait (one face or several) with a driving video, into an mp4",
        description="Animate the face(s) of a portrait with the face in a driving video and "
        "write an H.264 mp4 at the driving video's frame rate, with its audio. Frames "
        "without a face in the driving video hold the previous pose.",
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--source-image", "--source_image", dest="source_image", required=True,
                    metavar="IMG", help="the portrait: a photo or painting")
    io.add_argument("--driving-video", "--driving_video", dest="driving_video", required=True,
                    metavar="VIDEO", help="the video whose face drives the portrait")
    io.add_argument("--output", "-o", required=True, metavar="MP4",
                    help="the video to write (written to a temporary name, renamed when "
                    "complete)")
    io.add_argument("--max-frames", dest="max_frames", type=int, default=None, metavar="N",
                    help="only the first N driving frames (a quick preview)")
    audio = io.add_mutually_exclusive_group()
    audio.add_argument("--audio", metavar="FILE",
                       help="take the sound from this file (default: the driving video's)")
    audio.add_argument("--no-audio", dest="no_audio", action="store_true",
                       help="write a silent video")

    motion = parser.add_argument_group("motion")
    rel = motion.add_mutually_exclusive_group()
    rel.add_argument("--relative", dest="relative", action="store_true", default=True,
                     help="move the portrait relative to the driving video's neutral frame "
                     "(default)")
    rel.add_argument("--absolute", dest="relative", action="store_false",
                     help="use the driving face's absolute keypoints (fomm only)")
    motion.add_argument("--adapt-scale", dest="adapt_scale",
                        action=argparse.BooleanOptionalAction, default=None,
                        help="scale the motion by the ratio of the faces' sizes (default: the "
                        "engine's own default; --adapt_scale also works)")
    motion.add_argument("--adapt_scale", dest="adapt_scale", action="store_const", const=True,
                        help=argparse.SUPPRESS)
    motion.add_argument("--best-frame", "--find_best_frame", dest="best_frame",
                        action="store_true",
                        help="start the motion from the driving frame whose pose best matches "
                        "the portrait (a first pass over the video's landmarks)")

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
    eng.add_argument("--backend", default=None, metavar="NAME",
                     help="FOMM runtime backend (default: auto)")
    eng.add_argument("--image-size", "--image_size", dest="image_size", type=int,
                     choices=(256, 512), default=None,
                     help="engine crop size (default: fomm 256; mesh 256 or 512 by the "
                     "faces' size in the picture)")
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~live.jobs.animate.AnimateConfig` for parsed arguments (raises InputError)."""
    from live.jobs.animate import AnimateConfig

    options: dict[str, Any] = {
        "source_image": Path(args.source_image),
        "driving_video": Path(args.driving_video),
        "output": Path(args.output),
        "engine": args.engine or "auto",
        "weights": Path(args.weights) if args.weights else None,
        "model_dir": Path(args.model_dir) if args.model_dir else None,
        "image_size": args.image_size,
        "relative": args.relative,
        "adapt_scale": args.adapt_scale,
        "multi_face": args.multi_face,
        "best_frame": args.best_frame,
        "audio": Path(args.audio) if args.audio else None,
        "keep_audio": not args.no_audio,
        "max_frames": args.max_frames,
    }
    if args.ratio is not None:
        options["ratio"] = args.ratio
    if args.backend is not None:
        options["backend"] = args.backend
    return AnimateConfig(**options)


def run(args: argparse.Namespace) -> int:
    from live.cli.blas import limit_openblas_threads
    from live.jobs.animate import run_animate

    limit_openblas_threads(1)  # spinning BLAS threads cost ~15 ms of CPU a frame (blas.py)

    config = config_from_args(args)
    if args.ratio is not None and not config.multi_face:
        log.warning("--ratio only applies with --multi-face; a single face is pasted back "
                    "as its whole crop with a soft edge")
    report = run_animate(config)
    print(f"mimicam animate: {report.summary()}", file=sys.stdout)
    return 0
