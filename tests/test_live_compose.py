"""paste_back, letterbox and the Compositor (pure OpenCV/numpy, no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest
from _live_fakes import psnr

from live.compose import (
    Compositor,
    crop_mask,
    ellipse_mask,
    hull_mask,
    letterbox,
    letterbox_transform,
    paste_back,
)
from live.face.tracking import crop_square


def _scene(h: int = 360, w: int = 480, seed: int = 0) -> np.ndarray:
    """A smooth, non-trivial RGB picture (gradients plus blobs)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 200 + 20, y / h * 180 + 30, (x + y) / (w + h) * 120 + 60], -1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
        img += (np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
                * rng.uniform(-60, 60, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_letterbox_keeps_aspect_with_black_bars() -> None:
    img = np.full((100, 200, 3), 200, np.uint8)  # 2:1
    out = letterbox(img, (300, 300))
    assert out.shape == (300, 300, 3) and out.dtype == np.uint8
    # content 300x150 centred: bars of 75 rows above and below
    assert out[:74].max() == 0 and out[226:].max() == 0
    assert (out[76:224] == 200).all()
    m = letterbox_transform((200, 100), (300, 300))
    np.testing.assert_allclose(m @ [0, 0, 1], [0, 75])
    np.testing.assert_allclose(m @ [200, 100, 1], [300, 225])


def test_letterbox_tall_image_gets_side_bars() -> None:
    img = np.full((1280, 720, 3), 90, np.uint8)
    out = letterbox(img, (1280, 720))
    cols = np.flatnonzero(out[360].max(axis=-1) > 0)
    assert out[360, 0].max() == 0 and out[360, -1].max() == 0
    width = cols[-1] - cols[0] + 1
    assert abs(width - 405) <= 1  # 720 * 720 / 1280


def test_letterbox_filters_a_strong_shrink_and_interpolates_a_mild_one() -> None:
    import cv2

    img = _scene(512, 512)
    mild = letterbox(img, (640, 480))  # 512 -> 480: bilinear
    assert (mild[:, 80:560] == cv2.resize(img, (480, 480),
                                          interpolation=cv2.INTER_LINEAR)).all()
    assert mild[:, :80].max() == 0 and mild[:, 560:].max() == 0
    strong = letterbox(img, (320, 240))  # 512 -> 240: the area filter (no aliasing)
    assert (strong[:, 40:280] == cv2.resize(img, (240, 240),
                                            interpolation=cv2.INTER_AREA)).all()
    # both are faithful pictures of the frame
    assert psnr(mild[:, 80:560], cv2.resize(img, (480, 480),
                                            interpolation=cv2.INTER_AREA)) > 40.0


def test_paste_back_of_an_unchanged_crop_restores_the_picture() -> None:
    """A crop cut with tracking.crop_square and pasted back with its own transform lands on
    the same pixels: the conventions of cropping and compositing agree."""
    canvas = _scene()
    crop = crop_square(canvas, (250.0, 170.0), 180.0, 256)
    out = paste_back(canvas, crop.image, crop.crop_to_frame, feather=0.05)
    assert out is not canvas
    assert psnr(out, canvas) > 38.0
    # and the canvas itself was not touched
    assert psnr(canvas, _scene()) == 99.0


def test_paste_back_blends_without_a_box_edge() -> None:
    canvas = np.full((400, 400, 3), 60, np.uint8)
    crop = np.full((200, 200, 3), 220, np.uint8)
    m = np.array([[1.0, 0.0, 100.0], [0.0, 1.0, 100.0]])
    out = paste_back(canvas, crop, m, feather=0.08)
    assert (out[200, 200] == 220).all()  # centre: the crop
    # along the crop's square border the canvas shows (no hard box edge)
    border = np.concatenate([out[100, 100:300], out[299, 100:300], out[100:300, 100],
                             out[100:300, 299]])
    assert np.abs(border.astype(int) - 60).max() <= 3
    # the transition is gradual: no jump of more than a fraction of the contrast per pixel
    row = out[200, 90:310, 0].astype(int)
    assert np.abs(np.diff(row)).max() < 30
    assert row.min() == 60 and row.max() == 220


def test_paste_back_with_a_landmark_hull_mask() -> None:
    canvas = np.zeros((300, 300, 3), np.uint8)
    crop = np.full((100, 100, 3), 255, np.uint8)
    pts = np.array([[30, 30], [70, 30], [70, 70], [30, 70]], np.float32)
    mask = hull_mask(pts, 100, feather=0.0)
    m = np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 50.0]])
    out = paste_back(canvas, crop, m, feather=0.0, mask=mask)
    assert (out[100, 100] == 255).all()  # inside the hull (crop 50,50)
    assert out[55, 55].max() == 0  # inside the crop, outside the hull
    with pytest.raises(ValueError, match="mask: expected shape"):
        paste_back(canvas, crop, m, feather=0.0, mask=np.ones((50, 50), np.float32))


def test_paste_back_into_out_accumulates_several_faces() -> None:
    canvas = np.zeros((200, 400, 3), np.uint8)
    red = np.zeros((80, 80, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((80, 80, 3), np.uint8)
    blue[..., 2] = 255
    out = np.empty_like(canvas)
    paste_back(canvas, red, np.array([[1.0, 0, 20], [0, 1.0, 60]]), feather=0.05, out=out)
    paste_back(out, blue, np.array([[1.0, 0, 300], [0, 1.0, 60]]), feather=0.05, out=out)
    assert out[100, 60, 0] > 240 and out[100, 60, 2] < 10
    assert out[100, 340, 2] > 240 and out[100, 340, 0] < 10
    assert canvas.max() == 0


def test_paste_back_outside_the_canvas_is_a_no_op() -> None:
    canvas = _scene(100, 100)
    out = paste_back(canvas, np.full((50, 50, 3), 255, np.uint8),
                     np.array([[1.0, 0, 500], [0, 1.0, 500]]), feather=0.05)
    assert (out == canvas).all()


def test_colour_transfer_matches_the_surroundings() -> None:
    canvas = np.full((300, 300, 3), (120, 100, 80), np.uint8)
    crop = np.full((200, 200, 3), (170, 100, 40), np.uint8)  # a colour cast
    m = np.array([[1.0, 0, 50], [0, 1.0, 50]])
    plain = paste_back(canvas, crop, m, feather=0.08)
    matched = paste_back(canvas, crop, m, feather=0.08, color_transfer=True)
    target = np.array([120, 100, 80])
    err_plain = np.abs(plain[150, 150].astype(int) - target).sum()
    err_matched = np.abs(matched[150, 150].astype(int) - target).sum()
    assert err_matched < 10 < err_plain


def test_bad_inputs_say_what_was_expected() -> None:
    canvas = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="RGB uint8"):
        paste_back(canvas, np.zeros((4, 4), np.uint8), np.eye(2, 3), feather=0.1)
    with pytest.raises(ValueError, match="2x3 affine"):
        paste_back(canvas, np.zeros((4, 4, 3), np.uint8), np.eye(3), feather=0.1)


def test_ellipse_mask_is_zero_at_the_border_and_one_inside() -> None:
    m = ellipse_mask(128, feather=0.08)
    assert m.dtype == np.float32 and m.shape == (128, 128)
    assert m[64, 64] > 0.99
    assert max(m[0].max(), m[-1].max(), m[:, 0].max(), m[:, -1].max()) < 0.01


def test_a_whole_crop_mask_eases_only_where_the_crop_cuts_into_its_photo() -> None:
    """A crop reaching 20 px past its photo's top and 30 px past its left edge, cutting into
    it on the right and at the bottom: 1 over the photo up to its own edges, 0 over the
    made-up border, easing to 0 over 2.5 feathers only at the crop's right and bottom."""
    m = crop_mask(200, (30, 20, 200, 200), feather=0.04)  # ramp: 2.5 * 0.04 * 200 = 20 px
    assert m.dtype == np.float32 and m.shape == (200, 200)
    assert m[:20].max() == 0.0 and m[:, :30].max() == 0.0  # the made-up border
    assert m[20, 100] == 1.0 and m[100, 30] == 1.0  # the photo's own edges: full
    assert m[100, 100] == 1.0 and m[170:180, 30:180].min() == 1.0
    right = m[100, 180:]
    assert np.all(np.diff(right) < 0) and right[-1] < 0.01 and right[0] > 0.99
    assert m[100, 179] == 1.0
    np.testing.assert_allclose(m[180:, 100], right, atol=1e-6)  # the bottom alike
    assert np.allclose(crop_mask(64, (0, 0, 64, 64), feather=0.0)[1:-1, 1:-1], 1.0)
    with pytest.raises(ValueError, match="within the 64 px crop"):
        crop_mask(64, (0, 0, 65, 64))


def test_the_extension_beyond_the_photo_follows_what_is_pasted_at_its_edge() -> None:
    """A framed photo shown with room above it: the extension there mirrors the photo's top
    rows. A whole crop reaching past the photo's top edge, pasted with its top rows changed
    (a head moved away from the edge): the extension's rows nearest the photo mirror the
    change (fully at the first row, fading out over EXTENSION_SHARP of the output's height),
    the rest stays the still picture; an unchanged paste leaves the extension as it was."""
    from live.geometry import EXTENSION_SHARP, framing_transform, photo_box

    portrait = _scene(256, 256, seed=4)
    framing = framing_transform((70.0, 30.0, 190.0, 170.0), (256, 256), (640, 360), "head")
    py0 = framing.photo_rect[1]
    assert py0 > 20  # room above the photo
    crop = crop_square(portrait, (128.0, 110.0), 240.0, 128)  # past the photo's top edge
    box = photo_box(crop.crop_to_frame, (256, 256), 128)
    assert box[1] > 0
    comp = Compositor(portrait, crop.crop_to_frame, 128, (640, 360), framing=framing,
                      mask=crop_mask(128, box, feather=0.03),
                      matte=np.ones((256, 256), np.float32))  # the person everywhere
    same = comp.compose(crop.image)
    reach = int(np.ceil(EXTENSION_SHARP * 360))
    assert np.abs(same[:py0].astype(int) - comp.background[:py0].astype(int)).max() <= 2
    changed = crop.image.copy()
    changed[:box[1] + 12] = (255, 0, 0)  # the photo's first rows, as pasted, turned red
    out = comp.compose(changed)
    x0, top, x1, _ = comp.region  # type: ignore[misc]
    assert top < py0  # the region it changes takes in the extension that follows
    cols = slice(x0 + (x1 - x0) // 3, x1 - (x1 - x0) // 3)  # (the crop's sides ease out)
    first = out[py0 - 1, cols].astype(int)
    assert (first[:, 0] > 240).all() and (first[:, 1] < 15).all()  # the mirror, red
    edge = out[py0, cols].astype(int)  # the photo's own first row: the paste, not a line
    assert (edge[:, 0] > 240).all() and (edge[:, 1] < 15).all()  # of the still picture
    # the person matte's extension follows alike: no person now where the paste has none
    assert comp.still_matte is not None and comp.still_matte[py0 - 1, cols].min() > 200
    crop_matte = np.full((128, 128), 255, np.uint8)
    crop_matte[:box[1] + 12] = 0
    matte = comp.compose_matte(crop_matte)
    assert matte[py0 - 1, cols].max() < 40 and matte[py0, cols].max() < 10
    # (the matte's extension repeats the photo's edge row, fading out: all of it follows)
    assert comp.still_matte[py0 - 5, cols].min() > 100 and matte[py0 - 5, cols].max() < 10
    assert np.array_equal(out[:py0 - reach - 1], comp.background[:py0 - reach - 1])
    gain = [float(out[py0 - j, cols, 0].astype(int).mean()
                  - comp.background[py0 - j, cols, 0].astype(int).mean()) for j in (1, 4, 8)]
    assert gain[0] > gain[1] > gain[2] >= 0.0
    # an ellipse paste (fomm) hardly reaches the photo's edge: the extension hardly moves
    ellipse = Compositor(portrait, crop.crop_to_frame, 128, (640, 360), framing=framing)
    moved = np.abs(ellipse.compose(changed)[:py0].astype(int)
                   - ellipse.background[:py0].astype(int))
    assert moved.max() <= 3


def test_compositor_matches_paste_back_on_the_letterboxed_portrait() -> None:
    portrait = _scene(400, 300, seed=3)
    crop = crop_square(portrait, (150.0, 150.0), 160.0, 128)
    comp = Compositor(portrait, crop.crop_to_frame, 128, (640, 360), feather=0.05)
    assert (comp.background == letterbox(portrait, (640, 360))).all()
    still = comp.compose(None)
    assert (still == comp.background).all()
    changed = crop.image.copy()
    changed[40:90, 40:90] = (255, 0, 255)
    out = comp.compose(changed)
    ref = paste_back(comp.background, changed, comp.crop_to_output, feather=0.05)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert psnr(out, comp.background) < 30  # the change is visible
    with pytest.raises(ValueError, match="crop: expected"):
        comp.compose(np.zeros((64, 64, 3), np.uint8))
