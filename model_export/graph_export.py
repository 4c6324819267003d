"""Export one Paddle ``Layer`` as an inference graph (Paddle 3.2 ``.json`` + ``.pdiparams``,
and optionally ``.onnx`` through paddle2onnx), and build model directories atomically.

Generic: :mod:`model_export.export` uses it for the three FOMM graphs, tests use it for small
models.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import MimicamError
from model_export.manifest import MANIFEST_NAME, GraphSpec, TensorSpec

log = logging.getLogger(__name__)

ONNX_OPSET = 16

# paddle2onnx runs in a child process: it prints to stdout and aborts the whole process
# (SIGABRT) on an operator it cannot convert. One child converts a list of graphs.
_P2O_SCRIPT = (
    "import sys, paddle2onnx\n"
    "args, opset = sys.argv[1:-1], int(sys.argv[-1])\n"
    "for i in range(0, len(args), 3):\n"
    "    print('mimicam: converting', args[i], flush=True)\n"
    "    paddle2onnx.export(args[i], args[i + 1], args[i + 2], opset_version=opset,"
    " enable_onnx_checker=True)\n"
)


class ExportError(MimicamError):
    """Exporting a graph failed."""


def _dummy(spec: TensorSpec) -> np.ndarray:
    shape = [1 if d == -1 else d for d in spec.shape]
    return np.zeros(shape, dtype=spec.dtype)


def export_graph(layer: Any, name: str, inputs: Sequence[TensorSpec], output_names: Sequence[str],
                 out_dir: str | os.PathLike[str], *, onnx: bool = True,
                 sample: Sequence[np.ndarray] | None = None) -> GraphSpec:
    """Save ``layer`` (forward(*inputs) -> tensor or tuple) as graph ``name`` in ``out_dir``.

    Output shapes and dtypes are read from one eager forward pass on ``sample`` (zeros by
    default); an output's first axis is -1 when the first input's batch axis is -1.
    Returns the graph's :class:`GraphSpec` (file names relative to ``out_dir``).
    """
    import paddle

    out = Path(out_dir)
    layer.eval()
    arrays = list(sample) if sample is not None else [_dummy(t) for t in inputs]
    with paddle.no_grad():
        result = layer(*[paddle.to_tensor(a) for a in arrays])
    if not isinstance(result, (tuple, list)):
        result = (result,)
    if len(result) != len(output_names):
        raise ExportError(f"graph {name!r}: layer returned {len(result)} outputs; expected "
                          f"{len(output_names)} ({', '.join(output_names)})")
    dynamic_batch = bool(inputs) and inputs[0].shape[:1] == (-1,)
    outputs = []
    for oname, tensor in zip(output_names, result, strict=True):
        shape = [int(d) for d in tensor.shape]
        if dynamic_batch and shape:
            shape[0] = -1
        outputs.append(TensorSpec(oname, tuple(shape), str(tensor.numpy().dtype)))
    specs = [paddle.static.InputSpec([None if d == -1 else d for d in t.shape], t.dtype,  # type: ignore[arg-type]
                                     t.name)
             for t in inputs]
    prefix = out / name
    paddle.jit.save(layer, str(prefix), input_spec=specs)
    files = {"json": f"{name}.json", "pdiparams": f"{name}.pdiparams"}
    for kind, fname in files.items():
        if not (out / fname).is_file():
            raise ExportError(f"graph {name!r}: paddle.jit.save wrote no {kind} file "
                              f"{out / fname}; expected Paddle 3.x's .json + .pdiparams")
    if onnx:
        files["onnx"] = f"{name}.onnx"
        to_onnx([(out / files["json"], out / files["pdiparams"], out / files["onnx"])])
    sizes = {kind: (out / fname).stat().st_size for kind, fname in files.items()}
    return GraphSpec(name, tuple(inputs), tuple(outputs), files, sizes)


def to_onnx(jobs: Sequence[tuple[Path, Path, Path]], *, opset: int = ONNX_OPSET) -> None:
    """Convert saved Paddle programs ``(json, pdiparams, onnx)`` to ONNX with paddle2onnx, in
    one child process; each ``.onnx`` is written to a temporary name, then renamed."""
    try:
        import paddle2onnx  # noqa: F401  (only to fail early with a clear message)
    except ImportError as exc:
        raise ExportError(f"ONNX export needs paddle2onnx ({exc}); pip install "
                          "'mimicam[onnx]', or export with --no-onnx") from None
    argv: list[str] = []
    temps = []
    for json_path, params_path, onnx_path in jobs:
        tmp = onnx_path.with_name(f".{onnx_path.name}.tmp")
        temps.append((tmp, onnx_path))
        argv += [str(json_path), str(params_path), str(tmp)]
    proc = subprocess.run([sys.executable, "-c", _P2O_SCRIPT, *argv, str(opset)],
                          capture_output=True, text=True, check=False)
    bad = [t for t, _ in temps if not t.is_file()]
    if proc.returncode != 0 or bad:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        failed = bad[0].name[1:-4] if bad else "?"
        raise ExportError(f"paddle2onnx could not convert {failed} (exit {proc.returncode}); "
                          f"expected an .onnx file. Its output ends:\n{tail}")
    for tmp, final in temps:
        os.replace(tmp, final)
        log.debug("paddle2onnx wrote %s", final)


def add_onnx(spec: GraphSpec, out_dir: str | os.PathLike[str]) -> GraphSpec:
    """``spec`` with its ``.onnx`` file recorded (after :func:`to_onnx` wrote it)."""
    out = Path(out_dir)
    files = {**spec.files, "onnx": f"{spec.name}.onnx"}
    sizes = {kind: (out / fname).stat().st_size for kind, fname in files.items()}
    return GraphSpec(spec.name, spec.inputs, spec.outputs, files, sizes)


@contextlib.contextmanager
def staged_directory(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it replaces ``out_dir``.

    ``out_dir`` may be absent, empty, or an earlier model directory (holding a manifest);
    anything else is refused before work starts, so nothing of the user's is lost.
    """
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder; expected a new or model "
                              "directory")
        if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
            raise ExportError(f"{out}: folder is not empty and holds no {MANIFEST_NAME}; "
                              "expected a new, empty or earlier model directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
