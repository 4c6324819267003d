"""Neutral-pose detection, pose distance and best-matching frame."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate.errors import NoFaceError
from calibrate.landmarks import FACE_OVAL, LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from calibrate.neutral import NeutralPoseDetector, best_matching_frame, pose_distance


def synthetic_face(seed: int = 0) -> np.ndarray:
    """478 points spread over a 200 px face, eye corners 100 px apart."""
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(200, 400, 478), rng.uniform(150, 400, 478),
                           rng.uniform(-30, 30, 478)])
    pts[RIGHT_EYE_OUTER, :2] = (250, 250)
    pts[LEFT_EYE_OUTER, :2] = (350, 250)
    return pts


def similarity(pts: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float],
               ) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = pts.copy()
    out[:, :2] = pts[:, :2] @ r.T + np.array(shift)
    return out


# ----------------------------------------------------------------------------------------------
# NeutralPoseDetector


def test_no_pose_while_moving_then_the_settled_frame() -> None:
    base = synthetic_face()
    rng = np.random.default_rng(1)
    det = NeutralPoseDetector(window=0.3, threshold=0.02, max_wait=None)
    t = 0.0
    # 1 s of head motion: 0.2 IOD (20 px) swings, far above the threshold
    for i in range(30):
        t = i / 30.0
        moving = base.copy()
        moving[:, 0] += 20.0 * np.sin(2 * np.pi * 1.5 * t)
        assert det.process(moving, t) is None
        assert not det.settled
    # then still, with landmark noise of 0.003 IOD
    results = []
    for i in range(30, 60):
        t = i / 30.0
        still = base + rng.normal(0.0, 0.3, base.shape)
        results.append(det.process(still, t, item=f"frame{i}"))
    first = next(k for k, r in enumerate(results) if r is not None)
    # settles once a full 0.3 s window is still (10-11 frames), not before
    assert 9 <= first <= 12, first
    pose = results[first]
    assert pose is not None and det.settled and det.neutral is pose
    assert pose.landmarks.shape == (478, 2)
    assert np.abs(pose.landmarks - base[:, :2]).max() < 2.0
    assert pose.motion < 0.02 and not pose.timed_out
    assert isinstance(pose.item, str) and 30 + first - 11 <= int(pose.item[5:]) <= 30 + first
    assert all(r is pose for r in results[first:])  # the same pose afterwards
    # reset waits again
    det.reset()
    assert not det.settled and det.neutral is None
    assert det.process(base, t + 0.1) is None


def test_a_missing_face_restarts_the_window() -> None:
    base = synthetic_face()
    det = NeutralPoseDetector(window=0.3, max_wait=None)
    for i in range(8):
        assert det.process(base, i / 30.0) is None
    assert det.process(None, 8 / 30.0) is None
    for i in range(9, 18):  # 9 frames after the gap span only 0.27 s
        assert det.process(base, i / 30.0) is None
    assert det.process(base, 18 / 30.0) is not None
    # repeated or older timestamps carry no information
    det.reset()
    for _ in range(20):
        assert det.process(base, 1.0) is None


def test_max_wait_takes_the_stillest_window() -> None:
    base = synthetic_face()
    det = NeutralPoseDetector(window=0.3, threshold=0.02, max_wait=2.0)
    pose = None
    for i in range(90):
        t = i / 30.0
        amp = 10.0 if 30 <= i < 45 else 30.0  # calmest (but never still) around 1.0-1.5 s
        moving = base.copy()
        moving[:, 1] += amp * np.sin(2 * np.pi * 2.0 * t)
        pose = det.process(moving, t, item=i)
        if pose is not None:
            break
    assert pose is not None and pose.timed_out
    assert i == 60  # exactly when max_wait ran out
    assert 30 <= pose.item < 45
    assert pose.motion > 0.02


def test_detector_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="threshold > 0"):
        NeutralPoseDetector(threshold=0.0)
    with pytest.raises(ValueError, match="max_wait"):
        NeutralPoseDetector(window=1.0, max_wait=0.5)
    with pytest.raises(ValueError, match=r"N>=468.*got shape \(68, 2\)"):
        NeutralPoseDetector().process(np.zeros((68, 2)), 0.0)


# ----------------------------------------------------------------------------------------------
# pose_distance and best_matching_frame (synthetic)


def test_pose_distance_ignores_similarity_transforms() -> None:
    a = synthetic_face()
    assert pose_distance(a, a) < 1e-12
    b = similarity(a, 25.0, 1.7, (-80.0, 310.0))
    assert pose_distance(a, b) < 1e-9
    assert pose_distance(a, b[:468]) < 1e-9  # 468 and 478 points mix
    # a mirror image is not a similarity
    mirrored = a.copy()
    mirrored[:, 0] *= -1
    assert pose_distance(a, mirrored) > 0.1


def test_pose_distance_grows_with_the_deformation() -> None:
    a = synthetic_face()
    oval = list(FACE_OVAL)
    dists = []
    for amount in (2.0, 5.0, 10.0):
        b = a.copy()
        b[oval, 0] = 300 + (b[oval, 0] - 300) * (1 + amount / 100)  # wider face
        dists.append(pose_distance(a, b))
    assert 0 < dists[0] < dists[1] < dists[2]
    # in IODs: the same deformation of a bigger copy gives the same number
    big = similarity(a, 0.0, 3.0, (0.0, 0.0))
    b = a.copy()
    b[oval, 0] += 4.0
    big_b = similarity(b, 0.0, 3.0, (0.0, 0.0))
    assert pose_distance(big, big_b) == pytest.approx(pose_distance(a, b), rel=1e-9)


def test_best_matching_frame_synthetic() -> None:
    portrait = synthetic_face(0)
    rng = np.random.default_rng(5)
    frames: list[np.ndarray | None] = []
    for i in range(12):
        f = similarity(portrait, 10.0 * i, 0.5 + 0.1 * i, (5.0 * i, -3.0 * i))
        f[:, :2] += rng.normal(0, 8.0 if i != 7 else 0.2, (478, 2))
        frames.append(f)
    frames[3] = None
    assert best_matching_frame(portrait, frames) == 7
    # an array (T, N, 3) works too
    arr = np.stack([f for f in frames if f is not None])
    assert best_matching_frame(portrait, arr) == 6
    with pytest.raises(NoFaceError, match="no face in any driving frame"):
        best_matching_frame(portrait, [None, None])


# ----------------------------------------------------------------------------------------------
# real fixtures


@functools.cache
def _tracked_landmarks(path: str, n: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    import av

    from live.face.tracking import FaceTracker, transform_points
    from live.packets import Frame

    lms, ts, images = [], [], []
    with av.open(path) as container, FaceTracker() as tracker:
        for i, vf in enumerate(container.decode(container.streams.video[0])):
            img = vf.to_ndarray(format="rgb24")
            r = tracker.process(Frame(img, i, float(i), float(vf.time)))
            assert r.face is not None and r.face.landmarks is not None
            lms.append(transform_points(r.face.landmarks, r.face.crop_to_frame))
            ts.append(float(vf.time))
            images.append(img)
            if len(lms) >= n:
                break
    return np.stack(lms), np.array(ts), tuple(images)


@pytest.mark.fixtures
def test_real_face_pose_distance_under_a_similarity_warp(portraits_dir: Path) -> None:
    from live.face.tracking import face_landmarks

    bgr = cv2.imread(str(portraits_dir / "lp_s42.jpg"), cv2.IMREAD_COLOR)
    image = np.ascontiguousarray(bgr[:, :, ::-1])
    a = face_landmarks(image)
    m = cv2.getRotationMatrix2D((256.0, 256.0), 12.0, 0.8)
    warped = cv2.warpAffine(image, m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    b = face_landmarks(warped)
    assert a is not None and b is not None
    same = pose_distance(a, b)
    assert same < 0.03, same  # only the mesh's own noise remains
    # a different face in the same framing is much further away
    other = face_landmarks(np.ascontiguousarray(
        cv2.imread(str(portraits_dir / "lp_d8_glasses_man.jpg"), cv2.IMREAD_COLOR)[:, :, ::-1]))
    assert other is not None
    assert pose_distance(a, other) > 2 * same


@pytest.mark.fixtures
def test_real_video_best_frame_and_neutral(driving_dir: Path) -> None:
    from live.face.tracking import face_landmarks

    lms, ts, images = _tracked_landmarks(str(driving_dir / "lp_d3.mp4"), 90)
    # a portrait made from frame 60 (rotated, shrunk): its best match is frame 60 or a neighbour
    m = cv2.getRotationMatrix2D((256.0, 256.0), -8.0, 0.7)
    portrait = cv2.warpAffine(images[60], m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    plm = face_landmarks(portrait)
    assert plm is not None
    others = [0, 20, 40, 80]
    best = best_matching_frame(plm, lms)
    assert abs(best - 60) <= 2, best
    assert all(pose_distance(plm, lms[60]) < pose_distance(plm, lms[k]) for k in others)
    # the neutral detector settles on this clip (at ~1.6 s, before max_wait runs out)
    det = NeutralPoseDetector()
    pose = None
    for i, (lm, t) in enumerate(zip(lms, ts, strict=True)):
        pose = det.process(lm, t, item=i)
        if pose is not None:
            break
    assert pose is not None and not pose.timed_out and 0.3 <= t < 3.0
    assert pose.motion <= 0.02
