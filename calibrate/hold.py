"""What an engine shows while the driving face is lost, and when it comes back (pure numpy).

:class:`PoseHold` is the state machine every engine uses for face loss: when the face is lost
the last shown pose is held for ``hold_s`` seconds, then it eases back to the neutral pose
with a half-life; when the face returns, the shown pose eases to the face's pose (half-life
``recover_half_life_s``) instead of jumping, until the two are within ``converged``.

Times are the frames' real times in seconds; nothing assumes a frame rate. The pose can be
any value: the engine passes how to move one pose towards another (e.g.
:func:`calibrate.smoothing.exp_approach`) and how far apart two poses are (e.g.
:func:`max_abs_distance`). A pose may also come in parts, one shown before the next is known
(:meth:`PoseHold.face_step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import numpy as np

P = TypeVar("P")

Approach = Callable[[P, P, float, float], P]
"""``approach(current, target, dt, half_life)``: ``current`` moved towards ``target`` over
``dt`` seconds (half the gap closes every ``half_life`` seconds)."""
Distance = Callable[[P, P], float]
"""``distance(a, b)``: how far apart two poses are (>= 0)."""


class HoldOptions(Protocol):
    """The face-loss options of an engine's config (read-only attributes, seconds)."""

    @property
    def hold_s(self) -> float: ...
    @property
    def ease_half_life_s(self) -> float: ...
    @property
    def recover_half_life_s(self) -> float: ...


def hold_option_checks(options: HoldOptions) -> list[tuple[bool, str, str, float]]:
    """``(ok, name, expected, got)`` for each face-loss option, for a config's range checks."""
    return [
        (options.hold_s >= 0, "hold_s", ">= 0", options.hold_s),
        (options.ease_half_life_s >= 0, "ease_half_life_s", ">= 0", options.ease_half_life_s),
        (options.recover_half_life_s >= 0, "recover_half_life_s", ">= 0",
         options.recover_half_life_s),
    ]


def max_abs_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference between two arrays of the same shape."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


class PoseHold(Generic[P]):
    """Hold the last pose when the face is lost, ease back to neutral, ease in on return.

    Per frame call :meth:`on_face` with the face's pose, or :meth:`on_lost` with the neutral
    pose when there is no face; both return the pose to show. :meth:`reset` forgets
    everything (recalibration). Time steps are taken from the ``t`` given, so frames may come
    at any rate; a ``t`` that does not move forward moves nothing.

    ``converged`` is in the units of ``distance`` and may be changed at any time (e.g. when
    the engine's pose units change with a new neutral pose).
    """

    def __init__(self, *, hold_s: float, ease_half_life_s: float, recover_half_life_s: float,
                 converged: float, approach: Approach[P], distance: Distance[P]) -> None:
        for name, value in (("hold_s", hold_s), ("ease_half_life_s", ease_half_life_s),
                            ("recover_half_life_s", recover_half_life_s),
                            ("converged", converged)):
            if not value >= 0:  # also catches NaN
                raise ValueError(f"PoseHold: expected {name} >= 0, got {value}")
        self.hold_s = float(hold_s)
        self.ease_half_life_s = float(ease_half_life_s)
        self.recover_half_life_s = float(recover_half_life_s)
        self.converged = float(converged)
        self._approach = approach
        self._distance = distance
        self.shown: P | None = None
        """The pose shown last (None before the first face since :meth:`reset`). An engine may
        replace it, e.g. with a copy that drops points the face no longer has."""
        self._last_t: float | None = None
        self._lost_since: float | None = None
        self._recovering = False

    @classmethod
    def from_options(cls, options: HoldOptions, *, converged: float, approach: Approach[P],
                     distance: Distance[P]) -> PoseHold[P]:
        """A state machine with the face-loss options of an engine's config."""
        return cls(hold_s=options.hold_s, ease_half_life_s=options.ease_half_life_s,
                   recover_half_life_s=options.recover_half_life_s, converged=converged,
                   approach=approach, distance=distance)

    @property
    def lost(self) -> bool:
        """True from the first :meth:`on_lost` that returned a pose until the next face."""
        return self._lost_since is not None

    @property
    def recovering(self) -> bool:
        """True while the shown pose is still easing to the returned face's."""
        return self._recovering

    def reset(self) -> None:
        """Forget the shown pose and all timers."""
        self.shown = None
        self._last_t = None
        self._lost_since = None
        self._recovering = False

    def on_face(self, pose: P, t: float) -> P:
        """The pose to show when the face is seen at time ``t`` with ``pose``: ``pose`` itself,
        or after a loss a step from the shown pose towards it."""
        step = self.face_step(t)
        shown = step.show(self.shown, pose)
        step.end(shown)
        return shown

    def face_step(self, t: float) -> FaceStep[P]:
        """:meth:`on_face` for a pose given in parts, e.g. one part at once and another
        measured meanwhile: :meth:`FaceStep.show` each part, then :meth:`FaceStep.end` with
        the whole pose shown. Nothing changes before :meth:`FaceStep.end`."""
        last = self._last_t
        if not self._recovering or self.shown is None or last is None:
            return FaceStep(self, t, None)  # the face's pose as it is
        return FaceStep(self, t, t - last)

    def _face_shown(self, shown: P, t: float, *, recovered: bool) -> None:
        """A face's step ends (:class:`FaceStep`): ``shown`` at time ``t``; ``recovered``:
        the ease in (if any) has converged."""
        if recovered:
            self._recovering = False
        self.shown = shown
        self._lost_since = None
        self._last_t = t

    def on_lost(self, neutral: P | None, t: float) -> P | None:
        """The pose to show when there is no face at time ``t``: the last pose for ``hold_s``
        seconds from the first frame without a face, then a step towards ``neutral``. None
        (and nothing changes) while there is no neutral pose or no pose has been shown."""
        if neutral is None or self.shown is None:
            return None
        if self._lost_since is None:
            self._lost_since = t
            self._recovering = True
        last = self._last_t if self._last_t is not None else t
        easing = t - self._lost_since - self.hold_s
        if easing > 0:
            dt = min(t - last, easing)
            self.shown = self._approach(self.shown, neutral, dt, self.ease_half_life_s)
        self._last_t = t
        return self.shown


class FaceStep(Generic[P]):
    """One frame's face for a :class:`PoseHold`, its pose shown part by part
    (:meth:`PoseHold.face_step`). The ease in ends when every part is within ``converged`` of
    its face's part: for a distance that is the largest over the pose's elements (as
    :func:`max_abs_distance`) and an element-wise approach, exactly what the whole pose at
    once gives."""

    def __init__(self, hold: PoseHold[P], t: float, dt: float | None) -> None:
        self._hold = hold
        self._t = t
        self._dt = dt  # the ease in's time step; None: the face's pose is shown as it is
        self._converged = True

    def show(self, before: P | None, pose: P) -> P:
        """The part of the pose to show for the face's part ``pose``: ``pose`` itself, or
        while easing in a step towards it from ``before``, the same part of
        :attr:`PoseHold.shown`."""
        if self._dt is None:
            return pose
        hold = self._hold
        assert before is not None  # easing in: a pose was shown
        shown = hold._approach(before, pose, self._dt, hold.recover_half_life_s)
        if not hold._distance(shown, pose) < hold.converged:
            self._converged = False
        return shown

    def end(self, shown: P) -> None:
        """The whole pose shown (the parts from :meth:`show`, put together)."""
        self._hold._face_shown(shown, self._t, recovered=self._dt is None or self._converged)
