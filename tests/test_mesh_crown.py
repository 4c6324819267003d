"""Mesh engine: a head that the photo's top edge cuts off keeps a round top when it moves
down (live/engines/mesh/crown.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from live.engines.mesh.crown import crown_cap, fit_circle
from live.engines.mesh.warp import enlarge_2x

WHOLE = np.array([[0.0, 0.0], [511.0, 511.0]])


def _disc(side: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    d = np.hypot(xx - centre[0], yy - centre[1])
    return np.clip(radius + 0.5 - d, 0.0, 1.0).astype(np.float32)


def test_fit_circle_finds_a_circle_from_an_arc() -> None:
    t = np.linspace(0.3, 1.4, 12)
    pts = np.stack([40.0 + 90.0 * np.cos(t), -20.0 + 90.0 * np.sin(t)], axis=1)
    cx, cy, r = fit_circle(pts)  # type: ignore[misc]
    assert (cx, cy, r) == pytest.approx((40.0, -20.0, 90.0), abs=1e-6)
    assert fit_circle(pts[:2]) is None
    assert fit_circle(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])) is None  # a line


def test_a_head_cut_by_the_top_edge_is_closed_as_the_circle_of_its_sides() -> None:
    """A round head (a disc 150 px in radius, its centre 100 px below the top edge): above
    the edge the crown goes on as the disc does, to its top 50 px up, and no further."""
    matte = _disc(512, (256.0, 100.0), 150.0)
    crown = crown_cap(matte, WHOLE)
    assert crown is not None and crown.top == 0 and crown.rows == int(np.ceil(0.2 * 512))
    for height in (0, 10, 25, 40, 48):
        row = crown.cap[crown.rows - height]
        width = float(row.sum())
        true = 2.0 * np.sqrt(150.0 ** 2 - (100.0 + height) ** 2)
        assert width == pytest.approx(true, abs=3.0 + 0.05 * true), height
        assert abs(float((row * np.arange(512)).sum() / max(width, 1e-6)) - 256.0) < 1.5
    assert crown.cap[:crown.rows - 52].max() == 0.0  # nothing above the head's top
    # the edge row is the matte's own
    np.testing.assert_allclose(crown.cap[crown.rows], matte[0], atol=1e-6)
    lowered = crown.limits(WHOLE)
    assert lowered.tolist() == [[0.0, -float(crown.rows)], [511.0, 511.0]]
    assert WHOLE.tolist() == [[0.0, 0.0], [511.0, 511.0]]  # (a copy)


def test_no_crown_without_a_person_along_the_top_edge() -> None:
    assert crown_cap(_disc(512, (256.0, 300.0), 150.0), WHOLE) is None
    # a strand (2 px) is no head
    strand = _disc(512, (256.0, 300.0), 150.0)
    strand[:150, 300:302] = 1.0
    assert crown_cap(strand, WHOLE) is None
    # the picture's own top edge counts, not the crop's: a photo starting 40 rows down
    inside = _disc(512, (256.0, 170.0), 150.0)
    cut = crown_cap(inside, np.array([[0.0, 40.0], [511.0, 511.0]]))
    assert cut is not None and cut.top == 40
    assert crown_cap(inside, np.array([[0.0, 0.0], [511.0, 511.0]])) is None


def test_a_head_whose_sides_leave_the_picture_closes_as_a_half_disc() -> None:
    """Hair along the whole top edge and down both sides: no side of the silhouette to fit,
    so the run closes as a half disc over it."""
    matte = np.zeros((512, 512), np.float32)
    matte[:300] = 1.0
    crown = crown_cap(matte, WHOLE)
    assert crown is not None
    widths = crown.cap.sum(axis=1)[::-1]  # from the edge upwards
    assert widths[0] == pytest.approx(512.0)
    assert widths[50] < widths[10] < widths[0]
    assert widths[50] == pytest.approx(2.0 * np.sqrt(256.0 ** 2 - 50.0 ** 2), abs=4.0)


def test_drawing_the_crown_shows_the_hair_mirrored_inside_its_matte_over_the_still() -> None:
    """The source map taken 20 px down (the head moved down): the top 20 rows sample above
    the edge. There the head is the picture mirrored at the edge, within the crown's matte,
    over the still background; every other pixel is left as it was."""
    side = 128
    matte = _disc(side, (64.0, 30.0), 60.0)
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    crown = crown_cap(matte, np.array([[0.0, 0.0], [side - 1.0, side - 1.0]]))
    assert crown is not None
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    source = np.stack([xx, yy - 20.0], axis=-1)
    out = np.full((side, side, 3), 7, np.uint8)
    warped_matte = np.full((side, side), 200, np.uint8)
    still = np.full((side, side, 3), 90, np.uint8)
    fine = enlarge_2x(np.dstack([picture, (matte * 255).astype(np.uint8)]))
    drawn = crown.draw(out, warped_matte, source, fine, still)
    assert drawn == 20 * side
    assert np.all(out[20:] == 7) and np.all(warped_matte[20:] == 200)
    cover = crown.matte_at(source[:20])
    np.testing.assert_array_equal(warped_matte[:20], np.rint(cover * 255.0).astype(np.uint8))
    # row 5 samples 15 rows above the edge: the picture's row 15, mixed over the still
    expect = cover[5, :, None] * picture[15].astype(np.float32) + \
        (1.0 - cover[5, :, None]) * 90.0
    assert np.abs(out[5].astype(np.float32) - expect).max() <= 1.0
    assert cover[5, 64] > 0.9 and cover[5, 5] == 0.0  # the head's middle, the wall beside
    # nothing beyond the edge (or less than half a pixel): nothing drawn
    assert crown.draw(out, warped_matte, np.stack([xx, yy], axis=-1), fine, still) == 0
    assert crown.draw(out, warped_matte, np.stack([xx, yy - 0.4], axis=-1), fine, still) == 0
    assert crown.reached(np.array([[5.0, 30.0], [60.0, -3.0]]))
    assert not crown.reached(np.array([[5.0, 30.0], [60.0, -0.4]]))


@pytest.mark.fixtures
def test_a_head_the_top_edge_cuts_keeps_a_round_top_when_it_moves_down(
        portraits_dir: Path) -> None:
    """pg_fom_source_image's hair touches the photo's top edge over about 70 of 512 px.
    Driven by itself moved 16 px down, the head went down and the edge's row was drawn down
    after it: a tuft of hair reaching up to the edge. Now the crown closes within a few px
    of the edge and the still background shows above the moved head."""
    from live.engines.mesh.engine import MeshEngine
    from live.packets import FaceCrop

    image = cv2.imread(str(portraits_dir / "pg_fom_source_image.png"), cv2.IMREAD_COLOR)
    crop = np.ascontiguousarray(cv2.resize(image, (512, 512),
                                           interpolation=cv2.INTER_CUBIC)[:, :, ::-1])
    moved = cv2.warpAffine(crop, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 16.0]]), (512, 512),
                           borderMode=cv2.BORDER_REPLICATE)
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    engine = MeshEngine(size=512, smoothing=False, gaze=False)
    try:
        # not told where the photo is, the crop's top edge may cut into it: held as before
        assert engine.prepare(crop).crown is None
        # the whole photo, its top edge two rows in (as the offline job's crop has it)
        portrait = engine.prepare(crop, picture=(2, 2, 510, 510))
        assert portrait.crown is not None and portrait.crown.top == 2
        run = np.flatnonzero(portrait.matte[2] > 128)
        assert 40 <= len(run) <= 120
        engine.set_portrait(portrait)
        engine.calibrate(FaceCrop(image=crop, crop_to_frame=eye, frame_index=0,
                                  t_capture=0.0))
        out = engine.process(FaceCrop(image=moved, crop_to_frame=eye, frame_index=1,
                                      t_capture=0.04), 0.04)
        matte = engine.last_matte
        assert matte is not None
        over = slice(int(run[0]), int(run[-1]) + 1)
        assert (matte[2:6, over] > 128).mean() < 0.2  # above the moved crown: background
        assert (matte[24:30, over] > 128).mean() > 0.9  # the hair itself, moved down
        # the crop's two rows above the photo's edge repeat its row (not the hair's old line)
        assert np.array_equal(out[:2, over], np.repeat(out[2:3, over], 2, axis=0))
        assert np.array_equal(matte[:2, over], np.repeat(matte[2:3, over], 2, axis=0))
    finally:
        engine.close()
