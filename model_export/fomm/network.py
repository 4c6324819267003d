"""Build the two FOMM networks and load weights into them with strict checks."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from paddle import nn

from calibrate.errors import WeightsError
from model_export.fomm.config import FommConfig
from model_export.fomm.generator import OcclusionAwareGenerator
from model_export.fomm.keypoint_detector import KPDetector

log = logging.getLogger(__name__)

#: Keys that may be absent from a checkpoint: the anti-alias Gaussian kernels are fixed
#: functions of the config, so the freshly built values are used instead.
RECOMPUTABLE_KEYS = frozenset({"down.weight", "dense_motion_network.down.weight"})

_LIST_LIMIT = 8


def build_networks(config: FommConfig | None = None, *,
                   inference: bool = True) -> tuple[KPDetector, OcclusionAwareGenerator]:
    """The keypoint detector and generator for ``config`` (vox-256 by default), in eval mode.

    ``inference`` selects PaddleGAN's border handling in the generator (see
    :mod:`model_export.fomm.generator`). Weights are untrained until :func:`load_state`.
    """
    config = config or FommConfig()
    kp_detector = KPDetector(config)
    generator = OcclusionAwareGenerator(config, inference=inference)
    kp_detector.eval()
    generator.eval()
    return kp_detector, generator


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f" (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return f"{len(items)} {label}: {shown}{more}"


def _check(net_name: str, layer: nn.Layer,
           weights: Mapping[str, object]) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """Arrays ready to set, a problem description ('' when none), keys left as built."""
    expected = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    missing = [k for k in expected if k not in weights and k not in RECOMPUTABLE_KEYS]
    unexpected = [str(k) for k in weights if k not in expected]
    mismatched: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        if key not in expected:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            mismatched.append(f"{key} (dtype {arr.dtype}, expected float32)")
        elif tuple(arr.shape) != expected[key]:
            mismatched.append(f"{key} {list(arr.shape)} (expected {list(expected[key])})")
        else:
            arrays[key] = np.ascontiguousarray(arr, dtype=np.float32)
    parts = []
    if missing:
        parts.append(_listing("missing", missing))
    if unexpected:
        parts.append(_listing("unexpected", unexpected))
    if mismatched:
        parts.append(_listing("shape-mismatched", mismatched))
    problem = f"{net_name}: " + "; ".join(parts) if parts else ""
    kept = [k for k in expected if k not in weights]
    return arrays, problem, kept


def load_state(kp_detector: KPDetector, generator: OcclusionAwareGenerator,
               state: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Set both networks' weights from ``{'generator': {...}, 'kp_detector': {...}}`` arrays.

    Keys are PaddleGAN's structured names. Every key and shape is checked before anything is
    set; any missing, unexpected or shape-mismatched key raises :class:`WeightsError` that
    lists them (Paddle's own ``set_state_dict`` would only warn). The anti-alias kernels
    (:data:`RECOMPUTABLE_KEYS`) may be absent. Extra top-level entries (optimizer state,
    discriminator, epoch) are ignored.
    """
    if not isinstance(state, Mapping):
        raise WeightsError(f"FOMM weights must be a mapping with 'generator' and 'kp_detector', "
                           f"got {type(state).__name__}")
    absent = [name for name in ("generator", "kp_detector") if name not in state]
    if absent:
        raise WeightsError(f"FOMM weights lack {' and '.join(repr(a) for a in absent)}; "
                           f"expected 'generator' and 'kp_detector', got {sorted(map(str, state))}")
    checked = []
    problems = []
    for name, layer in (("kp_detector", kp_detector), ("generator", generator)):
        weights = state[name]
        if not isinstance(weights, Mapping):
            raise WeightsError(f"FOMM weights {name!r} must map names to arrays, "
                               f"got {type(weights).__name__}")
        arrays, problem, kept = _check(name, layer, weights)
        if problem:
            problems.append(problem)
        checked.append((name, layer, arrays, kept))
    if problems:
        raise WeightsError("FOMM weights do not fit the network: " + " | ".join(problems))
    for name, layer, arrays, kept in checked:
        targets = layer.state_dict()
        for key, arr in arrays.items():
            targets[key].set_value(arr)
        if kept:
            log.info("%s: %s not in the checkpoint; using the built-in Gaussian kernel",
                     name, ", ".join(kept))
        log.debug("%s: loaded %d tensors", name, len(arrays))
