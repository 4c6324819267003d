"""Run statistics for the live pipeline: per-stage and capture-to-send latency, fps, counters.

Latencies go into fixed-size log histograms (1 % wide bins from 10 us to 100 s), so a run of
any length keeps flat memory while the median and p95 stay within about 1 %. A short window of
recent values feeds the on-screen overlay (current fps and latency).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LatencyHistogram", "LiveStats", "write_json_atomic"]

_MIN_MS = 0.01
_MAX_MS = 100_000.0
_RATIO = 1.01
_NBINS = math.ceil(math.log(_MAX_MS / _MIN_MS) / math.log(_RATIO)) + 2
_LOG_RATIO = math.log(_RATIO)


class LatencyHistogram:
    """Millisecond samples in log-spaced bins: constant memory, quantiles within ~1 %."""

    def __init__(self) -> None:
        self._counts = np.zeros(_NBINS, np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def add(self, ms: float) -> None:
        ms = float(ms)
        if not math.isfinite(ms):
            return
        ms = max(ms, 0.0)
        i = 0 if ms <= _MIN_MS else min(_NBINS - 1, 1 + int(math.log(ms / _MIN_MS) / _LOG_RATIO))
        self._counts[i] += 1
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)
        self.min = min(self.min, ms)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) in ms (bin centre, clamped to the seen range)."""
        if self.count == 0:
            return None
        if q >= 1.0:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        i = int(np.searchsorted(np.cumsum(self._counts), rank))
        if i == 0:
            value = _MIN_MS
        else:
            lo = _MIN_MS * _RATIO ** (i - 1)
            value = lo * math.sqrt(_RATIO)
        return min(max(value, self.min), self.max)

    def summary(self) -> dict[str, float | int | None]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "count": self.count,
            "median": r(self.quantile(0.5)),
            "p95": r(self.quantile(0.95)),
            "mean": r(self.total / self.count) if self.count else None,
            "max": r(self.max) if self.count else None,
        }


class LiveStats:
    """Counters and latencies of one live run; safe to read from another thread.

    Stage timings: ``with stats.stage("track"): ...`` or :meth:`add_stage`. A frame that was
    sent is reported with :meth:`frame_sent` (its capture timestamp gives capture-to-send).
    """

    def __init__(self, *, window: int = 60) -> None:
        self._lock = threading.Lock()
        self.stages: dict[str, LatencyHistogram] = {}
        self.capture_to_send = LatencyHistogram()
        self.counters: dict[str, int] = {
            "frames_in": 0, "frames_sent": 0, "frames_without_face": 0,
            "tracking_losses": 0, "engine_errors": 0, "tracker_errors": 0, "sink_errors": 0,
            "dropped_input": 0, "repeated": 0, "frozen": 0, "calibrations": 0,
            "recalibrations": 0, "portrait_switches": 0, "background_switches": 0,
        }
        self.t_start = time.perf_counter()
        self.t_first_send: float | None = None
        self.t_last_send: float | None = None
        self._recent_sends: deque[float] = deque(maxlen=window)
        self._recent_latency: deque[float] = deque(maxlen=window)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add_stage(name, (time.perf_counter() - t0) * 1000.0)

    def add_stage(self, name: str, ms: float) -> None:
        with self._lock:
            hist = self.stages.get(name)
            if hist is None:
                hist = self.stages[name] = LatencyHistogram()
            hist.add(ms)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def set_counter(self, name: str, value: int) -> None:
        with self._lock:
            self.counters[name] = int(value)

    def frame_sent(self, t_capture: float, t_sent: float | None = None) -> float:
        """Record one sent frame; returns its capture-to-send latency in ms."""
        now = time.perf_counter() if t_sent is None else t_sent
        ms = (now - t_capture) * 1000.0
        with self._lock:
            self.counters["frames_sent"] += 1
            self.capture_to_send.add(ms)
            if self.t_first_send is None:
                self.t_first_send = now
            self.t_last_send = now
            self._recent_sends.append(now)
            self._recent_latency.append(ms)
        return ms

    # -- live readings (overlay) -----------------------------------------------------------------
    def current_fps(self) -> float:
        with self._lock:
            if len(self._recent_sends) < 2:
                return 0.0
            span = self._recent_sends[-1] - self._recent_sends[0]
            return (len(self._recent_sends) - 1) / span if span > 0 else 0.0

    def current_latency_ms(self) -> float | None:
        with self._lock:
            return float(np.median(self._recent_latency)) if self._recent_latency else None

    def live(self) -> dict[str, Any]:
        """Readings for a live display (the control page, about once a second): the current
        fps, capture-to-send median and p95 over the recent window (ms, None before the
        first frame) and the counters so far."""
        fps = self.current_fps()
        with self._lock:
            recent = np.asarray(self._recent_latency, dtype=np.float64)
            counters = dict(self.counters)
        latency: dict[str, float | None] = {"median": None, "p95": None}
        if recent.size:
            latency = {"median": round(float(np.median(recent)), 1),
                       "p95": round(float(np.percentile(recent, 95)), 1)}
        return {"fps": round(fps, 1), "capture_to_send_ms": latency,
                "uptime_s": round(time.perf_counter() - self.t_start, 1), **counters}

    # -- final report ----------------------------------------------------------------------------
    def fps(self) -> float:
        """Average frames sent per second between the first and the last send."""
        with self._lock:
            n = self.counters["frames_sent"]
            if n < 2 or self.t_first_send is None or self.t_last_send is None:
                return 0.0
            span = self.t_last_send - self.t_first_send
            return (n - 1) / span if span > 0 else 0.0

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        fps = self.fps()
        with self._lock:
            out: dict[str, Any] = {
                "duration_s": round(time.perf_counter() - self.t_start, 3),
                "fps": round(fps, 2),
                "latency_ms": {
                    "capture_to_send": self.capture_to_send.summary(),
                    "stages": {k: v.summary() for k, v in self.stages.items()},
                },
                **dict(self.counters),
            }
        out.update(extra)
        return out

    def write_json(self, path: str | os.PathLike[str], **extra: Any) -> Path:
        """Write :meth:`to_dict` to ``path`` (temporary name, then renamed)."""
        return write_json_atomic(path, self.to_dict(**extra))


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as JSON to a temporary file next to ``path`` and rename it into place."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
