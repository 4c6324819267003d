"""Pieces shared by the peak-memory benchmarks (``animate_memory.py``, ``video_memory.py``).

Each of those scripts measures in a fresh subprocess of itself (``--child ...``), so every
run's peak resident set size starts from scratch. Imported as a sibling module: the scripts
run as ``python benchmarks/<script>.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_child(script: str, child_args: list[str]) -> dict[str, float]:
    """Run ``script --child *child_args`` in a new Python process (from the repository root)
    and return the JSON object it prints last."""
    out = subprocess.run([sys.executable, script, "--child", *child_args], check=True,
                         capture_output=True, text=True, cwd=REPO_ROOT)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def missing_shared_data(paths: Iterable[Path]) -> bool:
    """True, after a line on stderr naming it, when one of ``paths`` (the team's shared data
    next to the repository) does not exist."""
    for need in paths:
        if not need.exists():
            print(f"needs {need.relative_to(REPO_ROOT.parent)} (the team's shared data)",
                  file=sys.stderr)
            return True
    return False


@contextmanager
def scratch_folder(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A temporary folder, removed afterwards unless ``keep`` (then its path is printed)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write_tone(path: Path, seconds: float, rate: int = 44100) -> None:
    """A stereo 16-bit PCM file of a 330 Hz tone, ``seconds`` long (an audio track to mux)."""
    import av
    import numpy as np

    total = int(seconds * rate)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.codec_context.layout = "stereo"
        for start in range(0, total, rate):
            n = min(rate, total - start)
            t = (start + np.arange(n)) / rate
            tone = (np.sin(2 * np.pi * 330 * t) * 8000).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None], format="s16",
                                               layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
