"""``mimicam cameras`` (also ``mimicam live --camera list``): the cameras of this machine, with
the index to pass to ``--camera`` and the sizes each offers (:mod:`live.io.cameras`)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cameras", help="list the webcams (the index for --camera, name, sizes)",
        description="List the cameras 'mimicam live --camera N' can use: index, name, "
        "device and the frame sizes each offers; on Linux also the v4l2loopback virtual "
        "cameras. Exit status 1 when there is none.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(handler=_handle)


def print_cameras(*, as_json: bool = False) -> int:
    """Print the cameras; 0 when there is at least one, 1 when there is none."""
    from live.io.cameras import no_camera_fix, scan_cameras

    scan = scan_cameras()
    if as_json:
        print(json.dumps(scan.as_dict(), indent=2))
        return 0 if scan.cameras else 1
    if scan.cameras:
        print("cameras (use the number with mimicam live --camera N):")
        for cam in scan.cameras:
            print(f"  {cam.describe()}")
    else:
        print(f"no camera found; {no_camera_fix()}")
    if scan.virtual:
        print("virtual cameras (v4l2loopback: mimicam live sends to these):")
        for cam in scan.virtual:
            print(f"  {cam.describe()}")
    return 0 if scan.cameras else 1


def _handle(args: argparse.Namespace) -> int:
    return print_cameras(as_json=args.json)
