"""Face detection, landmarks, square crops and the face tracker, on the shared fixtures."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from calibrate.landmarks import inter_ocular_distance
from live.face.tracking import (
    CROP_STEP,
    FaceBox,
    FaceTracker,
    crop_square,
    detect_faces,
    face_landmarks,
    native_crop_size,
    square_box,
    transform_points,
)
from live.packets import Frame

SINGLE_FACE_PORTRAITS = [
    "gfpgan_julia_roberts_crop.png",
    "lp_d8_glasses_man.jpg",
    "lp_s2_bw_photo.jpg",
    "lp_s42.jpg",
    "lp_s9_mona_lisa.jpg",
    "pg_fom_source_image.png",
    "sadtalker_art_14.png",
]
MULTI = "multi_pg_fom_multi_person.jpg"
DRIVING = ["lp_d0.mp4", "lp_d3.mp4", "lp_d11.mp4", "lp_d13.mp4", "lp_d18.mp4", "tps_driving.mp4"]
N_FRAMES = 60


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # drops an alpha channel
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


@functools.cache
def _decode(path: str, n: int) -> tuple[tuple[np.ndarray, float], ...]:
    import av

    out = []
    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            out.append((frame.to_ndarray(format="rgb24"), float(frame.time)))
            if len(out) >= n:
                break
    return tuple(out)


def video_frames(driving_dir: Path, name: str, n: int = N_FRAMES) -> list[Frame]:
    """The first ``n`` frames of a fixture video as Frames (decoded once per test session)."""
    return [Frame(image=img, index=i, t_capture=float(i), pts=t)
            for i, (img, t) in enumerate(_decode(str(driving_dir / name), n))]


# ----------------------------------------------------------------------------------------------
# detection and landmarks


@pytest.mark.parametrize("name", SINGLE_FACE_PORTRAITS)
@pytest.mark.fixtures
def test_detect_faces_finds_exactly_one_face(portraits_dir: Path, name: str) -> None:
    image = load_rgb(portraits_dir / name)
    faces = detect_faces(image)
    assert len(faces) == 1, [(f.x0, f.y0, f.width, f.score) for f in faces]
    f = faces[0]
    h, w = image.shape[:2]
    assert 0.5 <= f.score <= 1.0
    assert -0.1 * w < f.x0 < f.x1 < 1.1 * w and -0.1 * h < f.y0 < f.y1 < 1.1 * h
    assert f.keypoints is not None and f.keypoints.shape == (6, 2)
    # the detector's eye keypoints lie inside the box
    for x, y in f.keypoints[:2]:
        assert f.x0 < x < f.x1 and f.y0 < y < f.y1


@pytest.mark.fixtures
def test_detect_faces_on_the_group_painting(portraits_dir: Path) -> None:
    image = load_rgb(portraits_dir / MULTI)
    faces = detect_faces(image)
    # six men in the painting, one cut by the left border (only a sliver shows): five faces
    assert len(faces) >= 5, len(faces)
    centers = [f.center[0] for f in faces]
    assert centers == sorted(centers)
    for a in range(len(faces)):
        for b in range(a + 1, len(faces)):
            assert faces[a].iou(faces[b]) < 0.1
    # each face gets its own landmarks, inside its box
    for f in faces:
        lm = face_landmarks(image, box=f)
        assert lm is not None
        cx, cy = lm[:, :2].mean(axis=0)
        assert f.x0 < cx < f.x1 and f.y0 < cy < f.y1
    assert len(detect_faces(image, max_faces=2)) == 2


@pytest.mark.fixtures
def test_detect_faces_fast_mode_and_blank(portraits_dir: Path) -> None:
    assert len(detect_faces(load_rgb(portraits_dir / "lp_s42.jpg"), full_range=False)) == 1
    blank = np.full((480, 640, 3), 128, np.uint8)
    assert detect_faces(blank) == []
    assert face_landmarks(blank) is None


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"RGB uint8.*got dtype float32"):
        detect_faces(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(64, 64\)"):
        face_landmarks(np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("name", ["lp_s42.jpg", "lp_s9_mona_lisa.jpg"])
@pytest.mark.fixtures
def test_face_landmarks_shapes_and_agreement(portraits_dir: Path, name: str) -> None:
    image = load_rgb(portraits_dir / name)
    whole = face_landmarks(image)
    assert whole is not None and whole.shape == (478, 3) and whole.dtype == np.float32
    box = detect_faces(image)[0]
    boxed = face_landmarks(image, box=box, refine=False)
    assert boxed is not None and boxed.shape == (468, 3)
    iod = inter_ocular_distance(whole)
    assert iod > 50
    # same face either way: the two runs agree to a few percent of the eye distance
    err = np.hypot(*(whole[:468, :2] - boxed[:, :2]).T)
    assert np.median(err) < 0.03 * iod
    # z is scaled like x: the face's depth range is of the order of its width
    depth = np.ptp(whole[:468, 2])
    assert 0.2 * iod < depth < 3.0 * iod


# ----------------------------------------------------------------------------------------------
# boxes and crops


def test_square_box_from_points_and_box() -> None:
    pts = np.array([[10.0, 20.0], [50.0, 20.0], [30.0, 100.0]])
    center, side = square_box(pts, scale=2.0)
    np.testing.assert_allclose(center, [30.0, 60.0])
    assert side == pytest.approx(160.0)
    center, side = square_box(pts, scale=2.0, shift_y=-0.25)
    np.testing.assert_allclose(center, [30.0, 40.0])
    box = FaceBox(100.0, 100.0, 200.0, 200.0, 0.9, None)
    center, side = square_box(box, scale=1.0)
    assert 100 < side < 130 and 140 < center[1] < 150  # a mesh-sized face, a bit higher
    with pytest.raises(ValueError, match="got"):
        square_box(np.zeros((5, 2)))


@pytest.mark.parametrize("side", [60.0, 200.0, 700.0])  # upscale, mild and strong reduction
def test_crop_follows_crop_to_frame_exactly(side: float) -> None:
    # bilinear sampling and area averaging reproduce a linear image exactly, so every crop
    # pixel must equal the image's value at crop_to_frame(pixel)
    h, w = 900, 1000
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    image = np.stack([xx * 0.25, yy * 0.25, 40 + 0.1 * xx + 0.1 * yy], axis=-1)
    fc = crop_square(image.round().astype(np.uint8), (517.3, 431.8), side, 128)
    assert fc.image.shape == (128, 128, 3)
    ii, jj = np.mgrid[0:128, 0:128].astype(np.float64)  # rows, columns
    fx = fc.crop_to_frame[0, 0] * jj + fc.crop_to_frame[0, 2]
    fy = fc.crop_to_frame[1, 1] * ii + fc.crop_to_frame[1, 2]
    expect = np.stack([fx * 0.25, fy * 0.25, 40 + 0.1 * fx + 0.1 * fy], axis=-1)
    assert np.abs(fc.image.astype(np.float64) - expect).max() <= 1.01
    # corners of the crop sit on the square's corners (half a crop pixel inside)
    s = side / 128
    np.testing.assert_allclose(fx[0, 0], 517.3 - side / 2 + s / 2 - 0.5)
    np.testing.assert_allclose(fc.frame_to_crop() @ [fx[5, 7], fy[5, 7], 1.0], [7, 5], atol=1e-9)


def test_crop_outside_the_image_is_padded() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, -1] = (200, 100, 50)  # right edge column
    rep = crop_square(image, (100.0, 50.0), 100.0, 50)  # right half lies outside
    con = crop_square(image, (100.0, 50.0), 100.0, 50, border="constant")
    assert np.all(rep.image[:, 30:] == (200, 100, 50))
    assert np.all(con.image[:, 30:] == 0)
    with pytest.raises(ValueError, match="border"):
        crop_square(image, (50.0, 50.0), 10.0, 8, border="mirror")  # type: ignore[arg-type]


@pytest.mark.fixtures
def test_crop_landmarks_round_trip(portraits_dir: Path) -> None:
    image = load_rgb(portraits_dir / "lp_s2_bw_photo.jpg")  # 2048 px: strong reduction
    lm = face_landmarks(image)
    assert lm is not None
    center, side = square_box(lm, scale=1.8)
    fc = crop_square(image, center, side, 256, landmarks=lm, frame_index=7, t_capture=1.5)
    assert (fc.frame_index, fc.t_capture, fc.size) == (7, 1.5, 256)
    assert fc.landmarks is not None and fc.landmarks.shape == (478, 3)
    # the stored crop landmarks map back onto the frame landmarks
    back = transform_points(fc.landmarks, fc.crop_to_frame)
    assert np.abs(back - lm).max() < 1e-2
    # and the face mesh run on the crop itself lands there too (its own noise only)
    again = face_landmarks(fc.image)
    assert again is not None
    err_crop_px = np.hypot(*(again[:, :2] - fc.landmarks[:, :2]).T)
    assert np.median(err_crop_px) < 1.5
    # the crop holds the face: landmarks inside, face about 1/1.8 of the crop
    assert fc.landmarks[:, :2].min() > 0 and fc.landmarks[:, :2].max() < 256
    assert np.ptp(fc.landmarks[:, :2], axis=0).max() == pytest.approx(256 / 1.8, rel=0.01)


# ----------------------------------------------------------------------------------------------
# the tracker


def crop_centers(results: list) -> tuple[np.ndarray, np.ndarray]:
    m = np.stack([r.face.crop_to_frame for r in results])
    side = m[:, 0, 0] * results[0].face.size
    center = m[:, :, 2] + m[:, :, :2].diagonal(axis1=1, axis2=2) * (results[0].face.size - 1) / 2
    return center, side


@pytest.mark.parametrize("name", DRIVING)
@pytest.mark.fixtures
def test_tracker_follows_the_driving_videos(driving_dir: Path, name: str) -> None:
    frames = video_frames(driving_dir, name)
    with FaceTracker(crop_size=256) as tracker:
        results = [tracker.process(f) for f in frames]
        stats = tracker.stats
    found = [r for r in results if r.face is not None]
    assert len(found) >= 0.95 * len(frames)
    assert stats.frames == len(frames) and stats.faces == len(found)
    assert 1 <= stats.detections <= 3
    for r, f in zip(results, frames, strict=True):
        assert r.frame is f
    for r in found:
        face = r.face
        assert face is not None and face.landmarks is not None
        assert face.image.shape == (256, 256, 3) and face.image.dtype == np.uint8
        assert face.landmarks.shape == (478, 3)
        assert face.frame_index == r.frame.index
        lm = face.landmarks
        # the face sits in the middle of the crop at about 1/1.8 of its size
        assert np.all(np.abs(lm[:, :2].mean(axis=0) - 127.5) < 40)
        assert 0.4 * 256 < np.ptp(lm[:, :2], axis=0).max() < 0.75 * 256
    # low jitter: the crop centre's frame-to-frame acceleration is tiny next to the crop size
    center, side = crop_centers(found)
    accel = np.abs(np.diff(center, 2, axis=0)).max(axis=1) / side[2:]
    assert np.median(accel) < 0.01, np.median(accel)


@pytest.mark.fixtures
def test_smoothing_steadies_the_crop(driving_dir: Path) -> None:
    frames = video_frames(driving_dir, "tps_driving.mp4")
    jitter = {}
    for smooth in (False, True):
        with FaceTracker(smooth_box=smooth) as tracker:
            results = [tracker.process(f) for f in frames]
        center, side = crop_centers(results)
        jitter[smooth] = float(np.median(np.abs(np.diff(center, 2, axis=0)).max(axis=1) / side[2:]))
    assert jitter[True] < 0.7 * jitter[False], jitter


@pytest.mark.fixtures
def test_tracker_small_face_in_tall_frame(driving_dir: Path) -> None:
    # lp_d13: 720x1280 phone video; the mesh runs on a region around the face, so landmarks
    # in frame pixels are as consistent as on a close-up
    frames = video_frames(driving_dir, "lp_d13.mp4", 20)
    with FaceTracker() as tracker:
        results = [tracker.process(f) for f in frames]
    assert all(r.face is not None for r in results)
    ref = face_landmarks(frames[10].image)
    assert ref is not None
    face = results[10].face
    assert face is not None and face.landmarks is not None
    lm = transform_points(face.landmarks, face.crop_to_frame)
    err = np.hypot(*(lm[:, :2] - ref[:, :2]).T)
    assert np.median(err) < 0.05 * inter_ocular_distance(ref)


@pytest.mark.fixtures
def test_tracker_no_face_is_a_value_and_reacquires(driving_dir: Path) -> None:
    face_frames = video_frames(driving_dir, "lp_d3.mp4", 6)
    blank = np.full((480, 640, 3), 90, np.uint8)
    seq = [*face_frames[:3], Frame(blank, 3, 3.0, 0.2), *face_frames[3:]]
    seq = [Frame(f.image, i, float(i), 0.1 * i) for i, f in enumerate(seq)]
    with FaceTracker() as tracker:
        results = [tracker.process(f) for f in seq]
        assert [r.face is not None for r in results] == [True, True, True, False, True, True, True]
        assert results[3].frame is seq[3]
        s = tracker.stats
        # detections: first frame, the blank one (after the loss), the face again
        assert (s.frames, s.faces, s.losses, s.detections) == (7, 6, 1, 3)
        assert s.as_dict()["mesh_runs"] >= 7
        assert tracker.tracking
    first = FaceTracker()
    try:
        out = first.process(Frame(blank, 0, 0.0))
        assert out.face is None and not first.tracking
        assert first.stats.detections == 1 and first.stats.losses == 0
    finally:
        first.close()
        first.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        first.process(Frame(blank, 1, 1.0))


@pytest.mark.fixtures
def test_tracker_without_iris_refinement_and_bad_settings(driving_dir: Path) -> None:
    frames = video_frames(driving_dir, "lp_d18.mp4", 3)
    with FaceTracker(refine_landmarks=False, crop_size=128, crop_scale=2.2) as tracker:
        r = tracker.process(frames[0])
    assert r.face is not None and r.face.image.shape == (128, 128, 3)
    assert r.face.landmarks is not None and r.face.landmarks.shape == (468, 3)
    assert np.ptp(r.face.landmarks[:, :2], axis=0).max() == pytest.approx(128 / 2.2, rel=0.02)
    with pytest.raises(ValueError, match="crop_size"):
        FaceTracker(crop_size=4)
    with pytest.raises(ValueError, match="border"):
        FaceTracker(border="wrap")  # type: ignore[arg-type]


def _landmark_list(points: list[tuple[float, float, float]], *, visibility: float | None = None
                   ) -> object:
    from mediapipe.framework.formats import landmark_pb2

    face = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in points:
        p = face.landmark.add()
        p.x, p.y, p.z = x, y, z
    if visibility is not None:
        face.landmark[1].visibility = visibility
    return face


def test_landmarks_read_in_one_go_equal_those_read_field_by_field() -> None:
    """The face mesh's landmark list is read from its wire format when every landmark holds
    x, y and z only: the same floats as field by field (zeros, negatives, tiny and large
    values, and a landmark's 15 bytes holding the bytes of a tag); anything else (a landmark
    with a visibility) is read field by field."""
    from live.face import tracking

    rng = np.random.default_rng(3)
    pts = rng.normal(0.5, 0.4, (478, 3)).astype(np.float32)
    pts[0] = 0.0
    pts[1] = (-0.0, 1e-30, -3.5e5)
    pts[2] = np.frombuffer(bytes([0x0A, 15, 0x0D, 0x15]) * 3, "<f4")  # tag bytes as values
    values = [tuple(float(v) for v in p) for p in pts]

    class FieldsRefused:
        """The list's wire format only: reading its fields fails the test."""

        def __init__(self, face: Any) -> None:
            self.SerializeToString = face.SerializeToString

        @property
        def landmark(self) -> Any:
            raise AssertionError("read field by field")

    whole = _landmark_list(values)
    fast = tracking.landmark_array(FieldsRefused(whole))
    slow = np.array([(p.x, p.y, p.z) for p in whole.landmark], np.float32)
    assert fast.dtype == np.float32 and fast.shape == (478, 3)
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))  # -0.0 kept too

    seen = _landmark_list(values[:5], visibility=0.75)  # 22-byte landmarks: field by field
    with pytest.raises(AssertionError, match="field by field"):
        tracking.landmark_array(FieldsRefused(seen))
    assert np.array_equal(tracking.landmark_array(seen), slow[:5])
    assert tracking.landmark_array(_landmark_list([])).shape == (0, 3)



def test_the_native_crop_size_is_the_faces_pixels_rounded_down_within_its_limits() -> None:
    assert CROP_STEP == 64
    assert native_crop_size(300.0, 256, 512) == 256  # under two steps past: the smallest
    assert native_crop_size(383.9, 256, 512) == 320
    assert native_crop_size(448.0, 256, 512) == 448
    assert native_crop_size(1900.0, 256, 512) == 512
    assert native_crop_size(120.0, 256, 512) == 256  # a small face: enlarged, as before
    assert native_crop_size(900.0, 256, 256) == 256
    assert native_crop_size(0.0, 96, 512) == 96


def _face_on_canvas(face: np.ndarray, scale: float, size: tuple[int, int] = (1280, 720)
                    ) -> np.ndarray:
    """``face`` resized by ``scale`` and put in the middle of a grey ``size`` (w, h) frame."""
    w, h = size
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                       if scale < 1 else cv2.INTER_CUBIC)
    canvas = np.full((h, w, 3), 120, np.uint8)
    fh, fw = small.shape[:2]
    y0, x0 = (h - fh) // 2, (w - fw) // 2
    ys, xs = slice(max(y0, 0), min(y0 + fh, h)), slice(max(x0, 0), min(x0 + fw, w))
    canvas[ys, xs] = small[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return canvas


@pytest.mark.fixtures
def test_the_crop_follows_the_faces_resolution_without_enlarging_or_flipping(
        driving_dir: Path) -> None:
    # an HD camera's face keeps its pixels in a larger crop (up to max_crop_size), a small
    # face stays at crop_size; the size is chosen when the face is found and changes only
    # when the face's square shrinks below it or grows two steps past it
    face = video_frames(driving_dir, "lp_d3.mp4", 1)[0].image[:, 64:448]  # 384 x 512
    scales = [1.25] * 4 + list(np.linspace(1.25, 0.42, 24)) + [0.42] * 4 \
        + list(np.linspace(0.42, 1.25, 24)) + [1.25] * 4
    frames = [Frame(_face_on_canvas(face, s), i, float(i), i / 30.0)
              for i, s in enumerate(scales)]
    with FaceTracker(crop_size=256, max_crop_size=512) as tracker:
        assert tracker.current_crop_size == 256
        results = [tracker.process(f) for f in frames]
    crops = [r.face for r in results]
    assert all(c is not None for c in crops)
    sizes = [c.image.shape[0] for c in crops if c is not None]
    sides = [float(c.crop_to_frame[0, 0]) * c.image.shape[0] for c in crops if c is not None]
    assert set(sizes) <= {256, 320, 384, 448, 512}
    assert sizes[0] == 512 and sizes[31] == 256 and sizes[-1] == 512
    for size, side in zip(sizes, sides, strict=True):
        # never an enlargement of the frame above crop_size, never more than 2 steps short
        assert size == 256 or size <= side + 1e-6, (size, side)
        assert size == 512 or side < size + 2 * CROP_STEP, (size, side)
    changes = sum(a != b for a, b in itertools.pairwise(sizes))
    assert changes <= 8, sizes  # each step down and up once at most, no flipping back
    # the crop's landmarks are where the frame's are, at every size
    for c in crops:
        assert c is not None and c.landmarks is not None
        lm = transform_points(c.landmarks, c.crop_to_frame)
        assert np.all(np.abs(lm[:, :2].mean(axis=0) - (640, 360)) < 200)


@pytest.mark.fixtures
def test_a_tracker_without_max_crop_size_keeps_its_one_size(driving_dir: Path) -> None:
    face = video_frames(driving_dir, "lp_d3.mp4", 1)[0].image
    with FaceTracker(crop_size=256) as tracker:
        out = tracker.process(Frame(_face_on_canvas(face, 1.3), 0, 0.0, 0.0))
        assert tracker.max_crop_size == 256 and tracker.current_crop_size == 256
    assert out.face is not None and out.face.image.shape == (256, 256, 3)
    with pytest.raises(ValueError, match="max_crop_size: expected at least crop_size"):
        FaceTracker(crop_size=256, max_crop_size=128)
