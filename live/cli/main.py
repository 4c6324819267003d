"""The ``mimicam`` command line.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``handler`` (a callable taking the parsed namespace and returning an exit
code). Heavy libraries are imported inside handlers, never at import time, so ``--help`` is
fast and works without the model runtimes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from calibrate.errors import MimicamError
from live import __version__
from live.blas import calm_opencv_pool
from live.cli.native_logs import NativeLogFilter

log = logging.getLogger(__name__)

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "live.cli.demo",
    "live.cli.live",
    "live.cli.animate",
    "live.cli.serve",
    "live.cli.bench",
    "live.cli.weights",
    "live.cli.export",
    "live.cli.cameras",
    "live.cli.doctor",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes options only by their whole names (its sub-commands'
    parsers too): with prefixes, ``mimicam serve --port 9000`` was ``--portrait-cache
    9000`` and served on the default ports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mimicam",
        description="Animate a portrait with your own face: live to a virtual camera, "
        "or offline to a video file.",
    )
    parser.add_argument("--version", action="version", version=f"mimicam {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (repeat for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module: surface it
                raise
            continue  # sub-command not built yet in this version
        module.register(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.INFO if verbose == 0 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Paddle warns about a missing ccache (a compiler cache for its C++ extensions) on import;
    # mimicam compiles no extensions, so the warning only confuses users.
    warnings.filterwarnings("ignore", message="No ccache found")
    if verbose < 2:
        # Third-party libraries are chatty at INFO; keep them at WARNING unless -vv.
        for noisy in ("paddle", "absl", "PIL", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    _setup_logging(args.verbose, args.quiet)
    calm_opencv_pool()  # before any command loads OpenCV (live/blas.py)
    # MediaPipe, TensorFlow Lite and Paddle write info/warning lines straight to descriptor 2;
    # -vv shows them (live/cli/native_logs.py)
    quiet_native = NativeLogFilter() if args.verbose < 2 else contextlib.nullcontext()
    with quiet_native:
        try:
            code: int = args.handler(args)
        except MimicamError as exc:
            print(f"mimicam: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # the system refused a file or device (a full disk, a folder
            # gone meanwhile): its own words, no traceback (-v -v logs it)
            logging.getLogger(__name__).debug("system error", exc_info=True)
            print(f"mimicam: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("mimicam: interrupted", file=sys.stderr)
            return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
