"""Export FOMM as a model directory of three inference graphs, and check one at load.

:func:`export_fomm` writes, from a checkpoint (or seeded random weights)::

    OUT/kp_detector.json/.pdiparams[/.onnx]     image -> keypoints, jacobians
    OUT/source_encoder.json/.pdiparams[/.onnx]  portrait -> cached source state (once/portrait)
    OUT/animator.json/.pdiparams[/.onnx]        source state + keypoints -> frame (per frame)
    OUT/manifest.json                           names, shapes, dtypes, precision, weights
                                                sha256, versions, image size, config

(see :mod:`model_export.split` for what each graph computes). Keypoint normalisation stays
outside the graphs. The directory is built under a temporary name next to ``OUT`` and renamed
when complete. :func:`load_manifest` reads it back and checks it (clear
:class:`~model_export.manifest.ManifestError` on any mismatch); :mod:`model_export.fomm_runtime`
runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibrate import __version__ as MIMICAM_VERSION
from calibrate.errors import InputError
from model_export.graph_export import (
    ONNX_OPSET,
    add_onnx,
    export_graph,
    staged_directory,
    to_onnx,
)
from model_export.manifest import Manifest, ManifestError, TensorSpec, read_manifest, write_manifest

if TYPE_CHECKING:
    from model_export.fomm.config import FommConfig

log = logging.getLogger(__name__)

MODEL_KIND = "fomm"
GRAPHS: tuple[str, ...] = ("kp_detector", "source_encoder", "animator")

Weights = str | os.PathLike[str] | Mapping[str, Mapping[str, np.ndarray]] | None


def graph_inputs(config: FommConfig, image_size: int) -> dict[str, tuple[TensorSpec, ...]]:
    """The named inputs of the three graphs (batch 1) for ``config`` at ``image_size``."""
    s, k, c = image_size, config.num_kp, config.num_channels
    gen = config.generator
    feat_side = s // 2**gen.num_down_blocks
    feat_ch = min(gen.max_features, gen.block_expansion * 2**gen.num_down_blocks)
    small = round(s * gen.dense_motion.scale_factor) if gen.dense_motion.scale_factor != 1 else s
    kp_in = [TensorSpec("kp_source_value", (1, k, 2))]
    if config.estimate_jacobian:
        kp_in.append(TensorSpec("kp_source_jacobian", (1, k, 2, 2)))
    kp_in.append(TensorSpec("kp_driving_value", (1, k, 2)))
    if config.estimate_jacobian:
        kp_in.append(TensorSpec("kp_driving_jacobian", (1, k, 2, 2)))
    return {
        "kp_detector": (TensorSpec("image", (1, c, s, s)),),
        "source_encoder": (TensorSpec("source_image", (1, c, s, s)),),
        "animator": (TensorSpec("source_features", (1, feat_ch, feat_side, feat_side)),
                     TensorSpec("source_small", (1, c, small, small)), *kp_in),
    }


def graph_outputs(config: FommConfig) -> dict[str, tuple[str, ...]]:
    kp_out = ("value", "jacobian") if config.estimate_jacobian else ("value",)
    return {"kp_detector": kp_out,
            "source_encoder": ("source_features", "source_small"),
            "animator": ("prediction",)}


def random_state(config: FommConfig, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Seeded random weights in checkpoint layout that keep activations in a sane range:
    convolutions normal/sqrt(fan_in); BatchNorm scale ~U(0.8, 1.2), shift ~N(0, 0.1), running
    mean ~N(0, 0.2), variance ~U(0.5, 1.5); the jacobian head near identity; anti-alias
    kernels as built."""
    from model_export.fomm import build_networks

    kp, gen = build_networks(config)
    rng = np.random.default_rng(seed)
    state: dict[str, dict[str, np.ndarray]] = {}
    for name, layer in (("generator", gen), ("kp_detector", kp)):
        out: dict[str, np.ndarray] = {}
        items = layer.state_dict()
        bn_prefixes = {k[: -len("_mean")] for k in items if k.endswith("._mean")}
        for key, tensor in items.items():
            shape = tuple(tensor.shape)
            if key.endswith("down.weight"):  # fixed Gaussian kernels
                out[key] = tensor.numpy()
            elif key.startswith("jacobian."):
                if key.endswith("weight"):
                    fan_in = int(np.prod(shape[1:]))
                    out[key] = rng.normal(0, 0.05 / np.sqrt(fan_in), shape)
                else:
                    out[key] = np.tile([1.0, 0.0, 0.0, 1.0], shape[0] // 4) + rng.normal(
                        0, 0.02, shape)
            elif key.endswith("._mean"):
                out[key] = rng.normal(0, 0.2, shape)
            elif key.endswith("._variance"):
                out[key] = rng.uniform(0.5, 1.5, shape)
            elif len(shape) == 4:
                out[key] = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
            elif key.endswith(".weight") and key[: -len("weight")] in bn_prefixes:
                out[key] = rng.uniform(0.8, 1.2, shape)
            else:  # conv and BatchNorm biases
                out[key] = rng.normal(0, 0.1, shape)
        state[name] = {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
    return state


def state_digest(state: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """sha256 over the names, shapes and bytes of an in-memory weights state."""
    h = hashlib.sha256()
    for section in sorted(state):
        for key in sorted(state[section]):
            arr = np.ascontiguousarray(state[section][key], dtype=np.float32)
            h.update(f"{section}.{key}{arr.shape}".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def _resolve_weights(weights: Weights, config: FommConfig, seed: int
                     ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    if weights is None:
        return random_state(config, seed), {"source": "random", "seed": seed,
                                            "sha256": f"random:{seed}"}
    if isinstance(weights, Mapping):
        state = {k: dict(v) for k, v in weights.items()}
        return state, {"source": "state", "sha256": state_digest(state)}
    from model_export.checkpoint import load_checkpoint
    from model_export.weights import sha256_of

    path = Path(weights)
    if not path.is_file():
        raise InputError("weights file not found", path=path,
                         expected="a FOMM checkpoint (vox-cpk.pdparams)")
    state = load_checkpoint(path, config)
    return state, {"source": path.name, "sha256": sha256_of(path)}


def build_fomm_layers(weights: Weights = None, *, config: FommConfig | None = None,
                      seed: int = 0, inference: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """(kp_detector, generator, weights info) with weights loaded (seeded random if None)."""
    from model_export.fomm import FommConfig, build_networks, load_state

    config = config or FommConfig.vox256()
    state, info = _resolve_weights(weights, config, seed)
    kp, gen = build_networks(config, inference=inference)
    load_state(kp, gen, state)
    return kp, gen, info


def split_layers(kp: Any, gen: Any, config: FommConfig) -> dict[str, Any]:
    """The three graph wrappers (:mod:`model_export.split`) around built networks."""
    from model_export.split import KeypointGraph, SourceEncoder, animator_for

    return {"kp_detector": KeypointGraph(kp), "source_encoder": SourceEncoder(gen),
            "animator": animator_for(gen, config.estimate_jacobian)}


def check_image_size(image_size: int, config: FommConfig) -> int:
    """``image_size`` if the networks of ``config`` can run at it, else :class:`InputError`.

    Every down-sampling step must divide evenly, down to the hourglasses' deepest level.
    """
    gen, kp = config.generator, config.kp_detector
    ok = isinstance(image_size, int) and image_size >= 32
    for scale, blocks in ((kp.scale_factor, kp.num_blocks),
                          (gen.dense_motion.scale_factor, gen.dense_motion.num_blocks)):
        side = image_size * scale
        ok = ok and abs(side - round(side)) < 1e-9 and round(side) % 2**blocks == 0
    ok = ok and image_size % 2**gen.num_down_blocks == 0
    if not ok:
        raise InputError("unsupported image size for this FOMM configuration",
                         expected="256 or 512 for vox (a size every down-sampling step of the "
                         "networks divides evenly)", got=repr(image_size))
    return image_size


def _info(config: FommConfig, image_size: int, weights_info: Mapping[str, Any],
          inference: bool, onnx: bool) -> dict[str, Any]:
    import paddle

    info: dict[str, Any] = {
        "model": MODEL_KIND,
        "mimicam_version": MIMICAM_VERSION,
        "paddle_version": paddle.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "image_size": image_size,
        "num_kp": config.num_kp,
        "precision": "fp32",
        "generator_mode": "inference" if inference else "paper",
        "weights": dict(weights_info),
        "config": dataclasses.asdict(config),
    }
    if onnx:
        import paddle2onnx

        info["onnx"] = {"paddle2onnx_version": paddle2onnx.__version__, "opset": ONNX_OPSET}
    return info


def memory_manifest(config: FommConfig, image_size: int, weights_info: Mapping[str, Any],
                    inference: bool = True) -> Manifest:
    """A file-less manifest of the three graphs (for the dygraph reference backend)."""
    inputs = graph_inputs(config, image_size)
    outputs = graph_outputs(config)
    from model_export.manifest import GraphSpec

    graphs = {name: GraphSpec(name, inputs[name],
                              tuple(TensorSpec(o, ()) for o in outputs[name]))
              for name in GRAPHS}
    info = {"model": MODEL_KIND, "image_size": image_size, "num_kp": config.num_kp,
            "precision": "fp32", "generator_mode": "inference" if inference else "paper",
            "weights": dict(weights_info), "config": dataclasses.asdict(config)}
    return Manifest(graphs, info, None)


def export_fomm(weights: Weights, out_dir: str | os.PathLike[str], *,
                config: FommConfig | None = None, image_size: int = 256, onnx: bool = True,
                seed: int = 0, inference: bool = True) -> Manifest:
    """Export the three FOMM graphs of ``weights`` into ``out_dir``; returns its manifest.

    ``weights``: a checkpoint path, an in-memory ``{'generator', 'kp_detector'}`` state, or
    None for seeded random weights (``seed``). ``config``: vox-256 by default. ``onnx``: also
    write ``.onnx`` files (paddle2onnx). ``inference``: PaddleGAN's predictor-style border
    handling in the generator (True) or the paper's (False).
    """
    from model_export.fomm import FommConfig

    config = config or FommConfig.vox256()
    check_image_size(image_size, config)
    t0 = time.perf_counter()
    kp, gen, winfo = build_fomm_layers(weights, config=config, seed=seed, inference=inference)
    layers = split_layers(kp, gen, config)
    inputs = graph_inputs(config, image_size)
    outputs = graph_outputs(config)
    with staged_directory(out_dir) as tmp:
        specs = {}
        for name in GRAPHS:
            log.info("exporting %s", name)
            specs[name] = export_graph(layers[name], name, inputs[name], outputs[name], tmp,
                                       onnx=False)
        if onnx:
            log.info("converting the graphs to ONNX (paddle2onnx)")
            to_onnx([(tmp / f"{n}.json", tmp / f"{n}.pdiparams", tmp / f"{n}.onnx")
                     for n in GRAPHS])
            specs = {n: add_onnx(s, tmp) for n, s in specs.items()}
        write_manifest(Manifest(specs, _info(config, image_size, winfo, inference, onnx)), tmp)
    log.info("exported FOMM %d px to %s in %.1f s", image_size, out_dir,
             time.perf_counter() - t0)
    return load_manifest(out_dir)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in str(text).split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def load_manifest(model_dir: str | os.PathLike[str], *, weights_sha256: str | None = None,
                  check_paddle: bool = True) -> Manifest:
    """Read and check an exported FOMM model directory.

    Checks: the manifest's format, every file present with its recorded size, the three
    graphs with inputs/outputs consistent with the recorded image size and keypoint count,
    a Paddle version that can read the programs, and (if given) the weights' sha256.
    """
    manifest = read_manifest(model_dir)
    root = manifest.root
    info = manifest.info
    if info.get("model") != MODEL_KIND:
        raise ManifestError(f"{root}: expected a {MODEL_KIND!r} model directory, "
                            f"got model {info.get('model')!r}")
    missing = [g for g in GRAPHS if g not in manifest.graphs]
    if missing:
        raise ManifestError(f"{root}: manifest lacks graph(s) {', '.join(missing)}; expected "
                            f"{', '.join(GRAPHS)}")
    try:
        size = int(info["image_size"])
        k = int(info["num_kp"])
    except (KeyError, TypeError, ValueError):
        raise ManifestError(f"{root}: manifest lacks image_size/num_kp") from None

    def shape(graph: str, name: str, outputs: bool = False) -> tuple[int, ...]:
        spec = manifest.graphs[graph]
        for t in (spec.outputs if outputs else spec.inputs):
            if t.name == name:
                return t.shape
        kind = "output" if outputs else "input"
        names = spec.output_names if outputs else spec.input_names
        raise ManifestError(f"{root}: graph {graph!r} has no {kind} {name!r}; expected one "
                            f"(got {', '.join(names)})")

    def expect(what: str, got: tuple[int, ...], want: tuple[int, ...]) -> None:
        if len(got) != len(want) or any(g != w and g != -1 for g, w in zip(got, want,
                                                                           strict=False)):
            raise ManifestError(f"{root}: {what} has shape {list(got)}; expected {list(want)} "
                                f"for image size {size} and {k} keypoints")

    expect("kp_detector input image", shape("kp_detector", "image"), (1, 3, size, size))
    expect("kp_detector output value", shape("kp_detector", "value", True), (1, k, 2))
    expect("source_encoder input source_image", shape("source_encoder", "source_image"),
           (1, 3, size, size))
    expect("animator output prediction", shape("animator", "prediction", True),
           (1, 3, size, size))
    expect("animator input kp_driving_value", shape("animator", "kp_driving_value"), (1, k, 2))
    for name in ("source_features", "source_small"):
        expect(f"animator input {name}", shape("animator", name),
               shape("source_encoder", name, True))
    if check_paddle and info.get("paddle_version"):
        import paddle

        made, here = _version_tuple(info["paddle_version"]), _version_tuple(paddle.__version__)
        if made[:1] != here[:1] or made > here:
            raise ManifestError(
                f"{root}: exported with Paddle {info['paddle_version']}, which this Paddle "
                f"{paddle.__version__} cannot read; expected Paddle {made[0]}.x <= this one "
                "(re-run `mimicam export`)")
    if info.get("mimicam_version") != MIMICAM_VERSION:
        log.info("%s was exported by mimicam %s (this is %s)", root,
                 info.get("mimicam_version"), MIMICAM_VERSION)
    if weights_sha256 is not None:
        got = dict(info.get("weights") or {}).get("sha256")
        if got != weights_sha256:
            raise ManifestError(f"{root}: exported from other weights; expected sha256 "
                                f"{weights_sha256}, the manifest has {got}")
    return manifest
