"""The face's outer band shares out a turn's stretch (live.engines.mesh.band)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibrate import landmarks as lm
from live.engines.mesh import band as band_module
from live.engines.mesh.band import STRETCH_FULL, BandSource
from live.engines.mesh.motion import portrait_motion
from live.engines.mesh.topology import triangle_areas

N = 9
STEP = 10.0


def _grid() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """An N x N grid of points STEP apart, its triangles, and its border in order."""
    ys, xs = np.mgrid[0:N, 0:N]
    pts = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64) * STEP + 100.0
    tris = []
    for r in range(N - 1):
        for c in range(N - 1):
            a, b, d, e = r * N + c, r * N + c + 1, (r + 1) * N + c, (r + 1) * N + c + 1
            tris += [(a, b, e), (a, e, d)]
    border = [i for i in range(N * N) if i // N in (0, N - 1) or i % N in (0, N - 1)]
    return pts, np.asarray(tris), border


def _edge_stretch(src: np.ndarray, dst: np.ndarray, tris: np.ndarray,
                  touching: np.ndarray) -> np.ndarray:
    """Output over portrait length of the edges with an end in ``touching``."""
    edges = np.unique(np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]],
                                              tris[:, [2, 0]]]), axis=1), axis=0)
    edges = edges[np.isin(edges, touching).any(axis=1)]
    return np.asarray(np.linalg.norm(dst[edges[:, 0]] - dst[edges[:, 1]], axis=1)
                      / np.linalg.norm(src[edges[:, 0]] - src[edges[:, 1]], axis=1))


def test_the_band_re_sources_a_picture_at_half_the_size_as_at_full_size() -> None:
    """Its pixel measures scale with the crop (REFERENCE_SIZE): the same turn of the same
    face at half the size re-sources the same vertices, to half the positions."""
    src, tris, border = _grid()
    depth = np.column_stack([src, np.zeros(len(src))])
    dst = src.copy()
    left = np.arange(N * N) % N == 0
    dst[~left, 0] += 40.0
    full = BandSource(src, tris, border, keep=(), depth_points=depth)
    half = BandSource(src / 2, tris, border, keep=(), depth_points=depth / 2, size=256)
    moved = full.sources(dst, src)
    assert not np.allclose(moved, src)
    np.testing.assert_allclose(half.sources(dst / 2, src / 2), moved / 2, atol=1e-9)
    # built for 512 px, the half-size picture is re-sourced otherwise (edges under
    # MIN_EDGE_PX count as longer)
    wrong = BandSource(src / 2, tris, border, keep=(), depth_points=depth / 2)
    assert not np.allclose(wrong.sources(dst / 2, src / 2), moved / 2, atol=1e-3)
    with pytest.raises(ValueError, match="crop size"):
        BandSource(src, tris, border, keep=(), size=0)


def test_an_unstretched_or_affine_motion_keeps_every_source() -> None:
    src, tris, border = _grid()
    band = BandSource(src, tris, border, keep=())
    assert len(band.free) > 0
    assert band.sources(src.copy(), src) is src  # nothing stretched: the same array
    # a turn, a zoom past STRETCH_FULL and a shift: stretched everywhere, but affine
    angle = np.radians(25.0)
    m = 2.0 * STRETCH_FULL * np.array([[np.cos(angle), -np.sin(angle)],
                                       [np.sin(angle), np.cos(angle)]])
    dst = src @ m.T + np.array([-40.0, 15.0])
    assert np.allclose(band.sources(dst, src), src, atol=1e-6)


def test_a_stretch_at_the_outline_is_shared_out_over_the_band() -> None:
    src, tris, border = _grid()
    keep = [4 * N + 4]  # the middle point: kept wherever it is
    band = BandSource(src, tris, border, keep=keep, rings=3)
    dst = src.copy()
    left = np.arange(N * N) % N == 0
    dst[~left, 0] += 40.0  # all but the left edge move right: a turn's reveal
    moved = band.sources(dst, src)
    before = _edge_stretch(src, dst, tris, band.free)
    after = _edge_stretch(moved, dst, tris, band.free)
    assert before.max() > STRETCH_FULL
    assert after.max() < 0.6 * before.max()
    middle = band.free[(band.free // N >= 2) & (band.free // N <= N - 3)]
    assert _edge_stretch(moved, dst, tris, middle).max() < 0.5 * before.max()
    assert np.array_equal(moved[border], src[border])  # the outline keeps its pixels
    assert np.allclose(moved[N // 2 * N + N - 2], src[N // 2 * N + N - 2])  # far from it too
    assert np.array_equal(moved[keep], src[keep])
    # no triangle turns over in the portrait
    assert np.all(np.sign(triangle_areas(moved, tris)) == np.sign(triangle_areas(src, tris)))


def _turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """The landmarks turned about the vertical axis through their centre (a head's yaw)."""
    a = np.radians(degrees)
    c = points[:, :3].mean(axis=0)
    rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0],
                    [-np.sin(a), 0.0, np.cos(a)]])
    return np.asarray((points[:, :3] - c) @ rot.T + c)


def _backward_run(engine: Any, portrait: Any, points: np.ndarray) -> float:
    """Rendered with ``points``: the largest step back (px) of the source's x along the rows
    of the face's left side, from its outline to the eye's outer corner (0: drawn in order)."""
    engine.render(portrait, portrait.landmarks, points)
    size = engine.size
    source = engine._warp.buffers.get("source", (size, size, 2), np.float32)
    q = portrait_motion(portrait.landmarks, portrait.landmarks, points,
                        options=engine._motion, chains=portrait.chains).points[:, :2]
    oval = q[list(lm.FACE_OVAL)]
    worst = 0.0
    for y in range(int(q[lm.RIGHT_EYE_OUTER, 1]), int(q[lm.MOUTH_RIGHT, 1])):
        near = oval[np.abs(oval[:, 1] - y) < 8, 0]
        if not len(near):
            continue
        row = source[y, int(near.min()) + 2:int(q[lm.RIGHT_EYE_OUTER, 0]), 0]
        if len(row) > 2:
            worst = max(worst, float((np.maximum.accumulate(row) - row).max()))
    return worst


@pytest.mark.fixtures
def test_a_turn_that_brings_a_foreshortened_cheek_into_view_does_not_mirror_its_edge(
        portraits_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mona Lisa's right cheek (the picture's left) is seen nearly edge-on: the face mesh's
    rows there fold over past her outline. Turned towards us, the portrait's own sources
    would draw that fold mirrored (the edge's rim of light as a streak down the cheek); the
    band re-sources it in order."""
    from live.engines.mesh.engine import MeshEngine
    from live.face.portraits import find_portrait, load_image

    found = find_portrait(load_image(portraits_dir / "lp_s9_mona_lisa.jpg"), 512)
    with MeshEngine(size=512, smoothing=False) as engine:
        portrait = engine.prepare(found.crop.image, picture=found.picture_box)
        turned = _turned(np.asarray(portrait.landmarks, np.float64), -20.0)
        assert _backward_run(engine, portrait, turned) < 0.5
        monkeypatch.setattr(BandSource, "sources", lambda self, dst, src: src)
        assert _backward_run(engine, portrait, turned) > 5.0  # without the band: mirrored


def _band_moves(portraits_dir: Path, size: int, degrees: float) -> set[int]:
    """The face-mesh vertices whose sources Mona Lisa's band moves (by more than 0.05 px at
    512 px) when her face, prepared at ``size``, turns by ``degrees``."""
    from live.engines.mesh.engine import N_MESH, MeshEngine
    from live.face.portraits import find_portrait, load_image

    found = find_portrait(load_image(portraits_dir / "lp_s9_mona_lisa.jpg"), size)
    with MeshEngine(size=size, smoothing=False) as engine:
        portrait = engine.prepare(found.crop.image, picture=found.picture_box)
        points = np.asarray(portrait.landmarks, np.float64)
        src = portrait.layout.src
        dst = src.copy()
        dst[:N_MESH] = portrait_motion(points, points, _turned(points, degrees),
                                       options=engine._motion,
                                       chains=portrait.chains).points[:, :2]
        moved = portrait.band.sources(dst, src)
    change = np.abs(moved[:N_MESH] - src[:N_MESH]).max(axis=1)
    return set(np.flatnonzero(change > 0.05 * size / 512).tolist())


@pytest.mark.fixtures
def test_a_small_crop_re_sources_a_turned_cheek_as_a_full_size_one(portraits_dir: Path) -> None:
    """A 512 px picture of Mona Lisa gives her face a 256 px crop. The fold of her turned
    cheek opened there under the band's 512 px area threshold: at 10 degrees nothing was
    re-sourced (30 vertices at 512 px) and the live clips drew the cheek's rim of light
    twice, a bright crescent by her hair. Its measures now scale with the crop."""
    full = _band_moves(portraits_dir, 512, -10.0)
    assert len(full) >= 10
    assert _band_moves(portraits_dir, 256, -10.0) == full


def test_an_edge_on_triangle_that_a_turn_opens_towards_the_camera_is_re_sourced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo portrait's jaw: landmarks 288, 401 and 435 lie nearly in a line along her
    outline (area about 1 px^2). A turn that opens them towards the camera (the demo's frame
    244) drew that line of pixels, the jaw's light rim, out over ~90 px^2 of cheek: a pale
    patch over the neck. The band now takes their sources in order, as for a triangle the
    portrait shows facing away; a turn that folds them the other way leaves them alone."""
    from live.engines.mesh.engine import BAND_KEEPS, N_MESH, MeshEngine
    from live.jobs.demo import builtin_portrait, portrait_face_crop

    crop = portrait_face_crop(builtin_portrait(), size=512, name="astronaut")
    tri = np.array([[288, 401, 435]])
    with MeshEngine(size=512, smoothing=False) as engine:
        portrait = engine.prepare(crop.image)
        points = np.asarray(portrait.landmarks, np.float64)
        src = portrait.layout.src
        assert abs(triangle_areas(src, tri)[0]) < band_module.EDGE_ON_AREA

        def opened(degrees: float, band: BandSource) -> tuple[float, float, float]:
            """(output area, its source area, largest source move) of the triangle."""
            dst = src.copy()
            dst[:N_MESH] = portrait_motion(points, points, _turned(points, degrees),
                                           options=engine._motion,
                                           chains=portrait.chains).points[:, :2]
            moved = band.sources(dst, src)
            return (float(triangle_areas(dst, tri)[0]), float(triangle_areas(moved, tri)[0]),
                    float(np.abs(moved[tri[0]] - src[tri[0]]).max()))

        out_area, src_area, _ = opened(20.0, portrait.band)
        assert abs(out_area) > 3 * band_module.FOLD_MIN_AREA
        assert src_area * out_area > 0.0  # drawn the right way round ...
        assert abs(src_area) > 0.4 * abs(out_area)  # ... from an area, not a line
        _, _, move = opened(-20.0, portrait.band)  # folded away: its own sources
        assert move == 0.0
        # without the edge-on rule the triangle kept drawing (nearly) a line
        monkeypatch.setattr(band_module, "EDGE_ON_AREA", 0.0)
        plain = BandSource(src[:N_MESH], portrait.layout.face_tris, lm.FACE_OVAL,
                           BAND_KEEPS, depth_points=portrait.landmarks)
        assert abs(opened(20.0, plain)[1]) < 0.2 * abs(out_area)
