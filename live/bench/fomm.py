"""``mimicam bench --engine fomm``: the split FOMM graphs on a runtime vs the dygraph reference.

For the vox-256 architecture (real weights if given, else seeded random), in one run:

* the exported graphs on the chosen backend: portrait encoding (once; reported apart), then
  per frame keypoint detection, normalisation (numpy) and the animator, as median and p95
  after warm-up, the per-frame total and fps;
* the same frames through the reference-style dygraph full forward, as PaddleGAN's predictor
  does it every frame (keypoints of the source and the driving image, then the whole generator
  including the source encoding), and the speed-up ratio;
* the largest difference between the two predictions (a low-precision option shows here);
* the multiply-accumulates of each part (where the time goes).

Driving frames are similarity warps of a synthetic portrait (speed does not depend on the
content). :func:`run_fomm_bench` returns a JSON-able dict; :func:`format_report` prints it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError

log = logging.getLogger(__name__)


def _stats(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms, dtype=np.float64)
    return {"median_ms": round(float(np.median(arr)), 2),
            "p95_ms": round(float(np.percentile(arr, 95)), 2), "n": len(ms)}


def synthetic_portrait(size: int, seed: int = 0) -> np.ndarray:
    """A smooth, face-sized blob pattern (RGB uint8), deterministic."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    face = np.exp(-((xx / 0.28) ** 2 + (yy / 0.36) ** 2))[..., None]
    out = 0.35 * img + 0.65 * face * np.array([0.9, 0.7, 0.6])
    return np.clip(out * 255, 0, 255).astype(np.uint8)


def driving_frames(portrait: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` similarity warps of ``portrait`` (a head nodding, turning and leaning)."""
    import cv2

    size = portrait.shape[0]
    frames = []
    for i in range(n):
        t = 2 * math.pi * i / max(n, 1)
        m = np.asarray(cv2.getRotationMatrix2D((size / 2, size / 2), 8 * math.sin(t),
                                               1 + 0.05 * math.cos(t)), dtype=np.float64)
        m[:, 2] += (0.04 * size * math.sin(2 * t), 0.03 * size * math.cos(t))
        frames.append(cv2.warpAffine(portrait, m, (size, size), borderMode=cv2.BORDER_REFLECT))
    return frames


@contextlib.contextmanager
def _count_macs(layers: list[Any]) -> Iterator[dict[str, int]]:
    """Count conv multiply-accumulates of ``layers`` while the block runs (forward hooks)."""
    from paddle import nn

    counter = {"macs": 0}

    def hook(layer: Any, inputs: Any, output: Any) -> Any:
        w = layer.weight.shape  # [out, in/groups, kh, kw]
        counter["macs"] += int(np.prod(output.shape)) * int(np.prod(w[1:]))
        return None

    handles = [sub.register_forward_post_hook(hook)
               for layer in layers for sub in layer.sublayers(include_self=True)
               if isinstance(sub, nn.Conv2D)]
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()


def _gmacs(fn: Callable[[], Any], layers: list[Any]) -> float:
    with _count_macs(layers) as c:
        fn()
    return round(c["macs"] / 1e9, 2)


def _set_dygraph_threads(threads: int) -> None:
    try:
        import paddle

        paddle.base.core.set_num_threads(int(threads))
    except Exception as exc:  # only a fairness nicety
        log.debug("could not set paddle's dygraph threads: %s", exc)


def run_fomm_bench(*, backend: str = "auto", weights: str | os.PathLike[str] | None = None,
                   model_dir: str | os.PathLike[str] | None = None, frames: int = 30,
                   warmup: int = 3, reference_frames: int = 5, threads: int | None = None,
                   precision: str = "fp32", image_size: int = 256, seed: int = 0,
                   config: Any = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the exported FOMM graphs on ``backend`` against the dygraph full forward.

    ``model_dir``: an existing export to time (its weights must be ``weights``, or seeded
    random with ``seed``); otherwise the graphs are exported into a temporary folder first.
    ``frames`` timed frames after ``warmup``; ``reference_frames`` of them also through the
    dygraph reference (it is slow). ``config``: vox-256 unless given (tests use a tiny one).
    Returns a JSON-able dict.
    """
    import paddle

    from calibrate.keypoints import Keypoints, normalize_kp
    from model_export.export import build_fomm_layers, export_fomm, load_manifest
    from model_export.fomm import FommConfig
    from model_export.fomm_runtime import FommRuntime, to_input
    from model_export.split import SourceEncoder

    say = progress or (lambda _msg: None)
    if frames < 1 or warmup < 0 or reference_frames < 0:
        raise InputError("bad frame counts", expected="frames >= 1, warmup >= 0, "
                         "reference frames >= 0",
                         got=f"{frames}, {warmup}, {reference_frames}")
    n_threads = int(threads if threads is not None else (os.cpu_count() or 1))
    config = config or FommConfig.vox256()
    arch = "vox-256" if config == FommConfig.vox256() else "custom"
    inference = True
    if model_dir is not None:  # build the reference to match the export
        info = load_manifest(model_dir).info
        inference = info.get("generator_mode") != "paper"
        if info.get("config") != dataclasses.asdict(config):
            raise InputError("the model directory holds another FOMM configuration",
                             path=Path(model_dir), expected=arch, got="a different config")
        made_from = dict(info.get("weights") or {})
        if weights is None and made_from.get("source") == "random":
            seed = int(made_from.get("seed", seed))
        elif weights is None:
            raise InputError("the model directory was exported from a checkpoint",
                             path=Path(model_dir), expected="the same file given with --weights "
                             "(the dygraph reference needs it)", got="no --weights")
    say("building the dygraph networks")
    kp_net, gen, winfo = build_fomm_layers(weights, config=config, seed=seed,
                                           inference=inference)
    tmp_dir: Path | None = None
    try:
        if model_dir is None:
            tmp_dir = Path(tempfile.mkdtemp(prefix="mimicam-bench-"))
            model_dir = tmp_dir / "model"
            say("exporting the graphs (once; pass --model DIR to reuse an export)")
            t = time.perf_counter()
            export_fomm(weights, model_dir, config=config, image_size=image_size, seed=seed,
                        onnx=True)
            export_s = time.perf_counter() - t
        else:
            export_s = None
            load_manifest(model_dir, weights_sha256=winfo["sha256"])
        say(f"loading the runtimes (backend {backend})")
        t = time.perf_counter()
        fomm = FommRuntime(model_dir, backend=backend, threads=n_threads, precision=precision)
        load_s = time.perf_counter() - t
        size = fomm.image_size
        portrait = synthetic_portrait(size, seed)
        clip = driving_frames(portrait, warmup + frames)

        # the reference: PaddleGAN-style full forward every frame, in dygraph
        _set_dygraph_threads(n_threads)
        src_t = paddle.to_tensor(to_input(portrait, size))
        with paddle.no_grad():
            k0 = kp_net(paddle.to_tensor(to_input(clip[0], size)))
        ref_kp0 = Keypoints(k0["value"].numpy()[0], k0["jacobian"].numpy()[0])

        def full_forward(img: np.ndarray) -> np.ndarray:
            with paddle.no_grad():
                kp_s = kp_net(src_t)
                kp_dt = kp_net(paddle.to_tensor(to_input(img, size)))
                ks = Keypoints(kp_s["value"].numpy()[0], kp_s["jacobian"].numpy()[0])
                kd = Keypoints(kp_dt["value"].numpy()[0], kp_dt["jacobian"].numpy()[0])
                kn = normalize_kp(ks, kd, ref_kp0, relative=True, adapt_scale=True)
                assert kn.jacobian is not None
                out = gen(src_t, kp_driving={"value": paddle.to_tensor(kn.value[None]),
                                             "jacobian": paddle.to_tensor(kn.jacobian[None])},
                          kp_source=kp_s)
                result: np.ndarray = out["prediction"].numpy()
                return result

        ref_ms: list[float] = []
        max_diff = 0.0
        with fomm:
            # portrait encoding: once per portrait, excluded from the per-frame cost
            enc_ms = []
            for _ in range(3):
                t = time.perf_counter()
                state = fomm.encode_source(portrait)
                enc_ms.append((time.perf_counter() - t) * 1e3)
            kp0 = fomm.detect(clip[0])
            stage: dict[str, list[float]] = {"kp_detector": [], "normalize": [], "animator": [],
                                             "frame": []}
            say(f"timing {frames} frames after {warmup} warm-up; the first "
                f"{reference_frames} also through the dygraph full forward, interleaved")
            cpu_frame: list[float] = []
            cpu_ref: list[float] = []
            for i, img in enumerate(clip):
                c0 = time.process_time()
                t0 = time.perf_counter()
                kp_d = fomm.detect(img)
                t1 = time.perf_counter()
                kp_n = normalize_kp(state.kp, kp_d, kp0, relative=True, adapt_scale=True)
                t2 = time.perf_counter()
                pred = fomm.animate_array(state, kp_n)
                t3 = time.perf_counter()
                c3 = time.process_time()
                if i < warmup:
                    if i == 0 and reference_frames:
                        full_forward(img)  # warm the reference up too
                    continue
                stage["kp_detector"].append((t1 - t0) * 1e3)
                stage["normalize"].append((t2 - t1) * 1e3)
                stage["animator"].append((t3 - t2) * 1e3)
                stage["frame"].append((t3 - t0) * 1e3)
                cpu_frame.append((c3 - c0) * 1e3)
                if len(ref_ms) < reference_frames:
                    # right after the runtime frame, so both see the same machine load
                    c = time.process_time()
                    t = time.perf_counter()
                    ref = full_forward(img)
                    ref_ms.append((time.perf_counter() - t) * 1e3)
                    cpu_ref.append((time.process_time() - c) * 1e3)
                    max_diff = max(max_diff, float(np.abs(ref - pred).max()))
            backends = dict(fomm.backends)

        # where the time goes: multiply-accumulates per part (one eager pass, hooks)
        x = paddle.to_tensor(to_input(portrait, size))
        with paddle.no_grad():
            kp_s = kp_net(x)
            macs = {
                "kp_detector": _gmacs(lambda: kp_net(x), [kp_net]),
                "source_encoder": _gmacs(lambda: SourceEncoder(gen)(x), [gen]),
                "dense_motion": _gmacs(lambda: gen.dense_motion_network(
                    source_image=x, kp_driving=kp_s, kp_source=kp_s),
                    [gen.dense_motion_network]),
                "generator_full": _gmacs(lambda: gen(x, kp_driving=kp_s, kp_source=kp_s),
                                         [gen]),
            }
        macs["animator"] = round(macs["generator_full"] - macs["source_encoder"], 2)
        macs["bottleneck_and_decoder"] = round(macs["animator"] - macs["dense_motion"], 2)
        macs["per_frame_runtime"] = round(macs["kp_detector"] + macs["animator"], 2)
        macs["per_frame_reference"] = round(2 * macs["kp_detector"] + macs["generator_full"],
                                            2)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    frame = _stats(stage["frame"])
    result: dict[str, Any] = {
        "engine": "fomm",
        "architecture": arch,
        "image_size": size,
        "weights": winfo.get("source"),
        "weights_sha256": winfo.get("sha256"),
        "backend_requested": backend,
        "backends": backends,
        "precision": precision,
        "threads": n_threads,
        "frames": frames,
        "warmup": warmup,
        "export_s": None if export_s is None else round(export_s, 1),
        "load_s": round(load_s, 2),
        "encode_source": _stats(enc_ms),
        "stages": {k: _stats(v) for k, v in stage.items() if k != "frame"},
        "per_frame": frame,
        "fps": round(1e3 / frame["median_ms"], 2),
        "reference": {"name": "dygraph full forward (kp source + kp driving + generator)",
                      **(_stats(ref_ms) if ref_ms else {"n": 0})},
        "speedup": (round(float(np.median(ref_ms)) / frame["median_ms"], 2) if ref_ms
                    else None),
        # the same ratio frame by frame (reference and runtime timed back to back)
        "speedup_paired": (round(float(np.median(
            np.asarray(ref_ms) / np.asarray(stage["frame"][:len(ref_ms)]))), 2)
            if ref_ms else None),
        # CPU time (all threads) hardly depends on other processes' load, unlike wall time
        "cpu_ms_per_frame": round(float(np.median(cpu_frame)), 1),
        "cpu_ms_reference": round(float(np.median(cpu_ref)), 1) if cpu_ref else None,
        "speedup_cpu_time": (round(float(np.median(cpu_ref)) / float(np.median(cpu_frame)), 2)
                             if cpu_ref else None),
        "max_abs_diff_vs_reference": round(max_diff, 7) if ref_ms else None,
        "gmacs": macs,
    }
    return result


def format_report(r: Mapping[str, Any]) -> str:
    """Human-readable lines for one :func:`run_fomm_bench` result."""
    be = r["backends"]
    lines = [
        f"FOMM {r['architecture']} {r['image_size']} px, weights {r['weights']}, "
        f"backend {be['animator']} ({r['backend_requested']} requested), "
        f"precision {r['precision']}, {r['threads']} threads",
        f"  {'stage':<26}{'median ms':>11}{'p95 ms':>10}",
    ]

    def row(name: str, s: Mapping[str, Any]) -> str:
        return f"  {name:<26}{s['median_ms']:>11.1f}{s['p95_ms']:>10.1f}"

    lines.append(row("encode portrait (once)", r["encode_source"]))
    for name, s in r["stages"].items():
        lines.append(row(name, s))
    lines.append(row("per frame", r["per_frame"]) + f"   = {r['fps']:.2f} fps")
    ref = r["reference"]
    if ref.get("n"):
        lines.append(row("dygraph full forward", ref))
        lines.append(f"  speed-up vs dygraph full forward: {r['speedup']:.2f}x (medians), "
                     f"{r['speedup_paired']:.2f}x (median of back-to-back pairs); max |diff| "
                     f"of predictions {r['max_abs_diff_vs_reference']:.2e}")
        lines.append(f"  CPU time per frame {r['cpu_ms_per_frame']:.0f} ms vs reference "
                     f"{r['cpu_ms_reference']:.0f} ms: {r['speedup_cpu_time']:.2f}x "
                     "(less sensitive to other load)")
    g = r["gmacs"]
    lines.append(f"  GMACs: kp_detector {g['kp_detector']}, source_encoder "
                 f"{g['source_encoder']} (cached), dense_motion {g['dense_motion']}, bottleneck+"
                 f"decoder {g['bottleneck_and_decoder']}; per frame {g['per_frame_runtime']} vs "
                 f"reference {g['per_frame_reference']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI glue

_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--backend", {"default": "auto", "help": "fomm: model runtime (auto, onnxruntime, "
                   "paddle-cpu, paddle-gpu, paddle-trt)"}),
    ("--weights", {"type": Path, "default": None, "metavar": "FILE",
                   "help": "fomm: checkpoint to time (default: seeded random vox-256 weights)"}),
    ("--model", {"type": Path, "default": None, "metavar": "DIR",
                 "help": "fomm: reuse this `mimicam export` directory instead of exporting"}),
    ("--frames", {"type": int, "default": 30, "help": "timed frames (default 30)"}),
    ("--warmup", {"type": int, "default": 3, "help": "warm-up frames (default 3)"}),
    ("--reference-frames", {"type": int, "default": 5,
                            "help": "fomm: frames through the dygraph reference (default 5)"}),
    ("--threads", {"type": int, "default": None, "help": "CPU threads (default: all cores)"}),
    ("--precision", {"choices": ("fp32", "fp16", "bf16"), "default": "fp32",
                     "help": "fomm: fp32, fp16 (GPU) or bf16 (paddle-cpu on AMX/AVX512-BF16)"}),
    ("--json", {"action": "store_true", "help": "print the result as JSON"}),
)


def add_fomm_arguments(parser: Any) -> None:
    """Add the flags :func:`run_from_args` reads, skipping any the parser already has."""
    have = set(getattr(parser, "_option_string_actions", {}))
    for flag, kwargs in _FLAGS:
        if flag not in have:
            parser.add_argument(flag, **kwargs)


def run_from_args(args: Any) -> int:
    """The ``mimicam bench --engine fomm`` job: run, print the report (or JSON), return 0."""
    import json
    import sys

    def opt(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    quiet = bool(opt("json", False))
    result = run_fomm_bench(
        backend=opt("backend", "auto"), weights=opt("weights", None),
        model_dir=opt("model", None), frames=opt("frames", 30), warmup=opt("warmup", 3),
        reference_frames=opt("reference_frames", 5), threads=opt("threads", None),
        precision=opt("precision", "fp32"),
        progress=None if quiet else (lambda msg: print(f"bench fomm: {msg}", file=sys.stderr)))
    print(json.dumps(result, indent=1) if quiet else format_report(result))
    return 0
