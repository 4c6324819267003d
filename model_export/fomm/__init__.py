"""First Order Motion Model networks in PaddlePaddle dygraph (PaddleGAN checkpoint layout).

``from model_export.fomm import FommConfig`` stays light; the Paddle networks are imported
on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from model_export.fomm.config import (
    DenseMotionConfig,
    FommConfig,
    GeneratorConfig,
    KPDetectorConfig,
)

if TYPE_CHECKING:
    from model_export.fomm.dense_motion import DenseMotionNetwork
    from model_export.fomm.generator import OcclusionAwareGenerator
    from model_export.fomm.keypoint_detector import KPDetector
    from model_export.fomm.network import build_networks, load_state

_LAZY = {
    "KPDetector": "model_export.fomm.keypoint_detector",
    "DenseMotionNetwork": "model_export.fomm.dense_motion",
    "OcclusionAwareGenerator": "model_export.fomm.generator",
    "build_networks": "model_export.fomm.network",
    "load_state": "model_export.fomm.network",
}

__all__ = [
    "DenseMotionConfig",
    "DenseMotionNetwork",
    "FommConfig",
    "GeneratorConfig",
    "KPDetector",
    "KPDetectorConfig",
    "OcclusionAwareGenerator",
    "build_networks",
    "load_state",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
