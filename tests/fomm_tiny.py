"""The tiny FOMM parity weights of ``../shared/reference`` and their export, shared by test
modules: exported once per test session (128 px, PaddleGAN predictor mode, with ONNX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_export.export import export_fomm, load_manifest
from model_export.fomm import FommConfig
from model_export.manifest import ManifestError

TINY_SIZE = 128


def load_tiny(reference_dir: Path) -> dict[str, Any]:
    """config, weights path, state and the parity cases of the tiny fixtures."""
    from model_export.checkpoint import load_checkpoint

    layout = json.loads((reference_dir / "parity_tiny_config.json").read_text())
    config = FommConfig.from_yaml_dict(layout["first_order_model_layout"])
    weights = reference_dir / "parity_tiny_paddle.pdparams"
    return {"config": config, "weights": weights,
            "state": load_checkpoint(weights, config),
            "cases": dict(np.load(reference_dir / "parity_tiny_cases.npz"))}


def tiny_model_dir(tiny: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights exported into the session's temporary folder (once per session)."""
    out = tmp_path_factory.getbasetemp() / "fomm-tiny-model"
    try:
        load_manifest(out)
    except ManifestError:
        export_fomm(tiny["weights"], out, config=tiny["config"], image_size=TINY_SIZE,
                    onnx=True)
    return out
