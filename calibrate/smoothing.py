"""Temporal smoothing with real time steps (pure numpy).

:class:`OneEuroFilter` is the One Euro filter of Casiez, Roussel and Vogel (CHI 2012): a
first-order low-pass whose cutoff frequency rises with the signal's speed, so slow jitter is
removed while fast motion passes with little lag. :func:`exp_approach` eases a value towards a
target with a half-life, e.g. back to the neutral pose while the face is lost.

Times are in seconds (``time.perf_counter()`` at capture, or a video's presentation time);
nothing assumes a frame rate.
"""

from __future__ import annotations

import math

import numpy as np


def _smoothing_factor(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    """Exponential-smoothing weight of a first-order low-pass with ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter for arrays of any (fixed) shape, element by element.

    ``min_cutoff`` (Hz) is the cutoff when the signal is still: lower means steadier and more
    lag. ``beta`` (per unit of the signal's speed, i.e. Hz per (unit/s)) raises the cutoff as
    the signal moves: higher means less lag on fast motion. ``d_cutoff`` (Hz) smooths the speed
    estimate. ``beta`` depends on the signal's units, so filter normalised quantities (e.g.
    landmark positions divided by the face size) to make one setting fit every resolution.

    Call it with each new sample and its time: ``y = f(x, t)``. The first call (and the first
    after :meth:`reset`) returns ``x`` unchanged. A sample whose ``t`` is not later than the
    previous one carries no time information, so it is ignored: the previous output is
    returned again and the state is untouched.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if not (min_cutoff > 0.0 and d_cutoff > 0.0 and beta >= 0.0):
            raise ValueError(
                "expected min_cutoff > 0, d_cutoff > 0 and beta >= 0, "
                f"got min_cutoff={min_cutoff}, d_cutoff={d_cutoff}, beta={beta}"
            )
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @property
    def value(self) -> np.ndarray | None:
        """The last output (a copy), or None before the first sample."""
        return None if self._x is None else self._x.copy()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x = None
        self._dx = None
        self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample ``x`` taken at time ``t`` (seconds); returns a new float64 array."""
        sample = np.array(x, dtype=np.float64)  # a copy: the caller may reuse its buffer
        t = float(t)
        if self._x is None or self._t is None or self._dx is None:
            self._x = sample
            self._dx = np.zeros_like(sample)
            self._t = t
            return sample.copy()
        if sample.shape != self._x.shape:
            raise ValueError(
                f"OneEuroFilter: expected samples of shape {self._x.shape} (as before), "
                f"got {sample.shape}; call reset() to change shape"
            )
        dt = t - self._t
        if not dt > 0.0:  # also catches NaN
            return self._x.copy()
        dx = (sample - self._x) / dt
        dx_hat = self._dx + _smoothing_factor(dt, self.d_cutoff) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        x_hat = self._x + _smoothing_factor(dt, cutoff) * (sample - self._x)
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat.copy()


def approach_factor(dt: float, half_life: float) -> float:
    """Fraction of the remaining distance covered in ``dt`` seconds with this half-life.

    0 when ``dt <= 0``; 1 when ``half_life <= 0`` (jump at once).
    """
    if dt <= 0.0:
        return 0.0
    if half_life <= 0.0:
        return 1.0
    return 1.0 - 0.5 ** (dt / half_life)


def exp_approach(
    current: np.ndarray | float, target: np.ndarray | float, dt: float, half_life: float
) -> np.ndarray:
    """Move ``current`` towards ``target`` exponentially: half the gap closes every
    ``half_life`` seconds, whatever the frame rate (two steps of dt equal one step of 2*dt).

    Returns a new float64 array (``current`` is not modified).
    """
    cur = np.asarray(current, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    return cur + approach_factor(dt, half_life) * (tgt - cur)


def local_fit_weights(offsets: tuple[int, ...], degree: int = 2) -> np.ndarray:
    """Weights ``w`` such that ``sum(w[k] * x[offsets[k]])`` is the value at offset 0 of the
    least-squares polynomial of ``degree`` through the samples at ``offsets`` (a
    Savitzky-Golay filter when the offsets are symmetric). The degree drops when there are
    too few samples; one sample gives weight 1. Unlike an average, a quadratic fit keeps the
    height of short peaks (a blink, a mouth opening) while it removes jitter."""
    t = np.asarray(offsets, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"expected a non-empty tuple of offsets, got {offsets!r}")
    deg = max(0, min(int(degree), t.size - 1))
    basis = np.vander(t, deg + 1, increasing=True)  # columns 1, t, t^2 ...
    # value at 0 = first coefficient = first row of the pseudo-inverse
    return np.asarray(np.linalg.pinv(basis)[0])


class CentredSmoother:
    """Zero-lag smoothing of a stream for offline use: the value at step ``i`` is a local
    polynomial fit (:func:`local_fit_weights`) over steps ``i - radius .. i + radius``, so
    the output lags the input by ``radius`` steps but not in its values.

    ``push(x)`` adds a sample (an array of fixed shape, or None for a gap, which no window
    crosses) and returns the samples that became final, in order, as ``(x_smoothed or
    None)``; ``flush()`` returns the rest at the end of the stream.
    """

    def __init__(self, radius: int = 3, degree: int = 2) -> None:
        if radius < 0 or degree < 0:
            raise ValueError(f"expected radius >= 0 and degree >= 0, got {radius}, {degree}")
        self.radius = int(radius)
        self.degree = int(degree)
        self._buf: list[np.ndarray | None] = []
        self._next = 0  # index in _buf of the next sample to emit
        self._weights: dict[tuple[int, ...], np.ndarray] = {}

    def _value(self, i: int) -> np.ndarray | None:
        x = self._buf[i]
        if x is None:
            return None
        lo = i
        while lo > 0 and i - lo < self.radius and self._buf[lo - 1] is not None:
            lo -= 1
        hi = i
        while hi + 1 < len(self._buf) and hi - i < self.radius and self._buf[hi + 1] is not None:
            hi += 1
        offsets = tuple(range(lo - i, hi - i + 1))
        w = self._weights.get(offsets)
        if w is None:
            w = self._weights[offsets] = local_fit_weights(offsets, self.degree)
        out = np.zeros_like(x, dtype=np.float64)
        for k, j in enumerate(range(lo, hi + 1)):
            out += w[k] * np.asarray(self._buf[j], dtype=np.float64)
        return out

    def _emit(self, upto: int) -> list[np.ndarray | None]:
        out = []
        while self._next < upto:
            out.append(self._value(self._next))
            self._next += 1
        drop = max(0, self._next - self.radius)  # keep the past a window needs
        if drop:
            del self._buf[:drop]
            self._next -= drop
        return out

    def push(self, x: np.ndarray | None) -> list[np.ndarray | None]:
        self._buf.append(None if x is None else np.asarray(x, dtype=np.float64))
        return self._emit(len(self._buf) - self.radius)

    def flush(self) -> list[np.ndarray | None]:
        out = self._emit(len(self._buf))
        self._buf.clear()
        self._next = 0
        return out
