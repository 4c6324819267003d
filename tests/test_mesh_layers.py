"""Mesh engine v2: the head layer over a still background plate, and 3-D head rotation."""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np
import pytest

from calibrate import landmarks as lm
from live.engines.mesh.engine import MeshEngine
from live.engines.mesh.motion import MotionOptions, fit_rotation_3d, portrait_motion
from live.engines.mesh.warp import composite_head
from live.face import segmentation
from live.face.segmentation import (
    STILL_GROW,
    background_plate,
    prepare_layers,
    reflect_into_holes,
)

SIZE = 512


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


# -- pure functions (no shared data) --------------------------------------------------------------


def test_fit_rotation_3d_recovers_rotation_and_scale() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(0, 50, (60, 3))
    rot = _rot_y(20.0) @ np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)],
                                   [0, np.sin(0.2), np.cos(0.2)]])
    dst = 1.2 * src @ rot.T + np.array([5.0, -3.0, 2.0])
    r, s = fit_rotation_3d(src, dst)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    assert s == pytest.approx(1.2)


def test_plate_keeps_pixels_away_from_the_person_and_fills_the_person() -> None:
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (256, 256))
    matte = np.zeros((256, 256), np.float32)
    cv2.circle(matte, (128, 128), 50, (1.0,), -1)
    image[matte > 0] = (250, 0, 0)  # a red "person"
    plate = background_plate(image, matte)
    far = np.ones((256, 256), np.uint8)
    cv2.circle(far, (128, 128), 80, (0,), -1)
    assert np.array_equal(plate[far > 0], image[far > 0])  # bit-identical away from it
    centre = plate[118:138, 118:138].astype(int)
    assert np.abs(centre - [250, 0, 0]).sum(axis=-1).mean() > 100  # the red is gone


def test_plate_continues_the_background_texture_into_the_hole() -> None:
    """Horizontal stripes meeting the person's straight side carry on into the filled hole a
    little way (a smooth fill alone leaves their mean grey there: std 0-3 levels)."""
    rows = np.where((np.arange(256) // 6) % 2 == 0, 40, 210).astype(np.uint8)
    image = np.repeat(np.repeat(rows[:, None, None], 256, 1), 3, 2)
    matte = np.zeros((256, 256), np.float32)
    matte[60:, 100:156] = 1.0  # a person standing on the bottom edge
    image[matte > 0] = (250, 0, 0)
    plate = background_plate(image, matte)
    assert np.array_equal(plate[:, :88], image[:, :88])  # the background itself untouched
    for x in (96, 100, 104):  # 4-12 px into the filled hole, beside the person's side
        column = plate[100:160, x, 1].astype(np.float64)
        assert column.std() > 40.0, (x, column.std())
        assert np.corrcoef(column, rows[100:160])[0, 1] > 0.95, x
    assert np.all(plate[100:160, 120:136, 0] < 200)  # still no red


def test_a_512_px_pictures_plate_keeps_fine_texture_where_it_is_filled() -> None:
    """A 512 px picture is filled at its own size (PLATE_WORK_SIDE): the fine grain of the
    background beside the person (noise, a pixel or two across) carries on into the hole.
    Filled at 256 px and enlarged, it came back about half as strong: a smooth smear."""
    import cv2

    rng = np.random.default_rng(3)
    image = rng.integers(40, 211, (512, 512, 1)).astype(np.uint8).repeat(3, 2)
    image = cv2.GaussianBlur(image, (0, 0), 0.7)
    matte = np.zeros((512, 512), np.float32)
    matte[120:, 200:312] = 1.0
    image[matte > 0] = (250, 0, 0)

    def grain(a: np.ndarray) -> float:
        a = a.astype(np.float32)
        return float(np.std(a - cv2.blur(a, (3, 3))))

    own = grain(image[200:320, 100:170, 1])
    assert segmentation.PLATE_WORK_SIDE >= 512
    filled = grain(background_plate(image, matte)[200:320, 186:210, 1]) / own
    smaller = grain(background_plate(image, matte, work_side=256)[200:320, 186:210, 1]) / own
    assert filled > 0.5, filled  # the first 24 px of the hole, beside the person's side
    assert smaller < 0.4, smaller


def test_plate_does_not_mirror_the_pictures_frame_line_into_the_hole() -> None:
    """A painting's thin frame line along its edge, a head close to that edge: points
    mirrored past the narrow strip of background beside the head reached the line, and a
    first version drew it into the plate as a light arc along the head's outline."""
    rng = np.random.default_rng(5)
    image = np.zeros((256, 256, 3), np.uint8)
    image[..., 0] = rng.integers(150, 200, (256, 256))
    image[..., 1:] = 40
    image[:, :2] = (230, 230, 200)  # the frame line
    matte = np.zeros((256, 256), np.float32)
    cv2.circle(matte, (90, 120), 70, (1.0,), -1)  # 20 px from the edge, ~11 once grown
    image[matte > 0] = (12, 10, 10)
    plate = background_plate(image, matte)
    inside = matte > 0
    assert plate[inside][:, 1].max() < 100, plate[inside][:, 1].max()  # no light line
    assert plate[inside][:, 0].min() > 100  # nor the head's dark


def test_plate_does_not_copy_an_object_beside_the_person_into_the_hole() -> None:
    """A red sign a little way from the person (not touching it) was mirrored into the
    plate as a second sign, seen wherever the neck moved aside; the wall between carries
    on instead (stripes that meet the person still do: the test above)."""
    rng = np.random.default_rng(7)
    image = np.clip(np.full((256, 256, 3), 200) + rng.integers(-3, 4, (256, 256, 3)), 0, 255)
    image = image.astype(np.uint8)
    matte = np.zeros((256, 256), np.float32)
    matte[:, 140:] = 1.0
    image[matte > 0] = (30, 25, 25)
    image[100:130, 100:125] = (200, 30, 30)  # the sign, 15 px from the person
    plate = background_plate(image, matte).astype(int)
    mirrored = plate[100:130, 145:175]  # where the sign's mirror image fell
    assert (mirrored[..., 0] - mirrored[..., 1]).max() < 50


def test_plate_does_not_smear_a_small_object_by_the_person_over_the_hole() -> None:
    """A red sign touching the person (deepface_img21's, beside his neck): the smooth fill
    averaged its red into the whole hole below it, a pink haze wherever the head moved
    aside. The wall's colour fills the hole instead; a dark board beside the wall (a large
    area, no colour of its own) still carries on into it, and the sign itself stays."""
    rng = np.random.default_rng(8)
    image = np.clip(np.full((256, 256, 3), 225) + rng.integers(-3, 4, (256, 256, 3)), 0, 255)
    image = image.astype(np.uint8)
    image[200:, :] = (40, 40, 44)  # a dark board along the bottom
    matte = np.zeros((256, 256), np.float32)
    matte[40:, 110:200] = 1.0
    image[matte > 0] = (60, 45, 40)
    image[120:160, 80:110] = (200, 30, 30)  # the sign, touching the person
    plate = background_plate(image, matte).astype(int)
    hole = plate[60:190, 130:180]  # the person's place, away from the sign
    assert (hole[..., 0] - hole[..., 1]).mean() < 6.0
    # the board carries on under the person: the hole's bottom far darker than its top
    assert plate[225:, 130:180].mean() < plate[60:150, 130:180].mean() - 60.0
    np.testing.assert_array_equal(plate[125:155, 82:100], image[125:155, 82:100])


def _hair_by_a_board(size: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """A dark-haired person (right of x = 380) before a light wall (top) over a dark board
    (from y = 250), with a little grain; and a coarse mask whose ramp (x 366-378) sits left
    of the hair's real edge, as MediaPipe's does beside deepface_img1's hair."""
    rng = np.random.default_rng(7)
    image = np.empty((size, size, 3), np.uint8)
    image[:250] = (182, 184, 183)  # wall
    image[250:] = (36, 40, 44)  # board
    image[:, 380:] = (10, 11, 14)  # hair
    image[:] = np.clip(image.astype(int) + rng.integers(-4, 5, image.shape), 0, 255)
    coarse = np.clip((np.arange(size, dtype=np.float32) - 366.0) / 12.0, 0.0, 1.0)
    return image, np.repeat(coarse[None, :], size, 0)


def test_separate_colours_stops_the_matte_at_a_dark_edge_on_dark() -> None:
    """The guided filter cannot see dark hair against a dark board and spreads the coarse
    ramp over the board; the two colours meeting there put the edge where the hair is."""
    image, coarse = _hair_by_a_board()
    guided = segmentation.refine_matte(image, coarse)
    matte = segmentation.separate_colours(image, coarse, guided)
    board = (slice(300, 600), slice(360, 374))  # board pixels, 6-20 px from the hair
    assert guided[board].mean() > 0.2  # what the guided filter leaves there ...
    assert matte[board].max() < 0.1, matte[board].max()  # ... and the colours' estimate
    assert matte[300:600, 384:].min() > 0.9  # the hair stays whole
    assert np.array_equal(matte[:, :300], guided[:, :300])  # far from the edge: unchanged


def test_separate_colours_does_not_take_dark_leaves_beside_the_hair_for_hair() -> None:
    """Foliage whose dark leaves are the hair's colour (lp_s42's head against a wooded
    bank): a leaf's colour lies on the line from the light leaves to the hair, and the
    colours' estimate took the leaves along the outline for hair, in spikes out of the head.
    The background shows that colour where it is sure of itself, so the estimate does not
    make those pixels more of the person than the guided matte does."""
    rng = np.random.default_rng(3)
    image = np.empty((400, 400, 3), np.uint8)
    image[:] = (92, 140, 72)  # light leaves
    dark = np.zeros((400, 400), np.uint8)
    for _ in range(900):  # dark leaves and their shadows, as dark as the hair
        centre = (int(rng.integers(0, 300)), int(rng.integers(0, 400)))
        axes = (int(rng.integers(2, 6)), int(rng.integers(4, 12)))
        cv2.ellipse(dark, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    image[dark > 0] = (64, 50, 40)
    image[:, 300:] = (70, 52, 40)  # hair, right of x = 300
    image[:] = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255)
    coarse = np.clip((np.arange(400, dtype=np.float32) - 292.0) / 12.0, 0.0, 1.0)
    coarse = np.repeat(coarse[None, :], 400, 0)
    guided = segmentation.refine_matte(image, coarse)
    matte = segmentation.separate_colours(image, coarse, guided)
    leaves = np.zeros(dark.shape, bool)
    leaves[:, 291:300] = True
    leaves &= dark > 0  # dark leaves within 9 px of the hair
    assert float((matte - guided)[leaves].mean()) < 0.02  # (0.085 before: spikes)
    assert float(matte[:, 306:].min()) > 0.9  # the hair stays whole


def test_separate_colours_leaves_an_uncertain_plateau_and_opens_no_hole() -> None:
    """Light hair against a light wall (the mask a flat 0.5 over it: no edge to snap to)
    keeps the guided matte; a white clip in dark hair near the edge, coloured like the wall,
    is not cut out of the person."""
    image = np.full((200, 200, 3), 190, np.uint8)
    image[:, 100:] = 20  # dark hair
    image[:, 60:100] = 175  # light hair, as light as the wall
    coarse = np.zeros((200, 200), np.float32)
    coarse[:, 60:100] = 0.5
    coarse[:, 100:] = 1.0
    coarse = cv2.GaussianBlur(coarse, (0, 0), 2.0)
    image[90:100, 106:114] = 240  # the clip, 6 px inside the hair
    guided = segmentation.refine_matte(image, coarse)
    matte = segmentation.separate_colours(image, coarse, guided)
    plateau = (slice(0, 200), slice(66, 94))
    assert np.abs(matte[plateau] - guided[plateau]).max() < 0.05
    assert matte[90:100, 106:114].min() > 0.5, matte[90:100, 106:114].min()


def _neck_by_a_red_wall(*, patch: str = "wall", confidence: float = 0.45,
                        wall_rgb: tuple[int, int, int] = (178, 52, 42)
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark-haired head over a skin-coloured neck and shoulders before a red wall painted
    in vertical strokes, and a coarse mask unsure (``confidence`` on average, a sure spot in
    it) of a stretch right of the neck, as MediaPipe's is of sadtalker_art_14's wall. The
    stretch shows ``patch``: "wall", "hair" (light strands of the wall's mean colour) or
    "clothes" (the wall's colour, plain) or "pigtail" (the hair's colour, going on beyond
    the stretch where the mask calls it background). Image, coarse mask, the stretch."""
    rng = np.random.default_rng(11)
    size = 256
    strokes = cv2.GaussianBlur(rng.normal(0.0, 14.0, (size, size)).astype(np.float32),
                               (0, 0), sigmaX=0.6, sigmaY=6.0)
    wall = np.array(wall_rgb, np.float64)
    image = wall + strokes[..., None] * np.array([1.0, 0.5, 0.4])
    yy, xx = np.mgrid[0:size, 0:size]
    person = np.zeros((size, size), bool)
    head = np.hypot(xx - 110, yy - 80) < 60
    neck = (xx > 85) & (xx < 135) & (yy >= 120)
    shoulders = (yy > 200) & (np.abs(xx - 110) < 90)
    person |= head | neck | shoulders
    image[neck | shoulders] = (190, 130, 90)
    image[head] = (40, 34, 30)
    stretch = (xx >= 135) & (xx < 215) & (yy > 130) & (yy <= 200)
    if patch == "hair":  # light strands, a dark line every 4 px, averaging the wall
        lines = (xx % 4) == 0
        image[stretch & lines] = wall - 90.0
        image[stretch & ~lines] = wall + 30.0
    elif patch == "clothes":
        image[stretch] = wall
    elif patch == "pigtail":  # the hair's own colour, on to the right of the stretch too
        image[stretch | ((xx >= 215) & (xx < 240) & (yy > 130) & (yy <= 200))] = (40, 34, 30)
    image = np.clip(image + rng.normal(0.0, 2.0, image.shape), 0, 255).astype(np.uint8)
    coarse = np.where(person, 1.0, 0.0).astype(np.float32)
    ramp = np.clip(1.0 - (xx - 135) / 100.0, 0.0, 1.0) * 2.0 * confidence
    coarse[stretch] = np.clip(ramp[stretch], 0.0, 1.0)
    coarse[(np.hypot(xx - 165, yy - 160) < 9)] = 1.0  # the sure spot in it
    coarse = cv2.GaussianBlur(coarse, (0, 0), 1.5)
    return image, coarse, stretch


def _released(image: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The matte before and after :func:`segmentation.release_background`."""
    matte = segmentation.separate_colours(image, coarse, segmentation.refine_matte(image, coarse))
    return matte, segmentation.release_background(image, coarse, matte)


def test_release_background_takes_out_a_stretch_of_wall_the_model_was_unsure_of() -> None:
    """sadtalker_art_14's red wall right of her neck stayed in the matte (0.3-1.0) and
    showed in front of every background; it is the wall's colour and grain, joined to the
    wall, and the model was unsure of it: it goes, the sure spot in it too. The person and
    the clear wall are left bit for bit."""
    image, coarse, stretch = _neck_by_a_red_wall()
    before, after = _released(image, coarse)
    core = cv2.erode(stretch.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
    assert before[core].mean() > 0.3  # in the matte before ...
    assert after[core].max() < 0.05, after[core].max()  # ... and out of it now
    spot = (slice(155, 165), slice(160, 170))
    assert before[spot].min() > 0.8 and after[spot].max() < 0.05
    far = np.ones(coarse.shape, bool)
    far[110:220, 120:230] = False  # away from the stretch and its rim
    assert np.array_equal(after[far], before[far])
    assert after.dtype == np.float32


@pytest.mark.parametrize(("patch", "confidence"),
                         [("hair", 0.45), ("clothes", 0.75), ("pigtail", 0.45)])
def test_release_background_keeps_hair_and_what_the_model_was_fairly_sure_of(
        patch: str, confidence: float) -> None:
    """Light strands of the wall's mean colour are more textured than the wall: hair, kept.
    Plain clothes of the wall's colour that the model was fairly sure of (0.75 on average;
    the Syndics' dark coats on their dark panelling are 0.68-0.89) are kept too. So is a
    pigtail of the hair's colour whose outer half the model called background (lp_d11's
    frame 0): next to it the background looks like the hair, but the hair's colour is the
    person's."""
    image, coarse, stretch = _neck_by_a_red_wall(patch=patch, confidence=confidence)
    before, after = _released(image, coarse)
    assert before[stretch].mean() > 0.3
    assert np.array_equal(after, before)


def test_release_background_keeps_a_plateau_and_a_thin_rim() -> None:
    """The plateau of light hair as light as the wall (no texture, an edge of 15 levels) is
    not the wall; nor is a rim of the wall's colour 4 px thick along the person."""
    image = np.full((200, 200, 3), 190, np.uint8)
    image[:, 100:] = 20
    image[:, 60:100] = 175
    coarse = np.zeros((200, 200), np.float32)
    coarse[:, 60:100] = 0.5
    coarse[:, 100:] = 1.0
    coarse = cv2.GaussianBlur(coarse, (0, 0), 2.0)
    before, after = _released(image, coarse)
    assert np.array_equal(after, before)
    rim = np.full((200, 200, 3), 190, np.uint8)
    rim[:, 100:] = 20
    rim_mask = np.zeros((200, 200), np.float32)
    rim_mask[:, 96:100] = 0.5
    rim_mask[:, 100:] = 1.0
    before, after = _released(rim, cv2.GaussianBlur(rim_mask, (0, 0), 1.0))
    assert np.array_equal(after, before)


def test_release_background_takes_a_sign_the_release_leaves_apart_from_the_person() -> None:
    """A red sign on a white wall beside a shoulder (deepface_img21): the model half took
    the wall around it for the person; once that wall is out, the sign, which it was never
    sure of, is no longer joined to the person and goes too."""
    image, coarse, _ = _neck_by_a_red_wall(wall_rgb=(232, 230, 226))
    image[150:170, 185:205] = (200, 40, 40)  # the sign
    before, after = _released(image, coarse)
    assert before[150:170, 185:205].mean() > 0.2
    assert after[152:168, 187:203].max() < 0.05, after[152:168, 187:203].max()


def test_release_background_checks_its_inputs() -> None:
    image = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="the image is 50x40, the mask 40x40"):
        segmentation.release_background(image, np.zeros((40, 40), np.float32),
                                        np.zeros((40, 50), np.float32))


@pytest.mark.fixtures
def test_the_mesh_engine_segments_its_portraits_picture_not_the_crops_border(
        portraits_dir) -> None:
    """deepface_img21 in a square crop, its sides made up by repeating its edge (animate's
    whole-picture crop): segmented with that border, the selfie model drew a pale line
    (0.1-0.25) along the edge of the sign beside his shoulder, which showed over a replaced
    background; the engine now segments the picture alone."""
    from live.face.portraits import load_image

    image = load_image(portraits_dir / "deepface_img21_smile_teeth.jpg")
    h, w = image.shape[:2]
    assert (w, h) == (439, 579)
    left = (h - w) // 2
    crop = cv2.copyMakeBorder(image, 0, 0, left, h - w - left, cv2.BORDER_REPLICATE)
    with MeshEngine(size=SIZE, smoothing=False) as engine:
        portrait = engine.prepare(crop, picture=(left, 0, left + w, h))
    assert portrait.layers is not None
    line = (slice(335, 390), slice(125, 137))  # the sign's right edge, at 512 px
    border_seen = prepare_layers(cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA),
                                 grow=STILL_GROW, strands=True)
    assert border_seen is not None and border_seen.matte[line].max() > 0.15
    assert portrait.layers.matte[line].max() < 0.08, portrait.layers.matte[line].max()
    nx, ny = (int(v) for v in portrait.landmarks[1, :2])  # the nose tip
    assert portrait.layers.matte[ny - 60:ny + 60, nx - 50:nx + 50].min() > 0.95  # his face


@pytest.mark.fixtures
def test_live_segments_a_tight_crop_with_the_whole_pictures_view(portraits_dir) -> None:
    """`mimicam live` crops sadtalker_art_14 at 1.8 face sizes; in that crop the selfie
    model calls nearly everything the person, and the red wall on both sides of her neck
    was in the head layer (a red disc round the neck over any background). The library now
    gives the engine the whole picture's mask cut into the crop (``person_context``)."""
    from live.face.portraits import PortraitLibrary, find_portrait, load_image, person_context

    path = portraits_dir / "sadtalker_art_14.png"
    portrait = find_portrait(load_image(path), SIZE, crop_scale=1.8, path=path)
    context = person_context(portrait)
    assert context is not None and context.shape == (SIZE, SIZE)
    own = segmentation.segment_person(portrait.crop.image)
    assert own is not None and float((own <= 0.02).mean()) < 0.02
    with MeshEngine(size=SIZE, smoothing=False) as engine:
        library = PortraitLibrary([path], engine, output_size=(1280, 720),
                                  framing="shoulders")
        prepared = library.prepare(0)
        library.close()
    layers = prepared.handle.layers
    assert layers is not None
    for wall in ((slice(330, 420), slice(0, 90)), (slice(330, 420), slice(390, SIZE))):
        assert layers.matte[wall].max() < 0.05, layers.matte[wall].max()
    nx, ny = (int(v) for v in prepared.handle.landmarks[1, :2])
    assert layers.matte[ny - 60:ny + 60, nx - 50:nx + 50].min() > 0.95  # her face
    side = float(max(portrait.size))  # a crop that shows all the picture needs no context
    whole = np.array([[1.2 * side / SIZE, 0.0, -0.1 * side], [0.0, 1.2 * side / SIZE, -0.1 * side]])
    wide = dataclasses.replace(portrait, crop=dataclasses.replace(portrait.crop,
                                                                  crop_to_frame=whole))
    assert person_context(wide) is None


@pytest.mark.fixtures
def test_the_painted_wall_beside_a_neck_is_not_the_person(portraits_dir) -> None:
    """sadtalker_art_14's layers: the stretch of red wall right of her neck, which the
    selfie model gives 0.3-1.0, is out of the matte; her face and hair are in it."""
    from live.face.portraits import load_image

    image = load_image(portraits_dir / "sadtalker_art_14.png")
    assert image.shape[:2] == (504, 508)
    layers = prepare_layers(image)
    assert layers is not None
    wall = layers.matte[360:420, 400:460]  # right of the neck, below the hair
    assert wall.max() < 0.05, wall.max()
    assert layers.matte[150:300, 180:320].min() > 0.95  # the face
    assert layers.matte[60:120, 180:320].min() > 0.95  # the hair


def test_only_the_picture_part_of_a_crop_is_segmented(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare_layers(picture=box)``: the selfie model sees only the box (not the made-up
    border); inside it the layers are those of the box alone, bit for bit; outside, the
    matte goes on as at the box's edge and the plate and clean picture are the crop's own."""
    image, matte, _, _, _ = _curls_on_a_wall()
    h, w = matte.shape
    crop = cv2.copyMakeBorder(image, 0, 0, 30, 50, cv2.BORDER_REPLICATE)
    box = (30, 0, 30 + w, h)
    seen: list[tuple[int, int]] = []

    def segment(picture: np.ndarray, **_: object) -> np.ndarray:
        seen.append(picture.shape[:2])
        ph, pw = picture.shape[:2]
        return np.asarray(cv2.resize(matte, (pw, ph), interpolation=cv2.INTER_LINEAR))

    monkeypatch.setattr(segmentation, "segment_person", segment)
    layers = prepare_layers(crop, grow=STILL_GROW, strands=True, picture=box)
    alone = prepare_layers(image, grow=STILL_GROW, strands=True)
    assert seen == [(h, w), (h, w)]
    assert layers is not None and alone is not None
    assert layers.clean is not None and alone.clean is not None
    inside = (slice(0, h), slice(30, 30 + w))
    assert np.array_equal(layers.matte[inside], alone.matte)
    assert np.array_equal(layers.plate[inside], alone.plate)
    assert np.array_equal(layers.clean[inside], alone.clean)
    assert np.array_equal(layers.matte[:, :30], np.repeat(alone.matte[:, :1], 30, axis=1))
    assert np.array_equal(layers.matte[:, -50:], np.repeat(alone.matte[:, -1:], 50, axis=1))
    for part in (layers.plate, layers.clean):
        assert np.array_equal(part[:, :30], crop[:, :30])
        assert np.array_equal(part[:, -50:], crop[:, -50:])
    whole = prepare_layers(crop, grow=STILL_GROW, picture=(0, 0, crop.shape[1], h))
    assert whole is not None and seen[-1] == crop.shape[:2]
    with pytest.raises(ValueError, match="a box within the"):
        prepare_layers(crop, picture=(0, 0, crop.shape[1] + 1, h))


def test_a_crop_that_sees_no_background_takes_the_wider_views_mask(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare_layers(context=)``: where the image's own mask calls almost nothing sure
    background (a tight crop: the selfie model took all of it for the person) and the wider
    view's mask does, the lower of the two is used; a mask that sees background keeps its
    own, bit for bit; a context of another size is refused."""
    image, matte, _, _, _ = _curls_on_a_wall()
    h, w = matte.shape
    everything = np.ones((h, w), np.float32)
    monkeypatch.setattr(segmentation, "segment_person", lambda picture, **_: everything)
    alone = prepare_layers(image, refine=False, grow=STILL_GROW)
    wider = prepare_layers(image, refine=False, grow=STILL_GROW, context=matte)
    assert alone is not None and wider is not None
    assert alone.matte.min() == 1.0  # the whole crop the person ...
    assert np.array_equal(wider.matte, np.minimum(everything, matte))  # ... and not now
    monkeypatch.setattr(segmentation, "segment_person", lambda picture, **_: matte)
    own = prepare_layers(image, grow=STILL_GROW)
    ignored = prepare_layers(image, grow=STILL_GROW, context=np.zeros((h, w), np.float32))
    assert own is not None and ignored is not None
    assert np.array_equal(own.matte, ignored.matte)
    with pytest.raises(ValueError, match="context: expected a mask of the image's"):
        prepare_layers(image, context=np.zeros((h, w + 1), np.float32))


def test_a_context_given_as_a_function_is_worked_out_only_when_needed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Live's portraits hand the engine a function for the whole picture's person mask (a
    segmentation of the whole picture, 20-40 ms): called only where the crop's own mask
    sees almost no background, at most once, and through a picture part alike; what it
    gives is used as the mask itself is."""
    image, matte, _, _, _ = _curls_on_a_wall()
    h, w = matte.shape
    calls: list[int] = []

    def wider() -> np.ndarray:
        calls.append(1)
        return matte

    monkeypatch.setattr(segmentation, "segment_person", lambda picture, **_: matte)
    own = prepare_layers(image, refine=False, grow=STILL_GROW, context=wider)
    assert own is not None and calls == []  # the crop's own mask sees background
    everything = np.ones((h, w), np.float32)
    monkeypatch.setattr(segmentation, "segment_person",
                        lambda picture, **_: np.ones(picture.shape[:2], np.float32))
    lazy = prepare_layers(image, refine=False, grow=STILL_GROW, context=wider)
    given = prepare_layers(image, refine=False, grow=STILL_GROW, context=matte)
    assert lazy is not None and given is not None and calls == [1]
    assert np.array_equal(lazy.matte, given.matte)
    assert np.array_equal(lazy.matte, np.minimum(everything, matte))
    box = (0, 10, w, h)  # a picture part: the function's mask is cut alike
    cut = prepare_layers(image, refine=False, grow=STILL_GROW, picture=box, context=wider)
    cut_given = prepare_layers(image, refine=False, grow=STILL_GROW, picture=box,
                               context=matte)
    assert cut is not None and cut_given is not None and calls == [1, 1]
    assert np.array_equal(cut.matte, cut_given.matte)
    # nothing from the function: the crop's own mask
    alone = prepare_layers(image, refine=False, grow=STILL_GROW, context=lambda: None)
    assert alone is not None and np.array_equal(alone.matte, everything)
    with pytest.raises(ValueError, match="context: expected a mask of the image's"):
        prepare_layers(image, refine=False, context=lambda: np.zeros((h, w + 1), np.float32))


def test_a_wider_view_is_the_mask_instead_of_the_images_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare_layers(context=WiderView(...))`` (a face of a group photo): the wider view's
    mask is the person mask even where the image's own sees plenty of background; through a
    picture part it is cut alike; a view that gives nothing leaves the image's own."""
    image, matte, _, _, _ = _curls_on_a_wall()
    h, w = matte.shape
    wider = np.zeros((h, w), np.float32)
    wider[h // 4:, w // 4: 3 * w // 4] = 1.0  # a different person than the own mask's
    # (the own mask of a picture part: its rows of the whole one; the parts below end at
    # the image's bottom)
    monkeypatch.setattr(segmentation, "segment_person",
                        lambda picture, **_: matte[h - picture.shape[0]:])
    own = prepare_layers(image, refine=False, grow=STILL_GROW,
                         context=lambda: wider)  # (the plain rule: own sees background)
    viewed = prepare_layers(image, refine=False, grow=STILL_GROW,
                            context=segmentation.WiderView(lambda: wider))
    assert own is not None and viewed is not None
    assert np.array_equal(own.matte, matte) and np.array_equal(viewed.matte, wider)
    assert np.array_equal(prepare_layers(image, refine=False, grow=STILL_GROW,
                                         context=segmentation.WiderView(wider)).matte, wider)
    box = (0, 10, w, h)
    cut = prepare_layers(image, refine=False, grow=STILL_GROW, picture=box,
                         context=segmentation.WiderView(lambda: wider))
    assert cut is not None and np.array_equal(cut.matte[10:], wider[10:])
    nothing = prepare_layers(image, refine=False, grow=STILL_GROW,
                             context=segmentation.WiderView(lambda: None))
    assert nothing is not None and np.array_equal(nothing.matte, matte)
    with pytest.raises(ValueError, match="context: expected a mask of the image's"):
        prepare_layers(image, refine=False,
                       context=segmentation.WiderView(np.zeros((h, w + 1), np.float32)))


def _rim_on_a_collar() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A dark collar (the person, its matte soft at the edge) on a light wall with a
    lilac rim (5 px) along its top the matte left out, and a lilac patch on the wall apart from it:
    image, matte, the rim, the patch."""
    rng = np.random.default_rng(3)
    size = 256
    disk = np.zeros((size, size), np.float32)
    cv2.circle(disk, (128, 230), 80, (1.0,), -1)
    matte = cv2.GaussianBlur(disk, (0, 0), 1.2)
    wall, dark, lilac = np.array([205, 200, 205]), np.array([20, 20, 25]), np.array([117, 106, 116])
    image = wall * (1.0 - matte[..., None]) + dark * matte[..., None]
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - 128, yy - 230)
    rim = (r > 81) & (r < 87) & (yy < 200)
    image[rim] = lilac
    patch = np.zeros((size, size), bool)
    patch[20:36, 20:44] = True
    image[patch] = lilac
    image = np.clip(image + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
    return image, matte, rim, patch


def test_claim_attached_puts_back_a_rim_the_segmentation_left_out() -> None:
    """A rim the selfie model misses (the demo's collar ring) stayed on the plate, and where
    the body moved a copy of it stayed behind on the wall; joined to the person and unlike
    the wall, it is the person's again. The same colour apart from the person stays wall,
    and the person's own anti-aliased outline is not hardened."""
    image, matte, rim, patch = _rim_on_a_collar()
    claimed = segmentation.claim_attached(image, matte)
    core = cv2.erode(rim.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert matte[core].max() < 0.05  # left out ...
    assert claimed[core].min() > 0.9, claimed[core].min()  # ... and put back
    assert np.array_equal(claimed[patch], matte[patch])  # not joined to the person
    lower = np.zeros(matte.shape, bool)
    lower[215:, :] = True  # the collar's sides below the rim: its outline only
    assert np.array_equal(claimed[lower], matte[lower])
    assert claimed.dtype == np.float32


def test_the_demo_portraits_plate_has_no_collar_ring() -> None:
    """The astronaut's suit ring (the segmentation left its top out) is filled in on the mesh
    engine's plate like the rest of her, so it cannot stay behind on the wall when her body
    moves."""
    from live.jobs.demo import BUILTIN_PORTRAIT, builtin_portrait, portrait_face_crop

    crop = portrait_face_crop(builtin_portrait(), size=SIZE, name=BUILTIN_PORTRAIT).image
    layers = prepare_layers(crop, grow=STILL_GROW)
    assert layers is not None
    ring = (slice(338, 346), 120)  # the ring's top at the left shoulder (lilac, ~115 levels)
    assert crop[ring].mean() < 140
    assert layers.matte[ring].min() > 0.9
    wall = layers.plate[322, 120].astype(int)  # the wall just above it
    assert np.abs(layers.plate[ring].astype(int) - wall).max() < 30


def test_the_head_layer_is_solid_inside_the_face_outline() -> None:
    """Along the astronaut's jaw the matte's soft edge runs inside the face outline (0.4-0.7):
    the turn in the demo (frame 248) drew that sliver out over the near cheek as a pale block
    with the wall showing through. Inside the outline the head layer is whole."""
    from live.jobs.demo import BUILTIN_PORTRAIT, builtin_portrait, portrait_face_crop

    crop = portrait_face_crop(builtin_portrait(), size=SIZE, name=BUILTIN_PORTRAIT).image
    with MeshEngine(size=SIZE) as engine:
        portrait = engine.prepare(crop)
    assert portrait.layers is not None
    oval = np.round(portrait.landmarks[list(lm.FACE_OVAL), :2]).astype(np.int32)
    inside = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(inside, [oval], (1,))
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    assert portrait.matte[inside].min() == 255
    segmented = prepare_layers(crop, grow=STILL_GROW, strands=True)  # the segmentation: not
    assert segmented is not None and segmented.matte_u8[inside].min() < 200
    outside = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(portrait.matte[outside], segmented.matte_u8[outside])


def test_still_background_is_the_photo_off_the_matte_and_the_board_beside_the_hair() -> None:
    """The background a moved pixel carries: the photo itself where the matte is 0, and on
    the hair's soft edge just below the wall the board (the grown plate's fill mixes the
    wall's grey in there, and the hair's edge moved with the head as a dark tab)."""
    image, coarse = _hair_by_a_board()
    matte = segmentation.refine_matte(image, coarse)  # soft: where the tab was worst
    layers = segmentation.PortraitLayers(matte=matte, plate=background_plate(image, matte))
    still = background_plate(image, matte, grow=segmentation.STILL_GROW)
    behind = segmentation.still_background(image, matte, still)
    zero = matte <= 0.0
    assert zero.mean() > 0.3 and np.array_equal(behind[zero], image[zero])
    edge = (matte > 0.05) & (matte < 0.9)
    edge[:252], edge[290:] = False, False  # at board height, just below the wall
    assert edge.sum() > 300
    board = image[300:600, 100:300].reshape(-1, 3).mean(0)
    assert np.abs(behind[edge] - board).max() < 8
    assert np.abs(layers.plate[edge] - board).max() > 25  # the grown plate's fill does not


def test_still_background_without_a_person_or_without_background_is_the_plate() -> None:
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    nobody = np.zeros((64, 80), np.float32)
    plate = background_plate(image, nobody, grow=segmentation.STILL_GROW)
    assert np.array_equal(plate, image)  # nothing to fill
    assert np.array_equal(segmentation.still_background(image, nobody, plate), image)
    everyone = np.ones((64, 80), np.float32)  # no background pixel to carry in
    full = background_plate(image, everyone, grow=segmentation.STILL_GROW)
    assert np.array_equal(segmentation.still_background(image, everyone, full), full)


def test_a_moved_head_carries_no_tab_of_the_background_beside_it() -> None:
    """The head (everything, here) moves 15 px left: the board beside the hair's edge comes
    out no darker than the board, where with the grown plate as the carried background the
    hair's edge came along darkened (a tab)."""
    image, coarse = _hair_by_a_board()
    matte = segmentation.refine_matte(image, coarse)
    plate = background_plate(image, matte)  # what the engine carried and showed before
    still = background_plate(image, matte, grow=segmentation.STILL_GROW)
    behind = segmentation.still_background(image, matte, still)

    def moved(picture: np.ndarray) -> np.ndarray:  # source = output + 15 px
        out = np.empty_like(picture)
        out[:, :-15], out[:, -15:] = picture[:, 15:], picture[:, -1:]
        return out

    m8 = np.clip(matte * 255.0 + 0.5, 0, 255).astype(np.uint8)
    board = int(image[300:600, 100:300].astype(int).sum(-1).min())
    darkest = {}
    for shown, carried, what in ((still, behind, "still_background"), (plate, plate, "plate")):
        out = moved(image)
        composite_head(out, moved(m8), shown, moved(carried))
        darkest[what] = int(out[252:290, 300:358].astype(int).sum(-1).min())
    assert darkest["plate"] < board - 25, darkest  # the old way drew the tab
    assert darkest["still_background"] >= board - 6, darkest


def test_reflect_into_holes_leaves_valid_pixels_and_empty_cases_alone() -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    valid = np.ones((40, 50), bool)
    valid[10:30, 20:35] = False
    valid[10:30, :4] = False  # a second hole near the edge: mirrored points land in it
    filled = np.where(valid[..., None], image, np.uint8(128))
    out = reflect_into_holes(filled, valid)
    assert np.array_equal(out[valid], image[valid])
    assert not np.array_equal(out[~valid], filled[~valid])  # the hole got texture
    everywhere = np.zeros((40, 50), bool)
    assert np.array_equal(reflect_into_holes(filled, everywhere), filled)
    assert np.array_equal(reflect_into_holes(image, ~everywhere), image)


def test_composite_head_is_exact_where_nothing_moved_and_the_plate_where_the_head_left() -> None:
    rng = np.random.default_rng(2)
    warped = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    plate = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = warped.copy()
    composite_head(out, np.full((64, 64), 128, np.uint8), plate, plate.copy())
    assert np.array_equal(out, warped)  # the plate did not move: nothing to swap
    moved_plate = warped.copy()  # the warped pixels were pure background ...
    out = warped.copy()
    composite_head(out, np.zeros((64, 64), np.uint8), plate, moved_plate)
    assert np.abs(out.astype(int) - plate.astype(int)).max() <= 1  # ... so the still plate shows


def test_four_channel_warps_give_each_layer_bit_for_bit() -> None:
    """The engine warps image + matte as one 4-channel picture and the plate with a padding
    channel (faster): each channel comes out exactly as warped on its own."""
    from live.engines.mesh.warp import PiecewiseAffineWarp

    rng = np.random.default_rng(3)
    size = 96
    image = rng.integers(0, 256, (size, size, 3), np.uint8)
    matte = rng.integers(0, 256, (size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    source = np.stack([xx + 3.3 * np.sin(yy / 9.0), yy - 2.1 * np.cos(xx / 7.0)], -1)
    warp = PiecewiseAffineWarp(size, grid=48)
    both = warp.remap(np.ascontiguousarray(np.dstack([image, matte])), source)
    assert np.array_equal(cv2.cvtColor(both, cv2.COLOR_RGBA2RGB), warp.remap(image, source))
    assert np.array_equal(cv2.extractChannel(both, 3), warp.remap(matte, source))
    padded = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)  # as MeshPortrait.backdrop_rgba
    assert np.array_equal(cv2.cvtColor(warp.remap(padded, source), cv2.COLOR_RGBA2RGB),
                          warp.remap(image, source))


def test_no_person_found_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    class Empty:
        def process(self, image: np.ndarray) -> object:
            class R:
                segmentation_mask = np.zeros(image.shape[:2], np.float32)
            return R()

    monkeypatch.setattr(segmentation, "_model", lambda selection: Empty())
    assert prepare_layers(np.zeros((64, 64, 3), np.uint8)) is None


# -- real portraits ------------------------------------------------------------------------------




@pytest.mark.fixtures
def test_background_far_from_the_head_is_bit_identical(mesh_lp_s42) -> None:
    engine, portrait = mesh_lp_s42
    assert portrait.layers is not None
    p = portrait.landmarks
    moved = p.copy()
    moved[:, 0] += 14.0  # the head moves right and down
    moved[:, 1] += 6.0
    out = engine.render(portrait, p, moved)
    person = cv2.dilate((portrait.layers.matte > 0.02).astype(np.uint8), np.ones((61, 61)))
    far = person == 0
    assert far.mean() > 0.05  # there is background to check
    assert np.array_equal(out[far], portrait.image[far])
    # the face did move
    oval = p[list(lm.FACE_OVAL), :2]
    x0, y0 = oval.min(0).astype(int) + 30
    x1, y1 = oval.max(0).astype(int) - 30
    assert np.abs(out[y0:y1, x0:x1].astype(int) - portrait.image[y0:y1, x0:x1]).mean() > 4


@pytest.mark.fixtures
def test_where_the_head_left_the_plate_shows_and_at_rest_the_portrait(mesh_lp_s42) -> None:
    """The background carried with the head is the photo's own (no tab), but where the
    head has left, the still plate shows (no strand at the matte's edge stays behind); with
    no motion, everything off the person is the portrait bit for bit."""
    engine, portrait = mesh_lp_s42
    assert portrait.layers is not None and portrait.backdrop is not None
    assert portrait.still_plate is not None
    p = portrait.landmarks
    for dx in (30.0, -30.0):
        moved = p.copy()
        moved[:, 0] += dx
        out = engine.render(portrait, p, moved)
        left = (portrait.layers.matte >= 0.99) & (engine.last_matte == 0)
        assert left.sum() > 200, dx
        off_plate = np.abs(out[left].astype(int) - portrait.still_plate[left]).max(-1)
        assert (off_plate <= 2).mean() > 0.98, dx
        off_backdrop = np.abs(out[left].astype(int) - portrait.backdrop[left]).max(-1)
        assert (off_backdrop > 2).mean() > 0.5, dx  # the two differ there: a real check
    out = engine.render(portrait, p, p)
    off = portrait.layers.matte < 0.9
    assert np.array_equal(out[off], portrait.image[off])


@pytest.mark.fixtures
def test_no_person_falls_back_to_the_plain_warp_with_a_warning(
        mesh_lp_s42, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _, portrait = mesh_lp_s42
    from live.engines.mesh import engine as engine_module

    monkeypatch.setattr(engine_module, "prepare_layers", lambda image, **kw: None)
    fresh = MeshEngine(size=SIZE, smoothing=False)
    with caplog.at_level(logging.WARNING, logger="live.engines.mesh.engine"):
        fallback = fresh.prepare(portrait.image)
    assert fallback.layers is None
    assert "no person found" in caplog.text
    fresh.set_portrait(fallback)
    p = fallback.landmarks
    moved = p.copy()
    moved[:, 0] += 10.0
    out = fresh.render(fallback, p, moved)
    assert out.shape == portrait.image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, portrait.image)


@pytest.mark.fixtures
def test_yaw_foreshortens_the_far_cheek_and_widens_the_near_one(mesh_lp_s42) -> None:
    _, portrait = mesh_lp_s42
    p = portrait.landmarks
    centre = p[:, :3].mean(axis=0)
    turned = (p[:, :3] - centre) @ _rot_y(25.0).T + centre  # a 3-D head turn of the driver
    motion = portrait_motion(p, p, turned, options=MotionOptions())
    flat = portrait_motion(p, p, turned, options=MotionOptions(rotation_3d=False))
    nose = lm.NOSE_TIP
    right, left = lm.RIGHT_CHEEK, lm.LEFT_CHEEK

    def widths(points: np.ndarray) -> tuple[float, float]:
        return (abs(points[nose, 0] - points[right, 0]), abs(points[left, 0] - points[nose, 0]))

    before = widths(p)
    after = widths(motion.points)
    # One side of the face grows narrower than the other: a turn, not a slide.
    ratio_before = before[0] / before[1]
    ratio_after = after[0] / after[1]
    assert abs(np.log(ratio_after / ratio_before)) > 0.2
    # The 3-D path carries the driver's own projected landmarks back (same face, same turn).
    np.testing.assert_allclose(motion.points[:, :2], turned[:, :2], atol=1.0)
    assert np.abs(flat.points[:, :2] - turned[:, :2]).max() < 3.0


@pytest.mark.fixtures
def test_gaze_moves_the_iris_within_the_eye(mesh_lp_s42) -> None:
    _, portrait = mesh_lp_s42
    assert len(portrait.eyes) == 2
    p = portrait.landmarks
    iod = lm.inter_ocular_distance(p)
    looked = p.copy()
    irises = ((lm.RIGHT_IRIS_CENTER, lm.RIGHT_IRIS), (lm.LEFT_IRIS_CENTER, lm.LEFT_IRIS))
    for centre, ring in irises:
        looked[[centre, *ring], 0] += 0.05 * iod  # both eyes look to the image's right

    def dark_shift(image: np.ndarray, loop: tuple[int, ...]) -> float:
        """How far right the dark part of an eye opening moved against the portrait."""
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(p[list(loop), :2]).astype(np.int32)], (1,))
        ys, xs = np.nonzero(mask)

        def centre_x(img: np.ndarray) -> float:
            luma = img[ys, xs].astype(np.float64).mean(axis=1)
            weight = np.clip(luma.max() - luma, 0, None) ** 2
            return float((xs * weight).sum() / weight.sum())

        return centre_x(image) - centre_x(portrait.image)

    with_gaze = MeshEngine(size=SIZE, smoothing=False)
    warp_only = MeshEngine(size=SIZE, smoothing=False, gaze=False)
    bare = warp_only.prepare(portrait.image)
    out = with_gaze.render(portrait, p, looked)
    dragged = warp_only.render(bare, p, looked)
    for loop in (lm.RIGHT_EYE, lm.LEFT_EYE):
        moved, smeared = dark_shift(out, loop), dark_shift(dragged, loop)
        assert moved > 0.012 * iod  # the iris slid the way the gaze went ...
        assert moved > 2.0 * smeared  # ... where the warp alone barely drags it


@pytest.mark.fixtures
def test_a_glance_aside_uncovers_a_white_as_light_as_the_skin_below_the_eye(
        mesh_lp_s42) -> None:
    """Where the iris was, a glance aside shows an eyeball lit as the skin below the eye, not
    the white the portrait shows beside its centred iris (in the corners' and lids' shadow):
    filled from the lighter half of that white, it came out at 0.66 and 0.92 of the skin's
    luma here (the fixture clips' uncovered whites: 1.0-1.5)."""
    _, portrait = mesh_lp_s42
    p = portrait.landmarks
    looked = p.copy()
    eyes = ((lm.RIGHT_EYE, lm.RIGHT_IRIS_CENTER, lm.RIGHT_IRIS, lm.RIGHT_EYE_OUTER,
             lm.RIGHT_EYE_INNER),
            (lm.LEFT_EYE, lm.LEFT_IRIS_CENTER, lm.LEFT_IRIS, lm.LEFT_EYE_INNER,
             lm.LEFT_EYE_OUTER))
    for _, centre, ring, a, b in eyes:
        looked[[centre, *ring], 0] += 0.15 * np.linalg.norm(p[b, :2] - p[a, :2])
    with MeshEngine(size=SIZE, smoothing=False) as engine:
        out = engine.render(portrait, p, looked)
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float64)
    own = cv2.cvtColor(portrait.image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for loop, centre, ring, _, _ in eyes:
        opening = np.zeros((SIZE, SIZE), np.uint8)
        cv2.fillPoly(opening, [np.round(p[list(loop), :2]).astype(np.int32)], (1,))
        inside = cv2.erode(opening, np.ones((3, 3), np.uint8)) > 0
        radius = np.linalg.norm(p[list(ring), :2] - p[centre, :2], axis=1).mean()
        was = np.hypot(xx - p[centre, 0], yy - p[centre, 1])
        now = np.hypot(xx - looked[centre, 0], yy - looked[centre, 1])
        uncovered = inside & (was < 0.9 * radius) & (now > 1.2 * radius)
        white = own[inside & (was > 1.2 * radius)]
        contour = p[list(loop), :2]
        width = np.ptp(contour[:, 0])
        low = contour[np.argmax(contour[:, 1])]
        skin = np.median(own[np.hypot(xx - low[0], yy - low[1] - 0.3 * width) <= 0.15 * width])
        assert uncovered.sum() > 20
        shown = grey[uncovered].mean()
        assert shown > np.median(white)
        assert skin <= shown <= 1.2 * skin, (shown, skin)


def _eye_patch(white_rgb: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray]:
    """A 24x44 eye: an elliptic opening (centre (22, 12), half axes 18 and 7), a dark iris
    disc of radius 6 in its middle and the rest of the opening ``white_rgb``; returns the
    picture, the white's visible pixels, the opening and the iris's place."""
    roi = np.full((24, 44, 3), (170, 120, 100), np.uint8)  # skin around
    opening = np.zeros((24, 44), np.uint8)
    cv2.ellipse(opening, (22, 12), (18, 7), 0.0, 0.0, 360.0, (1,), -1)
    yy, xx = np.mgrid[0:24, 0:44]
    d = np.hypot(xx - 22, yy - 12)
    roi[opening > 0] = white_rgb
    roi[(opening > 0) & (d <= 6)] = (40, 30, 25)
    white_px = (opening > 0) & (d > 6 * 1.15)
    return roi, white_px, opening, (opening > 0) & (d <= 6)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


def test_the_uncovered_eyeball_is_lit_as_the_skin_below_the_eye_in_the_whites_own_colour(
        ) -> None:
    from live.engines.mesh.eyes import WHITE_SKIN_LUMA, _white

    roi, white_px, opening, _ = _eye_patch((150, 140, 136))  # a white in shadow, warm
    skin = np.array([150.0, 30.0, -30.0])  # a strongly coloured skin
    filled = _white(roi, white_px, opening, skin, 36.0)
    middle = filled[12, 22]
    assert abs(_luma(middle) - WHITE_SKIN_LUMA * 150.0) < 4.0  # lifted to the skin's light
    own = cv2.cvtColor(np.uint8([[[150, 140, 136]]]), cv2.COLOR_RGB2YCrCb)[0, 0, 1:]
    now = cv2.cvtColor(np.clip(middle + 0.5, 0, 255).astype(np.uint8)[None, None],
                       cv2.COLOR_RGB2YCrCb)[0, 0, 1:]
    assert np.abs(now.astype(int) - own.astype(int)).max() <= 2  # the white's hue, not skin's
    # the lids' shadow: darker just under the upper lid than in the middle
    top = int(np.nonzero(opening[:, 22])[0].min()) + 1
    assert _luma(filled[top, 22]) < 0.93 * _luma(middle)
    # a white as light as its skin already is left as it is (the lighter half's fill)
    roi, white_px, opening, _ = _eye_patch((200, 200, 200))
    kept = _white(roi, white_px, opening, np.array([120.0, 0.0, 0.0]), 36.0)
    assert abs(_luma(kept[12, 22]) - 200.0) < 3.0
    # no skin measured (off the picture): no lift
    roi, white_px, opening, _ = _eye_patch((150, 140, 136))
    plain = _white(roi, white_px, opening, None, 36.0)
    assert abs(_luma(plain[12, 22]) - _luma(np.array([150, 140, 136]))) < 3.0


def test_a_deep_set_eyes_uncovered_white_is_not_lit_past_its_own_lightest() -> None:
    """An eye in the brows' shadow below a lit cheek: the uncovered white stays within
    :data:`WHITE_OWN_LIGHTEST` of the white it shows (a bright spot at the cheek's light
    before that bound)."""
    from live.engines.mesh.eyes import WHITE_OWN_LIGHTEST, _white

    roi, white_px, opening, _ = _eye_patch((100, 100, 100))
    filled = _white(roi, white_px, opening, np.array([220.0, 0.0, 0.0]), 36.0)
    assert abs(_luma(filled[12, 22]) - WHITE_OWN_LIGHTEST * 100.0) < 3.0


def test_whole_picture_layout_is_an_identity_crop() -> None:
    from live.geometry import crop_transform
    from live.jobs.animate import CropLayout, face_crop_square, whole_picture_layout

    face = np.zeros((478, 3))
    face[:, 0] = np.linspace(150, 350, 478)  # a face about 200 px wide in a 512 picture
    face[:, 1] = np.linspace(150, 370, 478)
    layout = whole_picture_layout(CropLayout(), [face], (512, 512))
    assert layout.picture == (512, 512)
    centre, side = face_crop_square(face, layout)
    np.testing.assert_allclose(crop_transform(centre, side, 512), [[1, 0, 0], [0, 1, 0]])
    # a small face in a large picture, or several faces: the usual face crop
    assert whole_picture_layout(CropLayout(), [face * 0.2], (512, 512)).picture is None
    assert whole_picture_layout(CropLayout(), [face, face], (512, 512)).picture is None
    assert whole_picture_layout(CropLayout(), [face * 4], (2048, 2048)).picture is None
    # a picture smaller than the mesh engine's smallest crop: a face crop enlarged to it
    # (animated whole, a 40 px thumbnail asked the engine for a 40 px crop, under its 64)
    assert whole_picture_layout(CropLayout(), [face * 0.25], (128, 128)).picture is None


def _curls_on_a_wall(seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                             np.ndarray]:
    """A dark head on a grainy light wall with thin strands off its top (each pixel 15 %
    hair), the same line drawn apart from the head, and a thick patch of that grey touching
    the head. Returns image, matte, strands, the line apart and the patch."""
    rng = np.random.default_rng(seed)
    size = 256
    disk = np.zeros((size, size), np.float32)
    cv2.circle(disk, (128, 200), 70, (1.0,), -1)
    matte = cv2.GaussianBlur(disk, (0, 0), 1.2)
    wall, hair = 215.0, 25.0
    strands = np.zeros((size, size), np.uint8)
    for angle in (-60, -35, -10, 15, 40, 65):  # outwards from the head's rim, 18 px long
        a = np.deg2rad(angle - 90)
        x0, y0 = 128 + 66 * np.cos(a), 200 + 66 * np.sin(a)
        x1, y1 = 128 + 84 * np.cos(a + 0.15), 200 + 84 * np.sin(a + 0.15)
        cv2.line(strands, (round(x0), round(y0)), (round(x1), round(y1)), (1,), 1)
    apart = np.zeros((size, size), np.uint8)
    cv2.line(apart, (10, 20), (40, 60), (1,), 1)
    patch = np.zeros((size, size), bool)
    patch[150:170, 40:62] = True  # touching the head's left side at x ~ 58-62
    share = 0.15 * ((strands > 0) | (apart > 0)) + 0.15 * patch
    person = np.maximum(matte, 0.0)
    colour = wall * (1.0 - person) + hair * person
    colour = colour * (1.0 - share) + hair * share
    image = np.clip(colour[..., None] + rng.integers(-4, 5, (size, size, 3)), 0, 255)
    strands_out = (strands > 0) & (matte < 0.05)
    return image.astype(np.uint8), matte, strands_out, apart > 0, patch & (matte < 0.05)


def test_claim_strands_finds_loose_hair_joined_to_the_head_and_takes_it_out() -> None:
    """A photo's flyaway curls lay outside the matte, so they stayed on the wall where the
    head left them. Thin strands joined to the head are claimed by the share of each pixel
    they cover, and the clean picture has the wall there; a line apart from the head and a
    thick patch (an object, not a strand) are left alone, and so is every other pixel."""
    image, matte, strands, apart, patch = _curls_on_a_wall()
    found = segmentation.claim_strands(image, matte)
    assert found is not None
    cov = found.coverage
    assert cov.dtype == np.float32 and cov.shape == matte.shape
    assert np.mean(cov[strands] > 0) > 0.9  # nearly every strand pixel ...
    assert 0.10 < float(np.median(cov[strands])) < 0.20  # ... at about the 15 % it covers
    assert cov[apart].max() == 0.0  # not joined to the head
    inner = cv2.erode(patch.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert cov[inner].max() == 0.0  # an object, not a strand
    # the wall behind the strands, within its grain; elsewhere the picture, bit for bit
    behind = found.clean[strands].astype(np.float32).mean(axis=1)
    assert abs(float(np.mean(behind)) - 215.0) < 3.0, float(np.mean(behind))
    assert float(np.mean(image[strands].astype(np.float32))) < 192.0  # (they were darker)
    untouched = cov == 0.0
    assert np.array_equal(found.clean[untouched], image[untouched])
    # far from the head: nothing found in the wall's grain
    away = cv2.distanceTransform((matte < 0.5).astype(np.uint8), cv2.DIST_L2, 5) > 30
    assert cov[away & ~apart].max() == 0.0


def test_the_mesh_engines_plate_is_built_without_the_loose_hair(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare_layers(strands=True)`` (the mesh engine's head layer): the plate and the
    clean picture show the wall where the strands were; without it (the background
    options) the plate keeps them. The matte is the same either way."""
    image, matte, strands, _, _ = _curls_on_a_wall()
    # (the selfie model sees no person in a disk: the head's own matte stands in for it)
    monkeypatch.setattr(segmentation, "segment_person", lambda *_a, **_k: matte.copy())
    plain = prepare_layers(image, grow=STILL_GROW)
    with_strands = prepare_layers(image, grow=STILL_GROW, strands=True)
    assert plain is not None and with_strands is not None
    far = cv2.distanceTransform((plain.matte < 0.1).astype(np.uint8), cv2.DIST_L2, 5) > 6
    tips = strands & far  # the strands' outer parts, beyond the plate's own fill
    assert tips.sum() > 40
    assert plain.clean is None and with_strands.clean is not None
    assert float(plain.plate[tips].mean()) < 200.0  # the plate kept the strands ...
    assert abs(float(with_strands.plate[tips].mean()) - 215.0) < 4.0  # ... now the wall
    assert abs(float(with_strands.clean[tips].mean()) - 215.0) < 4.0
    assert np.array_equal(with_strands.matte, plain.matte)


def _dark_lines(image: np.ndarray) -> np.ndarray:
    """Pixels more than 10 levels darker than their 7 px median: thin dark lines."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.asarray((cv2.medianBlur(gray, 7).astype(int) - gray) > 10)


@pytest.mark.fixtures
def test_a_photos_flyaway_curls_go_with_the_head(portraits_dir) -> None:
    """The black-and-white photo's curls beside the hair: when the head moved away, the
    curls stayed on the wall (the ghost of the hair's outline beside it); now the wall
    where they were is clean, and the curls moved (the head layer carries each pixel's
    difference from the wall behind it)."""
    from live.face.portraits import find_portrait, load_image

    crop = find_portrait(load_image(portraits_dir / "lp_s2_bw_photo.jpg"), SIZE).crop.image
    with MeshEngine(size=SIZE, smoothing=False) as engine:
        portrait = engine.prepare(crop)
        p = portrait.landmarks
        moved = p.copy()
        moved[:, 0] += 25.0  # the head moves right, away from the curls on its left
        out = engine.render(portrait, p, moved)
    curls = (slice(100, 200), slice(55, 85))  # on the wall left of the hair
    before = int(_dark_lines(portrait.image)[curls].sum())
    assert before >= 20
    assert int(_dark_lines(out)[curls].sum()) <= before // 4
    landed = (slice(100, 200), slice(80, 110))  # where they went (the head moved 25 px)
    assert int(_dark_lines(out)[landed].sum()) >= before // 2


def test_the_segmentations_plane_arithmetic_is_numpys_to_the_bit() -> None:
    # the per-pixel products and quotients and the channel sums run on OpenCV's whole-plane
    # arithmetic for speed: the same float steps as numpy's broadcasting
    rng = np.random.default_rng(7)
    for channels in (1, 2, 3, 4):
        values = (rng.normal(size=(37, 53, channels)) * 300.0).astype(np.float32)
        weight = (rng.random((37, 53)) + 1e-3).astype(np.float32)
        np.testing.assert_array_equal(segmentation._per_pixel(values, weight),
                                      values * weight[..., None])
        np.testing.assert_array_equal(segmentation._per_pixel(values, weight, divide=True),
                                      values / weight[..., None])
        ordered = values[..., 0].copy()
        for c in range(1, channels):
            ordered += values[..., c]
        got = segmentation._channel_sum(values)
        assert got.shape == (37, 53)
        np.testing.assert_array_equal(got, ordered)
    # a strided three-channel view sums as a copy of it would
    wide = (rng.normal(size=(20, 30, 4)) * 50.0).astype(np.float32)
    np.testing.assert_array_equal(segmentation._channel_sum(wide[..., :3]),
                                  wide[..., 0] + wide[..., 1] + wide[..., 2])
    # types the planes do not take (float64 against float32) fall back to numpy
    mixed = rng.random((9, 11, 3))
    half = rng.random((9, 11)).astype(np.float32)
    np.testing.assert_array_equal(segmentation._per_pixel(mixed, half), mixed * half[..., None])
