"""Mesh engine: the body flow runs on a worker thread while the face is drawn, the seams'
and folds' samples while the picture is remapped (live/engines/mesh/engine.py), in line on
one core; both draw the same."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from live.engines.mesh import engine as mesh_engine
from live.engines.mesh.body import BodyFlow
from live.engines.mesh.engine import InlineWorker, MeshEngine, MeshPortrait
from live.packets import FaceCrop

pytestmark = pytest.mark.fixtures

SIZE = 512


@pytest.fixture(scope="module")
def driver(portraits_dir: Path) -> tuple[MeshPortrait, np.ndarray, np.ndarray]:
    """The lp_s42 portrait prepared (body flow on), its crop and its landmarks (crop
    pixels): the crop, moved, is the driving picture."""
    from live.face.portraits import find_portrait, load_image

    found = find_portrait(load_image(portraits_dir / "lp_s42.jpg"), SIZE)
    assert found.crop.landmarks is not None
    with MeshEngine(size=SIZE) as engine:
        portrait = engine.prepare(found.crop.image)
    return portrait, found.crop.image, np.asarray(found.crop.landmarks, np.float64)


def _frames(crop: np.ndarray, landmarks: np.ndarray) -> Iterator[tuple[FaceCrop | None, float]]:
    """A driver that turns and moves, is lost for 0.4 s (held, then easing back), and comes
    back elsewhere (the pose eases in until it converges)."""
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for k in range(36):
        t = 0.04 * k
        if 10 <= k < 20:
            yield None, t
            continue
        angle, dx, dy = (1.5 * k, 0.6 * k, -0.3 * k) if k < 10 else (4.0, 9.0, 3.0)
        m = np.array(cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, 1.0), np.float64)
        m[:, 2] += np.array([dx, dy])
        image = cv2.warpAffine(crop, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
        pts = landmarks.copy()
        pts[:, :2] = landmarks[:, :2] @ m[:, :2].T + m[:, 2]
        yield FaceCrop(image, eye, k, t, landmarks=pts.astype(np.float32)), t


def _run(engine: MeshEngine, crop: np.ndarray,
         landmarks: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    outs, recovering = [], []
    for f, t in _frames(crop, landmarks):
        outs.append(engine.process(f, t))
        recovering.append(engine._hold.recovering)
    return outs, recovering


def test_the_threaded_flow_draws_what_the_inline_flow_draws_through_a_loss(
        driver: tuple[MeshPortrait, np.ndarray, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    portrait, crop, landmarks = driver
    options = {"size": SIZE, "hold_s": 0.1, "ease_half_life_s": 0.1}
    monkeypatch.setattr(mesh_engine, "usable_cores", lambda: 2)
    with MeshEngine(**options) as threaded:  # type: ignore[arg-type]
        threaded.set_portrait(portrait)
        outs, recovering = _run(threaded, crop, landmarks)
        assert isinstance(threaded._worker, ThreadPoolExecutor)  # the flow ran on a thread
    monkeypatch.setattr(mesh_engine, "usable_cores", lambda: 1)  # one core: in line
    with MeshEngine(**options) as inline:  # type: ignore[arg-type]
        inline.set_portrait(portrait)
        ref, ref_recovering = _run(inline, crop, landmarks)
        assert isinstance(inline._worker, InlineWorker)
    assert recovering == ref_recovering
    # the face came back easing in, and the ease in ended (the hold's distance over the
    # landmarks and the body lattice together) before the clip's end
    assert recovering[20] and not recovering[-1]
    assert not np.array_equal(outs[19], outs[15])  # lost: held, then easing back
    for k, (a, b) in enumerate(zip(outs, ref, strict=True)):
        assert np.array_equal(a, b), f"frame {k} differs"


def test_close_ends_the_worker_and_is_harmless_twice(
        driver: tuple[MeshPortrait, np.ndarray, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    portrait, crop, landmarks = driver
    monkeypatch.setattr(mesh_engine, "usable_cores", lambda: 2)
    engines = [MeshEngine(size=SIZE) for _ in range(2)]
    before = set(threading.enumerate())
    for engine in engines:
        engine.set_portrait(portrait)
        for f, t in list(_frames(crop, landmarks))[:2]:
            engine.process(f, t)
    workers = set(threading.enumerate()) - before
    assert len(workers) == 2  # one each, made on first use
    for engine in engines:
        engine.close()
        engine.close()
    assert not any(w.is_alive() for w in workers)
    with pytest.raises(RuntimeError, match="closed"):
        engines[0].process(None, 1.0)


@pytest.mark.parametrize("cores", [2, 1])
def test_an_error_in_the_flow_reaches_the_caller(
        driver: tuple[MeshPortrait, np.ndarray, np.ndarray], cores: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    portrait, crop, landmarks = driver
    monkeypatch.setattr(mesh_engine, "usable_cores", lambda: cores)
    frames = list(_frames(crop, landmarks))

    def broken(self: BodyFlow, *args: Any, **kwargs: Any) -> np.ndarray:
        raise cv2.error("the flow broke")

    with MeshEngine(size=SIZE) as engine:
        engine.set_portrait(portrait)
        engine.process(*frames[0])  # calibrates: the neutral pose, no flow yet
        monkeypatch.setattr(BodyFlow, "flow", broken)  # the part on the worker
        with pytest.raises(cv2.error, match="the flow broke"):
            engine.process(*frames[1])


def test_the_seams_and_folds_are_sampled_on_the_worker_and_drawn_as_in_line(
        driver: tuple[MeshPortrait, np.ndarray, np.ndarray], driving_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    portrait = driver[0]
    # lp_d18 yells and turns: the lips fold over the skin, the cheek tears at the outline
    wanted = {0, *range(124, 134)}
    frames = []
    with VideoReader(driving_dir / "lp_d18.mp4") as reader, FaceTracker() as tracker:
        for k, frame in enumerate(reader):
            if k in wanted:
                frames.append((tracker.process(frame).face, k / 30.0))
            if k >= max(wanted):
                break
    found: list[tuple[str, int, bool]] = []
    sample = mesh_engine._edge_samples

    def spy(*args: Any) -> Any:
        parts, fold = sample(*args)
        found.append((threading.current_thread().name, len(parts), fold is not None))
        return parts, fold

    monkeypatch.setattr(mesh_engine, "_edge_samples", spy)
    outs = []
    for cores in (2, 1):
        monkeypatch.setattr(mesh_engine, "usable_cores", lambda n=cores: n)
        with MeshEngine(size=SIZE) as engine:
            engine.set_portrait(portrait)
            outs.append([engine.process(f, t).copy() for f, t in frames])
    threaded, inline = found[:len(found) // 2], found[len(found) // 2:]
    main = threading.main_thread().name
    assert all(name != main for name, _, _ in threaded)  # on the worker
    assert all(name == main for name, _, _ in inline)
    assert any(parts for _, parts, _ in threaded)  # there was a seam to draw ...
    assert any(fold for _, _, fold in threaded)  # ... and a fold
    assert [f[1:] for f in threaded] == [f[1:] for f in inline]
    for k, (a, b) in enumerate(zip(*outs, strict=True)):
        assert np.array_equal(a, b), f"frame {k} differs"


def test_an_error_while_the_picture_is_drawn_waits_for_the_workers_jobs(
        driver: tuple[MeshPortrait, np.ndarray, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reads the frame's maps: an error on the engine's thread must not let the
    next frame draw over them while it still does."""
    portrait, crop, landmarks = driver
    monkeypatch.setattr(mesh_engine, "usable_cores", lambda: 2)
    finished: list[float] = []
    sample = mesh_engine._edge_samples

    def slow(*args: Any) -> Any:
        time.sleep(0.3)
        found = sample(*args)
        finished.append(time.perf_counter())
        return found

    def broken(*args: Any) -> Any:
        raise cv2.error("the remap broke")

    frames = list(_frames(crop, landmarks))
    with MeshEngine(size=SIZE) as engine:
        engine.set_portrait(portrait)
        engine.process(*frames[0])  # calibrates
        monkeypatch.setattr(mesh_engine, "_edge_samples", slow)
        monkeypatch.setattr(MeshEngine, "_picture", broken)
        with pytest.raises(cv2.error, match="the remap broke"):
            engine.process(*frames[1])
        returned = time.perf_counter()
        assert len(finished) == 1 and finished[0] <= returned
