"""Mesh engine: hair, neck and shoulders follow the driving video's optical flow
(live/engines/mesh/body.py, option body = "flow")."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate import landmarks as lm
from live.engines.mesh.body import BodyFlow, BodyMotion, DriverLattice, body_displacements
from live.engines.mesh.topology import N_MESH, build_layout


def _texture(side: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC),
                            (0, 0), 1.5)


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_body_flow_tracks_motion_in_frame_pixels_whatever_the_crops() -> None:
    frame = _texture(480)
    moved = _shift(frame, 5.0, -3.0)  # the scene moved 5 px right, 3 px up
    neutral_to_frame = np.array([[1.0, 0.0, 100.0], [0.0, 1.0, 110.0]])
    current_to_frame = np.array([[1.0, 0.0, 112.0], [0.0, 1.0, 96.0]])  # another crop
    flow = BodyFlow(frame[110:366, 100:356], neutral_to_frame, cells=8)
    start = flow.neutral_points
    now = flow.track(moved[96:352, 112:368], current_to_frame)
    inner = np.abs(start - start.mean(axis=0)).max(axis=1) < 90  # away from the crop edge
    d = now[inner] - start[inner]
    np.testing.assert_allclose(np.median(d, axis=0), [5.0, -3.0], atol=0.5)
    still = flow.track(frame[96:352, 112:368], current_to_frame)  # crop moved, scene did not
    assert np.abs(np.median(still[inner] - start[inner], axis=0)).max() < 0.5
    assert flow.lattice.weight.shape == (8, 8)
    assert 0.0 <= flow.lattice.weight.min() <= flow.lattice.weight.max() <= 1.0


def test_a_512_px_crop_gives_the_flow_the_picture_a_256_px_crop_gives() -> None:
    """The offline job's 512 px driving crops: the flow works at 128 px, and the current crop
    sampled bilinearly to a quarter aliased a fine weave (a shirt's) that the neutral crop's
    area filter averages away: 9 grey levels apart on average from what the 256 px crop of
    the same region gives, and the flow over the shoulders went astray."""
    side = 900
    yy, xx = np.mgrid[0:side, 0:side]
    weave = 40.0 * np.sign(np.sin((xx + yy) * 2.0 * np.pi / 3.1))
    frame = np.clip(_texture(side).astype(np.float64) * 0.7 + weave[..., None] + 40.0, 0,
                    255).astype(np.uint8)
    moved = _shift(frame, 5.0, -3.0)
    big_neutral, big_now = frame[190:702, 200:712], moved[176:688, 212:724]
    to_frame = np.array([[1.0, 0.0, 200.0], [0.0, 1.0, 190.0]])
    now_to_frame = np.array([[1.0, 0.0, 212.0], [0.0, 1.0, 176.0]])

    def half(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)

    def halved(m: np.ndarray) -> np.ndarray:  # a 256 px crop's pixels -> frame
        return np.array([[2.0, 0.0, m[0, 2] + 0.5], [0.0, 2.0, m[1, 2] + 0.5]])

    big = BodyFlow(big_neutral, to_frame, cells=8).align(big_now, now_to_frame)
    small = BodyFlow(half(big_neutral), halved(to_frame), cells=8).align(
        half(big_now), halved(now_to_frame))
    assert big.shape == small.shape == (128, 128)
    assert np.abs(big.astype(np.float64) - small.astype(np.float64)).mean() < 0.5


def test_body_displacements_map_the_driving_motion_into_portrait_pixels() -> None:
    lattice = DriverLattice(cells=4, step=25.0, frame_to_crop=np.array([[1.0, 0, 0], [0, 1, 0]]),
                            crop_to_frame=np.array([[1.0, 0, 0], [0, 1, 0]]),
                            weight=np.ones((4, 4)))
    neutral = lattice.neutral_points()
    motion = BodyMotion(lattice, neutral, neutral + np.array([3.0, 1.0]))
    to_portrait = np.array([[2.0, 0.0, 10.0], [0.0, 2.0, 20.0]])  # twice as large
    points = np.array([[10.0 + 2 * 50.0, 20.0 + 2 * 40.0],  # driving (50, 40): inside
                       [10.0 + 2 * 500.0, 20.0]])            # driving (500, 0): outside
    disp, weight = body_displacements(points, to_portrait, motion)
    np.testing.assert_allclose(disp[0], [6.0, 2.0])
    assert weight[0] == pytest.approx(1.0)
    assert weight[1] == 0.0


def test_body_displacements_carry_the_lattice_edge_beyond_it() -> None:
    """A portrait framed wider than the driving crop: past the lattice's edge a point takes
    the edge cells' motion, its weight fading over ``beyond`` cells."""
    eye = np.array([[1.0, 0, 0], [0, 1, 0]])
    lattice = DriverLattice(cells=4, step=25.0, frame_to_crop=eye, crop_to_frame=eye,
                            weight=np.ones((4, 4)))
    neutral = lattice.neutral_points()
    current = neutral.copy()
    current[12:] += np.array([0.0, 6.0])  # the bottom row (shoulders) moved down
    motion = BodyMotion(lattice, neutral, current)
    points = np.array([[50.0, 87.5],    # on the bottom row
                       [50.0, 124.5],   # a cell below the crop's edge (at 99.5)
                       [50.0, 300.0]])  # 8 cells below
    disp, weight = body_displacements(points, eye, motion, beyond=4.0)
    np.testing.assert_allclose(disp, [[0.0, 6.0]] * 3)
    np.testing.assert_allclose(weight, [1.0, 1.0 - 1.0 / 4.0, 0.0])
    _, none = body_displacements(points, eye, motion)
    np.testing.assert_allclose(none, [1.0, 0.0, 0.0])


def test_shoulders_keep_their_own_motion_when_the_head_rolls() -> None:
    """The head rolls 15 degrees while the whole person moves 6 px down: far from the face
    the flow starts from no motion (not from the head's, which would throw the shoulders
    out of its reach) and finds the 6 px."""
    frame = _texture(480, seed=3)
    moved = _shift(frame, 0.0, 6.0)
    crop_to_frame = np.array([[2.0, 0.0, -16.0], [0.0, 2.0, -16.0]])  # 256 px over 512
    crop = cv2.warpAffine(frame, crop_to_frame, (256, 256),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)
    now = cv2.warpAffine(moved, crop_to_frame, (256, 256),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    centre, radius = np.array([240.0, 150.0]), 45.0
    face = np.zeros((lm.NUM_LANDMARKS_WITH_IRISES, 3))
    angles = np.linspace(0.0, 2 * np.pi, len(lm.FACE_OVAL), endpoint=False)
    face[list(lm.FACE_OVAL), 0] = centre[0] + radius * np.cos(angles)
    face[list(lm.FACE_OVAL), 1] = centre[1] + radius * np.sin(angles)
    a = np.radians(15.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    head = np.column_stack([rot, centre - rot @ centre + [0.0, 6.0]])
    flow = BodyFlow(crop, crop_to_frame, cells=16, landmarks=face)
    start = flow.neutral_points
    found = flow.track(now, crop_to_frame, head=head)
    r = np.linalg.norm(start - centre, axis=1) / radius
    inside = np.all((start > 40) & (start < 440), axis=1)  # off the frame's mirrored edge
    far = inside & (r > 3.0)
    assert far.sum() > 20
    np.testing.assert_allclose(np.median(found[far] - start[far], axis=0), [0.0, 6.0],
                               atol=1.0)


def _oval_face(seed: int, centre: tuple[float, float], spread: float,
               half_width: float, half_height: float) -> np.ndarray:
    """Synthetic landmarks (478, 3): the face oval an ellipse around ``centre``, every other
    point scattered within ``spread`` px of it (inside the face)."""
    rng = np.random.default_rng(seed)
    pts = np.zeros((478, 3))
    pts[:, :2] = np.array(centre) + rng.uniform(-spread, spread, (478, 2))
    oval = list(lm.FACE_OVAL)
    ang = np.linspace(0, 2 * np.pi, len(oval), endpoint=False)
    pts[oval, 0] = centre[0] + half_width * np.sin(ang)
    pts[oval, 1] = centre[1] - half_height * np.cos(ang)
    return pts


def test_lattice_points_stay_off_the_face_and_the_border() -> None:
    pts = _oval_face(1, (256.0, 240.0), 40.0, 80.0, 100.0)
    plain = build_layout(pts, 512)
    lattice = build_layout(pts, 512, grid_step=32.0)
    assert len(plain.grid_ids) == 0 and len(lattice.grid_ids) > 100
    g = lattice.src[lattice.grid_ids]
    assert g.min() > 8 and g.max() < 503
    r = np.hypot((g[:, 0] - 256) / 80, (g[:, 1] - 240) / 100)
    assert r.min() > 1.0
    w = lattice.grid_weight
    assert w.min() >= 0.0 and w.max() <= 0.9 + 1e-9
    assert w[np.argmin(r)] > w[np.argmax(r)]  # farther from the face: less of the head


@pytest.mark.fixtures
def test_flow_moves_the_hair_with_the_driver_where_head_mode_leaves_it(
        portraits_dir: Path) -> None:
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import find_portrait, load_image
    from live.packets import FaceCrop

    crop = find_portrait(load_image(portraits_dir / "lp_s42.jpg"), 512).crop.image
    moved = _shift(crop, 8.0, 0.0)  # the driver, hair and shoulders included, moved right
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    shifts = {}
    for body in ("flow", "head"):
        engine = MeshEngine(size=512, smoothing=False, body=body, gaze=False)
        engine.set_portrait(engine.prepare(crop))
        engine.calibrate(FaceCrop(image=crop, crop_to_frame=eye, frame_index=0, t_capture=0.0))
        out = engine.process(FaceCrop(image=moved, crop_to_frame=eye, frame_index=1,
                                      t_capture=0.04), 0.04)
        engine.close()
        patch = (slice(320, 400), slice(60, 130))  # long hair, left, well below the face
        a = cv2.cvtColor(crop[patch], cv2.COLOR_RGB2GRAY).astype(np.float64)
        b = cv2.cvtColor(out[patch], cv2.COLOR_RGB2GRAY).astype(np.float64)
        (dx, _), _ = cv2.phaseCorrelate(a, b)
        shifts[body] = dx
    assert shifts["flow"] == pytest.approx(8.0, abs=1.5)
    assert shifts["head"] < shifts["flow"] - 2.0


@pytest.mark.fixtures
def test_hair_stays_with_the_head_when_the_flow_contradicts_it(portraits_dir: Path) -> None:
    """The landmarks say the head moved 80 px, the picture did not move (a flow that lost a
    fast motion): the flow is not trusted and the lattice follows the head, no tearing."""
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import find_portrait, load_image
    from live.packets import FaceCrop

    found = find_portrait(load_image(portraits_dir / "lp_s42.jpg"), 512)
    crop, lms = found.crop.image, found.crop.landmarks
    assert lms is not None
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    moved = lms.copy()
    moved[:, 0] += 80.0
    engine = MeshEngine(size=512, smoothing=False, gaze=False, mouth="off", shading=0.0)
    portrait = engine.prepare(crop)
    engine.set_portrait(portrait)
    engine.calibrate(FaceCrop(crop, eye, 0, 0.0, landmarks=lms))
    out = engine.process(FaceCrop(crop, eye, 1, 0.04, landmarks=moved), 0.04)
    # the same frame with the head-following default (no body motion given)
    default = engine.render(portrait, lms.astype(np.float64), moved.astype(np.float64))
    engine.close()
    assert np.abs(out.astype(int) - default.astype(int)).mean() < 0.5
    assert len(portrait.layout.grid_ids) > 0  # the lattice is there, and moved with the head


def _row_shift(src: np.ndarray, out: np.ndarray, y: int) -> int:
    """How far down (0-15 px) the output's row ``y`` shows the source's rows."""
    errs = [np.abs(out[y].astype(int) - src[y - d].astype(int)).mean() for d in range(16)]
    return int(np.argmin(errs))


@pytest.mark.fixtures
def test_a_body_moving_down_slides_out_through_the_bottom_edge(driving_dir: Path) -> None:
    """The driver (head, shoulders, all) moves 10 px down: the portrait's shoulders at the
    picture's bottom edge go down with it, all the way to the last row (the edge is not
    pinned, which squeezed the chest against it), while its background stays still."""
    from live.bench.reconstruct import first_frame
    from live.engines.mesh.engine import MeshEngine
    from live.packets import FaceCrop

    frame = first_frame(driving_dir / "tps_driving.mp4")  # shoulders across the bottom edge
    crop = cv2.resize(frame[:410, :410], (512, 512), interpolation=cv2.INTER_CUBIC)
    moved = _shift(crop, 0.0, 10.0)
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    engine = MeshEngine(size=512, smoothing=False, gaze=False)
    portrait = engine.prepare(crop)
    assert portrait.layers is not None
    engine.set_portrait(portrait)
    engine.calibrate(FaceCrop(image=crop, crop_to_frame=eye, frame_index=0, t_capture=0.0))
    out = engine.process(FaceCrop(image=moved, crop_to_frame=eye, frame_index=1,
                                  t_capture=0.04), 0.04)
    engine.close()
    assert (portrait.matte[500:] > 128).mean() > 0.9  # the bottom rows are the person's
    assert [_row_shift(crop, out, y) for y in (470, 500, 509, 511)] == [10, 10, 10, 10]
    background = cv2.dilate((portrait.matte > 0).astype(np.uint8), np.ones((61, 61), np.uint8))
    still = background == 0
    assert still.sum() > 5000
    assert np.array_equal(out[still], crop[still])


@pytest.mark.fixtures
def test_a_body_moving_up_is_stretched_at_the_bottom_edge_not_mirrored(
        driving_dir: Path) -> None:
    """The driver moves 12 px up, on a crop inside its photo: nothing below the crop's last
    row is known, so that row keeps showing itself (a band painted there stays at the
    bottom, the shoulders above stretch), where the warp used to show the crop mirrored at
    its edge (a collar's tips upside down below it)."""
    from live.bench.reconstruct import first_frame
    from live.engines.mesh.engine import MeshEngine
    from live.packets import FaceCrop

    frame = first_frame(driving_dir / "tps_driving.mp4")  # shoulders across the bottom edge
    crop = cv2.resize(frame[:410, :410], (512, 512), interpolation=cv2.INTER_CUBIC)
    portrait = crop.copy()
    portrait[504:] = (255, 0, 255)  # the last rows, marked
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    engine = MeshEngine(size=512, smoothing=False, gaze=False)
    engine.set_portrait(engine.prepare(portrait))
    engine.calibrate(FaceCrop(image=crop, crop_to_frame=eye, frame_index=0, t_capture=0.0))
    out = engine.process(FaceCrop(image=_moved_up(crop, 12.0), crop_to_frame=eye,
                                  frame_index=1, t_capture=0.04), 0.04)
    engine.close()
    last = out[511, 100:412].astype(int)
    pink = (last[:, 0] > 200) & (last[:, 1] < 90) & (last[:, 2] > 200)
    assert pink.mean() > 0.9


def test_hair_by_the_face_does_not_tear_away_from_its_outline() -> None:
    """The face moved 10 px down; hair 10 px outside its outline would move 20 px more with
    the flow: held to FLOW_SHEAR of its distance relative to the outline; hair 100 px out
    keeps the whole flow; a flow that brings a point back towards the outline's motion is
    kept; the default's own offset (12 px, over the limit) is not undone."""
    from live.engines.mesh.body import FLOW_SHEAR, hold_to_outline

    angles = np.linspace(0.0, 2.0 * np.pi, 36, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    outline_src = 100.0 + 50.0 * ring
    outline_dst = outline_src + np.array([0.0, 10.0])
    src = np.array([[100.0, 160.0], [100.0, 250.0], [160.0, 100.0], [40.0, 100.0]])
    dst = src + np.array([[0.0, 9.0], [0.0, 9.0], [0.0, 22.0], [0.0, 22.0]])  # no flow
    flow = np.array([[0.0, 20.0], [0.0, 20.0], [0.0, -5.0], [0.0, 3.0]])
    held = hold_to_outline(flow, src, dst, outline_src, outline_dst)
    rel = (dst + held - src) - np.array([0.0, 10.0])  # relative to the outline's motion
    assert np.linalg.norm(rel[0]) == pytest.approx(FLOW_SHEAR * 10.0, rel=1e-6)
    np.testing.assert_allclose(held[0], [0.0, FLOW_SHEAR * 10.0 + 1.0], atol=1e-6)
    np.testing.assert_array_equal(held[1], flow[1])  # far out: the hair's own swing
    np.testing.assert_array_equal(held[2], flow[2])  # towards the outline's motion
    np.testing.assert_allclose(held[3], [0.0, 0.0], atol=1e-9)  # further over: no flow
    np.testing.assert_array_equal(flow[0], [0.0, 20.0])  # the input is kept


def test_a_layout_inside_its_photo_stops_at_the_photos_edge() -> None:
    """A crop that reaches past its photo (here past the bottom and right edges): every
    vertex of the layout lies on or inside the photo's part, the border runs along its
    edge, and the border's sources may slide only within it (the crop's own box for a crop
    inside its photo)."""
    pts = _oval_face(1, (256.0, 240.0), 40.0, 80.0, 100.0)
    whole = build_layout(pts, 512, grid_step=32.0)
    same = build_layout(pts, 512, grid_step=32.0, picture=(0, 0, 512, 512))
    assert np.array_equal(whole.src, same.src) and np.array_equal(whole.outer_tris,
                                                                    same.outer_tris)
    assert whole.slide_limits.tolist() == [[0.0, 0.0], [511.0, 511.0]]
    cut = build_layout(pts, 512, grid_step=32.0, picture=(0, 0, 470, 430))
    outside = cut.src[N_MESH:]
    assert outside[:, 0].max() <= 469.0 and outside[:, 1].max() <= 429.0
    border = cut.src[cut.border_ids]
    assert np.isclose(border[:, 1], 429.0).sum() >= 5 and np.isclose(border[:, 0], 469.0).sum() >= 5
    assert cut.slide_limits.tolist() == [[0.0, 0.0], [469.0, 429.0]]


def _moved_up(image: np.ndarray, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.fixtures
def test_a_body_moving_up_never_brings_the_made_up_border_into_the_photo(
        driving_dir: Path) -> None:
    """A portrait crop reaching 60 px past its photo's bottom edge (shoulders across it),
    whose made-up border is painted magenta; the driver moves 12 px up. Told where the
    photo is, the engine stretches the shoulders at the photo's edge and no magenta shows
    inside the photo; not told, the magenta comes up into it (what the test guards)."""
    from live.bench.reconstruct import first_frame
    from live.engines.mesh.engine import MeshEngine
    from live.geometry import crop_square, picture_box
    from live.packets import FaceCrop

    frame = first_frame(driving_dir / "tps_driving.mp4")  # shoulders across the bottom edge
    h, w = frame.shape[:2]
    side = float(min(h, w))
    crop = crop_square(frame, (w / 2.0, h - side / 2.0 + 48.0), side, 512)
    box = picture_box(crop.crop_to_frame, (w, h), 512)
    assert box[3] < 470  # the crop reaches past the photo's bottom
    portrait = crop.image.copy()
    portrait[box[3]:] = (255, 0, 255)
    driver = _moved_up(crop.image, 12.0)
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def magenta_in_photo(picture: tuple[int, int, int, int] | None) -> int:
        engine = MeshEngine(size=512, smoothing=False, gaze=False)
        engine.set_portrait(engine.prepare(portrait, picture=picture))
        engine.calibrate(FaceCrop(image=crop.image, crop_to_frame=eye, frame_index=0,
                                  t_capture=0.0))
        out = engine.process(FaceCrop(image=driver, crop_to_frame=eye, frame_index=1,
                                      t_capture=0.04), 0.04)
        engine.close()
        x0, y0, x1, y1 = box
        photo = out[y0:y1, x0:x1].astype(int)
        pink = (photo[..., 0] > 200) & (photo[..., 1] < 90) & (photo[..., 2] > 200)
        return int(pink.sum())

    assert magenta_in_photo(box) == 0
    assert magenta_in_photo(None) > 500


def test_no_lattice_point_follows_the_head_more_than_a_ring_nearer_the_face() -> None:
    """A tall, narrow face: beside it, the rings lie close to the outline. A lattice point
    outside a ring, in the same direction from the face's centre, follows the head no more
    than that ring does (measured in the outline's own radius, as the rings are placed).
    Measured in the face's mean radius instead, lattice points beside the cheek followed
    0.8-0.9 of the head next to a ring following 0.6, and a hair's edge across them came
    out as a saw-tooth on a head turn (Mona Lisa on lp_d3)."""
    pts = _oval_face(3, (256.0, 250.0), 30.0, 70.0, 140.0)
    oval = list(lm.FACE_OVAL)
    layout = build_layout(pts, 512, grid_step=32.0)
    centre = pts[oval, :2].mean(axis=0)
    rings = layout.src[layout.ring_ids] - centre
    grid = layout.src[layout.grid_ids] - centre
    ring_angle = np.arctan2(rings[:, 1], rings[:, 0])
    grid_angle = np.arctan2(grid[:, 1], grid[:, 0])
    checked = 0
    for g, a, w in zip(grid, grid_angle, layout.grid_weight, strict=True):
        gap = np.abs((ring_angle - a + np.pi) % (2 * np.pi) - np.pi)
        nearer = (gap < np.radians(4)) & (np.linalg.norm(rings, axis=1) < np.linalg.norm(g) - 4)
        if nearer.any():
            checked += 1
            assert w <= layout.ring_weight[nearer].min() + 0.02
    assert checked > 20


def test_the_lattice_takes_the_outlines_own_motion_as_the_rings_beside_it_do() -> None:
    """The jaw's lower half widens by 20 px (the outline's own motion, the head still).
    The rings take part of it; a lattice point between the outline and the first ring took
    none, so the triangles on its one side were squeezed and the others drawn out: on a head
    turn, deepface_img1's earlobe came out as a block of skin with straight edges
    (lp_d3 frame 258). Now every point around the face moves by one rule."""
    from live.engines.mesh.motion import outside_motion
    from live.engines.mesh.topology import triangle_areas

    centre = (256.0, 240.0)
    pts = _oval_face(2, centre, 40.0, 80.0, 100.0)
    layout = build_layout(pts, 512, grid_step=32.0)
    oval = np.asarray(lm.FACE_OVAL)
    moved = pts.copy()
    jaw = oval[pts[oval, 1] > centre[1] + 20.0]
    moved[jaw, 0] += 20.0 * np.sign(pts[jaw, 0] - centre[0])
    still = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    dst = outside_motion(layout, moved, still, 0.6)
    assert np.array_equal(dst[:N_MESH], moved[:, :2])
    grid = layout.grid_ids
    near = grid[np.isin(layout.grid_anchor, jaw) & (layout.grid_weight > 0.5)]
    assert len(near) >= 4
    assert np.all(np.abs(dst[near, 0] - layout.src[near, 0]) > 4.0)  # outwards, as the jaw
    tris = layout.outer_tris[np.isin(layout.outer_tris, grid).any(axis=1)]
    ratio = triangle_areas(dst, tris) / triangle_areas(layout.src, tris)
    rigid = dst.copy()
    rigid[grid] = layout.src[grid]  # the lattice with the head alone (here: still)
    before = triangle_areas(rigid, tris) / triangle_areas(layout.src, tris)
    assert before.min() < 0.45  # squeezed against the rings ...
    assert ratio.min() > 0.6  # ... now not
    assert np.array_equal(dst[layout.border_ids], layout.src[layout.border_ids])


def _upright_face(seed: int) -> np.ndarray:
    """:func:`_oval_face` with level eyes (the chin straight below the face's centre)."""
    pts = _oval_face(seed, (256.0, 220.0), 30.0, 80.0, 100.0)
    pts[lm.RIGHT_EYE_OUTER, :2] = (206.0, 200.0)
    pts[lm.LEFT_EYE_OUTER, :2] = (306.0, 200.0)
    return pts


def _strains(values: np.ndarray, links: object) -> np.ndarray:
    """Each link's difference of ``values`` over its length at rest."""
    from live.engines.mesh.body import StrainLinks

    assert isinstance(links, StrainLinks)
    sub = values[links.points]
    a, b = links.pairs[:, 0], links.pairs[:, 1]
    return np.linalg.norm(sub[a] - sub[b], axis=1) / links.length


def test_the_strain_limit_holds_the_points_below_the_chin_only() -> None:
    from live.engines.mesh.body import strain_links

    pts = _upright_face(4)
    layout = build_layout(pts, 512, grid_step=32.0)
    links = strain_links(layout)
    at = layout.src[layout.outside_ids]
    chin_y = pts[lm.CHIN, 1]
    assert len(links.points) >= 20 and len(links.pairs) >= 30
    assert np.all(at[links.points, 1] > chin_y)
    assert np.sum(at[:, 1] > chin_y) == len(links.points)  # every point below it
    np.testing.assert_allclose(links.smooth.sum(axis=1), 1.0)


def test_a_neck_wide_tongue_of_motion_is_smoothed_and_a_gentle_field_kept() -> None:
    """A driver's neck at the bottom of its crop moved 30 px sideways, its hair beside it
    not: carried onto a portrait's chest, a column as wide as the neck slid away from the
    shoulders beside it (deepface_img21's tie knot sheared off its tie on lp_d3 frame 282).
    The limit pulls the strained spots towards their neighbourhood; a field that bends
    gently (a tenth of the points' distance) comes back bit for bit."""
    from live.engines.mesh.body import FLOW_STRAIN, limit_strain, strain_links

    layout = build_layout(_upright_face(5), 512, grid_step=32.0)
    links = strain_links(layout)
    at = layout.src[layout.outside_ids]
    tongue = np.zeros((len(at), 2))
    column = (np.abs(at[:, 0] - 256.0) < 40.0) & (at[:, 1] > 330.0)
    assert column.sum() >= 3
    tongue[column, 0] = 30.0
    before = _strains(tongue, links)
    assert before.max() > 2.5 * FLOW_STRAIN
    held = limit_strain(tongue, links)
    after = _strains(held, links)
    assert after.max() < 0.6 * before.max()
    assert np.sort(after)[-3:].mean() < np.sort(before)[-3:].mean() - 0.3
    above = np.setdiff1d(np.arange(len(at)), links.points)
    np.testing.assert_array_equal(held[above], tongue[above])  # above the chin: untouched
    gentle = np.stack([0.1 * (at[:, 1] - 300.0), np.full(len(at), 5.0)], axis=1)
    assert _strains(gentle, links).max() < FLOW_STRAIN
    np.testing.assert_array_equal(limit_strain(gentle, links), gentle)


def test_the_body_flow_is_held_to_the_strain_limit_below_the_chin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """move_outside with a driver whose neck column (below the chin) moved 20 px sideways
    and nothing else: the chest's links come out far less strained than without the limit,
    and nothing above the chin moves differently."""
    import live.engines.mesh.body as body
    from live.engines.mesh.motion import MappedMotion, outside_motion

    pts = _upright_face(6)
    layout = build_layout(pts, 512, grid_step=32.0)
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    lattice = DriverLattice(cells=16, step=32.0, frame_to_crop=eye, crop_to_frame=eye,
                            weight=np.ones((16, 16)))
    neutral = lattice.neutral_points()
    current = neutral.copy()
    neck = (np.abs(neutral[:, 0] - 256.0) < 40.0) & (neutral[:, 1] > 330.0)
    current[neck, 0] += 20.0
    motion = MappedMotion(points=pts.copy(), head=eye, to_portrait=eye)
    links = body.strain_links(layout)

    def moved(strain: float) -> np.ndarray:
        monkeypatch.setattr(body, "FLOW_STRAIN", strain)
        dst = outside_motion(layout, pts, eye, 0.6)
        body.move_outside(layout, dst, motion, BodyMotion(lattice, neutral, current), pts, pts,
                          slide=False)
        return (dst - layout.src)[layout.outside_ids]

    limit = body.FLOW_STRAIN
    free, held = moved(0.0), moved(limit)
    assert _strains(free, links).max() > 2.0 * limit
    assert _strains(held, links).max() < 0.7 * _strains(free, links).max()
    above = np.setdiff1d(np.arange(len(free)), links.points)
    np.testing.assert_array_equal(held[above], free[above])
