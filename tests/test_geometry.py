"""live.geometry (affines, point transforms, MediaPipe pixels) and Frame.time, the one rule for
a frame's time."""

from __future__ import annotations

import numpy as np
import pytest

from live.geometry import (
    apply_affine,
    compose_affine,
    covered_region,
    crop_square,
    invert_affine,
    letterbox_transform,
    normalized_to_pixels,
    transform_points,
)
from live.packets import FaceCrop, Frame


def test_affines_compose_and_invert() -> None:
    a = np.array([[2.0, 0.0, 5.0], [0.0, 2.0, -3.0]])
    b = np.array([[0.5, 0.0, 1.0], [0.0, 0.5, 2.0]])
    pts = np.array([[0.0, 0.0], [10.0, 4.0]])
    np.testing.assert_allclose(apply_affine(pts, compose_affine(a, b)),
                               apply_affine(apply_affine(pts, b), a))
    np.testing.assert_allclose(apply_affine(apply_affine(pts, a), invert_affine(a)), pts,
                               atol=1e-12)
    # z follows the affine's scale
    moved = transform_points(np.array([[1.0, 2.0, 3.0]]), a)
    np.testing.assert_allclose(moved, [[7.0, 1.0, 6.0]])
    assert moved.dtype == np.float32


def test_crop_landmarks_and_frame_to_crop_agree() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    lm = np.array([[120.0, 80.0, 4.0], [160.0, 110.0, -2.0]])
    fc = crop_square(image, (140.0, 95.0), 90.0, 64, landmarks=lm)
    assert fc.landmarks is not None
    np.testing.assert_allclose(fc.landmarks[:, :2], apply_affine(lm, fc.frame_to_crop()),
                               rtol=1e-6)
    np.testing.assert_allclose(transform_points(fc.landmarks, fc.crop_to_frame), lm,
                               atol=1e-3)


def test_mediapipe_points_to_pixels_keep_their_dtype() -> None:
    mesh = np.array([[0.5, 0.25, 0.1]], np.float32)
    px = normalized_to_pixels(mesh, 200, 100)
    assert px.dtype == np.float32
    np.testing.assert_allclose(px, [[99.5, 24.5, 20.0]])
    np.testing.assert_allclose(normalized_to_pixels(np.array([[0.0, 1.0]]), 10, 20),
                               [[-0.5, 19.5]])
    assert normalized_to_pixels(np.zeros((0, 2)), 10, 10).shape == (0, 2)


def test_covered_region_of_a_letterboxed_picture() -> None:
    m = letterbox_transform((100, 50), (200, 200))  # 200x100, bars above and below
    assert covered_region(m, 100, 50, 200, 200) == (0, 49, 200, 151)
    assert covered_region(np.array([[1.0, 0, 500], [0, 1.0, 0]]), 10, 10, 200, 200) is None


def test_frame_time_is_pts_else_index_over_fps_else_capture_clock() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    assert Frame(image, 12, t_capture=7.5, pts=0.25).time(30.0) == 0.25
    assert Frame(image, 12, t_capture=7.5).time(24.0) == pytest.approx(0.5)
    assert Frame(image, 12, t_capture=7.5).time() == 7.5


def test_an_enlarged_crop_keeps_more_detail_than_bilinear() -> None:
    # a small portrait enlarged 4x (the demo's is 2.7x): bicubic, not bilinear's blocky blur;
    # the crop still follows its crop_to_frame (same place, same mean colour)
    import cv2

    from live.geometry import crop_square

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (100, 100, 3), np.uint8), (0, 0), 0.7)

    def detail(x: np.ndarray) -> float:
        gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean())

    crop = crop_square(image, (50, 50), 40, 160)
    bilinear = cv2.warpAffine(image, crop.crop_to_frame, (160, 160),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
    assert detail(crop.image) > 1.1 * detail(bilinear)
    assert abs(crop.image.astype(float).mean() - bilinear.astype(float).mean()) < 1.0
    assert np.abs(crop.image.astype(int) - bilinear.astype(int)).mean() < 6.0


def test_picture_box_is_the_part_of_the_crop_that_shows_its_picture() -> None:
    from live.geometry import picture_box

    image = np.full((120, 200, 3), 200, np.uint8)  # the picture: one grey, the border black
    # a square reaching past the picture's left and bottom edges
    crop = crop_square(image, (30.0, 100.0), 90.0, 128, border="constant")
    x0, y0, x1, y1 = picture_box(crop.crop_to_frame, (200, 120), 128)
    assert (y0, x1) == (0, 128) and x0 > 0 and y1 < 128  # the crop's own top and right
    assert (crop.image[y0:y1, x0:x1] == 200).all()  # all of it shows the picture ...
    assert (crop.image[:, :x0 - 6] == 0).all() and (crop.image[y1 + 6:] == 0).all()  # ... tight
    inside = crop_square(image, (100.0, 60.0), 50.0, 64)
    assert picture_box(inside.crop_to_frame, (200, 120), 64) == (0, 0, 64, 64)
    with pytest.raises(ValueError, match="none of its"):
        picture_box(crop_square(image, (400.0, 60.0), 50.0, 64).crop_to_frame, (200, 120), 64)


def test_photo_box_reaches_the_pictures_own_edge() -> None:
    """:func:`photo_box`: every crop pixel whose centre lies on the picture, up to its own
    edge (a pixel or so further than :func:`picture_box`, which stops short of what the
    crop's interpolation blended with its made-up border); the same box for a crop inside
    its picture."""
    from live.geometry import photo_box, picture_box

    image = np.full((120, 200, 3), 200, np.uint8)
    crop = crop_square(image, (30.0, 100.0), 90.0, 128, border="constant")
    x0, y0, x1, y1 = photo_box(crop.crop_to_frame, (200, 120), 128)
    px0, _, _, py1 = picture_box(crop.crop_to_frame, (200, 120), 128)
    assert (y0, x1) == (0, 128) and x0 < px0 and y1 > py1
    # the picture's edge at crop x = (0.5 - (30 - 45)) * 128 / 90 - 0.5: pixels from there on
    edge_x = (-0.5 - (30.0 - 45.0)) * 128.0 / 90.0 - 0.5
    assert x0 == int(np.ceil(edge_x))
    assert (crop.image[y0:y1, x0:] > 0).all() and (crop.image[y0:y1 - 2, :x0 - 2] == 0).all()
    inside = crop_square(image, (100.0, 60.0), 50.0, 64)
    assert photo_box(inside.crop_to_frame, (200, 120), 64) == (0, 0, 64, 64)
    with pytest.raises(ValueError, match="none of its"):
        photo_box(crop_square(image, (400.0, 60.0), 50.0, 64).crop_to_frame, (200, 120), 64)


def _square_edges(crop: FaceCrop, n: int) -> tuple[float, float, float, float]:
    """The crop's outer edges (left, top, right, bottom) in its picture's pixels."""
    m = crop.crop_to_frame
    lo, hi = -0.5, n - 0.5
    return (m[0, 2] + m[0, 0] * lo, m[1, 2] + m[1, 1] * lo,
            m[0, 2] + m[0, 0] * hi, m[1, 2] + m[1, 1] * hi)


def test_fit_square_moves_the_square_into_the_picture_and_shrinks_it_to_fit() -> None:
    from live.geometry import fit_square

    image = np.full((120, 200, 3), 200, np.uint8)
    # past the bottom-left corner: moved in, same side, flush with the picture's edges
    center, side = fit_square((10.0, 110.0), 80.0, (200, 120))
    assert side == 80.0
    left, top, right, bottom = _square_edges(crop_square(image, center, side, 64), 64)
    assert left == pytest.approx(-0.5) and bottom == pytest.approx(119.5)
    assert top > 0 and right < 199.5
    # larger than the picture's height: the height, as near the asked centre as it can be
    center, side = fit_square((100.0, 60.0), 300.0, (200, 120))
    assert side == 120.0 and center.tolist() == [100.0, 60.0]
    _, top, _, bottom = _square_edges(crop_square(image, center, side, 64), 64)
    assert top == pytest.approx(-0.5) and bottom == pytest.approx(119.5)
    # inside already: left as it is
    center, side = fit_square((100.0, 60.0), 50.0, (200, 120))
    assert side == 50.0 and center.tolist() == [100.0, 60.0]
