"""The scripted driving motion: expressions as face-mesh landmark displacements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibrate import landmarks as L
from live.jobs.scripted_motion import (
    DEFAULT_TIMELINE,
    EYELIDS,
    NEUTRAL,
    Expression,
    ScriptedMotion,
    apply_expression,
    expression_at,
    head_pivot,
    timeline_duration,
)

RIGHT_LIDS = set(L.RIGHT_EYE_UPPER[1:-1] + L.RIGHT_EYE_LOWER[1:-1])
LEFT_LIDS = set(L.LEFT_EYE_UPPER[1:-1] + L.LEFT_EYE_LOWER[1:-1])


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, np.ndarray]:
    """The built-in portrait's crop and its real face-mesh landmarks (478, 3)."""
    from live.jobs.demo import builtin_portrait, portrait_face_crop

    crop = portrait_face_crop(builtin_portrait(), size=512, name="astronaut")
    assert crop.landmarks is not None and crop.landmarks.shape == (478, 3)
    return crop.image, crop.landmarks


@pytest.fixture(scope="module")
def neutral(portrait: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return portrait[1]


def moved(a: np.ndarray, b: np.ndarray, tol: float = 1e-3) -> set[int]:
    return set(np.nonzero(np.abs(a.astype(np.float64) - b).max(axis=1) > tol)[0].tolist())


def lid_gap(pts: np.ndarray, mid: tuple[int, int]) -> float:
    return float(np.linalg.norm(pts[mid[0], :2] - pts[mid[1], :2]))


def test_neutral_is_the_input_unchanged(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, NEUTRAL)
    assert out.dtype == np.float32 and out.shape == neutral.shape
    assert np.array_equal(out, neutral)


def test_blink_moves_eyelid_landmarks_only(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, Expression(blink_right=1, blink_left=1))
    changed = moved(out, neutral)
    assert changed <= EYELIDS
    assert changed & RIGHT_LIDS and changed & LEFT_LIDS
    for mid in (L.RIGHT_EYE_LID_MID, L.LEFT_EYE_LID_MID):
        assert lid_gap(neutral, mid) > 3.0  # the portrait's eyes are open...
        assert lid_gap(out, mid) < 0.05 * lid_gap(neutral, mid)  # ...and now closed
    # Eye corners and irises stay where they were.
    for i in (*L.EYE_CORNERS, *L.IRISES):
        assert i not in changed


def test_half_blink_is_half_way(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, Expression(blink_right=0.5, blink_left=0.5))
    for mid in (L.RIGHT_EYE_LID_MID, L.LEFT_EYE_LID_MID):
        assert lid_gap(out, mid) == pytest.approx(0.5 * lid_gap(neutral, mid), rel=0.05)


def test_wink_closes_one_eye_only(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, Expression(blink_left=1))
    changed = moved(out, neutral)
    assert changed and changed <= LEFT_LIDS
    assert lid_gap(out, L.LEFT_EYE_LID_MID) < 0.05 * lid_gap(neutral, L.LEFT_EYE_LID_MID)
    assert lid_gap(out, L.RIGHT_EYE_LID_MID) == lid_gap(neutral, L.RIGHT_EYE_LID_MID)


def test_mouth_open_increases_lip_gap_and_drops_the_chin(neutral: np.ndarray) -> None:
    iod = float(L.inter_ocular_distance(neutral))
    gaps = []
    for amount in (0.0, 0.5, 1.0):
        out = apply_expression(neutral, Expression(mouth_open=amount))
        gaps.append(lid_gap(out, (L.UPPER_LIP_INNER, L.LOWER_LIP_INNER)))
        if amount == 1.0:
            assert out[L.CHIN, 1] - neutral[L.CHIN, 1] > 0.2 * iod  # the jaw drops
            # The upper face does not move.
            upper = set(L.RIGHT_EYE + L.LEFT_EYE + L.RIGHT_BROW + L.LEFT_BROW + L.IRISES)
            assert not (moved(out, neutral) & upper)
    assert gaps[0] < gaps[1] < gaps[2]
    assert gaps[2] - gaps[0] > 0.25 * iod


@pytest.mark.parametrize("expr", [Expression(mouth_open=1.0), Expression(mouth_open=0.5),
                                  Expression(smile=1.0), Expression(smile=1.0, mouth_open=0.6)])
def test_the_lips_move_whole_without_folding(neutral: np.ndarray, expr: Expression) -> None:
    """Every row of each lip moves with it, and the points between the outer and inner mouth
    corners with the corners: moving only the lips' lines left the rows between them where
    they were, which folded the lower lip and drew a dark tick down from the mouth corner
    (the black-and-white portrait in the demo)."""
    from live.engines.mesh.topology import face_triangles, triangle_areas

    lips = set(L.LIPS) | set(sum(L.LIPS_UPPER_MIDDLE + L.LIPS_LOWER_MIDDLE
                                 + L.LIPS_CORNER_MIDDLE, ()))
    tris = face_triangles()
    # the lips' own triangles, the mouth opening aside
    inner = set(L.LIPS_INNER)
    near = np.array([set(t) <= lips and not set(t) <= inner for t in tris.tolist()])
    out = apply_expression(neutral, expr)
    before = np.sign(triangle_areas(neutral[:, :2], tris[near]))
    after = np.sign(triangle_areas(out[:, :2], tris[near]))
    assert (before == after).all(), tris[near][before != after]
    lower = list(sum(L.LIPS_LOWER_MIDDLE, ()))
    if expr.mouth_open:
        assert moved(out, neutral) >= set(lower)


def test_smile_pulls_the_mouth_corners_out_and_up(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, Expression(smile=1))
    right, left = L.MOUTH_RIGHT, L.MOUTH_LEFT  # right corner is on the image left
    assert out[right, 0] < neutral[right, 0] and out[left, 0] > neutral[left, 0]
    assert out[right, 1] < neutral[right, 1] and out[left, 1] < neutral[left, 1]
    width0 = neutral[left, 0] - neutral[right, 0]
    assert out[left, 0] - out[right, 0] > 1.1 * width0
    # The cheeks push the lower lids up a little; the upper lids stay.
    assert not (moved(out, neutral) & set(L.RIGHT_EYE_UPPER + L.LEFT_EYE_UPPER))
    assert lid_gap(out, L.RIGHT_EYE_LID_MID) < lid_gap(neutral, L.RIGHT_EYE_LID_MID)


def test_brows_go_up_and_the_lower_face_stays(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, Expression(brows=1))
    brows = list(L.RIGHT_BROW + L.LEFT_BROW)
    assert np.all(out[brows, 1] < neutral[brows, 1] - 1.0)
    lower_face = set(L.LIPS) | {L.CHIN, L.NOSE_TIP}
    assert not (moved(out, neutral) & lower_face)
    assert not (moved(out, neutral) & set(L.FACE_OVAL))  # the hairline stays


def test_head_turn_is_a_rigid_rotation(neutral: np.ndarray) -> None:
    out = apply_expression(neutral, Expression(yaw=18)).astype(np.float64)
    n = neutral.astype(np.float64)
    # 3-D distances are preserved...
    pairs = [(L.NOSE_TIP, L.CHIN), (L.RIGHT_EYE_OUTER, L.LEFT_EYE_OUTER), (10, 152)]
    for a, b in pairs:
        assert np.linalg.norm(out[a] - out[b]) == pytest.approx(np.linalg.norm(n[a] - n[b]),
                                                                 rel=1e-4)
    # ...the nose swings towards image right and the eye line foreshortens.
    assert out[L.NOSE_TIP, 0] - n[L.NOSE_TIP, 0] > 0.1 * L.inter_ocular_distance(n)
    assert L.inter_ocular_distance(out) < L.inter_ocular_distance(n)
    pitch = apply_expression(neutral, Expression(pitch=10))
    assert pitch[L.NOSE_TIP, 1] > neutral[L.NOSE_TIP, 1]  # chin down: the nose drops
    roll = apply_expression(neutral, Expression(roll=10)).astype(np.float64)
    eye_line = roll[L.LEFT_EYE_OUTER, :2] - roll[L.RIGHT_EYE_OUTER, :2]
    eye_line0 = n[L.LEFT_EYE_OUTER, :2] - n[L.RIGHT_EYE_OUTER, :2]
    angle = math.degrees(math.atan2(eye_line[1], eye_line[0])
                         - math.atan2(eye_line0[1], eye_line0[0]))
    assert angle == pytest.approx(10.0, abs=0.01)
    # The pivot lies behind the face, about as deep as the cheeks' sides.
    assert head_pivot(n)[2] - n[L.NOSE_TIP, 2] > 0.5 * L.inter_ocular_distance(n)


def test_expressions_follow_a_rotated_and_scaled_portrait(neutral: np.ndarray) -> None:
    """Displacements are built in the face's own frame: rotating and scaling the neutral face
    in the image plane rotates and scales every expression with it."""
    theta = math.radians(25)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    scale, shift = 1.3, np.array([40.0, -15.0])

    def similar(pts: np.ndarray) -> np.ndarray:
        out = pts.astype(np.float64).copy()
        out[:, :2] = scale * out[:, :2] @ rot.T + shift
        out[:, 2] *= scale
        return out

    for expr in (Expression(blink_right=1), Expression(smile=0.8), Expression(mouth_open=0.7),
                 Expression(brows=1)):
        a = apply_expression(similar(neutral), expr)
        b = similar(apply_expression(neutral, expr))
        assert np.abs(a - b).max() < 0.05, expr


def test_timeline_starts_and_ends_neutral_and_has_no_jumps() -> None:
    duration = timeline_duration()
    assert 8.0 <= duration <= 12.0
    assert expression_at(0.0).is_neutral and expression_at(duration).is_neutral
    assert expression_at(duration + 5).is_neutral and expression_at(-1).is_neutral
    fields = ("blink_right", "blink_left", "smile", "mouth_open", "brows", "yaw", "pitch",
              "roll")
    seen = {f: 0.0 for f in fields}
    prev = expression_at(0.0)
    step = 0.002
    for k in range(1, int(duration / step) + 1):
        cur = expression_at(k * step)
        for f in fields:
            a, b = getattr(prev, f), getattr(cur, f)
            limit = 1.0 if f in ("yaw", "pitch", "roll") else 0.06  # per 2 ms
            assert abs(b - a) < limit, f"{f} jumps at t={k * step:.3f}"
            seen[f] = max(seen[f], abs(b))
        prev = cur
    # Every expression of the performance is really in it.
    assert all(v >= 0.7 or (f in ("yaw", "pitch", "roll") and v >= 7) for f, v in seen.items())
    assert len(DEFAULT_TIMELINE) > 10


def test_scripted_motion_stream(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, neutral = portrait
    motion = ScriptedMotion(image, neutral, fps=30, seconds=2)
    faces = list(motion)
    assert len(faces) == len(motion) == 60
    assert [f.frame_index for f in faces] == list(range(60))
    assert all(f.image is image for f in faces)
    assert faces[0].landmarks is not None and np.array_equal(faces[0].landmarks, neutral)
    assert faces[-1].landmarks is not None
    assert np.abs(faces[-1].landmarks - neutral).max() < 0.5  # ends (almost) neutral
    np.testing.assert_allclose(faces[0].crop_to_frame, [[1, 0, 0], [0, 1, 0]])
    # The whole performance is squeezed into 2 s: the eyes close at some point.
    gaps = [lid_gap(f.landmarks, L.RIGHT_EYE_LID_MID) for f in faces]  # type: ignore[arg-type]
    assert min(gaps) < 0.3 * gaps[0]
    natural = ScriptedMotion(image, neutral)
    assert len(natural) == round(timeline_duration() * 30)


def test_bad_landmarks_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected face-mesh points"):
        apply_expression(np.zeros((68, 2), np.float32), NEUTRAL)
