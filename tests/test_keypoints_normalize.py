"""Relative keypoint motion and adapt scale (calibrate.keypoints) on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate.keypoints import Keypoints, adapt_movement_scale, hull_area, normalize_kp

RNG = np.random.default_rng(7)
K = 10


def _kp(batch: int | None = 1, *, seed: int = 0) -> Keypoints:
    rng = np.random.default_rng(seed)
    shape = (K,) if batch is None else (batch, K)
    value = rng.uniform(-0.8, 0.8, (*shape, 2)).astype(np.float32)
    jac = (np.eye(2) + rng.normal(0, 0.2, (*shape, 2, 2))).astype(np.float32)
    return Keypoints(value, jac)


def _j(kp: Keypoints) -> np.ndarray:
    assert kp.jacobian is not None
    return kp.jacobian


def test_hull_area_of_known_shapes() -> None:
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [0.5, 1.5]])  # 2 inside points
    assert hull_area(square) == pytest.approx(4.0)
    assert hull_area(np.array([[0, 0], [3, 0], [0, 4]])) == pytest.approx(6.0)  # not perimeter


def test_hull_area_degenerate_and_bad_shape() -> None:
    with pytest.raises(ValueError, match="span no area"):
        hull_area(np.array([[0, 0], [1, 1], [2, 2], [3, 3]]))
    with pytest.raises(ValueError, match=r"shape \(N>=3, 2\), got shape \(2, 2\)"):
        hull_area(np.zeros((2, 2)))


def test_identity_motion_gives_source_keypoints() -> None:
    src, drv = _kp(seed=1), _kp(seed=2)
    out = normalize_kp(src, drv, drv, relative=True, adapt_scale=True)
    np.testing.assert_allclose(out.value, src.value, atol=1e-6)
    np.testing.assert_allclose(_j(out), _j(src), atol=1e-6)


def test_pure_translation_moves_source_by_the_same_amount() -> None:
    src, init = _kp(seed=1), _kp(seed=2)
    shift = np.array([0.1, -0.05], np.float32)
    drv = Keypoints(init.value + shift, _j(init))
    out = normalize_kp(src, drv, init, relative=True, adapt_scale=False)
    np.testing.assert_allclose(out.value, src.value + shift, atol=1e-6)
    np.testing.assert_allclose(_j(out), _j(src), atol=1e-6)


def test_twice_as_large_hull_halves_the_motion() -> None:
    src = _kp(seed=3)
    init = Keypoints(src.value * 2, _j(src))  # driving face twice the size
    assert adapt_movement_scale(src.value, init.value) == pytest.approx(0.5, rel=1e-6)
    shift = np.array([0.2, 0.1], np.float32)
    drv = Keypoints(init.value + shift, _j(init))
    out = normalize_kp(src, drv, init, relative=True, adapt_scale=True)
    np.testing.assert_allclose(out.value, src.value + shift * 0.5, atol=1e-6)
    plain = normalize_kp(src, drv, init, relative=True, adapt_scale=False)
    np.testing.assert_allclose(plain.value, src.value + shift, atol=1e-6)


def test_adapt_scale_uses_batch_element_zero_only() -> None:
    src, init = _kp(batch=2, seed=4), _kp(batch=2, seed=5)
    scale = adapt_movement_scale(src.value, init.value)
    want = np.sqrt(hull_area(src.value[0])) / np.sqrt(hull_area(init.value[0]))
    assert scale == pytest.approx(want, rel=1e-12)
    changed = init.value.copy()
    changed[1] *= 3
    assert adapt_movement_scale(src.value, changed) == scale


def test_jacobian_product_order() -> None:
    jd = np.array([[[[1.0, 0.5], [0.0, 1.0]]]])  # shear
    jd0 = np.array([[[[0.0, -1.0], [1.0, 0.0]]]])  # 90 degree rotation
    js = np.array([[[[2.0, 0.0], [0.0, 0.5]]]])  # anisotropic scale
    value = np.zeros((1, 1, 2))
    out = normalize_kp(Keypoints(value, js), Keypoints(value, jd), Keypoints(value, jd0))
    want = (jd[0, 0] @ np.linalg.inv(jd0[0, 0])) @ js[0, 0]
    np.testing.assert_allclose(_j(out)[0, 0], want, atol=1e-12)
    # The matrices do not commute, so any other order gives a different answer.
    for other in (np.linalg.inv(jd0[0, 0]) @ jd[0, 0] @ js[0, 0],
                  js[0, 0] @ jd[0, 0] @ np.linalg.inv(jd0[0, 0])):
        assert np.abs(other - want).max() > 0.1


def test_absolute_mode_passes_driving_through() -> None:
    src, drv, init = _kp(seed=1), _kp(seed=2), _kp(seed=3)
    out = normalize_kp(src, drv, init, relative=False, adapt_scale=True)
    np.testing.assert_array_equal(out.value, drv.value)
    np.testing.assert_array_equal(_j(out), _j(drv))


def test_relative_jacobian_off_keeps_driving_jacobian() -> None:
    src, drv, init = _kp(seed=1), _kp(seed=2), _kp(seed=3)
    out = normalize_kp(src, drv, init, relative=True, relative_jacobian=False)
    np.testing.assert_array_equal(_j(out), _j(drv))
    assert not np.allclose(out.value, drv.value)


def test_without_jacobians() -> None:
    src, drv, init = (Keypoints(_kp(seed=s).value) for s in (1, 2, 3))
    out = normalize_kp(src, drv, init)
    assert out.jacobian is None
    np.testing.assert_allclose(out.value, drv.value - init.value + src.value, atol=1e-6)


def test_relative_jacobian_needs_source_jacobian() -> None:
    src, drv, init = _kp(seed=1), _kp(seed=2), _kp(seed=3)
    with pytest.raises(ValueError, match="got None"):
        normalize_kp(Keypoints(src.value), drv, init)


def test_dtype_and_unbatched_shapes() -> None:
    src, drv, init = _kp(None, seed=1), _kp(None, seed=2), _kp(None, seed=3)
    out = normalize_kp(src, drv, init, adapt_scale=True)
    assert out.value.shape == (K, 2) and out.value.dtype == np.float32
    assert out.jacobian is not None
    assert _j(out).shape == (K, 2, 2) and _j(out).dtype == np.float32


def test_one_source_against_a_batch_of_driving_frames() -> None:
    src, drv, init = _kp(1, seed=1), _kp(4, seed=2), _kp(1, seed=3)
    out = normalize_kp(src, drv, init, adapt_scale=True)
    assert out.value.shape == (4, K, 2)
    for i in range(4):
        one = normalize_kp(src, Keypoints(drv.value[i:i + 1], _j(drv)[i:i + 1]), init,
                           adapt_scale=True)
        np.testing.assert_allclose(out.value[i:i + 1], one.value, atol=1e-7)
        np.testing.assert_allclose(_j(out)[i:i + 1], _j(one), atol=1e-7)


@pytest.mark.parametrize("bad, match", [
    (Keypoints(np.zeros((K, 3))),
     r"kp_driving.value: expected .*\(K, 2\) or \(B, K, 2\).*\(10, 3\)"),
    (Keypoints(np.zeros((1, 1, K, 2))), r"got float64 array of shape \(1, 1, 10, 2\)"),
    (Keypoints(np.zeros((1, K, 2)), np.zeros((1, K, 4))),
     r"kp_driving.jacobian: expected jacobians of shape \(1, 10, 2, 2\).*\(1, 10, 4\)"),
    (Keypoints(np.zeros((1, K + 1, 2))), "keypoint counts differ"),
    (Keypoints(np.zeros((3, K, 2))), None),  # batch 3 vs 2: no broadcast
])
def test_bad_shapes_raise_value_error(bad: Keypoints, match: str | None) -> None:
    src = Keypoints(_kp(2, seed=1).value)
    init = Keypoints(_kp(1, seed=3).value)
    with pytest.raises(ValueError, match=match or "do not broadcast"):
        normalize_kp(src, bad, init)


def test_singular_initial_jacobian_is_reported() -> None:
    src, drv = _kp(seed=1), _kp(seed=2)
    init = Keypoints(drv.value, np.zeros_like(_j(drv)))
    with pytest.raises(ValueError, match="singular"):
        normalize_kp(src, drv, init)
