"""OpenCV's thread pool told to sleep between calls (live/blas.py), from the command line on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from live.blas import OPENCV_POOL_SETTINGS, calm_opencv_pool


def _python(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter without the pool settings in its environment (plus
    ``env``); it prints one JSON object, returned here."""
    clean = {k: v for k, v in os.environ.items() if k not in OPENCV_POOL_SETTINGS}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
import json, os, sys
from live.blas import calm_opencv_pool
found = calm_opencv_pool()
import cv2
print(json.dumps({"found": found, "env": {k: os.environ.get(k) for k in found}}))
"""


def test_the_pool_settings_are_set_before_opencv_loads() -> None:
    got = _python(PROBE)
    assert got["found"] == OPENCV_POOL_SETTINGS
    assert got["env"] == OPENCV_POOL_SETTINGS


def test_a_value_the_user_set_is_kept() -> None:
    got = _python(PROBE, OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER="500")
    assert got["found"] == {"OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "500",
                            "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "0"}


def test_nothing_changes_once_opencv_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2  # noqa: F401 - loaded, as in this test process

    for name in OPENCV_POOL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert calm_opencv_pool() == {}
    assert not any(name in os.environ for name in OPENCV_POOL_SETTINGS)


def test_the_command_line_sets_them_before_a_command_runs() -> None:
    # any command: this one fails at once (no such file), after main() has set things up
    names = repr(sorted(OPENCV_POOL_SETTINGS))
    got = _python("""
import json, os, sys
from live.cli.main import main
code = main(["weights", "info", "no-such-file.pdparams"])
print(json.dumps({"code": code, "env": {k: os.environ.get(k) for k in NAMES}}))
""".replace("NAMES", names))
    assert got["code"] == 2
    assert got["env"] == OPENCV_POOL_SETTINGS
