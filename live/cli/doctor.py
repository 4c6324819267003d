"""``mimicam doctor``: checks what ``mimicam live`` needs and prints, for each, OK or the fix.

Exit status 0 when a webcam, an animation engine and an output (virtual camera, preview
window or the HTTP page) are all available, 1 otherwise. The checks are in
:mod:`live.jobs.doctor`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor", help="check the set-up for 'mimicam live' and say how to fix what is missing",
        description="Check what 'mimicam live' needs: webcams (index, name, sizes), the "
        "virtual camera (Linux: v4l2loopback loaded, device nodes, exclusive_caps, writable; "
        "Windows/macOS: OBS Virtual Camera), the animation engines and their runtimes (Paddle "
        "CPU/CUDA build, GPUs, TensorRT, onnxruntime providers), FOMM weights in the cache "
        "(layout, sha256), MediaPipe's bundled models, the HTTP port and a display for the "
        "preview. Prints OK or the fix for each, one line each. Exit status 0 when a webcam, "
        "an engine and an output are all available, 1 otherwise.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8080",
                   help="the address to check for --http (default 127.0.0.1:8080)")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from live.config import parse_host_port
    from live.jobs.doctor import Probes, run_doctor

    report = run_doctor(Probes(http=parse_host_port(args.http)))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text())
    return 0 if report.ready else 1
