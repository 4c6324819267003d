"""Face loss: hold the last pose, ease back to neutral, ease in when the face returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from calibrate.hold import PoseHold, hold_option_checks, max_abs_distance
from calibrate.smoothing import OneEuroFilter, exp_approach

NEUTRAL = np.zeros(3)
POSE = np.full(3, 8.0)


def make(hold_s: float = 0.4, ease: float = 0.2, recover: float = 0.1,
         converged: float = 0.01) -> PoseHold[np.ndarray]:
    return PoseHold(hold_s=hold_s, ease_half_life_s=ease, recover_half_life_s=recover,
                    converged=converged, approach=exp_approach, distance=max_abs_distance)


def lost_at(h: PoseHold[np.ndarray], t: float) -> np.ndarray:
    out = h.on_lost(NEUTRAL, t)
    assert out is not None
    return out


def test_max_abs_distance() -> None:
    assert max_abs_distance(np.array([1.0, -2.0]), np.array([1.5, 1.0])) == 3.0
    assert max_abs_distance(POSE, POSE) == 0.0


def test_nothing_to_show_before_a_face_or_without_a_neutral_pose() -> None:
    h = make()
    assert h.on_lost(NEUTRAL, 0.0) is None
    assert not h.lost and h.shown is None
    assert h.on_face(POSE, 0.1) is POSE  # the first face is shown as it is
    assert h.on_lost(None, 0.2) is None  # no neutral pose: nothing starts
    assert not h.lost
    np.testing.assert_array_equal(lost_at(h, 0.3), POSE)
    assert h.lost


def test_holds_for_hold_s_then_eases_to_neutral_with_real_time() -> None:
    h = make(hold_s=0.4, ease=0.2)
    h.on_face(POSE, 0.0)
    for t in (0.1, 0.2, 0.35, 0.49):  # lost at 0.1: held until 0.5
        np.testing.assert_array_equal(lost_at(h, t), POSE)
    np.testing.assert_allclose(lost_at(h, 0.7), POSE / 2)  # one half-life past the hold
    np.testing.assert_allclose(lost_at(h, 0.9), POSE / 4)
    assert float(np.max(lost_at(h, 9.0))) < 1e-6  # back at neutral


def test_the_first_ease_step_counts_only_the_time_past_the_hold() -> None:
    h = make(hold_s=0.4, ease=0.2)
    h.on_face(POSE, 0.0)
    lost_at(h, 1.0)  # lost at 1.0: the hold ends at 1.4
    np.testing.assert_allclose(lost_at(h, 1.6), POSE / 2)  # 0.2 s of ease, not 0.6 s


@pytest.mark.parametrize("steps", [
    [0.017, 0.5, 0.033, 0.1, 0.25],
    [0.3, 0.3, 0.3],
    [0.9],
    list(np.full(90, 0.01)),
])
def test_irregular_time_steps_reach_the_same_pose_at_the_same_time(steps: list[float]) -> None:
    h = make(hold_s=0.3, ease=0.25)
    h.on_face(POSE, 0.0)
    t = 0.5
    lost_at(h, t)  # lost at 0.5: the hold ends at 0.8
    for dt in steps:
        t += dt
        out = lost_at(h, t)
    expected = POSE * 0.5 ** (max(t - 0.8, 0.0) / 0.25)
    np.testing.assert_allclose(out, expected, rtol=1e-9)


def test_time_that_does_not_move_forward_moves_nothing() -> None:
    h = make(hold_s=0.0, ease=0.2)
    h.on_face(POSE, 0.0)
    lost_at(h, 0.1)
    a = lost_at(h, 0.3)
    np.testing.assert_array_equal(lost_at(h, 0.3), a)
    np.testing.assert_array_equal(lost_at(h, 0.2), a)  # an earlier time
    back = np.full(3, 2.0)
    easing_in = h.on_face(back, 0.4)
    assert h.recovering and not np.array_equal(easing_in, back)
    np.testing.assert_array_equal(h.on_face(POSE, 0.4), easing_in)  # no time: no step


def test_face_back_eases_in_then_follows_the_face() -> None:
    h = make(hold_s=0.0, ease=0.1, recover=0.05, converged=0.01)
    h.on_face(POSE, 0.0)
    lost_at(h, 0.1)
    assert float(np.max(lost_at(h, 3.0))) < 1e-6
    first = h.on_face(POSE, 3.05)  # one recovery half-life after the last frame
    np.testing.assert_allclose(first, POSE / 2, atol=1e-6)
    assert h.recovering and not h.lost
    t = 3.05
    while h.recovering:
        t += 0.04
        shown = h.on_face(POSE, t)
        assert max_abs_distance(shown, POSE) < max_abs_distance(first, POSE)
        assert t < 4.0
    assert max_abs_distance(shown, POSE) < 0.01
    moved = POSE + 1.0
    assert h.on_face(moved, t + 0.04) is moved  # recovered: the face as it is


def test_face_back_during_the_hold_eases_from_the_held_pose() -> None:
    h = make(hold_s=1.0, recover=0.1)
    h.on_face(POSE, 0.0)
    lost_at(h, 0.1)
    other = np.full(3, -8.0)
    np.testing.assert_allclose(h.on_face(other, 0.2), np.zeros(3), atol=1e-12)  # half way


def test_a_new_loss_restarts_the_hold() -> None:
    h = make(hold_s=0.4, ease=0.2, recover=0.0)
    h.on_face(POSE, 0.0)
    lost_at(h, 0.1)
    assert float(np.max(lost_at(h, 0.7))) < float(np.max(POSE))
    np.testing.assert_array_equal(h.on_face(POSE, 0.8), POSE)  # recover 0: jumps back
    np.testing.assert_array_equal(lost_at(h, 1.0), POSE)  # lost again at 1.0: held anew
    np.testing.assert_array_equal(lost_at(h, 1.35), POSE)
    assert float(np.max(lost_at(h, 1.6))) < float(np.max(POSE))


def test_a_pose_in_two_parts_is_held_as_the_whole_pose_is() -> None:
    """FaceStep: the first part shown before the second is known gives, part by part, the
    whole pose's numbers, and the ease in ends when it would for the whole; so does a One
    Euro filter a part before the hold (as the mesh engine smooths and holds its landmarks
    and its body lattice)."""
    rng = np.random.default_rng(3)
    whole, parts = make(hold_s=0.1, ease=0.1, recover=0.05), make(hold_s=0.1, ease=0.1,
                                                                  recover=0.05)
    smooth = OneEuroFilter(1.0, 0.5)
    smooth_head, smooth_rest = OneEuroFilter(1.0, 0.5), OneEuroFilter(1.0, 0.5)
    neutral = np.zeros((6, 3))
    ended = []
    for k in range(60):
        t = 0.04 * k
        pose = rng.normal(size=(6, 3)) * 0.001 + (5.0 if k < 10 else -3.0) * np.arange(6)[:, None]
        if 10 <= k < 20:
            a, b = whole.on_lost(neutral, t), parts.on_lost(neutral, t)
            assert a is not None and b is not None
            np.testing.assert_array_equal(a, b)
            continue
        expected = whole.on_face(smooth(pose, t), t)
        step, before = parts.face_step(t), parts.shown
        head = step.show(None if before is None else before[:2], smooth_head(pose[:2], t))
        assert parts.shown is before  # nothing changes before the step ends
        rest = step.show(None if before is None else before[2:], smooth_rest(pose[2:], t))
        step.end(np.concatenate([head, rest]))
        np.testing.assert_array_equal(np.concatenate([head, rest]), expected)
        assert parts.recovering == whole.recovering and parts.shown is not None
        np.testing.assert_array_equal(parts.shown, expected)
        ended.append(not whole.recovering)
    assert not ended[10] and ended[-1]  # eased in after the loss, then converged


def test_reset_forgets_the_pose_and_the_timers() -> None:
    h = make(hold_s=0.0)
    h.on_face(POSE, 0.0)
    lost_at(h, 0.5)
    assert h.lost and h.recovering
    h.reset()
    assert h.shown is None and not h.lost and not h.recovering
    assert h.on_lost(NEUTRAL, 0.6) is None  # nothing shown since the reset
    other = np.full(3, 3.0)
    assert h.on_face(other, 0.7) is other  # no ease in from the forgotten pose
    np.testing.assert_array_equal(lost_at(h, 0.8), other)  # a fresh loss starts at 0.8


def test_converged_can_change_with_the_pose_units() -> None:
    h = make(hold_s=0.0, ease=0.0, recover=0.1, converged=0.01)
    h.on_face(POSE, 0.0)
    lost_at(h, 0.1)
    np.testing.assert_array_equal(lost_at(h, 0.15), NEUTRAL)  # ease half-life 0: at once
    np.testing.assert_allclose(h.on_face(POSE, 0.25), POSE / 2)
    assert h.recovering  # 4 from the face
    h.converged = 100.0
    h.on_face(POSE, 0.35)
    assert not h.recovering


def test_any_pose_type_with_its_own_approach_and_distance() -> None:
    calls: list[tuple[float, float]] = []

    def approach(cur: float, tgt: float, dt: float, half_life: float) -> float:
        calls.append((dt, half_life))
        return cur + (tgt - cur) * 0.5

    h: PoseHold[float] = PoseHold(hold_s=0.2, ease_half_life_s=0.3, recover_half_life_s=0.07,
                                  converged=0.5, approach=approach,
                                  distance=lambda a, b: abs(a - b))
    assert h.on_face(4.0, 0.0) == 4.0
    assert h.on_lost(0.0, 0.1) == 4.0 and not calls
    assert h.on_lost(0.0, 0.4) == 2.0
    assert calls[-1] == pytest.approx((0.1, 0.3))  # only the 0.1 s past the hold
    assert h.on_face(3.0, 0.5) == 2.5
    assert calls[-1] == pytest.approx((0.1, 0.07)) and h.recovering
    assert h.on_face(3.0, 0.6) == 2.75 and not h.recovering


@pytest.mark.parametrize("name", ["hold_s", "ease_half_life_s", "recover_half_life_s",
                                  "converged"])
@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_options_out_of_range(name: str, bad: float) -> None:
    options = {"hold_s": 0.4, "ease_half_life_s": 0.3, "recover_half_life_s": 0.06,
               "converged": 0.01, name: bad}
    with pytest.raises(ValueError, match=name):
        PoseHold(**options, approach=exp_approach, distance=max_abs_distance)
    PoseHold(**{**options, name: float("inf")}, approach=exp_approach,
             distance=max_abs_distance)  # inf: hold or ease for ever


@dataclass(frozen=True)
class _Options:
    hold_s: float = 0.25
    ease_half_life_s: float = 0.5
    recover_half_life_s: float = 0.125


def test_from_options_and_option_checks_of_an_engine_config() -> None:
    h = PoseHold.from_options(_Options(), converged=0.5, approach=exp_approach,
                              distance=max_abs_distance)
    assert (h.hold_s, h.ease_half_life_s, h.recover_half_life_s, h.converged) == \
        (0.25, 0.5, 0.125, 0.5)
    assert [c[:2] for c in hold_option_checks(_Options())] == [
        (True, "hold_s"), (True, "ease_half_life_s"), (True, "recover_half_life_s")]
    bad = hold_option_checks(_Options(ease_half_life_s=-1.0, recover_half_life_s=float("nan")))
    assert [(ok, name, got) for ok, name, _, got in bad][:2] == [
        (True, "hold_s", 0.25), (False, "ease_half_life_s", -1.0)]
    assert bad[2][0] is False
