"""``mimicam serve``: the animation engine on Triton Inference Server (from the
nvidia-pytriton wheel), for thin clients (``mimicam live --remote grpc://HOST:8001``) and many
users.

Triton's files and tritonclient are looked up inside the handler (``pip install
'mimicam[serve]'``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from live.cli.engine_flags import add_engine_flags, engine_options_from_args

_DESCRIPTION = """\
Serve the animation engine over gRPC and HTTP (Triton Inference Server, from the
nvidia-pytriton wheel, with the engine in its Python backend). Models: 'portrait' (a
portrait crop -> its id; prepared once, cached) and 'animate' (a driving face crop -> the
animated crop; one engine state per client session, kept on one instance), batching frames
of different sessions. Triton's Prometheus metrics are on --metrics-port. Binds 127.0.0.1
unless --host is given; beyond loopback a --token is required, and traffic is unencrypted
unless --tls-cert and --tls-key are given (gRPC over TLS; clients use grpcs://HOST:PORT).
Ctrl-C or SIGTERM stops it.
"""


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1..65535, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="serve the engine to remote clients (Triton)",
                              description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("fomm", "mesh"), default="mesh",
                   help="the engine to serve (default: mesh)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", type=Path, metavar="FILE",
                   help="FOMM checkpoint (vox-cpk.pdparams), for --engine fomm")
    w.add_argument("--model-dir", type=Path, metavar="DIR",
                   help="FOMM model directory from 'mimicam export', for --engine fomm")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else needs --token)")
    p.add_argument("--http-port", type=_port, default=8000)
    p.add_argument("--grpc-port", type=_port, default=8001)
    p.add_argument("--metrics-port", type=_port, default=8002)
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="largest dynamic batch (default 8)")
    p.add_argument("--queue-delay-us", type=int, default=500, metavar="US",
                   help="how long a request may wait for a batch to fill (default 500; the "
                   "delay adds itself to every frame of a lone client, and batches form "
                   "anyway while every instance is busy: 0 for the lowest latency, more for "
                   "bigger batches on a GPU)")
    p.add_argument("--token", default=None, metavar="SECRET",
                   help="every request must carry it (default: $MIMICAM_TOKEN); required "
                   "beyond loopback")
    p.add_argument("--portrait-cache", type=int, default=64, metavar="N",
                   help="prepared portraits kept (LRU, default 64)")
    p.add_argument("--max-sessions", type=int, default=64, metavar="N",
                   help="client sessions kept (LRU, default 64)")
    p.add_argument("--instances", type=_positive, default=None, metavar="N",
                   help="'animate' model instances running batches side by side (one "
                   "process each; default: one per CPU core, 1 for fomm)")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                   help="server certificate: gRPC over TLS (clients use grpcs://); HTTP and "
                   "metrics stay unencrypted")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM",
                   help="the certificate's private key")
    add_engine_flags(p)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from calibrate.errors import WeightsError
    from live.jobs.serve import ServeOptions, default_instances, make_spec, serve_forever

    if args.engine == "fomm" and args.weights is None and args.model_dir is None:
        from model_export.weights import find_weights

        args.weights = find_weights(args.image_size or 256)
        if args.weights is None:
            raise WeightsError("--engine fomm needs --weights FILE or --model-dir DIR (or "
                               "'mimicam weights fetch')")
    options = ServeOptions(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, max_batch=args.max_batch,
                           queue_delay_us=args.queue_delay_us,
                           token=args.token or os.environ.get("MIMICAM_TOKEN") or None,
                           portrait_cache=args.portrait_cache, max_sessions=args.max_sessions,
                           tls_cert=args.tls_cert, tls_key=args.tls_key,
                           # fomm: one model runtime computes on every core already
                           instances=args.instances or (1 if args.engine == "fomm"
                                                        else default_instances()))
    spec = make_spec(args.engine, engine_options_from_args(args), weights=args.weights,
                     model_dir=args.model_dir, options=options)
    serve_forever(spec, options)
    return 0
