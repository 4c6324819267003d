"""``mimicam animate`` with the FOMM engine, on the tiny parity weights (random numbers from
../shared/reference, 128 px): shapes and flow through the real exported graphs, not looks."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from live.cli.main import main
from live.io.video import VideoReader, probe_video
from live.jobs.animate import AnimateConfig, AnimateReport, find_portrait_faces, run_animate
from live.jobs.demo import load_image

pytestmark = [pytest.mark.slow, pytest.mark.fixtures]  # exporting the graphs takes ~10-30 s here


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """The tiny parity checkpoint exported as a model directory (as ``mimicam export`` does)."""
    from model_export.export import export_fomm
    from model_export.fomm import FommConfig

    doc = json.loads((reference_dir / "parity_tiny_config.json").read_text())
    config = FommConfig.from_yaml_dict(doc["paddlegan_layout"])
    out = tmp_path_factory.mktemp("fomm_tiny") / "model"
    export_fomm(reference_dir / "parity_tiny_paddle.pdparams", out, config=config,
                image_size=128, onnx=False)
    return out


def animate_fomm(model_dir: Path, source: Path, driving: Path, out: Path,
                 **options: Any) -> AnimateReport:
    """``run_animate`` with the fomm engine on ``model_dir`` (no progress bar)."""
    return run_animate(AnimateConfig(source_image=source, driving_video=driving, output=out,
                                     engine="fomm", model_dir=model_dir, **options),
                       progress=False)


def frames_of(path: Path) -> np.ndarray:
    with VideoReader(path) as reader:
        return np.stack([f.image for f in reader]).astype(np.int16)


def test_fomm_single_face_keeps_frames_fps_audio(tmp_path: Path, tiny_model_dir: Path,
                                                 portraits_dir: Path, driving_dir: Path) -> None:
    out = tmp_path / "fomm.mp4"
    portrait = portraits_dir / "lp_s42.jpg"
    report = animate_fomm(tiny_model_dir, portrait, driving_dir / "lp_d11.mp4", out,
                          max_frames=12)
    assert report.engine == "fomm" and report.faces == 1 and report.frames == 12
    assert {p.name for p in tmp_path.iterdir()} == {"fomm.mp4"}
    info = probe_video(out)
    assert info.frame_count == 12 and info.fps_fraction == Fraction(25)
    assert info.size == (512, 512) and info.has_audio
    assert info.audio_duration == pytest.approx(12 / 25, abs=0.1)
    frames = frames_of(out)
    source = load_image(portrait).astype(np.int16)
    # the network's output replaces the face crop (random weights: not the portrait) ...
    assert np.abs(frames[0] - source)[128:384, 128:384].mean() > 5
    # ... and it follows the driving keypoints from frame to frame
    assert max(float(np.abs(f - frames[0]).mean()) for f in frames[1:]) > 0.05
    # the picture's corners lie outside the face crop's soft edge: untouched
    assert np.abs(frames[:, :8, :8] - source[:8, :8]).mean() < 2.0  # codec noise only


def test_fomm_multi_face_best_frame_and_absolute(tmp_path: Path, tiny_model_dir: Path,
                                                 portraits_dir: Path, driving_dir: Path) -> None:
    painting = portraits_dir / "multi_pg_fom_multi_person.jpg"
    out = tmp_path / "multi.mp4"
    report = animate_fomm(tiny_model_dir, painting, driving_dir / "tps_driving.mp4", out,
                          multi_face=True, best_frame=True, max_frames=6)
    image = load_image(painting)
    landmarks = find_portrait_faces(image, multi_face=True)
    assert report.faces == len(landmarks) >= 4
    assert report.best_frame is not None and 0 <= report.best_frame < 6
    frames = frames_of(out)
    assert frames.shape == (6, *image.shape)
    src = image.astype(np.int16)
    away = np.ones(image.shape[:2], bool)
    for lm in landmarks:
        x0, y0 = lm[:, :2].min(axis=0).astype(int)
        x1, y1 = lm[:, :2].max(axis=0).astype(int)
        # every face region is replaced by its own network output
        assert np.abs(frames[0, y0:y1, x0:x1] - src[y0:y1, x0:x1]).mean() > 3
        s = max(x1 - x0, y1 - y0)
        away[max(0, y0 - s):y1 + s, max(0, x0 - s):x1 + s] = False
    assert np.abs(frames[:, away] - src[away]).mean() < 2.0
    # absolute keypoints (fomm only) run through the same path
    absolute = animate_fomm(tiny_model_dir, painting, driving_dir / "tps_driving.mp4",
                            tmp_path / "abs.mp4", relative=False, max_frames=3,
                            keep_audio=False)
    assert absolute.frames == 3 and absolute.faces == 1 and absolute.audio is None


def test_fomm_cli_with_model_dir(tmp_path: Path, tiny_model_dir: Path, portraits_dir: Path,
                                 driving_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.mp4"
    code = main(["-q", "animate", "--source-image", str(portraits_dir / "pg_fom_source_image.png"),
                 "--driving-video", str(driving_dir / "lp_d0.mp4"), "-o", str(out),
                 "--model-dir", str(tiny_model_dir), "--max-frames", "5", "--absolute"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"mimicam animate: wrote {out}: 5 frames at 25 fps (no audio)")
    assert "1 face (fomm)" in line
    assert probe_video(out).size == (256, 256)
