"""Face-mesh index constants: checked against MediaPipe's own connection sets and a real face."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate import landmarks as L


def edges(seq: tuple[int, ...], *, closed: bool) -> set[frozenset[int]]:
    pairs = list(itertools.pairwise(seq))
    if closed:
        pairs.append((seq[-1], seq[0]))
    return {frozenset(p) for p in pairs}


def mp_edges(name: str) -> set[frozenset[int]]:
    from mediapipe.python.solutions import face_mesh_connections

    return {frozenset(e) for e in getattr(face_mesh_connections, name)}


@pytest.mark.parametrize(
    ("loops", "lines", "mp_name"),
    [
        ([L.FACE_OVAL], [], "FACEMESH_FACE_OVAL"),
        ([L.RIGHT_EYE], [], "FACEMESH_RIGHT_EYE"),
        ([L.LEFT_EYE], [], "FACEMESH_LEFT_EYE"),
        ([], [L.RIGHT_EYE_UPPER, L.RIGHT_EYE_LOWER], "FACEMESH_RIGHT_EYE"),
        ([], [L.LEFT_EYE_UPPER, L.LEFT_EYE_LOWER], "FACEMESH_LEFT_EYE"),
        ([L.LIPS_OUTER, L.LIPS_INNER], [], "FACEMESH_LIPS"),
        ([], [L.LIPS_OUTER_UPPER, L.LIPS_OUTER_LOWER, L.LIPS_INNER_UPPER, L.LIPS_INNER_LOWER],
         "FACEMESH_LIPS"),
        ([], [L.RIGHT_BROW_UPPER, L.RIGHT_BROW_LOWER], "FACEMESH_RIGHT_EYEBROW"),
        ([], [L.LEFT_BROW_UPPER, L.LEFT_BROW_LOWER], "FACEMESH_LEFT_EYEBROW"),
        ([L.RIGHT_IRIS], [], "FACEMESH_RIGHT_IRIS"),
        ([L.LEFT_IRIS], [], "FACEMESH_LEFT_IRIS"),
    ],
)
def test_contours_match_mediapipe_connections(
    loops: list[tuple[int, ...]], lines: list[tuple[int, ...]], mp_name: str
) -> None:
    ours: set[frozenset[int]] = set()
    for loop in loops:
        assert len(set(loop)) == len(loop)
        ours |= edges(loop, closed=True)
    for line in lines:
        ours |= edges(line, closed=False)
    assert ours == mp_edges(mp_name)


def test_point_sets_match_mediapipe() -> None:
    nose = mp_edges("FACEMESH_NOSE")
    assert set(L.NOSE) == set().union(*nose)
    assert edges(L.NOSE_BRIDGE_LINE, closed=False) <= nose
    assert set(L.IRISES) == {L.RIGHT_IRIS_CENTER, L.LEFT_IRIS_CENTER, *L.RIGHT_IRIS, *L.LEFT_IRIS}
    assert len(L.IRISES) == L.NUM_LANDMARKS_WITH_IRISES - L.NUM_LANDMARKS
    assert set(L.LIPS) == set().union(*mp_edges("FACEMESH_LIPS"))
    assert len(L.POSE_POINTS) == len(set(L.POSE_POINTS)) == 52
    for idx in (*L.POSE_POINTS, *L.LIPS, *L.RIGHT_BROW, *L.LEFT_BROW, *L.FACE_OVAL):
        assert 0 <= idx < L.NUM_LANDMARKS


def test_inter_ocular_distance_single_and_batch() -> None:
    pts = np.zeros((478, 3))
    pts[L.RIGHT_EYE_OUTER] = (10.0, 20.0, 5.0)
    pts[L.LEFT_EYE_OUTER] = (13.0, 24.0, -50.0)  # z is ignored
    assert L.inter_ocular_distance(pts) == pytest.approx(5.0)
    batch = np.stack([pts, pts * 2.0])
    np.testing.assert_allclose(L.inter_ocular_distance(batch), [5.0, 10.0])
    with pytest.raises(ValueError, match=r"N>=468.*got shape \(68, 2\)"):
        L.inter_ocular_distance(np.zeros((68, 2)))


def test_face_axes_run_along_the_eye_line_and_down_the_face() -> None:
    pts = np.zeros((478, 3))
    angle = np.radians(30.0)  # a head tilted 30 degrees (its left eye lower in the image)
    pts[L.RIGHT_EYE_OUTER] = (100.0, 50.0, 0.0)
    pts[L.LEFT_EYE_OUTER] = (100.0 + 60 * np.cos(angle), 50.0 + 60 * np.sin(angle), 9.0)
    across, down = L.face_axes(pts)
    np.testing.assert_allclose(across, [np.cos(angle), np.sin(angle)])
    np.testing.assert_allclose(down, [-np.sin(angle), np.cos(angle)])  # y grows downwards
    assert float(across @ down) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def real_face(portraits_dir: Path) -> np.ndarray:
    from live.face.tracking import face_landmarks

    bgr = cv2.imread(str(portraits_dir / "lp_s42.jpg"), cv2.IMREAD_COLOR)
    lm = face_landmarks(np.ascontiguousarray(bgr[:, :, ::-1]), refine=True)
    assert lm is not None and lm.shape == (478, 3)
    return lm


@pytest.mark.fixtures
def test_sides_and_parts_on_a_real_frontal_face(real_face: np.ndarray) -> None:
    lm = real_face
    x, y = lm[:, 0], lm[:, 1]
    # subject's right eye is on the image's left in an unmirrored photo
    assert x[L.RIGHT_EYE_OUTER] < x[L.RIGHT_EYE_INNER] < x[L.LEFT_EYE_INNER] < x[L.LEFT_EYE_OUTER]
    assert x[L.MOUTH_RIGHT] < x[L.MOUTH_LEFT]
    for up, low in (L.RIGHT_EYE_LID_MID, L.LEFT_EYE_LID_MID):
        assert y[up] < y[low]
    assert y[L.UPPER_LIP_TOP] < y[L.UPPER_LIP_INNER] <= y[L.LOWER_LIP_INNER] < y[L.LOWER_LIP_BOTTOM]
    assert y[list(L.RIGHT_BROW)].max() < y[list(L.RIGHT_EYE)].mean()
    assert y[list(L.LEFT_BROW)].max() < y[list(L.LEFT_EYE)].mean()
    assert y[L.FOREHEAD_TOP] < y[L.NOSE_BRIDGE] < y[L.NOSE_TIP] < y[L.CHIN]
    right, left = L.eye_centers(lm)
    # each iris centre lies within its eye (closer than a quarter IOD to the contour's centre)
    iod = L.inter_ocular_distance(lm)
    assert np.hypot(*(lm[L.RIGHT_IRIS_CENTER, :2] - right[:2])) < 0.25 * iod
    assert np.hypot(*(lm[L.LEFT_IRIS_CENTER, :2] - left[:2])) < 0.25 * iod
    # the oval loop encloses the nose tip and the mouth
    oval = lm[list(L.FACE_OVAL), :2].astype(np.float32)
    for idx in (L.NOSE_TIP, L.UPPER_LIP_INNER):
        assert cv2.pointPolygonTest(oval, (float(x[idx]), float(y[idx])), False) > 0
