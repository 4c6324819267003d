"""The FOMM engine on the tiny parity weights: neutral pose, relative motion, hold and ease
back when the face is lost, recalibration, options and the engine protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibrate.errors import InputError, MimicamError, WeightsError
from calibrate.keypoints import normalize_kp
from live.engines.base import Engine, create_engine
from live.engines.fomm import FommEngine, FommPortrait, resolve_model_dir
from live.packets import FaceCrop

pytestmark = pytest.mark.fixtures  # every test here reads ../shared


def _rgb(chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rint(chw.transpose(1, 2, 0) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def images(tiny: dict[str, Any]) -> dict[str, Any]:
    cases = tiny["cases"]
    return {"source": _rgb(cases["input__source"][0]),
            "driving": [_rgb(d) for d in cases["input__driving"]]}


def _face(image: np.ndarray, i: int = 0) -> FaceCrop:
    return FaceCrop(image=image, crop_to_frame=np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                    frame_index=i, t_capture=float(i))


@pytest.fixture()
def engine(tiny_model: Path, images: dict[str, Any]) -> Any:
    eng = create_engine("fomm", model_dir=tiny_model, backend="paddle-cpu", threads=1,
                        hold_s=0.5, ease_half_life_s=0.1)
    eng.set_portrait(eng.prepare(images["source"]))
    yield eng
    eng.close()


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of absolute differences (the tiny random network moves its output only a little,
    so a sum over all pixels is what separates poses)."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).sum())


def test_engine_protocol_and_options(engine: FommEngine, tiny_model: Path) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "fomm" and engine.size == 128  # image size taken from the model
    assert engine.config.relative and engine.config.adapt_scale
    assert engine.backend == "paddle-cpu"
    assert not engine.calibrated
    with pytest.raises(InputError, match="unknown fomm engine option"):
        FommEngine(model_dir=tiny_model, wobble=True)
    with pytest.raises(WeightsError, match="needs weights"):
        FommEngine()
    with pytest.raises(InputError, match="image size differs"):
        FommEngine(model_dir=tiny_model, image_size=256)
    with pytest.raises(InputError, match="hold_s is out of range"):
        FommEngine(model_dir=tiny_model, hold_s=-1)


def test_first_face_is_neutral_then_motion_is_relative(engine: FommEngine,
                                                       images: dict[str, Any]) -> None:
    drv = images["driving"]
    portrait = engine._portrait
    assert portrait is not None
    rest = engine._rt.animate(portrait.state, portrait.kp)  # the portrait on its own keypoints
    first = engine.process(_face(drv[1], 0), 0.0)
    assert engine.calibrated
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    assert _diff(first, rest) == 0  # neutral driving pose -> the portrait at rest
    moved = engine.process(_face(drv[2], 1), 0.04)
    assert _diff(moved, rest) > 1000
    # exactly the relative step with adapt scale, done by hand on the runtime
    kp1, kp2 = engine._rt.detect(drv[1]), engine._rt.detect(drv[2])
    expected = engine._rt.animate(portrait.state, normalize_kp(portrait.kp, kp2, kp1,
                                                               relative=True, adapt_scale=True))
    assert _diff(moved, expected) == 0
    assert set(engine.last_timings) >= {"kp_detector", "animator", "total"}


def test_face_lost_holds_then_eases_back_to_neutral(engine: FommEngine,
                                                    images: dict[str, Any]) -> None:
    drv = images["driving"]
    rest = engine.process(_face(drv[0], 0), 0.0)
    moved = engine.process(_face(drv[2], 1), 0.1)
    motion = _diff(moved, rest)
    assert motion > 1000
    held = engine.process(None, 0.3)  # within hold_s: the same pose
    assert _diff(held, moved) == 0
    assert "animator" not in engine.last_timings  # nothing recomputed while holding
    half = engine.process(None, 0.3 + 0.5 + 0.1)  # lost at 0.3; one half-life into the ease
    assert 0.2 * motion < _diff(half, rest) < 0.8 * motion
    settled = engine.process(None, 3.0)  # many half-lives: back at neutral
    assert _diff(settled, rest) < 0.05 * motion
    # the face returns: the shown pose eases to it instead of jumping
    back = engine.process(_face(drv[2], 5), 3.04)
    assert 0.2 * motion < _diff(back, moved) < 0.8 * motion
    later = engine.process(_face(drv[2], 6), 3.5)
    assert _diff(later, moved) < 0.05 * motion


def test_no_face_before_calibration_shows_the_portrait_at_rest(engine: FommEngine) -> None:
    portrait = engine._portrait
    assert portrait is not None
    out = engine.process(None, 0.0)
    assert _diff(out, engine._rt.animate(portrait.state, portrait.kp)) == 0
    assert not engine.calibrated


def test_recalibrate_and_calibrate(engine: FommEngine, images: dict[str, Any]) -> None:
    drv = images["driving"]
    rest = engine.process(None, 0.0)
    engine.process(_face(drv[0], 0), 0.0)
    assert _diff(engine.process(_face(drv[2], 1), 0.04), rest) > 1000
    engine.recalibrate()
    assert not engine.calibrated
    assert _diff(engine.process(_face(drv[2], 2), 0.08), rest) == 0  # new neutral
    engine.calibrate(_face(drv[1]))
    assert engine.calibrated
    assert _diff(engine.process(_face(drv[1], 3), 0.12), rest) == 0


def test_absolute_motion_size_and_portrait_checks(tiny_model: Path, images: dict[str, Any]) -> None:
    drv = images["driving"]
    with pytest.raises(MimicamError, match="no portrait"):
        FommEngine(model_dir=tiny_model, backend="onnxruntime").process(_face(drv[0]), 0.0)
    eng = FommEngine(model_dir=tiny_model, backend="onnxruntime", threads=1, relative=False,
                     size=96)
    try:
        prepared = eng.prepare(images["source"])
        assert isinstance(prepared, FommPortrait)
        with pytest.raises(InputError, match="not square"):
            eng.prepare(images["source"][:100])
        with pytest.raises(TypeError, match="FommPortrait"):
            eng.set_portrait("portrait.png")
        eng.set_portrait(prepared)
        rest = eng.process(None, 0.0)
        assert rest.shape == (96, 96, 3)
        out = eng.process(_face(drv[0]), 0.0)  # a neutral face, but absolute: not at rest
        assert out.shape == (96, 96, 3)
        assert _diff(out, rest) > 1000
    finally:
        eng.close()
        eng.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        eng.process(None, 1.0)


@pytest.mark.slow
def test_weights_are_exported_once_into_the_cache(tiny: dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from model_export.weights import sha256_of

    cache = tmp_path / "cache"
    first = resolve_model_dir(tiny["weights"], 128, cache_dir=cache, config=tiny["config"])
    assert first.parent == cache and first.name.startswith("fomm-")
    assert sha256_of(tiny["weights"])[:16] in first.name

    import model_export.export as export

    def no_export(*a: Any, **k: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "export_fomm", no_export)
    assert resolve_model_dir(tiny["weights"], 128, cache_dir=cache,
                             config=tiny["config"]) == first
    with pytest.raises(WeightsError, match="not found"):
        resolve_model_dir(tmp_path / "missing.pdparams", 128, cache_dir=cache)
