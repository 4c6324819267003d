"""The weight-free mesh engine: motion math, the warp, the mouth, face loss, fidelity, bench."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate import landmarks as lm
from calibrate.errors import InputError, MimicamError, NoFaceError
from live.bench.fidelity import FidelityMeter, frame_errors, psnr
from live.engines.mesh.engine import MeshEngine, MeshPortrait
from live.engines.mesh.motion import (
    MotionOptions,
    apply_affine,
    compose,
    fit_similarity,
    invert_affine,
    keep_order,
    portrait_motion,
)
from live.engines.mesh.mouth import teeth_reference
from live.engines.mesh.topology import (
    face_triangles,
    hole_triangles,
    tesselation_triangles,
    triangle_areas,
)
from live.engines.mesh.warp import (
    PiecewiseAffineWarp,
    enlarge_2x,
    triangle_affines,
    triangle_bounds,
)
from live.packets import FaceCrop

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
SIZE = 512


def textured(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (so shifts and warps are measurable)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def face(points: np.ndarray, index: int = 0) -> FaceCrop:
    """A driving crop that only carries landmarks (frame = crop pixels)."""
    return FaceCrop(image=np.zeros((SIZE, SIZE, 3), np.uint8), crop_to_frame=IDENTITY,
                    frame_index=index, t_capture=0.0, landmarks=points.astype(np.float32))


# -- pure math (no shared data) -------------------------------------------------------------------


def test_fit_similarity_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 500, (40, 2))
    a, t = 1.3 * np.cos(0.4), 1.3 * np.sin(0.4)
    true = np.array([[a, -t, 12.0], [t, a, -7.0]])
    m = fit_similarity(src, apply_affine(true, src))
    np.testing.assert_allclose(m, true, atol=1e-9)
    np.testing.assert_allclose(compose(invert_affine(m), m), IDENTITY, atol=1e-12)


def test_tesselation_is_the_face_mesh_without_spurious_triangles() -> None:
    tris = tesselation_triangles()
    assert tris.shape == (852, 3)  # V - E + F = 1 - 3 holes: 468 - 1322 + 852 = -2
    edges = {tuple(sorted(e)) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    assert len(edges) == 1322
    holes = hole_triangles()
    assert len(holes) == 2 * 16 + 18
    assert set(holes.ravel()) <= set(lm.RIGHT_EYE + lm.LEFT_EYE + lm.LIPS_INNER
                                     + (lm.RIGHT_IRIS_CENTER, lm.LEFT_IRIS_CENTER))
    assert face_triangles().shape == (852 + 50, 3)


def _grid_mesh(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.linspace(0, size - 1, n)
    xx, yy = np.meshgrid(c, c)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    tris = []
    for j in range(n - 1):
        for i in range(n - 1):
            a, b, c_, d = j * n + i, j * n + i + 1, (j + 1) * n + i, (j + 1) * n + i + 1
            tris += [(a, b, d), (a, d, c_)]
    return pts, np.asarray(tris)


def test_warp_identity_is_exact_and_shift_moves_the_picture() -> None:
    img = textured(256)
    src, tris = _grid_mesh(256, 9)
    warp = PiecewiseAffineWarp(256, grid=128)
    assert np.array_equal(warp.warp(img, src, src.copy(), tris), img)
    # Move the inner vertices right by 6 px: the middle of the picture moves with them.
    dst = src.copy()
    inner = np.all((src > 1) & (src < 254), axis=1)
    dst[inner, 0] += 6.0
    out = warp.warp(img, src, dst, tris)
    mid = (slice(80, 176), slice(80, 176))
    shifted = (slice(80, 176), slice(74, 170))
    assert np.abs(out[mid].astype(int) - img[shifted].astype(int)).mean() < 1.5
    assert np.abs(out[mid].astype(int) - img[mid].astype(int)).mean() > 5.0
    # The border vertices stayed: so did the corner pixels.
    assert np.array_equal(out[0, 0], img[0, 0]) and np.array_equal(out[-1, -1], img[-1, -1])


def test_picture_pulled_in_from_beyond_the_edge_is_mirrored_not_smeared() -> None:
    """A sliding picture edge samples beyond the portrait (a head moving down in a tight
    crop): repeating the edge's last row drew hair as long streaks; the warp mirrors the
    picture at its edge instead."""
    img = textured(128)
    warp = PiecewiseAffineWarp(128, grid=64)
    source = np.stack(np.meshgrid(np.arange(128, dtype=np.float32),
                                  np.arange(128, dtype=np.float32)), axis=-1)
    source[..., 1] -= 12.0  # every row shows the picture 12 px higher up
    out = warp.remap(img, source)
    band = out[:11].astype(int)
    assert np.abs(np.diff(band, axis=0)).mean() > 2.0  # texture, not one row repeated
    np.testing.assert_array_equal(out[:11], img[12:1:-1])  # the rows below the edge, mirrored
    np.testing.assert_array_equal(out[12:], img[:-12])


def test_unfold_puts_swapped_neighbours_outside_the_face_back_in_order() -> None:
    from live.engines.mesh.topology import Unfolder, triangle_areas

    src, tris = _grid_mesh(256, 9)
    inner = np.flatnonzero(np.all((src > 1) & (src < 254), axis=1))
    dst = src.copy()
    dst[inner, 0] += 10.0  # a smooth motion ...
    a = 4 * 9 + 4  # ... and one point carried past its right-hand neighbour
    dst[a, 0] += 40.0
    before = int((np.sign(triangle_areas(dst, tris))
                  != np.sign(triangle_areas(src, tris))).sum())
    assert before > 0
    fixed = dst.copy()
    assert Unfolder.build(src, tris, inner)(fixed) == 0
    assert (np.sign(triangle_areas(fixed, tris)) == np.sign(triangle_areas(src, tris))).all()
    # only the folded triangles' corners moved; the rest keeps its motion exactly
    moved = np.flatnonzero(np.abs(fixed - dst).max(axis=1) > 0)
    assert a in moved and len(moved) <= 7
    far = np.setdiff1d(np.arange(len(src)), moved)
    np.testing.assert_array_equal(fixed[far], dst[far])
    # a point that may not move (the face's, the picture's border) is not moved
    held = dst.copy()
    Unfolder.build(src, tris, np.setdiff1d(inner, [a]))(held)
    np.testing.assert_array_equal(held[a], dst[a])
    untouched = dst.copy()
    untouched[a] = src[a] + [10.0, 0.0]
    assert Unfolder.build(src, tris, inner)(untouched) == 0
    np.testing.assert_array_equal(untouched[a], src[a] + [10.0, 0.0])


def test_a_sliver_triangle_does_not_pull_in_picture_from_elsewhere() -> None:
    """A sliver (a mouth corner's triangle squeezed flat) drawn over a coarse grid cell whose
    centre lies outside it: its affine, steep, would take that cell's source far away (seen
    as a small box of another part of the picture by the demo's mouth corner); the cell's
    displacement is held within the sliver corners' own."""
    size, grid = 64, 16
    src, tris = _grid_mesh(size, 3)
    dst = src.copy()
    n = len(src)
    # the sliver: 0.3 px thick in the output, 20 px thick in the source
    sliver_dst = np.array([[20.0, 30.0], [44.0, 30.0], [32.0, 30.3]])
    sliver_src = np.array([[20.0, 30.0], [44.0, 30.0], [32.0, 50.0]])
    dst = np.concatenate([dst, sliver_dst])
    src = np.concatenate([src, sliver_src])
    tris = np.concatenate([tris, [[n, n + 1, n + 2]]])
    warp = PiecewiseAffineWarp(size, grid=grid)
    index = warp.index_map(dst, tris)
    assert (index == len(tris)).any()  # the sliver won some cells
    coeffs = triangle_affines(dst, src, tris)
    wild = warp.source_map(index, coeffs) - warp.source_map(index, coeffs * 0)
    held = warp.source_map(index, coeffs, triangle_bounds(dst, src, tris)) \
        - warp.source_map(index, coeffs * 0)
    assert np.abs(wild).max() > 25.0  # the unbounded affine goes far off
    assert np.abs(held).max() <= 20.0 + 1e-3  # within the sliver's corners' displacement
    # without slivers, the bounds change nothing: the identity warp stays exact
    identity = src[:n]
    assert np.array_equal(warp.warp(textured(size), identity, identity.copy(), tris[:-1]),
                          textured(size))


def test_a_torn_silhouette_is_drawn_at_full_resolution_and_a_whole_warp_is_left_exact(
) -> None:
    """A face drawn over the outside with a displacement of its own (a turned cheek folding
    over the background, a dropped chin over the neck) tears along its outline: the coarse
    grid drew a staircase of whole cells there. Its seam's pixels are drawn from the two
    sides, mixed by how much of each pixel the face covers: what a warp sampled far more
    finely gives. A warp whose face shares its outline with the outside has no seam."""
    size, grid = 64, 32
    img = textured(size)
    outside, outer_tris = _grid_mesh(size, 3)
    face_src = np.array([[20.0, 18.0], [46.0, 24.0], [28.0, 46.0]])
    src = np.concatenate([outside, face_src])
    n = len(outside)
    tris = np.concatenate([outer_tris, [[n, n + 1, n + 2]]])
    warp = PiecewiseAffineWarp(size, grid=grid)
    first = len(outer_tris)
    # the face moved with the outside (one whole warp): no seam, the picture is untouched
    warp.warp(img, src, src.copy(), tris)
    assert warp.silhouette_seams(warp.index_map(src, tris), first) is None
    # the face shifted 5 px on its own: a seam along its outline, nowhere else
    dst = src.copy()
    dst[n:, 0] += 5.0
    index = warp.index_map(dst, tris)
    out = warp.remap(img, warp.source_map(index, triangle_affines(dst, src, tris),
                                          triangle_bounds(dst, src, tris)))
    seams = warp.silhouette_seams(index, first)
    assert seams is not None
    ys, xs = np.nonzero(seams)
    from live.engines.mesh.topology import points_in_polygon

    inside = points_in_polygon(np.stack([xs, ys], 1).astype(float), dst[n:])
    assert inside.any() and (~inside).any()  # both sides of the outline ...
    assert seams.sum() < 0.4 * size * size  # ... and not the whole picture
    far = np.ones((size, size), bool)
    far[14:52, 18:56] = False
    assert not seams[far].any()
    parts = warp.seam_sources(seams, index, first, triangle_affines(dst, src, tris),
                              triangle_bounds(dst, src, tris), dst, tris)
    assert len(parts) == 1  # the triangle's outline, one seam all round
    sides = parts[0]
    ys, xs = sides.ys, sides.xs
    assert np.array_equal(np.sort(ys * size + xs), np.flatnonzero(seams))  # every seam pixel
    # each side's own displacement, carried over the seam: the face's 5 px, the outside's 0
    assert np.allclose(sides.face[:, 0], xs - 5.0, atol=1e-3)
    assert np.allclose(sides.outside[:, 0], xs, atol=1e-3)
    assert np.allclose(sides.face[:, 1], ys, atol=1e-3)
    # the cover: the triangle's share of each pixel (32 x 32 samples a pixel as reference)
    fine = np.zeros((size * 32, size * 32), np.uint8)
    cv2.fillConvexPoly(fine, np.round(((dst[n:] + 0.5) * 32 - 0.5) * 16).astype(np.int32),
                       (255,), cv2.LINE_8, 4)
    cover = cv2.resize(fine, (size, size), interpolation=cv2.INTER_AREA) / 255.0
    miss = sides.cover - cover[ys, xs]
    assert np.abs(miss).max() < 0.2 and abs(miss.mean()) < 0.03  # no bias outwards
    # drawn from both sides: within a level or two of the fine reference, where the grid's
    # staircase was far off it
    shifted = np.roll(img, 5, axis=1).astype(float)
    reference = cover[..., None] * shifted + (1.0 - cover[..., None]) * img
    drawn = out.astype(float)
    c = sides.cover[:, None]
    drawn[ys, xs] = (c * warp.remap_points(img, sides.face)
                     + (1.0 - c) * warp.remap_points(img, sides.outside))
    grid_error = np.abs(out[seams].astype(float) - reference[seams]).mean()
    exact_error = np.abs(drawn[seams] - reference[seams]).mean()
    assert grid_error > 3.0 and exact_error < 0.25 * grid_error
    assert np.array_equal(drawn[~seams], out[~seams])


def test_a_face_folded_over_itself_is_drawn_from_sub_samples_and_a_stretch_is_left_alone(
) -> None:
    """Part of the face pulled over another (the lips over the skin round a yelling mouth):
    where the triangle on top ends, the coarse grid drew a staircase of whole cells (each
    cell shows its triangle's picture whole). Those pixels are drawn from sub-samples of a
    fine raster of the triangles there, each through the triangle drawn last over it: close
    to a warp sampled far more finely. A face stretched evenly, or gently, has no fold."""
    size, grid, fine = 64, 32, 8
    img = textured(size, seed=5)
    src, tris = _grid_mesh(size, 9)  # columns 7.9 px apart
    warp = PiecewiseAffineWarp(size, grid=grid)

    def draw_order(dst: np.ndarray) -> np.ndarray:
        # as the engine draws: triangles turned over first, then the rest (here the ones
        # on the left last: nearest)
        flipped = triangle_areas(dst, tris) * triangle_areas(src, tris) < 0
        return tris[::-1][np.argsort(~flipped[::-1], kind="stable")]

    def drawn(dst: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        order = draw_order(dst)
        index = warp.index_map(dst, order)
        affines, bounds = triangle_affines(dst, src, order), triangle_bounds(dst, src, order)
        source = warp.source_map(index, affines, bounds)
        out = warp.remap(img, source).astype(float)
        folds = warp.fold_seams(index, 0)
        if folds is not None:
            fold = warp.fold_samples(folds, source, affines, bounds, dst, order)
            n, k = fold.sources.shape[:2]
            colours = warp.remap_points(img, fold.sources.reshape(-1, 2).astype(np.float32))
            out[fold.ys, fold.xs] = colours.reshape(n, k, 3).mean(axis=1)
        # the reference: the same warp at 8 x 8 pixels a pixel, averaged down
        big = PiecewiseAffineWarp(size * fine, grid=size * fine)
        img_f = cv2.resize(img, (size * fine, size * fine), interpolation=cv2.INTER_LINEAR)
        to_fine = (fine - 1) / 2.0
        ref = big.warp(img_f, src * fine + to_fine, dst * fine + to_fine, order)
        reference = cv2.resize(ref, (size, size), interpolation=cv2.INTER_AREA).astype(float)
        return out, folds, reference

    # stretched evenly (every triangle the same affine) or gently: nothing to mend
    even = (src - 32.0) * 1.3 + 32.0
    assert drawn(even)[1] is None
    gentle = src.copy()
    gentle[:, 0] += 2.0 * np.sin(src[:, 1] / 20.0)
    assert drawn(gentle)[1] is None
    # column 4 pulled 11-15 px right, over column 5: the triangles between them turn over
    # and the stretched ones before them are drawn over the fold, whose edge runs slanted
    # from x 42.5 to 46.4
    dst = src.copy()
    col = np.isclose(src[:, 0], src[4, 0])
    dst[col, 0] += 11.0 + src[col, 1] / 16.0
    out, folds, reference = drawn(dst)
    assert folds is not None
    ys, xs = np.nonzero(folds)
    assert 0.02 * size * size < len(ys) < 0.3 * size * size
    assert xs.min() >= 20 and xs.max() <= 52  # the crease at x 23.6 and the fold, no more
    plain = PiecewiseAffineWarp(size, grid=grid)
    grid_only = plain.warp(img, src, dst, draw_order(dst)).astype(float)
    grid_error = np.abs(grid_only[folds] - reference[folds]).mean()
    sampled_error = np.abs(out[folds] - reference[folds]).mean()
    assert grid_error > 5.0 and sampled_error < 0.3 * grid_error
    assert np.array_equal(out[~folds], grid_only[~folds])


def test_a_seams_cover_has_no_holes_where_small_face_triangles_meet() -> None:
    """A face of many small triangles (a turned cheek's outline: the mesh's rows squeezed
    together) torn from the outside: every pixel the face covers is counted covered, also
    where its triangle won none of the grid cells round it (the cover used to take only
    those cells' winners: holes in it showed as dark specks along a turned cheek's edge,
    the demo's frames 240-260)."""
    size, grid = 64, 32
    outside, outer_tris = _grid_mesh(size, 3)
    n = len(outside)
    k = 90  # a fan of slivers: each about 1.4 px wide at the outline
    angles = np.linspace(0.0, 2.0 * np.pi, k, endpoint=False)
    ring = np.stack([32.0 + 20.0 * np.cos(angles), 32.0 + 20.0 * np.sin(angles)], 1)
    src = np.concatenate([outside, [[32.0, 32.0]], ring])
    fan = [[n, n + 1 + i, n + 1 + (i + 1) % k] for i in range(k)]
    tris = np.concatenate([outer_tris, fan])
    first = len(outer_tris)
    dst = src.copy()
    dst[n:, 0] += 5.0  # the face moved on its own: torn all round
    warp = PiecewiseAffineWarp(size, grid=grid)
    index = warp.index_map(dst, tris)
    warp.source_map(index, triangle_affines(dst, src, tris), triangle_bounds(dst, src, tris))
    seams = warp.silhouette_seams(index, first)
    assert seams is not None
    (sides,) = warp.seam_sources(seams, index, first, triangle_affines(dst, src, tris),
                                 triangle_bounds(dst, src, tris), dst, tris)
    # the reference cover: the face's disc, 32 x 32 samples a pixel
    fine = np.zeros((size * 32, size * 32), np.uint8)
    outline = np.round(((dst[n + 1:] + 0.5) * 32 - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(fine, [outline], (255,), cv2.LINE_8, 4)
    cover = cv2.resize(fine, (size, size), interpolation=cv2.INTER_AREA) / 255.0
    got, want = sides.cover, cover[sides.ys, sides.xs]
    inside = want > 0.99
    assert inside.sum() > 50
    assert got[inside].min() > 0.9  # no hole inside the face
    assert np.abs(got - want).max() < 0.3


def test_remap_points_samples_any_number_of_points() -> None:
    """A seam of more than 32767 pixels (a large portrait's whole outline) crashed
    ``cv2.remap``, which takes maps under that size a side: the points go in rows."""
    warp = PiecewiseAffineWarp(256, grid=128)
    img = textured(256)
    rng = np.random.default_rng(3)
    pts = rng.integers(0, 256, (40_000, 2))
    got = warp.remap_points(img, pts.astype(np.float32))
    assert got.shape == (40_000, 3)
    assert np.array_equal(got, img[pts[:, 1], pts[:, 0]])  # whole pixels: exact


def _fine_detail(image: np.ndarray) -> float:
    """Variance of the luma's Laplacian: the share of fine detail (grain, lashes) kept."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def test_a_2x_copy_sampled_at_twice_the_map_keeps_detail_bilinear_sampling_loses() -> None:
    """A moved face was sampled bilinearly: at a fractional source position that averages
    neighbours (grain, lashes and hair went soft the moment the face moved). The warp samples
    a copy enlarged 2x (its even pixels the picture's own, the odd ones bicubic midpoints)
    at twice the map: near bicubic sampling's detail; a whole-pixel map still gives the
    picture back exactly, and past the edge it mirrors the picture as the plain remap does."""
    size = 96
    rng = np.random.default_rng(5)
    img = np.ascontiguousarray(rng.integers(0, 256, (size, size, 4)).astype(np.uint8))
    fine = enlarge_2x(img)
    assert fine.shape == (2 * size - 1, 2 * size - 1, 4)
    np.testing.assert_array_equal(fine[0::2, 0::2], img)
    warp = PiecewiseAffineWarp(size, grid=size)
    whole = warp._identity.copy()
    np.testing.assert_array_equal(warp.remap(fine, warp.doubled(whole)), img)
    # a background 0.01 px off (the rings' motion fading out) is still the picture exactly
    np.testing.assert_array_equal(warp.remap(fine, warp.doubled(whole + np.float32(0.01))), img)
    pulled = whole.copy()
    pulled[..., 1] -= 12.0  # past the top edge ...
    pulled[..., 0] += 7.0  # ... and the right one
    np.testing.assert_array_equal(warp.remap(fine, warp.doubled(pulled)),
                                  warp.remap(img, pulled))

    source = warp._identity + np.float32(0.4)
    linear = warp.remap(img, source)
    cubic = cv2.remap(img, source, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    sampled = warp.remap(fine, warp.doubled(source))
    inner = (slice(4, -4), slice(4, -4))
    assert _fine_detail(sampled[inner][..., :3]) > 1.5 * _fine_detail(linear[inner][..., :3])
    to_cubic = np.abs(sampled[inner].astype(int) - cubic[inner].astype(int)).mean()
    assert to_cubic < 0.5 * np.abs(linear[inner].astype(int) - cubic[inner].astype(int)).mean()


def test_keep_order_pulls_crossed_points_back_in_order() -> None:
    src = np.array([[0.0, 0.0], [0.0, 10.0], [0.0, 20.0], [0.0, 30.0]])
    pts = np.array([[0.0, 26.0], [0.0, 24.0], [0.0, 22.0], [0.0, 30.0]])  # folded
    keep_order(pts, src, (np.arange(4),), np.array([0.0, 1.0]), min_fraction=0.2)
    assert np.all(np.diff(pts[:, 1]) >= 2.0 - 1e-9)
    assert pts[3, 1] == 30.0  # the chain's end (the face outline) stays


def test_an_upper_lip_raised_past_the_skin_under_the_nose_does_not_fold_over_it() -> None:
    """A yelling driver raises its upper lip further than a portrait with a short upper lip
    has skin below its nose: the lip's outline went past the mesh row above it and those
    triangles turned over (a torn, speckled lip edge on lp_d18 frame 126, painting). The lip
    now bunches that skin up towards the nose, which stays where it was."""
    from live.engines.mesh.topology import face_chains
    from live.jobs.demo import builtin_portrait, portrait_face_crop

    crop = portrait_face_crop(builtin_portrait(), size=SIZE, name="astronaut")
    assert crop.landmarks is not None
    p = crop.landmarks.astype(np.float64)
    room = float(p[164, 1] - p[lm.UPPER_LIP_TOP, 1])  # < 0: the skin point is above the lip
    assert room < 0
    lip = sorted(set(lm.LIPS_OUTER_UPPER[1:-1] + lm.LIPS_INNER_UPPER[1:-1]
                     + sum(lm.LIPS_UPPER_MIDDLE, ())))
    # the upper lip up by 1.5x its room in the middle, less towards the corners (a snarl)
    half = 0.5 * float(p[lm.MOUTH_LEFT, 0] - p[lm.MOUTH_RIGHT, 0])
    across = (p[lip, 0] - 0.5 * (p[lm.MOUTH_LEFT, 0] + p[lm.MOUTH_RIGHT, 0])) / half
    moved = p.copy()
    moved[lip, 1] += 1.5 * room * np.clip(1.0 - across ** 2, 0.0, 1.0)
    out = portrait_motion(p, p, moved).points

    skin = {164, 167, 393, 165, 391}  # the row of skin above the lip's middle
    tris = face_triangles()
    near = np.array([bool(set(t) & skin) for t in tris.tolist()])
    before = np.sign(np.cross(p[tris[near, 1], :2] - p[tris[near, 0], :2],
                              p[tris[near, 2], :2] - p[tris[near, 0], :2]))
    after = np.sign(np.cross(out[tris[near, 1], :2] - out[tris[near, 0], :2],
                             out[tris[near, 2], :2] - out[tris[near, 0], :2]))
    assert (before == after).all(), tris[near][before != after]
    # the lip still rises most of the way, pushing the skin above it up ...
    assert out[lm.UPPER_LIP_TOP, 1] - p[lm.UPPER_LIP_TOP, 1] < 0.7 * room
    assert out[164, 1] < p[164, 1] - 1.0
    # ... and each chain's nose end does not move
    for chain in face_chains(p).up:
        if chain[-1] in lm.NOSE:
            np.testing.assert_allclose(out[chain[-1], :2], p[chain[-1], :2], atol=1e-9)


def test_mouth_paint_keeps_an_already_open_mouth() -> None:
    from live.engines.mesh.mouth import MouthStyle, fill_mouth

    img = np.full((100, 100, 3), 200, np.uint8)
    ring = np.stack([50 + 20 * np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                     50 + 10 * np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))], 1)
    dark = np.array([40.0, 20.0, 20.0], np.float32)
    closed = MouthStyle(edge=dark, core=dark / 2, own_area=0.0)
    painted = img.copy()
    assert fill_mouth(painted, ring, closed) == pytest.approx(1.0)
    assert painted[50, 50].max() < 40 and np.array_equal(painted[5, 5], img[5, 5])
    open_ = MouthStyle(edge=dark, core=dark / 2, own_area=700.0)  # as open as the output
    kept = img.copy()
    assert fill_mouth(kept, ring, open_) == 0.0 and np.array_equal(kept, img)
    half = img.copy()
    assert 0.3 < fill_mouth(half, ring, MouthStyle(dark, dark / 2, own_area=300.0)) < 0.7
    assert 40 < half[50, 50].mean() < 180  # partly painted


def test_create_engine_builds_the_mesh_engine() -> None:
    from live.engines import create_engine

    engine = create_engine("mesh", size=256, smoothing=False)
    assert isinstance(engine, MeshEngine) and engine.size == 256
    assert engine.config.smoothing is False
    engine.close()


def test_config_is_validated() -> None:
    with pytest.raises(InputError, match="grid"):
        MeshEngine(grid=8)
    with pytest.raises(InputError, match="unknown mesh engine option"):
        MeshEngine(bogus=1)
    with pytest.raises(InputError, match=r"jaw_follow.*in \[0, 1\].*1\.5"):
        MeshEngine(jaw_follow=1.5)
    engine = MeshEngine(size=256, smoothing=False)
    assert engine.size == 256 and engine.name == "mesh" and not engine.calibrated
    with pytest.raises(MimicamError, match="no portrait"):
        engine.process(None, 0.0)
    engine.close()
    engine.close()  # idempotent


def test_fidelity_metric_units() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(100, 400, (478, 3))
    base[lm.RIGHT_EYE_OUTER, :2] = (200, 250)
    base[lm.LEFT_EYE_OUTER, :2] = (300, 250)  # IOD 100 px
    moved = base.copy()
    moved[list(lm.LIPS), 1] += 10.0  # a mouth movement
    perfect = frame_errors(base, moved, base, moved)
    frozen = frame_errors(base, base, base, moved)
    assert perfect["all"][0] == pytest.approx(0.0, abs=1e-9)
    assert frozen["all"][0] == pytest.approx(frozen["all"][1])  # frozen: ratio 1
    assert frozen["lips"][1] == pytest.approx(0.1, rel=1e-3)  # 10 px of a 100 px IOD
    img = textured(64)
    assert math.isinf(psnr(img, img))
    noisy = np.clip(img.astype(int) + 1, 0, 255).astype(np.uint8)
    assert 40.0 < psnr(img, noisy) < 60.0


# -- the engine on a real portrait with synthetic driving landmarks -------------------------------


@pytest.fixture(scope="module")
def prepared(mesh_lp_s42: tuple[MeshEngine, MeshPortrait]) -> tuple[MeshEngine, MeshPortrait]:
    return mesh_lp_s42


def _fresh(portrait: MeshPortrait, **options: object) -> MeshEngine:
    engine = MeshEngine(size=SIZE, **options)  # type: ignore[arg-type]
    engine.set_portrait(portrait)
    return engine


def _box(points: np.ndarray, ids: tuple[int, ...], pad: int) -> tuple[slice, slice]:
    p = points[list(ids), :2]
    x0, y0 = np.floor(p.min(0)).astype(int) - pad
    x1, y1 = np.ceil(p.max(0)).astype(int) + pad
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def _far_from_face(points: np.ndarray, factor: float = 1.9) -> np.ndarray:
    """Mask of pixels well outside the face (beyond ``factor`` x the oval's radius)."""
    oval = points[list(lm.FACE_OVAL), :2]
    c = oval.mean(0)
    r = np.max(np.linalg.norm(oval - c, axis=1)) * factor
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return np.asarray((xx - c[0]) ** 2 + (yy - c[1]) ** 2 > r ** 2)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.fixtures
def test_identity_motion_gives_the_portrait_unchanged(prepared) -> None:
    engine, portrait = prepared
    p = portrait.landmarks
    assert np.array_equal(engine.render(portrait, p, p.copy()), portrait.image)
    fresh = _fresh(portrait)
    assert np.array_equal(fresh.process(face(p), 0.0), portrait.image)  # first face = neutral
    assert fresh.calibrated


@pytest.mark.fixtures
def test_the_driving_faces_teeth_colour_is_measured_on_its_neutral_frame(prepared) -> None:
    """``mouth = "driver"``: calibrating measures the driving face's teeth colour once, as
    the portrait's is estimated (eye whites, skin, lips), for its teeth to be told and given
    the portrait's teeth colour; with the portrait itself driving, the two agree. Synthetic
    mode shows no driver's teeth and measures nothing."""
    _, portrait = prepared
    p = portrait.landmarks
    driving = FaceCrop(image=portrait.image.copy(), crop_to_frame=IDENTITY, frame_index=0,
                       t_capture=0.0, landmarks=p.astype(np.float32))
    engine = _fresh(portrait)
    engine.calibrate(driving)
    assert engine._driver_teeth is not None
    np.testing.assert_allclose(engine._driver_teeth, teeth_reference(portrait.image, p),
                               atol=1e-4)
    np.testing.assert_allclose(engine._driver_teeth, portrait.mouth.teeth, atol=1.0)
    synthetic = _fresh(portrait, mouth="synthetic")
    synthetic.calibrate(driving)
    assert synthetic._driver_teeth is None
    engine.recalibrate()
    assert engine._driver_teeth is None  # until the next neutral frame


@pytest.mark.fixtures
def test_pure_translation_translates_the_face_and_not_the_border(prepared) -> None:
    engine, portrait = prepared
    p = portrait.landmarks
    moved = p.copy()
    moved[:, 0] += 8.0
    moved[:, 1] -= 5.0
    motion = portrait_motion(p, p, moved)
    np.testing.assert_allclose(motion.points[:, :2] - p[:, :2], [[8.0, -5.0]] * len(p),
                               atol=1e-6)
    out = engine.render(portrait, p, moved)
    ys, xs = _box(p, lm.FACE_OVAL, -30)  # inside the face
    src = portrait.image[ys.start + 5: ys.stop + 5, xs.start - 8: xs.stop - 8]
    assert _diff(out[ys, xs], src) < 2.0  # the face moved by (8, -5)
    assert _diff(out[ys, xs], portrait.image[ys, xs]) > 4.0
    # The image border is pinned (the rings' motion fades to zero there): at most a
    # sub-pixel resampling difference on the outermost pixels.
    border = np.zeros((SIZE, SIZE), bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    assert np.abs(out[border].astype(int) - portrait.image[border].astype(int)).max() <= 3


@pytest.mark.fixtures
def test_a_face_moved_by_a_fraction_of_a_pixel_keeps_its_fine_detail(prepared) -> None:
    """Moved by (8.5, -5.5) px, every face pixel is sampled half-way between pixels: the
    bilinear warp averaged neighbours (the skin's grain and the lashes gone soft); the face
    is sampled bicubically and keeps nearly all of the portrait's own detail, while still
    showing the portrait moved."""
    engine, portrait = prepared
    p = portrait.landmarks
    moved = p.copy()
    moved[:, 0] += 8.5
    moved[:, 1] -= 5.5
    out = engine.render(portrait, p, moved)
    ys, xs = _box(p, lm.FACE_OVAL, -40)  # inside the face
    shift = np.float32([[1, 0, 8.5], [0, 1, -5.5]])
    bilinear = cv2.warpAffine(portrait.image, shift, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    assert _diff(out[ys, xs], bilinear[ys, xs]) < 2.5  # the face moved as told
    detail, own = _fine_detail(out[ys, xs]), _fine_detail(portrait.image[ys, xs])
    # (bilinear: 0.65 of the portrait's own and the same as shifting it; bicubic: 0.95)
    assert detail > 1.3 * _fine_detail(bilinear[ys, xs])
    assert 0.85 * own < detail < 1.1 * own


@pytest.mark.fixtures
def test_mouth_open_changes_the_mouth_darkly_and_leaves_the_background(prepared) -> None:
    engine, portrait = prepared
    p = portrait.landmarks
    iod = lm.inter_ocular_distance(p)
    moved = p.copy()
    lower = sorted(set(lm.LIPS_OUTER_LOWER[1:-1] + lm.LIPS_INNER_LOWER[1:-1]))
    moved[lower, 1] += 0.25 * iod
    chin = [i for i in range(468) if p[i, 1] > p[lm.LOWER_LIP_BOTTOM, 1] + 2]
    moved[chin, 1] += 0.2 * iod
    out = engine.render(portrait, p, moved)
    mouth = _box(p, lm.LIPS_OUTER, 10)
    assert _diff(out[mouth], portrait.image[mouth]) > 10.0
    # The opening shows an interior (throat, with this portrait's own teeth moved rigidly under
    # the upper lip), darker on the whole than the lips around it.
    opening = portrait_motion(p, p, moved).points[list(lm.LIPS_INNER), :2]
    import cv2

    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(opening).astype(np.int32)], (1,))
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
    assert mask.sum() > 200
    lips = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(lips, [np.round(p[list(lm.LIPS_OUTER), :2]).astype(np.int32)], (1,))
    assert out[mask].mean() < 0.75 * portrait.image[lips.astype(bool)].mean()
    far = _far_from_face(p)
    assert np.array_equal(out[far], portrait.image[far])


@pytest.mark.fixtures
def test_one_eye_blink_closes_that_eye_only(prepared) -> None:
    engine, portrait = prepared
    p = portrait.landmarks
    moved = p.copy()
    up, lo = list(lm.RIGHT_EYE_UPPER[1:-1]), list(lm.RIGHT_EYE_LOWER[1:-1])
    moved[up, :2] = p[lo, :2]  # the subject's right upper lid down onto the lower lid
    mp = portrait_motion(p, p, moved, options=MotionOptions()).points
    gap = np.linalg.norm(mp[up, :2] - mp[lo, :2], axis=1)
    assert gap.max() < 0.5  # fully closed
    lu, ll = list(lm.LEFT_EYE_UPPER[1:-1]), list(lm.LEFT_EYE_LOWER[1:-1])
    np.testing.assert_allclose(mp[lu + ll, :2], p[lu + ll, :2], atol=1e-6)
    out = engine.render(portrait, p, moved)
    right = _box(p, lm.RIGHT_EYE, 3)
    left = _box(p, lm.LEFT_EYE, 3)
    assert _diff(out[right], portrait.image[right]) > 8.0
    assert _diff(out[left], portrait.image[left]) < 0.5


def test_a_blink_the_face_mesh_reads_on_one_eye_only_closes_both_and_a_wink_stays() -> None:
    """The face mesh under-reads one eye of a blink (tps_driving frame 21: 0.86 closed and
    0.52; lp_d11 frame 150: 1.0 and 0.79): both eyes close together. A wink's open eye,
    narrowed to half the winking one's closing (lp_d3), a squint and wide eyes stay."""
    from live.engines.mesh.motion import BLINK_LINK_SHARE, link_blinks

    assert link_blinks([0.0, 0.21]) == pytest.approx([0.0, 0.0])  # lp_d11 frame 150
    both = link_blinks([0.14, 0.48])  # tps_driving frame 21
    assert both[0] == pytest.approx(0.14) and both[1] < 0.4
    for ratios in ([0.0, 1.0], [0.0, 1.0 - 0.95 * BLINK_LINK_SHARE[0]], [0.4, 0.6],
                   [1.3, 1.1], [0.5, 1.4], [0.0, 0.0]):
        assert link_blinks(ratios) == pytest.approx(ratios)
    assert link_blinks([0.3, 0.1]) == pytest.approx([0.1, 0.1])  # either eye
    # the more open eye is never opened, never closed past the other
    for a in np.linspace(0.0, 1.2, 13):
        for b in np.linspace(0.0, 1.2, 13):
            out = link_blinks([float(a), float(b)])
            assert min(a, b) - 1e-9 <= out[0] <= a + 1e-9
            assert min(a, b) - 1e-9 <= out[1] <= b + 1e-9


@pytest.mark.fixtures
def test_a_blink_read_on_one_eye_closes_both_of_the_portraits(prepared) -> None:
    _, portrait = prepared
    p = portrait.landmarks
    moved = p.copy()
    eyes = ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, 1.0),
            (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, 0.6))  # the left read 60 % shut
    for upper, lower, shut in eyes:
        up, lo = list(upper[1:-1]), list(lower[1:-1])
        moved[up, :2] = p[up, :2] + shut * (p[lo, :2] - p[up, :2])
    q = portrait_motion(p, p, moved, options=MotionOptions()).points
    for upper, lower, _ in eyes:
        up, lo = list(upper[1:-1]), list(lower[1:-1])
        assert np.linalg.norm(q[up, :2] - q[lo, :2], axis=1).max() < 0.5  # both shut


def _streaked_lid(size: int = 120) -> np.ndarray:
    """Plain skin (200) with a lid of vertical 2 px stripes (60 / 140) over the right eye of
    :func:`_synthetic_eyes`: the warp's stretched lashes."""
    image = np.full((size, size, 3), 200, np.uint8)
    image[47:70, 25:95] = np.where((np.arange(25, 95) // 2) % 2 == 0, 60, 140)[None, :, None]
    return image


def _streak(image: np.ndarray, region: tuple[slice, slice]) -> float:
    """Mean pixel to pixel change along the eye inside ``region``."""
    return float(np.abs(np.diff(image[region].astype(float), axis=1)).mean())


def test_a_closing_lid_is_smoothed_along_the_eye_and_only_there() -> None:
    """A lid brought down over the eye is the portrait's thin lid stretched: vertical streaks.
    Once the eye is 40 % closed (CLOSING_LID_FROM) the lid is the portrait's skin above the lid,
    blurred along the eye; an open eye, and everything away from the lid, is left alone."""
    from live.engines.mesh.eyes import CLOSING_LID_FROM, smooth_closing_lids

    size = 120
    pts = np.zeros((478, 2))
    x = np.linspace(30.0, 90.0, 9)
    bulge = np.sin(np.linspace(0.0, np.pi, 9))
    for upper, lower, dy in ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, 0.0),
                             (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, 200.0)):  # off-picture
        pts[list(upper)] = np.stack([x, 60.0 - 12.0 * bulge + dy], 1)
        pts[list(lower)] = np.stack([x, 60.0 + 6.0 * bulge + dy], 1)
    streaks = _streaked_lid(size)
    head = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    closed = pts.copy()
    up, lo = list(lm.RIGHT_EYE_UPPER), list(lm.RIGHT_EYE_LOWER)
    closed[up] = pts[lo] - [0.0, 0.5]
    out = streaks.copy()
    assert smooth_closing_lids(out, closed, pts, head, streaks) == 1
    region = (slice(50, 62), slice(40, 80))  # swept by the lid
    assert _streak(out, region) < 0.3 * _streak(streaks, region)
    assert out[region].mean() > streaks[region].mean() + 10.0  # towards the skin above
    far = np.ones((size, size), bool)
    far[25:80, 15:105] = False
    assert np.array_equal(out[far], streaks[far])
    # less than CLOSING_LID_FROM closed: nothing
    half = pts.copy()
    half[up] = pts[up] + (pts[lo] - pts[up]) * (0.9 * CLOSING_LID_FROM)
    out = streaks.copy()
    assert smooth_closing_lids(out, half, pts, head, streaks) == 0
    assert np.array_equal(out, streaks)


def test_a_half_closed_lid_loses_its_streaks_before_the_skin_takes_over() -> None:
    """Part way down (the skin above the lashes only a third in), the warp's own stretched
    lid is already blurred along the eye: the two mixed while it was still streaked showed
    a ghost of the lashes drawn out over the eye (the demo's first blink)."""
    from live.engines.mesh.eyes import CLOSING_LID_FROM, CLOSING_LID_FULL, smooth_closing_lids

    pts = _synthetic_eyes()
    streaks = _streaked_lid()
    head = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    up, lo = list(lm.RIGHT_EYE_UPPER), list(lm.RIGHT_EYE_LOWER)
    share = CLOSING_LID_FROM + 0.35 * (CLOSING_LID_FULL - CLOSING_LID_FROM)
    half = pts.copy()
    half[up] = pts[up] + (pts[lo] - pts[up]) * share
    out = streaks.copy()
    assert smooth_closing_lids(out, half, pts, head, streaks) == 1
    region = (slice(50, 54), slice(45, 75))  # swept by the lid (its middle is at 56 now)
    assert _streak(out, region) < 0.3 * _streak(streaks, region)
    # ... while the skin above the lashes (plain 200 here) is only partly in
    closed = pts.copy()
    closed[up] = pts[lo] - [0.0, 0.5]
    full = streaks.copy()
    smooth_closing_lids(full, closed, pts, head, streaks)
    assert out[region].mean() < full[region].mean() - 10.0


def _synthetic_eyes(dy_left: float = 200.0) -> np.ndarray:
    """478 landmarks with a 60 px wide right eye (upper lid 12 px above the corners' line,
    lower lid 6 px below) and the left eye ``dy_left`` lower (off a 120 px picture)."""
    pts = np.zeros((478, 2))
    x = np.linspace(30.0, 90.0, 9)
    bulge = np.sin(np.linspace(0.0, np.pi, 9))
    for upper, lower, dy in ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, 0.0),
                             (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, dy_left)):
        pts[list(upper)] = np.stack([x, 60.0 - 12.0 * bulge + dy], 1)
        pts[list(lower)] = np.stack([x, 60.0 + 6.0 * bulge + dy], 1)
    return pts


def _upper_lid_y(pts: np.ndarray, xs: np.ndarray) -> np.ndarray:
    up = pts[list(lm.RIGHT_EYE_UPPER)]
    return np.interp(xs, up[:, 0], up[:, 1])


@pytest.mark.parametrize("thick", [3, 5, 7])
def test_lash_lines_measure_the_dark_band_above_the_upper_lid(thick: int) -> None:
    from live.engines.mesh.eyes import NO_LASHES, lash_lines

    pts = _synthetic_eyes()
    image = np.full((120, 120, 3), (210, 170, 150), np.uint8)
    yy, xx = np.mgrid[0:120, 0:120]
    lid = _upper_lid_y(pts, xx[0].astype(float))[None, :]
    band = (yy <= lid) & (yy > lid - thick) & (xx >= 30) & (xx <= 90)
    image[band] = (40, 30, 30)
    right, left = lash_lines(image, pts)
    assert abs(right.reach - thick) <= 1.0
    np.testing.assert_allclose(right.colour, (40, 30, 30), atol=12)
    assert left == NO_LASHES  # off the picture: no contrast
    plain = np.full((120, 120, 3), (210, 170, 150), np.uint8)
    assert lash_lines(plain, pts) == (NO_LASHES, NO_LASHES)


def test_a_closing_lid_takes_its_source_from_above_the_lash_line() -> None:
    from live.engines.mesh.eyes import (
        CLOSING_LID_FROM,
        CLOSING_LID_FULL,
        NO_LASHES,
        LashLine,
        lift_lash_source,
    )

    pts = _synthetic_eyes()
    head = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    lashes = (LashLine(4.0, (30.0, 30.0, 30.0)), NO_LASHES)
    src = pts.copy()
    up, lo = list(lm.RIGHT_EYE_UPPER), list(lm.RIGHT_EYE_LOWER)
    squint = pts.copy()
    squint[up] = pts[up] + (pts[lo] - pts[up]) * (0.98 * CLOSING_LID_FROM)
    assert lift_lash_source(src, pts, pts, head, lashes) is src  # open
    assert lift_lash_source(src, pts, squint, head, lashes) is src  # a squint keeps its lid
    closed = pts.copy()
    closed[up] = pts[lo]
    lifted = lift_lash_source(src, pts, closed, head, lashes)
    assert lifted is not src and np.array_equal(src, pts)  # a copy; the input is kept
    moved = lifted - src
    mid = lm.RIGHT_EYE_UPPER[4]
    np.testing.assert_allclose(moved[mid], [0.0, -4.0], atol=1e-9)  # up by the reach
    assert np.all(moved[:, 1] <= 0.0)
    changed = np.nonzero(np.abs(moved).sum(1) > 0)[0]
    assert set(changed) <= set(up[1:-1])  # the upper lid only, not its corners
    partly = pts.copy()
    share = (CLOSING_LID_FROM + CLOSING_LID_FULL) / 2
    partly[up] = pts[up] + (pts[lo] - pts[up]) * share
    half = lift_lash_source(src, pts, partly, head, lashes) - src
    assert 0.0 < -half[mid, 1] < 4.0
    assert lift_lash_source(src, pts, closed, head, (NO_LASHES, NO_LASHES)) is src


def test_a_closed_lid_is_the_portraits_skin_above_its_lashes_not_the_warped_crease() -> None:
    """The warp stretches whatever lies above the lid (lashes, crease) over a closing eye;
    the closed lid is taken from the portrait's own skin above its lash line instead, and
    its edge is drawn in the lash colour."""
    from live.engines.mesh.eyes import LashLine, smooth_closing_lids

    pts = _synthetic_eyes()
    portrait = np.full((120, 120, 3), (210, 170, 150), np.uint8)
    yy, xx = np.mgrid[0:120, 0:120]
    lid = _upper_lid_y(pts, xx[0].astype(float))[None, :]
    portrait[(yy <= lid) & (yy > lid - 3) & (xx >= 30) & (xx <= 90)] = (40, 30, 30)
    out = portrait.copy()  # the warp's output: a dark crease stretched down over the eye
    out[(yy <= lid + 18) & (yy > lid - 12) & (xx >= 30) & (xx <= 90)] = (70, 50, 45)
    head = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    closed = pts.copy()
    up, lo = list(lm.RIGHT_EYE_UPPER), list(lm.RIGHT_EYE_LOWER)
    closed[up] = pts[lo] - [0.0, 0.5]
    lashes = (LashLine(3.0, (40.0, 30.0, 30.0)), LashLine(0.0, (0.0, 0.0, 0.0)))
    assert smooth_closing_lids(out, closed, pts, head, portrait, lashes) == 1
    lid_area = out[54:61, 50:71].reshape(-1, 3).astype(float)
    np.testing.assert_allclose(lid_area.mean(0), (210, 170, 150), atol=12)
    edge = out[64:66, 55:66].reshape(-1, 3).astype(float).mean(0)  # on the lower lid
    assert edge.sum() < 0.6 * (210 + 170 + 150)


def _lid_and_crease(crease: tuple[int, int, int] | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_synthetic_eyes` inside a round face on plain skin (210, 160, 130), a 3 px lash
    line on the right eye's upper lid and, with ``crease``, a band of that colour 11 px deep
    above the lashes (a deep-set eye's shadow); also the warp's output with it stretched
    down over the closed eye, and the closed eye's landmarks."""
    pts = _synthetic_eyes()
    ring = np.linspace(0.0, 2.0 * np.pi, len(lm.FACE_OVAL), endpoint=False)
    pts[list(lm.FACE_OVAL)] = np.stack([60.0 + 58.0 * np.cos(ring),
                                        60.0 + 58.0 * np.sin(ring)], 1)
    portrait = np.full((120, 120, 3), (210, 160, 130), np.uint8)
    yy, xx = np.mgrid[0:120, 0:120]
    lid = _upper_lid_y(pts, xx[0].astype(float))[None, :]
    along = (xx >= 30) & (xx <= 90)
    portrait[(yy <= lid) & (yy > lid - 3) & along] = (40, 30, 30)
    if crease is not None:
        portrait[(yy <= lid - 3) & (yy > lid - 14) & along] = crease
    out = portrait.copy()
    out[(yy <= lid + 18) & (yy > lid - 12) & along] = crease or (70, 50, 45)
    closed = pts.copy()
    closed[list(lm.RIGHT_EYE_UPPER)] = pts[list(lm.RIGHT_EYE_LOWER)] - [0.0, 0.5]
    return pts, portrait, out, closed


def test_a_closed_lid_under_a_dark_crease_is_lightened_with_the_skins_own_colour() -> None:
    """A deep-set eye's (or made-up eye's) skin just above the lashes is in shadow: a closed
    lid taken from there came out as a dark socket (lp_d3's frame 0, its left eye: 0.25 of
    the skin round it). It is lightened to CLOSED_LID_FLOOR of that skin by light of the
    skin's own colour; a lid as light as that already gets nothing."""
    from live.engines.mesh.eyes import (
        CLOSED_LID_FLOOR,
        NO_LASHES,
        LashLine,
        lid_lifts,
        smooth_closing_lids,
    )

    skin = np.array([210.0, 160.0, 130.0])
    grey = np.array([0.299, 0.587, 0.114])
    head = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    lashes = (LashLine(3.0, (40.0, 30.0, 30.0)), NO_LASHES)
    pts, portrait, warped, closed = _lid_and_crease((70, 40, 25))
    lifts = lid_lifts(portrait, pts, lashes)
    assert lifts[1] == (0.0, 0.0, 0.0)  # the left eye is off the picture
    # light of the skin's colour, as much as the lid lacks
    np.testing.assert_allclose(np.array(lifts[0]) / skin, lifts[0][0] / skin[0], rtol=1e-6)
    dark = (70.0, 40.0, 25.0) @ grey
    np.testing.assert_allclose(np.array(lifts[0]) @ grey, CLOSED_LID_FLOOR * skin @ grey - dark,
                               atol=1.0)
    before, after = warped.copy(), warped.copy()
    assert smooth_closing_lids(before, closed, pts, head, portrait, lashes) == 1
    assert smooth_closing_lids(after, closed, pts, head, portrait, lashes, lifts=lifts) == 1
    lid = (slice(54, 61), slice(50, 71))
    was = before[lid].reshape(-1, 3).astype(float).mean(0)
    now = after[lid].reshape(-1, 3).astype(float).mean(0)
    assert was @ grey < 0.4 * skin @ grey  # the dark socket
    assert now @ grey > (CLOSED_LID_FLOOR - 0.05) * skin @ grey
    np.testing.assert_allclose(now - was, np.array(lifts[0]), atol=2.0)
    # nothing changes away from the lid
    yy, xx = np.mgrid[0:120, 0:120]
    far = (yy > 80) | (yy < 25) | (xx < 15) | (xx > 105)
    assert np.array_equal(before[far], after[far])
    # skin above the lashes as light as the face: nothing added
    pts, plain, _, _ = _lid_and_crease(None)
    assert lid_lifts(plain, pts, lashes) == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


@pytest.mark.fixtures
def test_a_deep_set_eye_closes_as_a_lid_not_a_dark_socket(driving_dir: Path) -> None:
    """lp_d3's first frame as the portrait, both eyes closed: each closed lid is at least
    0.45 of the skin round the eye (its left eye's was 0.25: a dark socket beside a lid)."""
    from _live_fakes import read_frames

    from live.engines.mesh.eyes import _skin_round_eye
    from live.face.portraits import find_portrait

    frame = read_frames(driving_dir / "lp_d3.mp4", 1)[0]
    found = find_portrait(frame, SIZE)
    with MeshEngine(size=SIZE) as engine:
        portrait = engine.prepare(found.crop.image, picture=found.picture_box)
        p = portrait.landmarks
        closed = p.copy()
        for upper, lower in ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER),
                             (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER)):
            closed[list(upper[1:-1]), :2] = p[list(lower[1:-1]), :2]
        out = engine.render(portrait, p, closed)
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(float)
    shares = []
    for eye, brow in ((lm.RIGHT_EYE, lm.RIGHT_BROW), (lm.LEFT_EYE, lm.LEFT_BROW)):
        inside = np.zeros(grey.shape, np.uint8)
        cv2.fillPoly(inside, [np.round(p[list(eye), :2]).astype(np.int32)], (1,))
        inside = cv2.erode(inside, np.ones((5, 5), np.uint8))
        around = _skin_round_eye(portrait.image, p[:, :2].astype(float), eye, brow)
        assert around is not None
        shares.append(grey[inside > 0].mean() / float(around @ [0.299, 0.587, 0.114]))
    assert min(shares) > 0.45, shares


def test_a_closed_lash_line_is_smooth_tapered_and_ends_at_the_corners() -> None:
    """The closed lid's lash line follows the lid's curve as a smooth band (a stroked
    polyline came out chunky and stair-stepped): thickest in the middle, thinner towards
    the corners, nothing beyond them, and the same line for a lid drawn in either
    direction."""
    from live.engines.mesh.eyes import CLOSED_LASH_ALPHA, CLOSED_LASH_ENDS, closed_lash_line

    x = np.linspace(20.0, 100.0, 9)
    lid = np.stack([x, 40.0 + 6.0 * np.sin(np.linspace(0.0, np.pi, 9))], 1)
    cover = closed_lash_line(lid, (80, 120), 3.0)
    assert cover.dtype == np.float32 and cover.shape == (80, 120)
    assert cover.min() >= 0.0 and cover.max() <= CLOSED_LASH_ALPHA + 1e-6
    thick = cover.sum(axis=0) / CLOSED_LASH_ALPHA  # px of line per column
    np.testing.assert_allclose(thick[58:63], 3.0, atol=0.15)  # the middle: as asked
    assert thick[21] < 0.7 * thick[60] and thick[30] < 0.95 * thick[60]  # thinner ...
    assert thick[21] > 0.8 * CLOSED_LASH_ENDS * 3.0  # ... but still there
    assert thick[:19].max() == 0.0 and thick[102:].max() == 0.0  # nothing past the corners
    # smooth: the line's centre moves by well under a pixel from column to column
    cols = np.arange(30, 91)
    rows = np.arange(80, dtype=float)[:, None]
    centre = (cover[:, cols] * rows).sum(0) / cover[:, cols].sum(0)
    assert np.abs(np.diff(centre)).max() < 0.5
    np.testing.assert_allclose(centre, np.interp(cols, lid[:, 0], lid[:, 1]), atol=0.35)
    np.testing.assert_allclose(closed_lash_line(lid[::-1], (80, 120), 3.0), cover, atol=1e-5)


def test_a_nearly_closed_eyes_lashes_hang_over_its_slit_but_not_past_the_lower_lid() -> None:
    """What is left of the opening under a nearly closed lid (a pale sliver of the eye's
    white) is covered by the lashes hanging from the lid's edge, down to the lower lid at
    most; a wider opening is covered only as far as the lashes hang."""
    from live.engines.mesh.eyes import CLOSED_LASH_HANG_ALPHA, closed_lash_line

    x = np.linspace(20.0, 100.0, 9)
    arc = np.sin(np.linspace(0.0, np.pi, 9))
    lid = np.stack([x, 40.0 + 6.0 * arc], 1)
    for slit in (3.0, 12.0):
        lower = np.stack([x, 40.0 + (6.0 + slit) * arc], 1)  # the slit's height at the middle
        cover = closed_lash_line(lid, (80, 120), 2.0, lower=lower, hang=5.0)
        plain = closed_lash_line(lid, (80, 120), 2.0)
        mid = cover[:, 60]
        # the middle column: lid edge at row 46, lower lid at 46 + slit
        below_line = mid[48:int(46 + min(slit, 5.0))]
        assert below_line.size and below_line.min() >= CLOSED_LASH_HANG_ALPHA - 1e-6
        assert plain[48:52, 60].max() == 0.0  # without the lower lid: the line only
        assert mid[int(46 + min(slit, 5.0)) + 2:].max() == 0.0  # not past the lower lid/hang
        assert mid[:43].max() == 0.0  # nothing above the line
    # lids that cross (the lower above the upper): no slit, the line only
    crossed = np.stack([x, 40.0 + 4.0 * arc], 1)
    np.testing.assert_array_equal(
        closed_lash_line(lid, (80, 120), 2.0, lower=crossed, hang=5.0),
        closed_lash_line(lid, (80, 120), 2.0))


def test_closed_lashes_hang_as_a_soft_fringe_below_the_lids_edge() -> None:
    """Closed lashes point down: below the lid's edge they fade from
    :data:`CLOSED_LASH_FRINGE_ALPHA` of the lash colour to nothing at their tips (over the
    lower lid too), deepest in the middle, shorter towards the corners; nothing above the
    line, and without a fringe only the line is drawn."""
    from live.engines.mesh.eyes import CLOSED_LASH_FRINGE_ALPHA, closed_lash_line

    x = np.linspace(20.0, 100.0, 9)
    arc = np.sin(np.linspace(0.0, np.pi, 9))
    lid = np.stack([x, 40.0 + 6.0 * arc], 1)
    lower = np.stack([x, 40.0 + 7.0 * arc], 1)  # a closed eye: 1 px of slit in the middle
    plain = closed_lash_line(lid, (80, 120), 2.0, lower=lower, hang=5.0)
    cover = closed_lash_line(lid, (80, 120), 2.0, lower=lower, hang=5.0, fringe=10.0)
    mid = cover[:, 60]  # the lid's edge at row 46, the lower lid at 47
    assert plain[49:, 60].max() == 0.0  # the line alone stops at the slit
    assert mid[48] > 0.6 and mid[48] <= CLOSED_LASH_FRINGE_ALPHA + 1e-6  # dark at the edge
    assert np.all(np.diff(mid[48:57]) < 0.0)  # fading down ...
    assert mid[52] > 0.2 and mid[57:].max() == 0.0  # ... over the lower lid, to the tips
    edge = np.interp(np.arange(120), lid[:, 0], lid[:, 1])  # the lid's edge, per column
    above = np.arange(80)[:, None] < edge[None, :] - 1.0
    assert np.array_equal(cover[above], plain[above])  # nothing changes above the line
    assert (cover >= plain - 1e-6).all()
    depth = (cover[47:, :] > 0.05).sum(axis=0)  # px of fringe per column
    assert depth[60] >= 8 and depth[30] < 0.75 * depth[60]  # shorter towards the corners
    assert depth[:19].max() == 0 and depth[102:].max() == 0  # nothing past the corners


def _lid_rows(gap: float, *, dy_left: float = 200.0) -> np.ndarray:
    """:func:`_synthetic_eyes` with the rows above each upper lid: the near ring ``gap`` px
    above the lid's middle points, the far ring ``2 * gap``, the brow's lower and upper
    lines ``3 * gap`` and ``4 * gap`` above the lid's middle."""
    pts = _synthetic_eyes(dy_left)
    for upper, near, far, brow_lo, brow_up in (
            (lm.RIGHT_EYE_UPPER, lm.RIGHT_LID_RING_NEAR, lm.RIGHT_LID_RING_FAR,
             lm.RIGHT_BROW_LOWER, lm.RIGHT_BROW_UPPER),
            (lm.LEFT_EYE_UPPER, lm.LEFT_LID_RING_NEAR, lm.LEFT_LID_RING_FAR,
             lm.LEFT_BROW_LOWER, lm.LEFT_BROW_UPPER)):
        lid = pts[list(upper[1:-1])]
        pts[list(near)] = lid - [0.0, gap]
        pts[list(far)] = lid - [0.0, 2.0 * gap]
        mid = pts[upper[len(upper) // 2]]
        xs = np.linspace(35.0, 85.0, 5)
        pts[list(brow_lo)] = np.stack([xs, np.full(5, mid[1] - 3.0 * gap)], 1)
        pts[list(brow_up)] = np.stack([xs, np.full(5, mid[1] - 4.0 * gap)], 1)
    return pts


_BROW_ZONE = (lm.RIGHT_LID_RING_NEAR + lm.RIGHT_LID_RING_FAR + lm.RIGHT_BROW
              + lm.LEFT_LID_RING_NEAR + lm.LEFT_LID_RING_FAR + lm.LEFT_BROW)


def _band(pts: np.ndarray, upper: tuple[int, ...], zone: tuple[int, ...]) -> float:
    """Mean height of ``zone`` above the upper lid's middle point (y down)."""
    return float(np.mean(pts[upper[len(upper) // 2], 1] - pts[list(zone), 1]))


def test_a_narrow_brow_band_stretches_in_proportion_not_by_the_drivers_pixels() -> None:
    """A driver raising its brows by 6 px over a band twice as wide as the portrait's raises
    the portrait's in proportion to its own band (the band grows by about the driver's
    factor), not by 6 px; a portrait with the driver's band, a wider one or one within
    BROW_BAND_SAME of it moves by the driver's pixels."""
    from live.engines.mesh.motion import BROW_BAND_SAME, hold_brow_bands

    down = np.array([0.0, 1.0])
    zone = lm.RIGHT_LID_RING_NEAR + lm.RIGHT_LID_RING_FAR + lm.RIGHT_BROW
    narrow, wide = _lid_rows(4.0, dy_left=0.0), _lid_rows(8.0, dy_left=0.0)

    def raised(pts: np.ndarray) -> np.ndarray:
        q = pts.copy()
        q[list(_BROW_ZONE), 1] -= 6.0
        return q

    q = raised(narrow)
    hold_brow_bands(q, narrow, wide, 1.0, down, down)
    growth_driver = _band(raised(wide), lm.RIGHT_EYE_UPPER, zone) / _band(
        wide, lm.RIGHT_EYE_UPPER, zone)
    growth = _band(q, lm.RIGHT_EYE_UPPER, zone) / _band(narrow, lm.RIGHT_EYE_UPPER, zone)
    # the driver's stretch (over BROW_BAND_SAME, the margin for the face mesh's readings)
    assert growth - 1.0 == pytest.approx((growth_driver - 1.0) / BROW_BAND_SAME, rel=1e-9)
    assert growth < _band(raised(narrow), lm.RIGHT_EYE_UPPER, zone) / _band(
        narrow, lm.RIGHT_EYE_UPPER, zone)  # the driver's pixels would have stretched more
    np.testing.assert_array_equal(np.delete(q, list(_BROW_ZONE), axis=0),
                                  np.delete(narrow, list(_BROW_ZONE), axis=0))
    for portrait in (wide, _lid_rows(12.0, dy_left=0.0), _lid_rows(7.2, dy_left=0.0)):
        q = raised(portrait)
        hold_brow_bands(q, portrait, wide, 1.0, down, down)
        np.testing.assert_array_equal(q, raised(portrait))
    # the driver twice the portrait's size: the same band at the portrait's scale
    q = raised(narrow)
    hold_brow_bands(q, narrow, _lid_rows(2.0, dy_left=0.0), 2.0, down, down)
    np.testing.assert_array_equal(q, raised(narrow))


def _band_warp(out_gap: float, own_gap: float) -> np.ndarray:
    """A warp's full-size source map (120 px) that draws the band above the right upper lid
    out from ``own_gap`` to ``out_gap`` px (uniformly, as one row of triangles does) and
    moves what lies above it up by the difference."""
    yy, xx = np.mgrid[0:120, 0:120].astype(np.float32)
    lid = _upper_lid_y(_synthetic_eyes(), xx[0].astype(float)).astype(np.float32)[None, :]
    d = lid - yy  # height above the lid
    k = np.float32(own_gap / out_gap)
    src_y = np.where((d > 0) & (d < out_gap), lid - d * k,
                     np.where(d >= out_gap, yy + np.float32(out_gap - own_gap), yy))
    return np.dstack([xx, src_y]).astype(np.float32)


def _dark_rows(image: np.ndarray, x: int, lid_y: float) -> int:
    """Rows above the lid (at column ``x``) darker than halfway between lash and skin."""
    col = image[: int(np.floor(lid_y)) + 1, x].astype(float).mean(axis=1)
    return int(np.sum(col[-30:] < (210 + 170 + 150 + 40 + 30 + 30) / 6.0))


def test_a_drawn_out_lid_band_keeps_its_lash_line_thin() -> None:
    """The band between the upper lid and the row above it drawn out to twice its height:
    the warp doubles the lash line (6 px instead of 3); resampled, it keeps its 3 px and
    the skin above takes the stretch. The band's edges and everything outside it keep the
    warp's source."""
    from live.engines.mesh.eyes import NO_LASHES, LashLine, keep_lash_bands

    own, out = _lid_rows(10.0), _lid_rows(20.0)
    portrait = np.full((120, 120, 3), (210, 170, 150), np.uint8)
    yy, xx = np.mgrid[0:120, 0:120]
    lid = _upper_lid_y(own, xx[0].astype(float))[None, :]
    portrait[(yy <= lid) & (yy > lid - 3) & (xx >= 20) & (xx <= 100)] = (40, 30, 30)
    head = IDENTITY
    lashes = (LashLine(3.0, (40.0, 30.0, 30.0)), NO_LASHES)
    warp = PiecewiseAffineWarp(120, grid=120)
    lid_y = float(_upper_lid_y(own, np.array([60.0]))[0])

    source = _band_warp(20.0, 10.0)
    before = warp.remap(portrait, source)
    assert _dark_rows(before, 60, lid_y) >= 5  # the warp's doubled lash line
    kept = source.copy()
    assert keep_lash_bands(kept, out, own, head, lashes) == 1
    after = warp.remap(portrait, kept)
    assert 2 <= _dark_rows(after, 60, lid_y) <= 4
    changed = np.any(kept != source, axis=2)
    rows = np.nonzero(changed[:, 60])[0]
    assert rows.min() > lid_y - 20.0 and rows.max() <= lid_y  # inside the band only
    assert not changed[:, :25].any() and not changed[:, 96:].any()
    # not stretched, no lash line, a closing eye: left alone
    same = _band_warp(10.0, 10.0)
    assert keep_lash_bands(same, own, own, head, lashes) == 0
    assert keep_lash_bands(source.copy(), out, own, head, (NO_LASHES, NO_LASHES)) == 0
    closing = out.copy()
    up, lo = list(lm.RIGHT_EYE_UPPER), list(lm.RIGHT_EYE_LOWER)
    closing[up] = out[lo]
    assert keep_lash_bands(source.copy(), closing, own, head, lashes) == 0


@pytest.mark.fixtures
def test_raised_brows_keep_the_portraits_lash_line_thin(prepared) -> None:
    """lp_s42 driven by its own face with the rows above both lids and the brows raised
    (the band over each lid drawn out ~1.6x): the dark line from the lid up stays as thick as
    the portrait's own (within a row); without :func:`keep_lash_bands` the warp draws it
    out."""
    import live.engines.mesh.engine as mesh_engine

    engine, portrait = prepared
    p = portrait.landmarks
    iod = float(np.linalg.norm(p[lm.RIGHT_EYE_OUTER, :2] - p[lm.LEFT_EYE_OUTER, :2]))
    moved = p.copy()
    moved[list(_BROW_ZONE), 1] -= 0.05 * iod
    gray = cv2.cvtColor(portrait.image, cv2.COLOR_RGB2GRAY).astype(float)

    def lash_rows(image: np.ndarray) -> list[int]:
        counts = []
        for upper in (lm.RIGHT_EYE_UPPER, lm.LEFT_EYE_UPPER):
            mid = p[upper[len(upper) // 2], :2]
            x, y = round(float(mid[0])), round(float(mid[1]))
            col = image[y - 25:y + 1, x - 2:x + 3].mean(axis=1)[::-1]  # upwards
            skin = float(np.percentile(gray[y - 12:y - 5, x - 2:x + 3], 75))
            dark = float(gray[y - 6:y + 1, x - 2:x + 3].mean(axis=1).min())
            light = np.nonzero(col >= (skin + dark) / 2.0)[0]  # the first row past the lashes
            counts.append(int(light[0]) if len(light) else len(col))
        return counts

    own = lash_rows(gray)
    out = lash_rows(cv2.cvtColor(engine.render(portrait, p, moved),
                                 cv2.COLOR_RGB2GRAY).astype(float))
    original = mesh_engine.keep_lash_bands
    try:
        mesh_engine.keep_lash_bands = lambda *args, **kwargs: 0  # type: ignore[assignment]
        drawn = lash_rows(cv2.cvtColor(engine.render(portrait, p, moved),
                                       cv2.COLOR_RGB2GRAY).astype(float))
    finally:
        mesh_engine.keep_lash_bands = original
    for o, a, b in zip(own, out, drawn, strict=True):
        assert abs(a - o) <= 1, (own, out, drawn)
        assert b >= a + 2, (own, out, drawn)


@pytest.mark.fixtures
def test_a_closed_mouth_opened_into_an_o_has_lip_coloured_rims_and_no_dark_wedges(
        portraits_dir: Path) -> None:
    """Mona Lisa's closed mouth (a dark line between the lips, shadowed corners) opened and
    narrowed: the lips around the opening keep about their own lightness and nothing dark
    is drawn out beside the corners; with the seam warped as it was (no
    :attr:`MeshPortrait.seam`) the rims darken and the corners show dark wedges."""
    import dataclasses

    from live.face.portraits import find_portrait, load_image

    crop = find_portrait(load_image(portraits_dir / "lp_s9_mona_lisa.jpg"), SIZE).crop.image
    engine = MeshEngine(size=SIZE, smoothing=False)
    portrait = engine.prepare(crop)
    assert portrait.seam is not None
    p = portrait.landmarks
    iod = lm.inter_ocular_distance(p)
    moved = p.copy()
    lower = sorted(set(lm.LIPS_OUTER_LOWER[1:-1] + lm.LIPS_INNER_LOWER[1:-1]
                       + sum(lm.LIPS_LOWER_MIDDLE, ())))
    moved[lower, 1] += 0.22 * iod
    moved[[i for i in range(468) if p[i, 1] > p[lm.LOWER_LIP_BOTTOM, 1] + 2], 1] += 0.18 * iod
    corners = [61, 291, 78, 308, 76, 62, 306, 292, 146, 375, 185, 409, 95, 324, 191, 415]
    cx = p[[61, 291], 0].mean()
    moved[corners, 0] = cx + (moved[corners, 0] - cx) * 0.8
    out = engine.render(portrait, p, moved)
    unfilled = dataclasses.replace(portrait)
    unfilled.__dict__["seam"] = None  # the cached property, as if no seam had been found
    old = engine.render(unfilled, p, moved)

    q = portrait_motion(p, p, moved, chains=portrait.chains).points

    def polygon(points: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
        mask = np.zeros((SIZE, SIZE), np.uint8)
        cv2.fillPoly(mask, [np.round(points[list(ids), :2]).astype(np.int32)], (1,))
        return mask

    def grey(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float)

    inner, outer = polygon(q, lm.LIPS_INNER), polygon(q, lm.LIPS_OUTER)
    rim = ((cv2.dilate(inner, np.ones((9, 9), np.uint8)) > 0)
           & (cv2.dilate(inner, np.ones((3, 3), np.uint8)) == 0) & (outer > 0))
    lips = float(np.median(grey(crop)[polygon(p, lm.LIPS_OUTER) > 0]))
    assert grey(out)[rim].mean() > 0.95 * lips > grey(old)[rim].mean()
    width = float(np.linalg.norm(q[291, :2] - q[61, :2]))
    darkest = []
    for corner in (61, 291):
        zone = np.zeros((SIZE, SIZE), np.uint8)
        cv2.circle(zone, tuple(int(v) for v in np.round(q[corner, :2])), round(0.15 * width),
                   (1,), -1)
        beside = (zone > 0) & (cv2.dilate(outer, np.ones((5, 5), np.uint8)) == 0)
        darkest.append((np.percentile(grey(out)[beside], 5),
                        np.percentile(grey(old)[beside], 5)))
    assert min(d[0] for d in darkest) > min(d[1] for d in darkest) + 10.0, darkest


@pytest.mark.fixtures
def test_a_closed_eye_is_skin_with_a_thin_dark_lash_line(prepared) -> None:
    """Both eyes fully closed on lp_s42: the lid over the eye is near the tone of the skin
    above the lashes (not the lash line and eye stretched grey), and the lid's edge is a
    line darker than that skin."""
    engine, portrait = prepared
    p = portrait.landmarks
    moved = p.copy()
    gray = cv2.cvtColor(portrait.image, cv2.COLOR_RGB2GRAY).astype(float)
    for upper, lower in ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER),
                         (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER)):
        moved[list(upper[1:-1]), :2] = p[list(lower[1:-1]), :2]
    out = cv2.cvtColor(engine.render(portrait, p, moved), cv2.COLOR_RGB2GRAY).astype(float)
    for upper, lower in ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER),
                         (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER)):
        up, lo = p[list(upper), :2], p[list(lower), :2]
        width = float(np.linalg.norm(up[-1] - up[0]))
        a, b = sorted((int(up[2, 0]), int(up[6, 0])))
        xs = np.arange(a, b + 1)  # the middle of the eye
        y_up = np.interp(xs, *up[np.argsort(up[:, 0])].T)
        y_lo = np.interp(xs, *lo[np.argsort(lo[:, 0])].T)
        # the portrait's skin between lashes and brow; the closed lid (upper part of the
        # eye opening); the closed lid's edge (on the lower lid)
        skin = np.median([gray[np.round(y_up - f * width).astype(int), xs]
                          for f in (0.2, 0.25, 0.3)])
        lid = np.median([out[np.round(y_up + f * (y_lo - y_up)).astype(int), xs]
                         for f in (0.2, 0.33, 0.47, 0.6)])
        edge = np.median([out[np.round(y_lo).astype(int) + d, xs] for d in (-1, 0)])
        assert abs(lid - skin) < 15.0, (lid, skin)
        assert edge < skin - 40.0, (edge, skin)


@pytest.mark.fixtures
def test_gaze_moves_the_iris_within_the_eye(prepared) -> None:
    _, portrait = prepared
    p = portrait.landmarks
    moved = p.copy()
    width = np.linalg.norm(p[lm.RIGHT_EYE_INNER, :2] - p[lm.RIGHT_EYE_OUTER, :2])
    iris = [lm.RIGHT_IRIS_CENTER, *lm.RIGHT_IRIS]
    moved[iris, 0] += 0.12 * width
    out = portrait_motion(p, p, moved).points
    shift = out[lm.RIGHT_IRIS_CENTER, :2] - p[lm.RIGHT_IRIS_CENTER, :2]
    assert shift[0] == pytest.approx(0.12 * width, rel=0.2) and abs(shift[1]) < 1.0
    # An extreme gaze stays inside the eye.
    moved[iris, 0] += 2.0 * width
    x = portrait_motion(p, p, moved).points[lm.RIGHT_IRIS_CENTER, 0]
    corners = sorted((p[lm.RIGHT_EYE_OUTER, 0], p[lm.RIGHT_EYE_INNER, 0]))
    assert corners[0] < x < corners[1]


@pytest.mark.fixtures
def test_face_loss_holds_then_eases_back_to_neutral(prepared) -> None:
    _, portrait = prepared
    engine = _fresh(portrait, hold_s=0.3, ease_half_life_s=0.1, smoothing=False)
    p = portrait.landmarks
    assert np.array_equal(engine.process(None, 0.0), portrait.image)  # nothing yet: neutral
    engine.process(face(p), 0.0)
    moved = p.copy()
    moved[:, 0] += 10.0
    posed = engine.process(face(moved), 0.04)
    assert _diff(posed, portrait.image) > 3.0
    held = engine.process(None, 0.2)  # lost (the hold starts now)
    assert np.array_equal(held, posed)
    assert np.array_equal(engine.process(None, 0.45), posed)  # still within hold_s
    easing = engine.process(None, 0.6)
    gone = engine.process(None, 2.0)  # 15 half-lives after the hold
    d_posed, d_easing = _diff(posed, portrait.image), _diff(easing, portrait.image)
    assert 0.0 < d_easing < d_posed
    assert _diff(gone, portrait.image) < 0.2
    # The face comes back: the pose eases to it instead of jumping.
    back = engine.process(face(moved), 2.04)
    assert _diff(back, portrait.image) < d_posed
    for k in range(20):
        last = engine.process(face(moved), 2.08 + 0.04 * k)
    assert _diff(last, posed) < 0.5


@pytest.mark.fixtures
def test_engine_runs_its_own_face_mesh_when_the_crop_has_no_landmarks(prepared) -> None:
    _, portrait = prepared
    with _fresh(portrait) as engine:
        crop = FaceCrop(image=portrait.image, crop_to_frame=IDENTITY, frame_index=0,
                        t_capture=0.0, landmarks=None)
        out = engine.process(crop, 0.0)
        assert engine.calibrated and out.shape == (SIZE, SIZE, 3)
        assert "landmarks" in engine.last_timings


def test_portrait_without_a_face_is_a_clear_error() -> None:
    engine = MeshEngine(size=256)
    with pytest.raises(NoFaceError, match="no face found in the portrait"):
        engine.prepare(textured(256, seed=5))
    with pytest.raises(InputError, match="not square"):
        engine.prepare(np.zeros((200, 300, 3), np.uint8))


# -- a real portrait driven by a real clip --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.fixtures
def test_real_clip_keeps_the_face_and_transfers_motion(portraits_dir: Path,
                                                       driving_dir: Path) -> None:
    from live.engines.mesh.engine import driving_points
    from live.face.portraits import find_portrait, load_image
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    crop = find_portrait(load_image(portraits_dir / "lp_s9_mona_lisa.jpg"), SIZE).crop.image
    with MeshEngine(size=SIZE) as engine, FaceTracker(crop_size=256) as tracker, \
            FidelityMeter(portrait=crop) as meter, \
            VideoReader(driving_dir / "tps_driving.mp4") as reader:
        engine.set_portrait(engine.prepare(crop))
        for frame in reader:
            if frame.index >= 60:
                break
            f = tracker.process(frame).face
            out = engine.process(f, frame.pts or 0.0)
            meter.add(out, None if f is None or f.landmarks is None
                      else driving_points(f, f.landmarks))
    r = meter.result
    assert r.frames == 60 and r.lost == 0 and r.scored >= 55
    assert r.neutral_psnr > 35.0
    assert r.mean_motion > 0.05  # the clip moves: the ratio below means something
    assert r.transfer_ratio < 0.35, r.as_dict()


@pytest.mark.fixtures
def test_driving_crops_that_change_size_mid_run_animate_as_crops_of_one_size(
        prepared: tuple[MeshEngine, MeshPortrait], driving_dir: Path) -> None:
    # live cuts its driving crops at the face's own resolution and cuts them anew when the
    # face leans in or out (FaceTracker's max_crop_size): the engine reads them in frame
    # pixels, so a change of size leaves the picture where crops of one size put it
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    _, portrait = prepared
    frames = []
    with VideoReader(driving_dir / "lp_d3.mp4") as reader:
        for frame in reader:
            frames.append(frame)
            if len(frames) == 10:
                break
    crops = {}
    for size in (256, 448):
        with FaceTracker(crop_size=size) as tracker:
            crops[size] = [tracker.process(f).face for f in frames]
    def run(plan: list[int]) -> list[np.ndarray]:
        engine = _fresh(portrait, smoothing=False)
        try:
            engine.calibrate(crops[plan[0]][0])  # type: ignore[arg-type]
            return [engine.process(crops[plan[i]][i], float(i) / 30) for i in range(1, 10)]
        finally:
            engine.close()

    small, switched, large = run([256] * 10), run([256] * 5 + [448] * 5), run([448] * 10)
    assert all(_diff(a, b) == 0.0 for a, b in zip(small[:4], switched[:4], strict=True))
    after = [_diff(switched[i], large[i]) for i in range(4, 9)]
    for i, near in zip(range(4, 9), after, strict=True):
        # after the switch: nearer the picture crops of the new size give than the old size
        # is to it (the two differ by the crops' resolution and their neutral frames: the
        # face mesh reads a frame's lids or lips a little apart on the two crops, by up to
        # 1.6 levels on one machine's frame 7)
        assert near <= _diff(small[i], large[i]) + 0.1, (i, after)
        assert _diff(switched[i], small[i]) <= _diff(large[i], small[i]) + 0.25, i
    assert float(np.mean(after)) < 1.0, after  # (0.56 on that machine)
    assert _diff(small[0], small[-1]) > 10 * _diff(switched[4], large[4])  # the clip moves


# -- the bench command ----------------------------------------------------------------------------


@pytest.mark.fixtures
def test_bench_reports_stages_and_rejects_unbuilt_jobs(portraits_dir: Path, driving_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from live.bench import engine as bench_engine
    from live.cli import bench as bench_cli

    r = bench_engine.bench_engine_mesh(driving=driving_dir / "lp_d0.mp4",
                                    portrait=portraits_dir / "lp_s42.jpg", frames=4, warmup=1,
                                    size=256)
    assert r["frames"] == 4 and r["faces"] == 4
    stages = r["stages"]
    for stage in ("decode", "track", "engine", "engine.remap", "composite", "total"):
        median, p95 = stages[stage]["median"], stages[stage]["p95"]
        assert math.isfinite(median) and 0.0 < median <= p95, (stage, median, p95)
    # every frame's total is the sum of its stages, and the remap is part of the engine
    for part in ("decode", "track", "engine", "composite"):
        assert stages["total"]["median"] >= stages[part]["median"], part
    assert stages["engine"]["median"] >= stages["engine.remap"]["median"]
    assert stages["track"]["median"] > 1.0  # a face mesh takes milliseconds, not nothing
    assert "end to end" in bench_engine.format_engine_report(r)
    monkeypatch.setattr(bench_cli, "JOBS", {})
    from live.cli.main import main

    assert main(["bench", "--job", "live", "--engine", "fomm"]) == 2
    assert main(["bench", "--job", "animate", "--pipelined"]) == 2  # the engine job's only


@pytest.mark.fixtures
def test_bench_pipelined_tracks_beside_the_engine(portraits_dir: Path, driving_dir: Path) -> None:
    from live.bench import engine as bench_engine

    r = bench_engine.bench_engine_mesh(driving=driving_dir / "lp_d0.mp4",
                                       portrait=portraits_dir / "lp_s42.jpg", frames=6, warmup=1,
                                       size=256, pipelined=True)
    assert r["pipelined"] and r["frames"] == 6 and r["faces"] == 6
    stages = r["stages"]
    for stage in ("decode", "track", "engine", "total"):
        assert math.isfinite(stages[stage]["median"]) and stages[stage]["median"] > 0.0, stage
    # a frame's total runs from its decode to its composite: at least the two stages on its
    # way, whatever it waited in between
    assert stages["total"]["median"] >= stages["engine"]["median"]
    assert math.isfinite(r["fps_wall"]) and r["fps_wall"] > 0.0
    assert "pipelined" in bench_engine.format_engine_report(r)


@pytest.mark.fixtures
def test_bench_with_a_background_composites_as_live_prepares_the_portrait(
        portraits_dir: Path, driving_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from live.bench import engine as bench_engine
    from live.face.portraits import PortraitLibrary

    made: list[PortraitLibrary] = []
    real_init = PortraitLibrary.__init__

    def spy(self: PortraitLibrary, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(PortraitLibrary, "__init__", spy)
    r = bench_engine.bench_engine_mesh(driving=driving_dir / "lp_d0.mp4",
                                       portrait=portraits_dir / "lp_s42.jpg", frames=3, warmup=1,
                                       size=256, background="#2a4d8f")
    assert r["frames"] == 3 and r["faces"] == 3
    assert r["composite_size"] == list(bench_engine.OUTPUT_SIZE)
    assert r["stages"]["background"]["median"] > 0.0
    # live's own preparation: one library, shoulders, this background, closed after use
    assert len(made) == 1 and made[0].framing == "shoulders"
    assert [b.kind for b in made[0].backgrounds] == ["color"] and made[0]._closed
    with pytest.raises(InputError, match="blur, a colour or an image file"):
        bench_engine.bench_engine_mesh(driving=driving_dir / "lp_d0.mp4",
                                       portrait=portraits_dir / "lp_s42.jpg", frames=1,
                                       warmup=0, size=256, background="keep")



def test_the_index_map_drawn_in_two_parts_is_the_one_drawn_at_once() -> None:
    """The engine draws the face's triangles (the top rows) while the body flow still runs,
    then the outside under them: the map is cell for cell what drawing every row in order
    gives, though the outside's corners moved in between; the outside shows only where no
    face triangle is."""
    rng = np.random.default_rng(3)
    size, grid = 64, 32
    outside, outer_tris = _grid_mesh(size, 4)
    n = len(outside)
    face_src = rng.uniform(12.0, 52.0, (12, 2))
    face_tris = n + np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [8, 9, 10],
                              [9, 10, 11], [1, 5, 9], [0, 6, 11]])
    dst = np.concatenate([outside, face_src])
    tris = np.concatenate([outer_tris, face_tris])
    first = len(outer_tris)
    warp = PiecewiseAffineWarp(size, grid=grid)
    warp.draw_top(dst, tris, first)
    moved = dst.copy()  # the outside moves after the face was drawn
    moved[:n] += rng.normal(0.0, 1.5, (n, 2))
    moved[:n] = np.clip(moved[:n], 0.0, size - 1.0)
    split = warp.index_map(moved, tris, top=first).copy()
    whole = PiecewiseAffineWarp(size, grid=grid).index_map(moved, tris)
    assert np.array_equal(split, whole)
    assert (whole > first).any() and (whole <= first).any()  # both parts won cells
    # drawn without the top part first: a different map (the check could fail)
    assert not np.array_equal(PiecewiseAffineWarp(size, grid=grid).index_map(
        moved, tris[:first]), whole)
