"""Zero-lag smoothing for offline jobs: calibrate.smoothing.CentredSmoother and
live.jobs.lookahead.smooth_landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate.smoothing import CentredSmoother, local_fit_weights
from live.jobs.lookahead import smooth_landmarks
from live.packets import FaceCrop, Frame, Tracked


def _run(smoother: CentredSmoother, xs: list[np.ndarray | None]) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for x in xs:
        out += smoother.push(x)
    return out + smoother.flush()


def test_local_fit_weights_reproduce_a_quadratic_and_sum_to_one() -> None:
    for offsets in ((-3, -2, -1, 0, 1, 2, 3), (0, 1, 2), (-2, -1, 0), (-1, 0, 1, 2, 3)):
        w = local_fit_weights(offsets)
        t = np.asarray(offsets, float)
        assert w.sum() == pytest.approx(1.0)
        assert float(w @ (3.0 - 2.0 * t + 0.5 * t * t)) == pytest.approx(3.0)
    assert local_fit_weights((0,)).tolist() == [1.0]
    np.testing.assert_allclose(local_fit_weights((-1, 0, 1), degree=0), [1 / 3] * 3)


def test_centred_smoother_keeps_a_peak_without_lag_and_removes_noise() -> None:
    t = np.arange(60, dtype=float)
    peak = np.exp(-0.5 * ((t - 30.0) / 3.0) ** 2)  # a blink-like bump, 3 frames wide
    rng = np.random.default_rng(0)
    noisy = peak + rng.normal(0.0, 0.05, t.size)
    out = np.array([float(v[0]) for v in _run(CentredSmoother(3), [np.array([x]) for x in noisy])
                    if v is not None])
    assert out.size == t.size
    assert int(np.argmax(out)) in (29, 30, 31)  # no lag
    assert out.max() > 0.85  # the peak keeps its height
    assert np.std(out - peak) < 0.8 * np.std(noisy - peak)  # and the jitter is reduced


def test_centred_smoother_holds_back_radius_samples_and_no_window_crosses_a_gap() -> None:
    s = CentredSmoother(2)
    assert s.push(np.array([0.0])) == []
    assert s.push(np.array([0.0])) == []
    assert len(s.push(np.array([0.0]))) == 1  # bounded: radius samples held back
    xs = [np.array([0.0])] * 3 + [None] + [np.array([10.0])] * 3
    out = _run(CentredSmoother(2), xs)
    assert out[3] is None
    assert [float(v[0]) for v in out[:3] if v is not None] == pytest.approx([0.0] * 3)
    assert [float(v[0]) for v in out[4:] if v is not None] == pytest.approx([10.0] * 3)
    with pytest.raises(ValueError, match="radius"):
        CentredSmoother(-1)


def _tracked(i: int, truth: np.ndarray, noise: np.ndarray) -> Tracked:
    # Each frame's crop sits elsewhere and at another scale: smoothing must happen in frame
    # pixels, not crop pixels.
    scale, tx, ty = 0.5 + 0.01 * i, 3.0 * i, -2.0 * i
    to_frame = np.array([[scale, 0.0, tx], [0.0, scale, ty]])
    pts = truth + noise
    crop = pts.copy()
    crop[:, :2] = (pts[:, :2] - [tx, ty]) / scale
    crop[:, 2] = pts[:, 2] / scale
    frame = Frame(image=np.zeros((4, 4, 3), np.uint8), index=i, t_capture=i / 25.0)
    face = FaceCrop(image=np.zeros((8, 8, 3), np.uint8), crop_to_frame=to_frame,
                    frame_index=i, t_capture=i / 25.0, landmarks=crop.astype(np.float32))
    return Tracked(frame=frame, face=face)


def _frame_points(face: FaceCrop) -> np.ndarray:
    m = face.crop_to_frame
    lm = np.asarray(face.landmarks, float)
    out = lm.copy()
    out[:, :2] = lm[:, :2] @ m[:, :2].T + m[:, 2]
    out[:, 2] = lm[:, 2] * m[0, 0]
    return out


def test_smooth_landmarks_reduces_jitter_in_frame_pixels_and_keeps_every_frame() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 200, (478, 3))
    truths = [base + np.array([2.0 * i, np.sin(i / 4.0) * 20.0, 0.0]) for i in range(40)]
    items = [_tracked(i, truths[i], rng.normal(0.0, 1.0, (478, 3))) for i in range(40)]
    items[20] = Tracked(frame=items[20].frame, face=None)  # a frame without a face
    out = list(smooth_landmarks(iter(items), radius=3))
    assert [o.frame.index for o in out] == list(range(40))
    assert out[20].face is None
    raw = [np.abs(_frame_points(items[i].face) - truths[i]).mean()  # type: ignore[arg-type]
           for i in range(40) if i != 20]
    smooth = [np.abs(_frame_points(out[i].face) - truths[i]).mean()  # type: ignore[arg-type]
              for i in range(40) if i != 20]
    assert np.mean(smooth) < 0.75 * np.mean(raw)
    assert out[5].face is not None and out[5].face.crop_to_frame is items[5].face.crop_to_frame
    assert list(smooth_landmarks(iter(items), radius=0)) == items  # 0: passed through


def test_animate_lookahead_flag_setting_and_range(tmp_path) -> None:
    from calibrate.errors import InputError
    from live.cli.animate import config_from_args
    from live.cli.main import build_parser
    from live.jobs.animate import AnimateConfig

    base = ["animate", "--source-image", "p.jpg", "--driving-video", "d.mp4", "-o",
            str(tmp_path / "o.mp4")]
    assert config_from_args(build_parser().parse_args(base)).lookahead == 3
    assert config_from_args(build_parser().parse_args([*base, "--lookahead", "0"])).lookahead == 0
    toml = tmp_path / "a.toml"
    toml.write_text("lookahead = 5\n")
    cfg = config_from_args(build_parser().parse_args([*base, "--config", str(toml)]))
    assert cfg.lookahead == 5
    with pytest.raises(InputError, match="lookahead"):
        AnimateConfig(source_image=tmp_path / "p.jpg", driving_video=tmp_path / "d.mp4",
                      output=tmp_path / "o.mp4", lookahead=-1)
