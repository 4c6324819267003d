"""``mimicam weights``: convert, fetch and inspect FOMM checkpoints.

* ``mimicam weights convert IN.pth.tar OUT.pdparams``: first-order-model -> PaddleGAN layout
* ``mimicam weights fetch [--size 256|512] [--dest DIR]``: download PaddleGAN's checkpoint
* ``mimicam weights info FILE``: format, sections, counts, layout check, sha256 (exit 2 when
  the layout does not match)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``weights`` sub-command and its three actions."""
    parser = subparsers.add_parser(
        "weights", help="convert, download or inspect FOMM checkpoints",
        description="Convert, download or inspect First Order Motion Model checkpoints.")
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION")
    parser.set_defaults(handler=lambda _args: _usage(parser))

    convert = actions.add_parser(
        "convert", help="convert a first-order-model .pth.tar into a PaddleGAN .pdparams",
        description="Convert the original first-order-model checkpoint (vox-cpk.pth.tar, "
                    "torch legacy or zip format; torch is not needed) into PaddleGAN's "
                    ".pdparams layout, checked against the network before writing.")
    convert.add_argument("src", type=Path, metavar="IN.pth.tar")
    convert.add_argument("dst", type=Path, metavar="OUT.pdparams")
    convert.add_argument("--overwrite", "-y", action="store_true",
                         help="replace an existing OUT.pdparams (default: keep it and stop)")
    convert.set_defaults(handler=_convert)

    fetch = actions.add_parser(
        "fetch", help="download PaddleGAN's vox checkpoint into the cache",
        description="Download PaddleGAN's vox checkpoint (vox-cpk.pdparams or "
                    "vox-cpk-512.pdparams), check it and keep it in the cache.")
    fetch.add_argument("--size", type=int, choices=(256, 512), default=256,
                       help="checkpoint for 256 or 512 px (default 256)")
    fetch.add_argument("--dest", type=Path, default=None, metavar="DIR",
                       help="folder to save it in (default: the user cache)")
    fetch.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="connection and read timeout (default 10)")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_fetch)

    info = actions.add_parser(
        "info", help="describe a checkpoint and check its layout",
        description="Print a checkpoint's format, sections, key counts, value totals, layout "
                    "check and sha256. Exit status 2 when the layout does not match.")
    info.add_argument("path", type=Path, metavar="FILE")
    info.set_defaults(handler=_info)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _convert(args: argparse.Namespace) -> int:
    from live.io.video import check_output_file
    from model_export.checkpoint import convert_torch_checkpoint

    # a file already there is the user's (a name typed by mistake): kept unless -y
    check_output_file(args.dst, what="converted checkpoint", inputs={"checkpoint": args.src},
                      overwrite=args.overwrite)
    out = convert_torch_checkpoint(args.src, args.dst)
    print(f"wrote {out}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from model_export.weights import fetch_weights

    path = fetch_weights(args.size, dest_dir=args.dest, timeout=args.timeout,
                         progress=not args.no_progress)
    print(path)
    return 0


def _info(args: argparse.Namespace) -> int:
    from calibrate.errors import WeightsError
    from model_export.weights import inspect_weights

    info = inspect_weights(args.path)
    print(info.text)
    if not info.report.ok:
        raise WeightsError(f"{info.path}: checkpoint does not match the FOMM network layout: "
                           f"{info.report.summary()}")
    return 0
