"""Shared pytest fixtures: where the team's shared data lives (skips when it is absent), and
the tiny FOMM parity weights with their export.

Every test that uses one of :data:`SHARED_FIXTURES`, directly or through a fixture that
depends on one, must carry ``@pytest.mark.fixtures`` (a module's ``pytestmark`` counts), so
that ``-m "not fixtures"`` selects a set that runs without ``../shared``; collection fails
naming each test that does not (:func:`pytest_collection_modifyitems`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_FIXTURES = frozenset({"shared_dir", "reference_dir", "portraits_dir", "driving_dir",
                             "tiny", "tiny_model"})
"""The fixtures below that read ``../shared``."""


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything: every test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail the collection when a test needs ``../shared`` (one of :data:`SHARED_FIXTURES`
    in its fixture closure) without the ``fixtures`` marker."""
    unmarked = [item.nodeid for item in items
                if SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("fixtures") is None]
    if unmarked:
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) use the shared data (../shared, fixtures "
            f"{', '.join(sorted(SHARED_FIXTURES))}) without @pytest.mark.fixtures; mark them "
            "(a module's pytestmark = pytest.mark.fixtures is fine):\n  "
            + "\n  ".join(unmarked))


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


@pytest.fixture(scope="module")
def mesh_lp_s42(portraits_dir: Path) -> tuple[Any, Any]:
    """The mesh engine (512 px, no smoothing) with the lp_s42 portrait prepared and set."""
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import find_portrait, load_image

    crop = find_portrait(load_image(portraits_dir / "lp_s42.jpg"), 512).crop.image
    engine = MeshEngine(size=512, smoothing=False)
    portrait = engine.prepare(crop)
    engine.set_portrait(portrait)
    return engine, portrait
