"""Mesh engine: expression shading (live/engines/mesh/shading.py): the driving face's
creases carried onto the portrait as a luminance ratio, on skin only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibrate import landmarks as lm
from live.engines.mesh.shading import (
    BROWS,
    EYES_AND_LIPS,
    FEATURES,
    lip_points,
    shading_triangles,
)
from live.engines.mesh.topology import face_triangles, tesselation_triangles
from live.packets import FaceCrop

SIZE = 256
EYE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    from live.face.portraits import find_portrait

    found = find_portrait(np.ascontiguousarray(data.astronaut()), SIZE)
    assert found.crop.landmarks is not None
    return found.crop.image, found.crop.landmarks.astype(np.float32)


def _run(image: np.ndarray, pts: np.ndarray, driver: np.ndarray, *, shading: float = 1.0,
         grey: bool = False, neutral: np.ndarray | None = None, grid: int = SIZE) -> np.ndarray:
    """The portrait ``image`` (made grey with ``grey``) driven from ``neutral`` (default:
    ``image`` itself) to ``driver``, both with the landmarks ``pts``."""
    from live.engines.mesh.engine import MeshEngine

    portrait = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) \
        if grey else image
    engine = MeshEngine(size=SIZE, smoothing=False, body="head", gaze=False, mouth="off",
                        shading=shading, grid=grid)
    try:
        engine.set_portrait(engine.prepare(portrait))
        engine.calibrate(FaceCrop(image if neutral is None else neutral, EYE, 0, 0.0,
                                  landmarks=pts))
        return engine.process(FaceCrop(driver, EYE, 1, 0.04, landmarks=pts), 0.04)
    finally:
        engine.close()


def _disc(pts: np.ndarray, centre_ids: tuple[int, ...], radius: float) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    c = pts[list(centre_ids), :2].mean(axis=0)
    cv2.circle(mask, (round(float(c[0])), round(float(c[1]))), round(radius), (1,), -1)
    return mask.astype(bool)


def test_shading_triangles_are_skin_away_from_brows_eyes_and_lips() -> None:
    ok = shading_triangles()
    faces = face_triangles()
    assert ok.shape == (len(faces),) and 300 < ok.sum() < len(tesselation_triangles())
    assert len(lip_points()) == 80 and set(lm.LIPS) <= set(lip_points())
    assert not ok[len(tesselation_triangles()):].any()  # eye and mouth openings
    assert set(EYES_AND_LIPS) | set(BROWS) == set(FEATURES)
    assert not np.isin(faces[ok], EYES_AND_LIPS).any()
    # the brows' own triangles stay out; the skin round them (a single brow corner) carries
    on_brows = np.isin(faces, BROWS).sum(axis=1)
    assert not (ok & (on_brows >= 2)).any()
    assert (ok & (on_brows == 1)).sum() >= 20


def test_a_frowns_furrows_between_the_brows_darken_the_portrait(face) -> None:
    """The driving face knits its brows: a dark furrow forms between them. The portrait's
    skin there darkens with it (the triangles with one brow corner carry the shading; with
    none of them carrying it, lp_d3's frown came out nearly smooth)."""
    image, pts = face
    iod = float(lm.inter_ocular_distance(pts))
    inner = (pts[55, :2] + pts[285, :2]) / 2.0  # between the brows' inner ends
    furrow = np.zeros((SIZE, SIZE), np.uint8)
    x, y = round(float(inner[0])), round(float(inner[1] - 0.03 * iod))
    cv2.ellipse(furrow, (x, y), (max(2, round(0.05 * iod)), max(3, round(0.1 * iod))), 0.0,
                0.0, 360.0, (1,), -1)
    frown = image.copy()
    frown[furrow.astype(bool)] = (frown[furrow.astype(bool)] * 0.6).astype(np.uint8)
    plain = _run(image, pts, image, shading=1.0)
    out = _run(image, pts, frown, shading=1.0)
    core = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(core, (x, y), (max(1, round(0.025 * iod)), max(2, round(0.05 * iod))), 0.0,
                0.0, 360.0, (1,), -1)
    ratio = out[core.astype(bool)].astype(float).mean() / plain[core.astype(bool)].astype(
        float).mean()
    assert ratio < 0.85, ratio


def test_a_driving_crease_darkens_the_portraits_cheek_in_its_own_colours(face) -> None:
    image, pts = face
    iod = float(lm.inter_ocular_distance(pts))
    cheek = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.12 * iod)
    creased = image.copy()
    creased[cheek] = (creased[cheek] * 0.6).astype(np.uint8)  # the driver's fold
    plain = _run(image, pts, image, shading=1.0)
    assert np.array_equal(plain, _run(image, pts, image, shading=0.0))  # nothing changed
    out = _run(image, pts, creased, shading=1.0)
    core = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.06 * iod)
    ratio = out[core].astype(float).sum(axis=0) / plain[core].astype(float).sum(axis=0)
    assert 0.55 < ratio.mean() < 0.85  # darker, towards the driver's ratio (0.6)
    assert np.ptp(ratio) < 0.05  # each channel alike: the portrait's own colours
    far = ~_disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.5 * iod)
    assert np.abs(out[far].astype(int) - plain[far].astype(int)).max() <= 1
    grey = _run(image, pts, creased, shading=1.0, grey=True)
    assert np.abs(grey[core].astype(int) - grey[core][:, :1].astype(int)).max() <= 1  # grey


def test_a_crease_that_goes_away_lifts_only_a_portrait_that_has_it(face) -> None:
    """The driving neutral frame has a fold on the cheek that later goes away: the ratio is
    above 1 there. On a portrait without that fold (another person's smooth cheek) it drew a
    light line (white streaks across a child's forehead, tps_driving); it now lifts at most
    by FREE_LIFT there. On a portrait that has the fold (the driver's own face, as in
    self-reconstruction) the fold still goes."""
    from live.engines.mesh.shading import FREE_LIFT

    image, pts = face
    iod = float(lm.inter_ocular_distance(pts))
    fold = np.zeros((SIZE, SIZE), np.uint8)
    a, b = pts[lm.RIGHT_CHEEK, :2], pts[lm.MOUTH_RIGHT, :2]
    cv2.line(fold, (round(float(a[0])), round(float(a[1]))),
             (round(float(b[0])), round(float(b[1]))), (1,), max(2, round(0.04 * iod)))
    line = fold.astype(bool)
    creased = image.copy()
    creased[line] = (creased[line] * 0.6).astype(np.uint8)

    def run(portrait: np.ndarray) -> np.ndarray:
        return _run(portrait, pts, image, neutral=creased)  # neutral: the fold

    core = cv2.erode(fold, np.ones((3, 3), np.uint8)).astype(bool)
    smooth = run(image)  # another face: no fold of its own
    gain = smooth[core].astype(float).mean() / image[core].astype(float).mean()
    assert gain < 1.0 + FREE_LIFT + 0.01
    own = run(creased)  # the driver's own face: its fold goes
    lifted = own[core].astype(float).mean() / creased[core].astype(float).mean()
    assert lifted > 1.2  # (its end by the face's edge lies next to dark hair: not carried)


def test_the_drivers_lips_and_brows_are_not_carried(face) -> None:
    image, pts = face
    dark = image.copy()
    lips = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(lips, [np.round(pts[list(lm.LIPS_OUTER), :2]).astype(np.int32)], (1,))
    brows = np.zeros((SIZE, SIZE), np.uint8)
    for ids in (lm.RIGHT_BROW, lm.LEFT_BROW):
        cv2.fillPoly(brows, [cv2.convexHull(np.round(pts[list(ids), :2]).astype(np.int32))],
                     (1,))
    region = (lips | brows).astype(bool)
    dark[region] = (dark[region] * 0.5).astype(np.uint8)
    plain = _run(image, pts, image, shading=1.0)
    out = _run(image, pts, dark, shading=1.0)
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.abs(out[inner].astype(int) - plain[inner].astype(int)).mean() < 2.0


def test_light_changing_smoothly_across_the_driving_face_is_not_carried(face) -> None:
    """The driving head turned away from the light: one side of its face darkens smoothly.
    That is light, not an expression: the portrait keeps its own."""
    image, pts = face
    x = np.arange(SIZE, dtype=np.float32)
    gain = np.clip(1.0 - 0.5 * (x - x.min()) / SIZE, 0.5, 1.0)[None, :, None]
    lit = np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    plain = _run(image, pts, image, shading=1.0)
    out = _run(image, pts, lit, shading=1.0)
    iod = float(lm.inter_ocular_distance(pts))
    for ids in ((lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), (lm.LEFT_CHEEK, lm.MOUTH_LEFT)):
        core = _disc(pts, ids, 0.06 * iod)
        ratio = out[core].astype(float).mean() / plain[core].astype(float).mean()
        assert abs(ratio - 1.0) < 0.05


def test_the_turn_from_neutral_is_measured_and_fades_the_shading(face) -> None:
    from live.engines.mesh.engine import SHADING_FULL_TURN, SHADING_NO_TURN
    from live.engines.mesh.motion import portrait_motion

    _, pts = face
    p = pts.astype(np.float64)
    c = p.mean(axis=0)
    for deg in (0.0, 12.0, 30.0):
        a = np.deg2rad(deg)
        rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0],
                        [-np.sin(a), 0.0, np.cos(a)]])
        turned = (p - c) @ rot.T + c
        assert portrait_motion(p, p, turned).turn_deg == pytest.approx(deg, abs=0.5)
    assert 0.0 < SHADING_FULL_TURN < SHADING_NO_TURN < 90.0


def test_no_shading_is_carried_past_the_largest_turn(face) -> None:
    from live.engines.mesh.engine import SHADING_NO_TURN, MeshEngine

    image, pts = face
    p = pts.astype(np.float64)
    c = p.mean(axis=0)
    a = np.deg2rad(SHADING_NO_TURN + 5.0)
    rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    turned = ((p - c) @ rot.T + c).astype(np.float32)
    creased = (image * 0.7).astype(np.uint8)  # whatever the picture shows
    outs = []
    for shading in (0.0, 1.0):
        engine = MeshEngine(size=SIZE, smoothing=False, body="head", gaze=False, mouth="off",
                            shading=shading)
        engine.set_portrait(engine.prepare(image))
        engine.calibrate(FaceCrop(image, EYE, 0, 0.0, landmarks=pts))
        outs.append(engine.process(FaceCrop(creased, EYE, 1, 0.04, landmarks=turned), 0.04))
        engine.close()
    assert np.array_equal(outs[0], outs[1])


def test_a_scripted_performance_over_the_still_portrait_gets_no_shading_or_body_flow(
        face) -> None:
    """`mimicam demo` moves landmarks over the portrait's own unchanging picture: the picture
    says nothing about creases or hair, so the output is what the warp alone gives."""
    from live.engines.mesh.engine import MeshEngine

    image, pts = face
    moved = pts.copy()
    moved[list(lm.LIPS_INNER_LOWER[1:-1]), 1] += 6.0  # the mouth opens, the picture does not
    moved[:, 0] += 3.0
    outs = []
    for options in ({"shading": 1.0, "body": "flow"}, {"shading": 0.0, "body": "head"}):
        engine = MeshEngine(size=SIZE, smoothing=False, gaze=False, mouth="off", **options)
        engine.set_portrait(engine.prepare(image))
        engine.calibrate(FaceCrop(image, EYE, 0, 0.0, landmarks=pts))
        outs.append(engine.process(FaceCrop(image, EYE, 1, 0.04, landmarks=moved), 0.04))
        engine.close()
    face_box = (slice(int(pts[:, 1].min()), int(pts[:, 1].max())),
                slice(int(pts[:, 0].min()), int(pts[:, 0].max())))
    diff = np.abs(outs[0][face_box].astype(int) - outs[1][face_box].astype(int))
    assert diff.mean() < 0.5  # the face: the warp alone in both


def _with_glasses(image: np.ndarray, pts: np.ndarray, dy: float = 0.0) -> np.ndarray:
    """``image`` with glasses' rims around both eyes and a bridge across the nose, ``dy`` px
    lower than where they sit at rest (grey: thin rims are not as dark as hair)."""
    iod = float(lm.inter_ocular_distance(pts))
    out = image.copy()
    thick = max(2, round(0.03 * iod))
    shift = np.array([0.0, dy])
    centres = [pts[list(ids), :2].mean(axis=0) + shift for ids in (lm.RIGHT_EYE, lm.LEFT_EYE)]
    axes = (round(0.24 * iod), round(0.16 * iod))
    for c in centres:
        cv2.ellipse(out, (round(float(c[0])), round(float(c[1]))), axes, 0, 0, 360,
                    (100, 90, 85), thick, cv2.LINE_AA)
    (x0, y0), (x1, y1) = sorted((float(c[0]), float(c[1])) for c in centres)
    cv2.line(out, (round(x0 + axes[0]), round(y0 - 0.3 * axes[1])),
             (round(x1 - axes[0]), round(y1 - 0.3 * axes[1])), (100, 90, 85), thick,
             cv2.LINE_AA)
    return out


def test_glasses_are_found_by_their_bridge(face) -> None:
    from live.engines.mesh.shading import ShadingReference, luminance, wears_glasses

    image, pts = face
    assert not wears_glasses(luminance(image), pts)
    assert wears_glasses(luminance(_with_glasses(image, pts)), pts)
    assert ShadingReference.of(_with_glasses(image, pts), pts, detect_glasses=True).glasses
    assert not ShadingReference.of(_with_glasses(image, pts), pts).glasses  # not asked
    assert not wears_glasses(luminance(image), pts[:100])  # no face mesh: no glasses


def test_glasses_triangles_cover_the_eyes_surroundings_only(face) -> None:
    from live.engines.mesh.shading import glasses_triangles

    _, pts = face
    zone = glasses_triangles(pts)
    faces = face_triangles()
    assert zone.shape == (len(faces),) and 20 < zone.sum() < 0.5 * len(faces)
    touches = np.isin(faces, [lm.RIGHT_EYE_OUTER, lm.LEFT_EYE_OUTER, lm.NOSE_BRIDGE])
    assert zone[touches.any(axis=1)].mean() > 0.5
    for far in (lm.CHIN, lm.MOUTH_LEFT, lm.MOUTH_RIGHT, lm.NOSE_TIP, lm.FOREHEAD_TOP):
        assert not zone[np.isin(faces, [far]).any(axis=1)].any()


def test_a_drivers_glasses_are_not_drawn_onto_the_portrait(face, monkeypatch) -> None:
    """The driving face wears glasses, and the face mesh slides under them between its
    neutral and current frame (here: they sit 3 px lower): their rims and bridge made a
    ratio of dark and light lines around the portrait's eyes (ghost glasses on a
    black-and-white photo driven by lp_d13). Where glasses sit there is no shading while
    the driver wears them; the rest of the face keeps it."""
    import live.engines.mesh.shading as shading

    image, pts = face
    iod = float(lm.inter_ocular_distance(pts))
    cheek = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.12 * iod)
    neutral = _with_glasses(image, pts)
    current = _with_glasses(image, pts, dy=3.0)
    current[cheek] = (current[cheek] * 0.6).astype(np.uint8)  # and a crease on the cheek

    def run() -> np.ndarray:
        return _run(image, pts, current, neutral=neutral)

    plain = _run(image, pts, image, shading=1.0)
    eyes = np.zeros((SIZE, SIZE), bool)
    for ids in (lm.RIGHT_EYE, lm.LEFT_EYE):
        eyes |= _disc(pts, ids, 0.3 * iod)
    core = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.06 * iod)
    out = run()
    assert np.abs(out[eyes].astype(int) - plain[eyes].astype(int)).max() <= 1
    assert out[core].astype(float).mean() < 0.85 * plain[core].astype(float).mean()
    monkeypatch.setattr(shading, "BRIDGE_LINE", 10.0)  # glasses not seen: the old ghost
    ghost = run()
    assert np.abs(ghost[eyes].astype(int) - plain[eyes].astype(int)).max() > 20


def test_hidden_skin_is_what_is_far_darker_than_the_face_and_around_it() -> None:
    from live.engines.mesh.shading import HIDDEN_GROW, hidden_skin

    rng = np.random.default_rng(1)
    skin = (150.0 + rng.normal(0.0, 8.0, (40, 40))).astype(np.float32)
    mask = np.ones((40, 40), np.float32)
    assert hidden_skin(skin, skin * 0.8, mask) is None  # a crease is not hair
    fringe = skin.copy()
    fringe[:6] = 40.0  # hair over the top rows in the neutral frame
    hidden = hidden_skin(fringe, skin, mask)
    assert hidden is not None
    assert hidden[:6 + HIDDEN_GROW].all() and not hidden[6 + HIDDEN_GROW + 1:].any()
    hand = skin.copy()
    hand[30:, 30:] = 30.0  # something dark in front of the face in the current frame only
    hidden = hidden_skin(skin, hand, mask)
    assert hidden is not None and hidden[35, 35] and not hidden[10, 10]
    outside = np.zeros((40, 40), np.float32)
    assert hidden_skin(fringe, skin, outside) is None  # no skin: nothing to say


def test_a_fringe_of_hair_moving_over_the_drivers_forehead_is_not_carried(face) -> None:
    """A dark fringe covers the top of the driving forehead and moves (tps_driving): the
    ratio made light and dark blotches that were carried onto a smooth forehead (a light
    band across Angelina Jolie's forehead with a dark mark in its middle, in mimicam live).
    Cells the driving face shows as far darker than its skin, and those around them, carry
    no shading; a crease on its cheek still does."""
    image, pts = face
    iod = float(lm.inter_ocular_distance(pts))
    top = pts[lm.FOREHEAD_TOP, :2]
    brow = pts[list(lm.RIGHT_BROW + lm.LEFT_BROW), 1].min()

    def fringe(lower: float) -> np.ndarray:
        out = image.copy()
        edge = round(float(top[1] + lower * (brow - top[1])))
        x0, x1 = round(float(top[0] - 0.8 * iod)), round(float(top[0] + 0.8 * iod))
        out[:edge, x0:x1] = (25, 20, 18)
        return out

    neutral, current = fringe(0.35), fringe(0.6)
    cheek = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.12 * iod)
    current[cheek] = (current[cheek] * 0.6).astype(np.uint8)
    out = _run(image, pts, current, neutral=neutral)
    plain = _run(image, pts, image, shading=1.0)
    forehead = np.zeros((SIZE, SIZE), bool)
    y0, y1 = round(float(top[1])), round(float(brow))
    forehead[y0:y1, round(float(top[0] - 0.4 * iod)):round(float(top[0] + 0.4 * iod))] = True
    diff = np.abs(out[forehead].astype(int) - plain[forehead].astype(int))
    assert diff.max() <= 4 and diff.mean() < 0.5  # carried, it was 49 and 10.5
    core = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.06 * iod)
    assert out[core].astype(float).mean() < 0.85 * plain[core].astype(float).mean()


def test_drop_grain_takes_the_speckle_out_and_keeps_a_crease() -> None:
    from live.engines.mesh.shading import drop_grain

    rng = np.random.default_rng(3)
    ratio = np.exp(rng.normal(0.0, 0.03, (80, 80))).astype(np.float32)  # grain: ~3 %
    ratio[38:42, 10:70] *= 0.6  # a crease
    mask = np.ones_like(ratio)
    mask[:, :5] = 0.0  # not skin: no part in the grain's measure
    ratio[:, :5] = 3.0
    drop_grain(ratio, mask, k=3.0)
    plain = np.ones(ratio.shape, bool)
    plain[36:44] = False
    plain[:, :5] = False
    assert np.mean(ratio[plain] == 1.0) > 0.99  # the speckle is gone
    assert ratio[39:41, 15:65].max() < 0.72  # the crease (0.6 and grain) stays deep
    smooth = np.ones((40, 40), np.float32)
    drop_grain(smooth, np.ones_like(smooth))  # nothing to take: unchanged, no NaNs
    assert np.array_equal(smooth, np.ones_like(smooth))


def test_skin_match_tells_the_same_skin_from_another() -> None:
    from live.engines.mesh.shading import skin_match

    rng = np.random.default_rng(5)
    shade = np.linspace(80.0, 160.0, 90, dtype=np.float32)[None, :].repeat(90, axis=0)
    skin = shade + cv2.GaussianBlur(rng.normal(0, 6, (90, 90)).astype(np.float32), (0, 0), 1)
    other = shade + cv2.GaussianBlur(rng.normal(0, 6, (90, 90)).astype(np.float32), (0, 0), 1)
    mask = np.zeros((90, 90), np.float32)
    mask[10:80, 10:80] = 1.0
    assert skin_match(skin, skin * 1.3 + 5.0, mask) > 0.95  # the same skin in other light
    assert abs(skin_match(skin, other, mask)) < 0.15  # two people's grain
    assert skin_match(skin, other, np.zeros_like(mask)) == 0.0  # no skin: no match


def test_the_drivers_skin_grain_is_not_carried_onto_another_face(face) -> None:
    """The driving face's grain (pores, video noise) changes from its neutral to its current
    frame; on another person's smooth skin it drew grey blotches (a young face driven by an
    older man, tps_driving). It stays off another face, while a crease still darkens it; on
    the driver's own face (the portrait is its neutral frame) the grain is given back. (The
    warp's grid at half the crop, as the engine's default 256 on a 512 crop.)"""
    image, pts = face
    iod = float(lm.inter_ocular_distance(pts))
    rng = np.random.default_rng(11)

    def grainy(picture: np.ndarray) -> np.ndarray:
        noise = cv2.GaussianBlur(rng.normal(0, 30, picture.shape[:2]).astype(np.float32),
                                 (0, 0), 2.0)
        return np.clip(picture + noise[..., None], 0, 255).astype(np.uint8)

    smooth = cv2.GaussianBlur(image, (0, 0), 3.0)
    neutral, current = grainy(smooth), grainy(smooth)
    other = grainy(np.ascontiguousarray(smooth[:, ::-1]))  # another face, its own grain
    cheek = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.15 * iod)
    grid = SIZE // 2

    def speckle(portrait: np.ndarray) -> float:
        out = _run(portrait, pts, current, neutral=neutral, grid=grid).astype(float)
        still = _run(portrait, pts, current, neutral=neutral, grid=grid,
                     shading=0.0).astype(float)
        gain = out[cheek].sum(axis=1) / np.maximum(still[cheek].sum(axis=1), 1.0)
        return float(np.std(gain))

    own = speckle(neutral)  # the driver's own neutral frame: its grain changes
    assert own > 0.01  # given back
    assert speckle(other) < 0.2 * own
    crease = _disc(pts, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.12 * iod)
    creased = current.copy()
    creased[crease] = (creased[crease] * 0.6).astype(np.uint8)
    out = _run(other, pts, creased, neutral=neutral, grid=grid)
    plain = _run(other, pts, creased, neutral=neutral, grid=grid, shading=0.0)
    from live.face.tracking import face_landmarks

    found = face_landmarks(other, refine=True)  # the other face's own cheek
    assert found is not None
    core = _disc(found, (lm.RIGHT_CHEEK, lm.MOUTH_RIGHT), 0.06 * iod)
    assert out[core].astype(float).mean() < 0.85 * plain[core].astype(float).mean()


def test_soften_creases_turns_a_thin_line_into_a_soft_fold_of_the_same_depth() -> None:
    from live.engines.mesh.shading import soften_creases

    ratio = np.ones((60, 60), np.float32)
    ratio[30, 10:50] = 0.6  # a one-cell crease
    mask = np.ones_like(ratio)
    mask[:, :5] = 0.0
    ratio[:, :5] = 1.4  # not skin: neither blurred nor bled into the skin
    before = np.log(ratio[20:41, 15:45]).sum()
    soften_creases(ratio, mask, 2.0)
    assert ratio[30, 15:45].min() > 0.8  # no more a sharp dark line
    assert ratio[26:35, 15:45].max() < 1.0 and ratio[27, 30] < 0.97  # spread either side
    assert abs(np.log(ratio[20:41, 15:45]).sum() - before) < 0.05 * abs(before)  # as deep
    assert np.all(ratio[:, :5] == np.float32(1.4))
    assert np.all(ratio[:20, 5:] == 1.0)  # the skin's edge pulls no value in
    same = ratio.copy()
    soften_creases(ratio, mask, 0.1)  # too little to blur: unchanged
    assert np.array_equal(ratio, same)


def test_the_skin_match_is_averaged_over_frames_and_starts_anew() -> None:
    from live.engines.mesh.engine import MeshEngine
    from live.engines.mesh.shading import SkinMatch

    avg = SkinMatch()
    assert avg(0.7, 0.0) == 0.7  # the first reading as it is
    # a reading that jumps by 0.3 a frame, at 30 fps
    seen = [avg(v, (i + 1) / 30) for i, v in enumerate((0.4, 0.7) * 10)]
    assert max(seen[-6:]) - min(seen[-6:]) < 0.1
    # on real time steps: one step of 2 dt is two steps of dt
    a, b = SkinMatch(), SkinMatch()
    a(0.2, 0.0), b(0.2, 0.0)
    b(0.8, 0.05)
    assert abs(a(0.8, 0.1) - b(0.8, 0.1)) < 1e-12
    avg.reset()
    assert avg(0.3, 1.0) == 0.3
    engine = MeshEngine(size=64)
    try:
        engine._same_skin(0.9, 0.0)
        engine.recalibrate()  # another neutral face: a new average
        assert engine._same_skin.value is None
    finally:
        engine.close()
