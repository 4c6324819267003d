"""``mimicam export``: write a FOMM model directory (three inference graphs + manifest).

    mimicam export --weights vox-cpk.pdparams --out models/vox256 [--image-size 256|512]
                   [--no-onnx] [--paper-mode]
    mimicam export --random-weights [--seed N] --out models/random   (for tests/benchmarks)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export", help="export FOMM as inference graphs (Paddle, ONNX) into a model directory",
        description="Export the First Order Motion Model as three inference graphs (keypoint "
                    "detector, source encoder, per-frame animator) in Paddle 3 format "
                    "(.json + .pdiparams) and, by default, ONNX, with a manifest.json that "
                    "is checked when the directory is loaded.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, metavar="FILE",
                        help="FOMM checkpoint (PaddleGAN vox-cpk.pdparams, or a converted "
                             "first-order-model file)")
    source.add_argument("--random-weights", action="store_true",
                        help="seeded random weights of the vox-256 architecture (for tests and "
                             "benchmarks; the output is not a face)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="model directory to write (replaced if it is an earlier export)")
    parser.add_argument("--image-size", type=int, choices=(256, 512), default=256,
                        help="input/output size in pixels (default 256; 512 for "
                             "vox-cpk-512.pdparams)")
    parser.add_argument("--no-onnx", action="store_true",
                        help="skip the .onnx files (then the onnxruntime backend is unavailable)")
    parser.add_argument("--paper-mode", action="store_true",
                        help="the original paper's generator instead of PaddleGAN's predictor "
                             "border handling")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-weights")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from model_export.export import export_fomm

    weights = None if args.random_weights else args.weights
    manifest = export_fomm(weights, args.out, image_size=args.image_size, onnx=not args.no_onnx,
                           seed=args.seed, inference=not args.paper_mode)
    info = manifest.info
    print(f"wrote {args.out}: graphs {', '.join(manifest.graphs)}; {info['image_size']} px; "
          f"weights {info['weights']['sha256']}")
    for name, spec in manifest.graphs.items():
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in spec.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in spec.outputs)
        print(f"  {name}: {ins} -> {outs} [{', '.join(sorted(spec.files))}]")
    return 0
