"""The engine flags that ``mimicam live``, ``mimicam animate`` and ``mimicam demo`` share.

Defined once here, with one meaning each (:meth:`live.engines.base.EngineOptions.apply`); a
flag that is not given leaves the settings file's ``[engine.mesh]`` / ``[engine.fomm]`` value
(or the default) alone. The other options of the engines are set in those tables.
"""

from __future__ import annotations

import argparse
from typing import Any

from live.engines.base import EngineOptions
from live.engines.options import MOUTH_MODES

IMAGE_SIZES = (256, 512)

ENGINE_FLAGS_TITLE = "engine options (the same in live, animate and demo)"
ENGINE_FLAGS_HELP = "these override the [engine.mesh] / [engine.fomm] tables of --config FILE"


def _crop_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if value < 64:
        raise argparse.ArgumentTypeError(f"expected at least 64 pixels, got {value}")
    return value


def add_engine_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the shared engine flags (as their own group) to a sub-command's parser."""
    group = parser.add_argument_group(ENGINE_FLAGS_TITLE, ENGINE_FLAGS_HELP)
    group.add_argument("--crop-size", dest="crop_size", type=_crop_size, default=None,
                       metavar="PX",
                       help="side of the face crops the engine animates (mesh size; fomm "
                       "output size, resized from the model's). Default: fomm the model's "
                       "size; mesh 512 in live, the face crop's own side in animate (256-1536), "
                       "--size in demo")
    group.add_argument("--image-size", "--image_size", dest="image_size", type=int,
                       choices=IMAGE_SIZES, default=None,
                       help="FOMM model size (256, or 512 for vox-cpk-512); the mesh engine "
                       "animates crops of this size unless --crop-size is given")
    rel = group.add_mutually_exclusive_group()
    rel.add_argument("--relative", dest="relative", action="store_const", const=True,
                     default=None,
                     help="move the portrait relative to the driving face's neutral pose "
                     "(default)")
    rel.add_argument("--absolute", dest="relative", action="store_const", const=False,
                     help="use the driving face's absolute keypoints (fomm only)")
    group.add_argument("--adapt-scale", dest="adapt_scale",
                       action=argparse.BooleanOptionalAction, default=None,
                       help="scale the motion by the ratio of the faces' sizes (default: on; "
                       "--adapt_scale also works)")
    group.add_argument("--adapt_scale", dest="adapt_scale", action="store_const", const=True,
                       help=argparse.SUPPRESS)
    group.add_argument("--smoothing", dest="smoothing",
                       action=argparse.BooleanOptionalAction, default=None,
                       help="mesh: One Euro filter on the driving landmarks against jitter "
                       "(default: on)")
    group.add_argument("--mouth", choices=MOUTH_MODES, default=None,
                       help="mesh: an opening mouth shows your own teeth and tongue, "
                       "colour-matched (driver, the default), a synthetic interior with the "
                       "portrait's own teeth (synthetic), or only the warped lips (off)")
    group.add_argument("--backend", default=None, metavar="NAME",
                       help="fomm: model runtime: auto, onnxruntime, paddle-cpu, paddle-gpu, "
                       "paddle-trt (default: auto)")
    return group


def engine_flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The shared engine flags as keyword arguments of :meth:`EngineOptions.apply` (None:
    not given)."""
    return {"crop_size": args.crop_size, "image_size": args.image_size,
            "adapt_scale": args.adapt_scale, "relative": args.relative,
            "smoothing": args.smoothing, "backend": args.backend,
            "mouth": getattr(args, "mouth", None)}


def engine_options_from_args(args: argparse.Namespace,
                             base: EngineOptions | None = None) -> EngineOptions:
    """``base`` (the settings file's options, or the defaults) with the flags that were given."""
    return (base or EngineOptions()).apply(**engine_flag_values(args))


def add_remote_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--remote URL``, ``--token`` and ``--fallback``: animate on a ``mimicam serve``
    server (``mimicam live`` and ``mimicam animate``)."""
    group = parser.add_argument_group(
        "remote engine", "animate on a 'mimicam serve' server; capture, tracking, calibration "
        "and compositing stay here, only the face crop travels")
    group.add_argument("--remote", default=None, metavar="URL",
                       help="grpc://HOST:8001 (grpcs:// with TLS, CA in $MIMICAM_TLS_CA; or "
                       "http://HOST:8000) of a 'mimicam serve' server")
    group.add_argument("--token", dest="remote_token", default=None, metavar="SECRET",
                       help="the server's --token (default: $MIMICAM_TOKEN)")
    group.add_argument("--fallback", choices=("mesh",), default=None,
                       help="with --remote: animate locally with this engine while the "
                       "server is unreachable (default: hold the last pose)")
    return group


def remote_flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The remote flags as config fields (None: not given)."""
    if args.fallback is not None and args.remote is None:
        from calibrate.errors import InputError

        raise InputError("--fallback needs --remote", expected="--remote URL --fallback mesh",
                         got="--fallback without --remote")
    return {"remote": args.remote, "remote_token": args.remote_token,
            "fallback": args.fallback}
