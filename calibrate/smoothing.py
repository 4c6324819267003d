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
