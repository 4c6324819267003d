"""One Euro filter and exponential approach: real time steps, no assumed frame rate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from calibrate.smoothing import OneEuroFilter, approach_factor, exp_approach


def run(f: OneEuroFilter, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return np.stack([f(x, t) for x, t in zip(xs, ts, strict=True)])


def test_first_sample_and_constant_input_pass_through() -> None:
    f = OneEuroFilter(min_cutoff=0.5, beta=2.0)
    x = np.arange(12, dtype=np.float64).reshape(4, 3) - 5.5
    for i in range(50):
        np.testing.assert_array_equal(f(x, i / 30.0), x)


def test_shapes_and_input_not_modified() -> None:
    f = OneEuroFilter()
    x = np.zeros((478, 3), dtype=np.float32)
    y = f(x, 0.0)
    assert y.shape == (478, 3)
    y[:] = 7.0  # the returned array is the caller's
    out = f(x + 1.0, 0.1)
    assert np.all(out > 0) and np.all(out < 1.0)
    assert np.all(x == 0.0)
    with pytest.raises(ValueError, match=r"shape \(478, 3\).*got \(3,\)"):
        f(np.zeros(3), 0.2)


def test_step_response_uses_real_time_steps() -> None:
    # one step from 0 to 1: a longer time step moves further towards the new value
    moved = []
    for dt in (0.005, 0.033, 0.1, 0.5):
        f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
        f(np.array(0.0), 0.0)
        moved.append(float(f(np.array(1.0), dt)))
    assert all(a < b for a, b in itertools.pairwise(moved)), moved
    assert 0.0 < moved[0] < 0.05 and 0.5 < moved[-1] < 1.0


def test_same_elapsed_time_similar_result_at_any_frame_rate() -> None:
    finals = []
    for fps in (15.0, 30.0, 120.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
        f(np.array(0.0), 0.0)
        ts = np.arange(1, int(0.5 * fps) + 1) / fps
        finals.append(float(run(f, np.ones(len(ts)), ts)[-1]))
    # a first-order low pass at 1 Hz covers ~95% of a step in 0.5 s whatever the rate
    assert max(finals) - min(finals) < 0.05, finals
    assert min(finals) > 0.9


def test_noise_is_reduced_on_a_noisy_ramp() -> None:
    rng = np.random.default_rng(0)
    ts = np.arange(300) / 30.0
    truth = 0.05 * ts  # slow enough that the filter's lag stays below the noise
    noisy = truth + rng.normal(0.0, 0.05, size=ts.shape)
    out = run(OneEuroFilter(min_cutoff=1.0, beta=0.5), noisy, ts)
    err_raw = np.sqrt(np.mean((noisy[30:] - truth[30:]) ** 2))
    err_out = np.sqrt(np.mean((out[30:] - truth[30:]) ** 2))
    assert err_out < 0.5 * err_raw, (err_out, err_raw)
    # frame-to-frame jitter drops too
    assert np.std(np.diff(out[30:])) < 0.3 * np.std(np.diff(noisy[30:]))


def test_beta_reduces_lag_on_fast_motion() -> None:
    ts = np.arange(60) / 30.0
    fast = 5.0 * ts  # 5 units a second
    lag = {}
    for beta in (0.0, 1.0):
        out = run(OneEuroFilter(min_cutoff=0.5, beta=beta), fast, ts)
        lag[beta] = float(fast[-1] - out[-1])
    assert lag[1.0] < 0.5 * lag[0.0], lag


def test_non_increasing_time_returns_previous_value_and_keeps_state() -> None:
    f = OneEuroFilter(min_cutoff=1.0)
    f(np.array([0.0]), 1.0)
    a = f(np.array([1.0]), 1.1)
    np.testing.assert_array_equal(f(np.array([50.0]), 1.1), a)  # same time
    np.testing.assert_array_equal(f(np.array([50.0]), 0.5), a)  # going back
    g = OneEuroFilter(min_cutoff=1.0)
    g(np.array([0.0]), 1.0)
    g(np.array([1.0]), 1.1)
    np.testing.assert_allclose(f(np.array([1.0]), 1.2), g(np.array([1.0]), 1.2))


def test_reset_and_value() -> None:
    f = OneEuroFilter()
    assert f.value is None
    f(np.array([1.0, 2.0]), 0.0)
    f(np.array([3.0, 4.0]), 0.1)
    assert f.value is not None
    f.reset()
    assert f.value is None
    np.testing.assert_array_equal(f(np.array([9.0]), 0.2), [9.0])  # new shape is fine


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="min_cutoff > 0"):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta >= 0"):
        OneEuroFilter(beta=-1.0)


def test_exp_approach_half_life() -> None:
    cur, tgt = np.array([0.0, 10.0]), np.array([8.0, 2.0])
    np.testing.assert_allclose(exp_approach(cur, tgt, 0.25, 0.25), [4.0, 6.0])
    # two steps of dt equal one step of 2 dt: frame-rate independent
    two = exp_approach(exp_approach(cur, tgt, 0.1, 0.3), tgt, 0.1, 0.3)
    np.testing.assert_allclose(two, exp_approach(cur, tgt, 0.2, 0.3))
    np.testing.assert_array_equal(exp_approach(cur, tgt, 0.0, 0.3), cur)
    np.testing.assert_array_equal(exp_approach(cur, tgt, 0.1, 0.0), tgt)
    assert np.all(cur == [0.0, 10.0])  # not modified in place
    assert approach_factor(-1.0, 0.2) == 0.0
    assert 0.999 < approach_factor(10.0, 0.5) < 1.0
