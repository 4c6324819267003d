"""Mesh engine: the chin drops with the lower lip when the mouth opens
(live/engines/mesh/motion.py: jaw_weights, drop_jaw, option jaw_follow)."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate import landmarks as lm
from live.engines.mesh.motion import MotionOptions, drop_jaw, jaw_weights, portrait_motion


def _face() -> np.ndarray:
    """A schematic face (478, 2): eyes level, lower lip at y 160, chin at y 200, the jaw's
    angles 60 px either side; every other point well above the mouth."""
    rng = np.random.default_rng(0)
    p = np.column_stack([rng.uniform(60, 140, lm.NUM_LANDMARKS_WITH_IRISES),
                         rng.uniform(60, 110, lm.NUM_LANDMARKS_WITH_IRISES)])
    p[lm.RIGHT_EYE_OUTER] = (70, 100)
    p[lm.LEFT_EYE_OUTER] = (130, 100)
    p[lm.LOWER_LIP_BOTTOM] = (100, 160)
    p[lm.CHIN] = (100, 200)
    p[lm.FACE_OVAL[8]] = (160, 130)
    p[lm.FACE_OVAL[28]] = (40, 130)
    return p


def test_jaw_weights_are_one_at_the_chin_and_fade_up_and_sideways() -> None:
    p = _face()
    below, side, chin_side = 1, 2, 3  # three free points (none is a lip or an eye corner)
    assert not {below, side, chin_side} & {*lm.LIPS, lm.CHIN, *lm.FACE_OVAL}
    p[below] = (100, 170)     # a quarter of the way from the lip to the chin
    p[side] = (100, 120)      # above the lip
    p[chin_side] = (145, 200)  # level with the chin, three quarters out to the jaw's angle
    w = jaw_weights(p)
    assert w[lm.CHIN] == pytest.approx(1.0)
    assert w[below] == pytest.approx(0.5)
    assert w[side] == 0.0
    assert w[chin_side] == pytest.approx(1.0 - 0.75 ** 2)
    assert np.all(w[list(lm.LIPS)] == 0.0)
    assert w.min() >= 0.0 and w.max() <= 1.0


def test_drop_jaw_moves_the_chin_on_and_nothing_back() -> None:
    p = _face()
    points = p.copy()
    points[lm.CHIN, 1] += 5.0            # the face mesh: chin 5 px down ...
    points[lm.LOWER_LIP_BOTTOM, 1] += 20.0  # ... lower lip 20 px
    points[0, 1] -= 3.0                  # an upper-lip point went up (a smile)
    before = points.copy()
    drop_jaw(points, p, 18.0)
    assert points[lm.CHIN, 1] - p[lm.CHIN, 1] == pytest.approx(18.0)
    np.testing.assert_array_equal(points[lm.LOWER_LIP_BOTTOM], before[lm.LOWER_LIP_BOTTOM])
    np.testing.assert_array_equal(points[0], before[0])
    np.testing.assert_array_equal(points[:, 0], before[:, 0])  # down the face only
    assert np.all(points[:, 1] >= before[:, 1])
    closed = before.copy()
    drop_jaw(closed, p, -4.0)  # a mouth closing further than neutral: nothing
    np.testing.assert_array_equal(closed, before)


@pytest.mark.fixtures
def test_a_wide_open_mouth_takes_the_chin_down_with_the_lip(mesh_lp_s42) -> None:
    """The driving face mesh reads a wide-open jaw's chin at about half its drop: with
    jaw_follow the portrait's chin goes down with the lower lip; with 0, only as far as the
    mesh says; and a lip moving a little (speech) leaves the mesh's chin alone."""
    p = mesh_lp_s42[1].landmarks.copy()
    iod = lm.inter_ocular_distance(p)
    lower = sorted(set(lm.LIPS_OUTER_LOWER[1:-1] + lm.LIPS_INNER_LOWER[1:-1]))

    def chin_drop(lip: float, follow: float) -> tuple[float, np.ndarray]:
        moved = p.copy()
        moved[lower, 1] += lip * iod
        moved[lm.CHIN, 1] += 0.1 * iod
        out = portrait_motion(p, p, moved, options=MotionOptions(jaw_follow=follow)).points
        return float(out[lm.CHIN, 1] - p[lm.CHIN, 1]) / iod, out

    plain, a = chin_drop(0.45, 0.0)
    wide, b = chin_drop(0.45, 0.9)
    assert plain == pytest.approx(0.1, rel=0.05)
    assert wide == pytest.approx(0.9 * 0.45, rel=0.05)
    upper = list(lm.LIPS_OUTER_UPPER + lm.LIPS_INNER_UPPER)
    np.testing.assert_allclose(b[upper], a[upper])
    assert chin_drop(0.15, 0.9)[0] == pytest.approx(0.1, rel=0.05)  # speech
    assert 0.1 < chin_drop(0.3, 0.9)[0] < wide  # on the way


_CHIN_CHAIN = np.array([14, 15, 16, 17, 18, 200, 199, 175, 152])  # inner lower lip -> chin


def _chin_points(gaps_below_lip: list[float]) -> np.ndarray:
    """478 points, zeros but for the chain: the lower lip 10 px down its chain, then the
    bands below its outer line (point 17) with these heights."""
    pts = np.zeros((478, 2))
    ys = np.concatenate([[0.0, 3.0, 6.0, 10.0], 10.0 + np.cumsum(gaps_below_lip)])
    pts[_CHIN_CHAIN] = np.stack([np.full(len(ys), 50.0), ys], 1)
    return pts


def test_the_skin_under_the_lip_stretches_as_the_drivers_does() -> None:
    """A driver pressing its lips up stretches its first band under the lower lip 2x; a
    portrait whose band there is a quarter of the driver's gets the driver's stretch (with
    the chin's remaining length shared in proportion), not the driver's 8 extra pixels
    (which would draw it out 5x); the lip and the chin's ends stay where the displacements
    put them; with the portrait's own face driving, or one spaced about as the driver's,
    nothing changes."""
    from live.engines.mesh.motion import share_chin_bands

    down = np.array([0.0, 1.0])
    chains = (_CHIN_CHAIN,)
    portrait = _chin_points([2.0, 8.0, 8.0, 6.0, 6.0])
    neutral = _chin_points([8.0, 8.0, 8.0, 6.0, 6.0])
    current = _chin_points([16.0, 8.0, 8.0, 6.0, 6.0])
    q = portrait + (current - neutral)  # the driver's displacements
    additive = q.copy()
    share_chin_bands(q, portrait, neutral, current, chains, down, down)
    seg = _CHIN_CHAIN[3:]
    gaps = np.diff(q[seg, 1])
    np.testing.assert_allclose(q[seg[[0, -1]]], additive[seg[[0, -1]]])  # the ends stay
    np.testing.assert_allclose(q[_CHIN_CHAIN[:4]], additive[_CHIN_CHAIN[:4]])  # the lip too
    assert gaps.sum() == pytest.approx(np.diff(additive[seg, 1]).sum())
    want = np.array([2.0 * 2.0, 8.0, 8.0, 6.0, 6.0])
    np.testing.assert_allclose(gaps / gaps.sum(), want / want.sum())
    assert gaps[0] / 2.0 < 0.6 * (np.diff(additive[seg, 1])[0] / 2.0)
    np.testing.assert_array_equal(q[:, 0], additive[:, 0])  # only along the face
    own = neutral + (current - neutral)
    kept = own.copy()
    share_chin_bands(kept, neutral, neutral, current, chains, down, down)
    np.testing.assert_allclose(kept, own, atol=1e-12)
    # a spacing within the face mesh's reading noise of the driver's keeps the displacements
    close = _chin_points([7.0, 8.0, 8.0, 6.0, 6.0])
    q = close + (current - neutral)
    kept = q.copy()
    share_chin_bands(kept, close, neutral, current, chains, down, down)
    np.testing.assert_array_equal(kept, q)
