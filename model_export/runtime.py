"""Model runtimes behind one small interface: named numpy inputs -> named numpy outputs.

:func:`create_runtime` is the only place that knows the backends:

``paddle-cpu``
    Paddle Inference on the CPU with oneDNN and a thread count (optionally oneDNN bf16).
``paddle-gpu``
    Paddle Inference on a CUDA device (optionally fp16).
``paddle-trt``
    Paddle Inference with TensorRT subgraphs (fp16 by default on request), the serialized
    engines cached in ``<model dir>/trt_cache`` and, for graphs with dynamic axes, shape
    ranges tuned once into ``<model dir>/trt_cache/<graph>.shapes.pbtxt``.
``onnxruntime``
    ONNX Runtime on the CPU, running the ``.onnx`` file exported from the same program.
``dygraph``
    The Paddle ``Layer`` objects themselves, run eagerly: the reference, never picked by
    ``auto``.

``auto`` tries, in order of measured preference for the machine, the backends this install
can run (``paddle-trt``, ``paddle-gpu`` on a CUDA build with a GPU; then ``onnxruntime``,
which ran FOMM-like nets 1.3-1.5x faster than ``paddle-cpu`` on our CPUs; then ``paddle-cpu``)
and logs which one it picked and why. Asking for a backend that cannot run raises one
:class:`~calibrate.errors.BackendError` listing every backend tried and why each failed; there is
never a silent fallback.

What each Paddle backend configures is computed by :func:`paddle_config_options`, a pure
function returning a list of :class:`ConfigCall` (so tests can check the GPU and TensorRT
set-ups on a machine without a GPU), then applied by :func:`apply_config_options`.

Heavy libraries (paddle, onnxruntime) are imported only when a runtime is created.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from calibrate.errors import BackendError
from model_export.manifest import GraphSpec, Manifest, ManifestError, read_manifest

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("paddle-cpu", "paddle-gpu", "paddle-trt", "onnxruntime", "dygraph")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
Precision = Literal["fp32", "fp16", "bf16"]

TRT_CACHE_DIR = "trt_cache"
_GPU_MEMORY_POOL_MB = 256
_TRT_WORKSPACE = 1 << 30


@runtime_checkable
class Runtime(Protocol):
    """One loaded inference graph. Not thread-safe: use one runtime per thread."""

    backend: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; ``inputs`` maps every input name to an array of its spec's dtype/shape."""
        ...

    def close(self) -> None:
        """Release the graph; calling it twice is harmless."""
        ...


# --------------------------------------------------------------------------- platform probe


@dataclass(frozen=True, slots=True)
class Platform:
    """What this install can run (probed once by :func:`detect_platform`)."""

    paddle_version: str | None = None
    paddle_error: str = ""
    cuda_compiled: bool = False
    gpu_count: int = 0
    trt_version: tuple[int, ...] = (0, 0, 0)
    onnxruntime_version: str | None = None
    onnxruntime_error: str = ""
    onednn_bf16: bool = False

    @property
    def has_gpu(self) -> bool:
        return self.cuda_compiled and self.gpu_count > 0


_PLATFORM: Platform | None = None


def detect_platform(*, refresh: bool = False) -> Platform:
    """Probe paddle (CUDA build? GPUs? TensorRT?) and onnxruntime; cached after the first call."""
    global _PLATFORM
    if _PLATFORM is not None and not refresh:
        return _PLATFORM
    kw: dict[str, Any] = {}
    try:
        import paddle

        kw["paddle_version"] = paddle.__version__
        kw["cuda_compiled"] = bool(paddle.device.is_compiled_with_cuda())
        if kw["cuda_compiled"]:
            try:
                kw["gpu_count"] = int(paddle.device.cuda.device_count())
            except Exception as exc:  # a CUDA build on a machine without a driver
                log.debug("paddle cuda device_count failed: %s", exc)
            try:
                kw["trt_version"] = tuple(paddle.inference.get_trt_compile_version())
            except Exception as exc:
                log.debug("paddle get_trt_compile_version failed: %s", exc)
        try:
            kw["onednn_bf16"] = bool(paddle.base.core.supports_bfloat16())
        except Exception as exc:
            log.debug("paddle supports_bfloat16 failed: %s", exc)
    except ImportError as exc:
        kw["paddle_error"] = f"paddlepaddle is not importable ({exc})"
    try:
        import onnxruntime

        kw["onnxruntime_version"] = onnxruntime.__version__
    except ImportError as exc:
        kw["onnxruntime_error"] = (f"onnxruntime is not installed ({exc}); "
                                   "pip install 'mimicam[onnx]'")
    _PLATFORM = Platform(**kw)
    return _PLATFORM


def auto_order(platform: Platform) -> list[str]:
    """Backends ``auto`` tries, fastest first, for this platform (dygraph never)."""
    order = ["paddle-trt", "paddle-gpu"] if platform.has_gpu else []
    return [*order, "onnxruntime", "paddle-cpu"]


def backend_problem(backend: str, *, platform: Platform, manifest: Manifest, graph: str,
                    precision: str, has_layer: bool = False) -> str | None:
    """Why ``backend`` cannot run ``graph`` here at ``precision``, or None if it can try."""
    if backend not in BACKENDS:
        return f"unknown backend; expected one of {', '.join(BACKENDS)}"
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}"
    spec = manifest.graph(graph)
    if backend == "dygraph":
        if not has_layer:
            return ("needs the network's Paddle layers (the reference; a model directory "
                    "holds only exported programs)")
        if platform.paddle_version is None:
            return platform.paddle_error or "paddlepaddle is not importable"
        return None if precision == "fp32" else f"precision {precision} not offered (fp32 only)"
    if backend == "onnxruntime":
        if platform.onnxruntime_version is None:
            return platform.onnxruntime_error or "onnxruntime is not installed"
        if precision != "fp32":
            return f"precision {precision} not offered (fp32 only)"
        path = manifest.path(graph, "onnx")
        if path is None:
            return (f"graph {spec.name!r} has no .onnx file in the model directory "
                    "(exported with --no-onnx?)")
        if not path.is_file():
            return f"{path} is missing"
        return None
    # Paddle Inference backends
    if platform.paddle_version is None:
        return platform.paddle_error or "paddlepaddle is not importable"
    for kind in ("json", "pdiparams"):
        path = manifest.path(graph, kind)
        if path is None:
            return f"graph {spec.name!r} has no .{kind} file in the model directory"
        if not path.is_file():
            return f"{path} is missing"
    if backend == "paddle-cpu":
        if precision == "fp16":
            return "precision fp16 not offered on the CPU (use fp32, or bf16 with oneDNN)"
        if precision == "bf16" and not platform.onednn_bf16:
            return "precision bf16 needs a CPU with AVX512-BF16/AMX (oneDNN reports none)"
        return None
    if not platform.cuda_compiled:
        return (f"this Paddle {platform.paddle_version} is a CPU build (not compiled with CUDA); "
                "install a GPU build of paddlepaddle (see the README)")
    if platform.gpu_count == 0:
        return "no CUDA device visible (driver missing, or CUDA_VISIBLE_DEVICES empty)"
    if precision == "bf16":
        return "precision bf16 not offered on the GPU (use fp32 or fp16)"
    if backend == "paddle-trt" and not any(platform.trt_version):
        return "this Paddle GPU build was compiled without TensorRT"
    return None


# --------------------------------------------------------------------------- Paddle config


@dataclass(frozen=True, slots=True)
class PaddleEnum:
    """A ``paddle.inference.PrecisionType`` member named in a :class:`ConfigCall`."""

    name: str


@dataclass(frozen=True, slots=True)
class ConfigCall:
    """One method call on a ``paddle.inference.Config``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def paddle_config_options(
    backend: str,
    *,
    precision: str = "fp32",
    threads: int | None = None,
    device_id: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    inputs: Sequence[Any] = (),
    shape_file: str | os.PathLike[str] | None = None,
    collect_shapes: bool = False,
    max_batch: int = 1,
) -> list[ConfigCall]:
    """What to set on a ``paddle.inference.Config`` for ``backend`` (pure; nothing is imported).

    ``inputs`` are the graph's :class:`~model_export.manifest.TensorSpec` (TensorRT needs shape
    ranges for axes given as -1: the tuned ``shape_file`` when it exists, else ranges from the
    specs with batch 1..``max_batch``). ``collect_shapes`` builds the one-off tuning run instead
    (GPU, no TensorRT, record shape ranges into ``shape_file``).
    ``enable_memory_optim`` is never set: it fails on Paddle 3.2's ``.json`` programs.
    """
    if backend not in ("paddle-cpu", "paddle-gpu", "paddle-trt"):
        raise ValueError(f"not a Paddle Inference backend: {backend!r}")
    calls = [ConfigCall("disable_glog_info"), ConfigCall("switch_ir_optim", (True,))]
    if backend == "paddle-cpu":
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"paddle-cpu: precision {precision!r}; expected fp32 or bf16")
        calls.append(ConfigCall("enable_mkldnn"))
        n = threads if threads is not None else (os.cpu_count() or 1)
        calls.append(ConfigCall("set_cpu_math_library_num_threads", (int(n),)))
        if precision == "bf16":
            calls.append(ConfigCall("enable_mkldnn_bfloat16"))
        return calls
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"{backend}: precision {precision!r}; expected fp32 or fp16")
    half = precision == "fp16"
    if backend == "paddle-gpu" or collect_shapes:
        gpu_precision = PaddleEnum("Half" if half and not collect_shapes else "Float32")
        calls.append(ConfigCall("enable_use_gpu", (_GPU_MEMORY_POOL_MB, int(device_id)),
                                {"precision_mode": gpu_precision}))
        if collect_shapes:
            if shape_file is None:
                raise ValueError("collect_shapes needs shape_file")
            calls.append(ConfigCall("collect_shape_range_info", (str(shape_file),)))
        return calls
    # paddle-trt: the GPU runs in fp32 outside TensorRT subgraphs; TensorRT in fp16 if asked.
    calls.append(ConfigCall("enable_use_gpu", (_GPU_MEMORY_POOL_MB, int(device_id)),
                            {"precision_mode": PaddleEnum("Float32")}))
    calls.append(ConfigCall("enable_tensorrt_engine", (), {
        "workspace_size": _TRT_WORKSPACE,
        "max_batch_size": int(max_batch),
        "min_subgraph_size": 3,
        "precision_mode": PaddleEnum("Half" if half else "Float32"),
        "use_static": True,  # serialize built engines into the optim cache dir
        "use_calib_mode": False,
    }))
    if cache_dir is not None:
        calls.append(ConfigCall("set_optim_cache_dir", (str(cache_dir),)))
    dynamic = [t for t in inputs if any(d == -1 for d in t.shape)]
    if dynamic:
        if shape_file is not None and Path(shape_file).is_file():
            calls.append(ConfigCall("enable_tuned_tensorrt_dynamic_shape",
                                    (str(shape_file), True)))
        else:
            lo = {t.name: [1 if d == -1 else d for d in t.shape] for t in inputs}
            hi = {t.name: [max_batch if d == -1 else d for d in t.shape] for t in inputs}
            calls.append(ConfigCall("set_trt_dynamic_shape_info", (lo, hi, lo)))
    return calls


def _resolve_paddle_enum(value: Any) -> Any:
    if isinstance(value, PaddleEnum):
        from paddle import inference

        return getattr(inference.PrecisionType, value.name)
    return value


def apply_config_options(config: Any, calls: Iterable[ConfigCall],
                         resolve: Callable[[Any], Any] = _resolve_paddle_enum) -> None:
    """Call each :class:`ConfigCall` on ``config`` (enum markers resolved by ``resolve``)."""
    for call in calls:
        args = tuple(resolve(a) for a in call.args)
        kwargs = {k: resolve(v) for k, v in call.kwargs.items()}
        getattr(config, call.method)(*args, **kwargs)


# --------------------------------------------------------------------------- runtimes


def _check_inputs(spec: GraphSpec, inputs: Mapping[str, np.ndarray]) -> None:
    missing = [n for n in spec.input_names if n not in inputs]
    extra = [n for n in inputs if n not in spec.input_names]
    if missing or extra:
        raise ValueError(f"{spec.name}: expected inputs {list(spec.input_names)}, "
                         f"got {sorted(inputs)}")
    for t in spec.inputs:
        t.check(inputs[t.name], spec.name)


class _BaseRuntime:
    backend = ""

    def __init__(self, spec: GraphSpec) -> None:
        self.spec = spec
        self.input_names = spec.input_names
        self.output_names = spec.output_names
        self._closed = False

    def __enter__(self) -> _BaseRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec.name} backend={self.backend}>"

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def close(self) -> None:
        self._closed = True


class PaddleInferenceRuntime(_BaseRuntime):
    """A ``paddle.inference`` predictor; input/output handles looked up once, here."""

    def __init__(self, spec: GraphSpec, json_path: Path, params_path: Path, backend: str,
                 calls: Sequence[ConfigCall]) -> None:
        super().__init__(spec)
        from paddle import inference

        self.backend = backend
        self.config_calls = tuple(calls)
        config = inference.Config(str(json_path), str(params_path))
        apply_config_options(config, calls)
        self._predictor: Any = inference.create_predictor(config)
        names = list(self._predictor.get_input_names())
        if sorted(names) != sorted(spec.input_names):
            raise ManifestError(f"{json_path}: program inputs {names} do not match the "
                                f"manifest's {list(spec.input_names)}")
        out_names = list(self._predictor.get_output_names())
        if len(out_names) != len(spec.outputs):
            raise ManifestError(f"{json_path}: program has {len(out_names)} outputs, the "
                                f"manifest lists {len(spec.outputs)}")
        self._in = {n: self._predictor.get_input_handle(n) for n in spec.input_names}
        # Program outputs keep the order of the Layer's return tuple (fetch_name_0, ...).
        self._out = [(t.name, self._predictor.get_output_handle(n))
                     for t, n in zip(spec.outputs, out_names, strict=True)]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._ensure_open()
        _check_inputs(self.spec, inputs)
        for name, handle in self._in.items():
            arr = np.ascontiguousarray(inputs[name])
            handle.reshape(list(arr.shape))
            handle.copy_from_cpu(arr)
        self._predictor.run()
        return {name: handle.copy_to_cpu() for name, handle in self._out}

    def close(self) -> None:
        if not self._closed:
            self._in.clear()
            self._out.clear()
            self._predictor = None
        super().close()


class OnnxRuntime(_BaseRuntime):
    """An ``onnxruntime.InferenceSession`` on the CPU."""

    backend = "onnxruntime"

    def __init__(self, spec: GraphSpec, onnx_path: Path, threads: int | None) -> None:
        super().__init__(spec)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads if threads is not None else (os.cpu_count() or 1))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Idle worker threads must not spin: the caller does other work between runs (face
        # tracking, keypoint maths, compositing) and spinning threads would take its cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = opts.intra_op_num_threads
        self._session: Any = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        names = [i.name for i in self._session.get_inputs()]
        if sorted(names) != sorted(spec.input_names):
            raise ManifestError(f"{onnx_path}: graph inputs {names} do not match the "
                                f"manifest's {list(spec.input_names)}")
        self._onnx_outputs = [o.name for o in self._session.get_outputs()]
        if len(self._onnx_outputs) != len(spec.outputs):
            raise ManifestError(f"{onnx_path}: graph has {len(self._onnx_outputs)} outputs, "
                                f"the manifest lists {len(spec.outputs)}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._ensure_open()
        _check_inputs(self.spec, inputs)
        outs = self._session.run(self._onnx_outputs, {n: inputs[n] for n in self.input_names})
        return dict(zip(self.output_names, outs, strict=True))

    def close(self) -> None:
        self._session = None
        super().close()


class DygraphRuntime(_BaseRuntime):
    """A Paddle ``Layer`` run eagerly (the reference). Its ``forward`` takes the inputs
    positionally in the spec's order and returns its outputs (a tensor or a tuple) in order."""

    backend = "dygraph"

    def __init__(self, spec: GraphSpec, layer: Any) -> None:
        super().__init__(spec)
        self.layer = layer
        layer.eval()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import paddle

        self._ensure_open()
        _check_inputs(self.spec, inputs)
        with paddle.no_grad():
            outs = self.layer(*[paddle.to_tensor(inputs[n]) for n in self.input_names])
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        if len(outs) != len(self.output_names):
            raise ManifestError(f"{self.spec.name}: layer returned {len(outs)} outputs, "
                                f"expected {len(self.output_names)}")
        return {n: o.numpy() for n, o in zip(self.output_names, outs, strict=True)}


def _trt_shape_file(manifest: Manifest, graph: str) -> Path | None:
    return manifest.root / TRT_CACHE_DIR / f"{graph}.shapes.pbtxt" if manifest.root else None


def _tune_trt_shapes(spec: GraphSpec, json_path: Path, params_path: Path, shape_file: Path,
                     device_id: int, max_batch: int) -> None:
    """One-off run on the GPU recording the shape range of every tensor (for TensorRT)."""
    from paddle import inference

    log.info("paddle-trt: tuning dynamic shapes of %s into %s", spec.name, shape_file)
    shape_file.parent.mkdir(parents=True, exist_ok=True)
    config = inference.Config(str(json_path), str(params_path))
    apply_config_options(config, paddle_config_options(
        "paddle-trt", device_id=device_id, shape_file=shape_file, collect_shapes=True))
    predictor = inference.create_predictor(config)
    for batch in sorted({1, max_batch}):
        for t in spec.inputs:
            shape = [batch if d == -1 else d for d in t.shape]
            handle = predictor.get_input_handle(t.name)
            handle.reshape(shape)
            handle.copy_from_cpu(np.zeros(shape, dtype=t.dtype))
        predictor.run()


def _create_one(backend: str, manifest: Manifest, graph: str, *, threads: int | None,
                precision: str, device_id: int, layer: Any, max_batch: int) -> Runtime:
    spec = manifest.graph(graph)
    if backend == "dygraph":
        return DygraphRuntime(spec, layer)
    if backend == "onnxruntime":
        path = manifest.path(graph, "onnx")
        assert path is not None
        return OnnxRuntime(spec, path, threads)
    json_path, params_path = manifest.path(graph, "json"), manifest.path(graph, "pdiparams")
    assert json_path is not None and params_path is not None
    cache_dir = shape_file = None
    if backend == "paddle-trt":
        shape_file = _trt_shape_file(manifest, graph)
        assert manifest.root is not None and shape_file is not None
        cache_dir = manifest.root / TRT_CACHE_DIR
        cache_dir.mkdir(exist_ok=True)
        dynamic = any(-1 in t.shape for t in spec.inputs)
        if dynamic and not shape_file.is_file():
            _tune_trt_shapes(spec, json_path, params_path, shape_file, device_id, max_batch)
    calls = paddle_config_options(backend, precision=precision, threads=threads,
                                  device_id=device_id, cache_dir=cache_dir, inputs=spec.inputs,
                                  shape_file=shape_file, max_batch=max_batch)
    return PaddleInferenceRuntime(spec, json_path, params_path, backend, calls)


def create_runtime(
    model: str | os.PathLike[str] | Manifest,
    graph_name: str,
    *,
    backend: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    device_id: int = 0,
    layers: Mapping[str, Any] | None = None,
    max_batch: int = 1,
    platform: Platform | None = None,
) -> Runtime:
    """Load graph ``graph_name`` of ``model`` (a model directory or a :class:`Manifest`).

    ``backend`` is one of :data:`BACKENDS` or ``"auto"``; ``threads`` the CPU threads (default:
    all cores); ``precision`` fp32, fp16 (GPU/TensorRT) or bf16 (paddle-cpu with oneDNN on a
    CPU that has it); ``layers`` maps graph names to Paddle layers for the ``dygraph`` backend.
    Raises :class:`~calibrate.errors.BackendError` listing every backend tried and why it failed.
    """
    manifest = model if isinstance(model, Manifest) else read_manifest(model)
    spec = manifest.graph(graph_name)
    plat = platform if platform is not None else detect_platform()
    layer = (layers or {}).get(graph_name)
    if backend == "auto":
        candidates = auto_order(plat)
    elif backend in BACKENDS:
        candidates = [backend]
    else:
        raise BackendError(f"unknown backend {backend!r}; expected auto or one of "
                           f"{', '.join(BACKENDS)}")
    failures: list[str] = []
    if backend == "auto" and not plat.has_gpu:
        failures.append("paddle-trt, paddle-gpu: "
                        + (backend_problem("paddle-gpu", platform=plat, manifest=manifest,
                                           graph=graph_name, precision="fp32")
                           or "no GPU"))
    for name in candidates:
        problem = backend_problem(name, platform=plat, manifest=manifest, graph=graph_name,
                                  precision=precision, has_layer=layer is not None)
        if problem is None:
            try:
                rt = _create_one(name, manifest, graph_name, threads=threads,
                                 precision=precision, device_id=device_id, layer=layer,
                                 max_batch=max_batch)
            except ManifestError:
                raise
            except Exception as exc:  # the backend's own failure: record it, try the next
                problem = f"failed to load: {type(exc).__name__}: {str(exc).strip()[:300]}"
            else:
                if backend == "auto":
                    why = "; ".join(failures) if failures else "first choice"
                    log.info("backend auto: picked %s for %s (%s)", name, spec.name,
                             f"skipped {why}" if failures else why)
                else:
                    log.debug("backend %s loaded %s", name, spec.name)
                return rt
        failures.append(f"{name}: {problem}")
    usable = [b for b in BACKENDS if b not in candidates and backend_problem(
        b, platform=plat, manifest=manifest, graph=graph_name, precision=precision,
        has_layer=layer is not None) is None]
    hint = f"; usable here: {', '.join(usable)}" if usable else ""
    raise BackendError(f"no runtime for graph {spec.name!r} (backend {backend}, precision "
                       f"{precision}); tried " + "; ".join(failures) + hint)
