"""Shared pytest fixtures: where the team's shared data lives, and skips when it is absent."""

from __future__ import annotations

from pathlib import Path

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
