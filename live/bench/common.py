"""Helpers shared by the ``mimicam bench`` jobs: the fixture folder, statistics, the options and
table helpers of the job modules (:mod:`live.bench.live`, :mod:`live.bench.animate`)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError

log = logging.getLogger(__name__)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DRIVING_SIZE = (640, 480)

Runner = Callable[[argparse.Namespace], int]


def first_fixture(kind: str, suffixes: tuple[str, ...], flag: str) -> Path:
    folder = FIXTURES / kind
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) \
        if folder.is_dir() else []
    if not files:
        raise InputError(f"no {kind} file given and none found in ../shared/fixtures/{kind}",
                         expected=f"{flag} FILE")
    return files[0]


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": math.nan, "p95": math.nan}
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "p95": float(np.percentile(arr, 95))}



def add_engines_argument(parser: Any) -> None:
    """The ``--engines`` option of a job (``parser``: an ``ArgumentParser`` or the shared
    parser's proxy)."""
    parser.add_argument("--engines", default="mesh,fomm",
                        help="comma-separated engines to run (default: mesh,fomm)")


def split_list(text: str) -> list[str]:
    """A comma-separated option as a list: ``"mesh, fomm,"`` -> ``["mesh", "fomm"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def missing_inputs(job: str, paths: Iterable[Path], flags: str) -> bool:
    """True, after a line on stderr naming it, when one of ``paths`` does not exist (the
    job's fixtures; ``flags`` are the options that replace them)."""
    for need in paths:
        if not need.exists():
            print(f"bench {job}: {need} not found (the team's shared fixtures, or pass "
                  f"{flags})", file=sys.stderr)
            return True
    return False


def _stage_width(stage: str) -> int:
    return max(11, len(stage) + 4)


def stage_header(stages: Sequence[str]) -> str:
    """The per-stage columns' heading of a job's table (11 characters a stage, more for a
    long name)."""
    return "".join(f"{s + ' ms':>{_stage_width(s)}}" for s in stages)


def stage_cells(stage_ms: Mapping[str, float], stages: Sequence[str]) -> str:
    """One row's per-stage medians under :func:`stage_header` (nan for a missing stage)."""
    return "".join(f"{stage_ms.get(s, float('nan')):>{_stage_width(s)}.1f}" for s in stages)


def job_main(argv: Sequence[str] | None, *, prog: str, doc: str | None,
             add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], int]) -> int:
    """``python -m <job module>``: parse ``argv`` with the job's options, run the job."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


SHEET_MAX_BYTES = 300_000
"""Committed pictures stay under this size."""


def write_png(path: Path, rgb: np.ndarray, *, max_bytes: int | None = SHEET_MAX_BYTES) -> int:
    """Write an RGB image (a contact sheet) as a PNG (maximum compression); returns its size
    in bytes.

    When the file would exceed ``max_bytes``, the lowest bits of each channel are dropped (1,
    then 2, then 3: 128, 64, 32 levels, hardly visible) until it fits, or 3 bits are dropped.
    """
    import cv2

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    data = b""
    for drop in range(4):
        ok, buf = cv2.imencode(".png", bgr & np.uint8((0xFF << drop) & 0xFF),
                               [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise InputError("cannot encode the picture as PNG", path=path)
        data = buf.tobytes()
        if max_bytes is None or len(data) <= max_bytes:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def load_engine_options(path: Path) -> Any:
    """The ``[engine.mesh]`` / ``[engine.fomm]`` tables of settings file ``path`` as an
    :class:`~live.engines.base.EngineOptions` (strict: an unknown key is an error)."""
    from live.config import from_mapping, read_toml
    from live.engines.base import EngineOptions

    table = read_toml(path).get("engine", {})
    if not isinstance(table, dict):
        raise InputError("the [engine] table is not a table", path=path,
                         expected="[engine.mesh] / [engine.fomm] tables",
                         got=type(table).__name__)
    table = {k: v for k, v in table.items() if k != "name"}
    try:
        return from_mapping(EngineOptions, table, prefix="engine.")
    except InputError as exc:
        raise InputError(str(exc), path=path) from None
