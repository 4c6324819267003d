"""Shared pytest fixtures: where the team's shared data lives (skips when it is absent), and
the tiny FOMM parity weights with their export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path.relative_to(REPO_ROOT.parent)} (the team's shared data, "
                    "next to the repository); not present on this machine")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder next to the repository (skips the test when absent)."""
    return _need(SHARED_DIR)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``: FOMM key manifests and parity fixtures."""
    return _need(SHARED_DIR / "reference")


@pytest.fixture(scope="session")
def portraits_dir() -> Path:
    """``../shared/fixtures/portraits``: real portraits."""
    return _need(SHARED_DIR / "fixtures" / "portraits")


@pytest.fixture(scope="session")
def driving_dir() -> Path:
    """``../shared/fixtures/driving``: real driving videos."""
    return _need(SHARED_DIR / "fixtures" / "driving")


@pytest.fixture(scope="module")
def tiny(reference_dir: Path) -> dict[str, Any]:
    """The tiny FOMM parity weights (``fomm_tiny.load_tiny``): config, weights, state, cases."""
    from fomm_tiny import load_tiny

    return load_tiny(reference_dir)


@pytest.fixture(scope="module")
def tiny_model(tiny: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny parity weights exported at 128 px in PaddleGAN's predictor mode (+ ONNX),
    once per session."""
    from fomm_tiny import tiny_model_dir

    return tiny_model_dir(tiny, tmp_path_factory)
