"""``mimicam demo`` end to end: the file, its frames and codec, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from live.cli.main import main
from live.io.video import VideoReader, probe_video


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["demo", *args, "--no-preview"])
    return code, capsys.readouterr().err


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-9))


@pytest.fixture(scope="module")
def scripted_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    assert main(["demo", "--output", str(out), "--seconds", "2", "--no-preview"]) == 0
    return out


def test_scripted_demo_writes_a_browser_friendly_mp4(scripted_demo: Path) -> None:
    assert scripted_demo.exists()
    info = probe_video(scripted_demo)
    assert info.frame_count == 60 and info.fps_fraction == 30
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.size == (512, 512)
    assert not info.has_audio
    assert [p.name for p in scripted_demo.parent.iterdir()] == ["demo.mp4"]  # no leftovers


def test_scripted_demo_animates_the_face_and_keeps_the_rest(scripted_demo: Path) -> None:
    from live.jobs.demo import builtin_portrait, portrait_face_crop

    crop = portrait_face_crop(builtin_portrait(), size=512, name="astronaut")
    assert crop.landmarks is not None
    x0, y0 = crop.landmarks[:, :2].min(axis=0).astype(int)
    x1, y1 = crop.landmarks[:, :2].max(axis=0).astype(int)
    with VideoReader(scripted_demo) as reader:
        frames = [f.image for f in reader]
    assert len(frames) == 60
    first = frames[0]
    # At neutral the animated portrait is the portrait itself (up to H.264 at crf 18).
    assert psnr(first, crop.image) > 30
    face_change = [np.abs(f[y0:y1, x0:x1].astype(int) - first[y0:y1, x0:x1]).mean()
                   for f in frames]
    corners = [np.concatenate([f[:40, :40], f[:40, -40:], f[-40:, :40], f[-40:, -40:]])
               for f in frames]
    corner_change = [np.abs(c.astype(int) - corners[0]).mean() for c in corners]
    assert max(face_change) > 8.0  # the face moves (blink, mouth, turn, ...)
    assert max(corner_change) < 2.0  # the image border does not
    assert sum(c > 3.0 for c in face_change) > 20  # and it moves in many frames


def test_bad_portrait_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a jpeg")
    out = tmp_path / "out.mp4"
    code, err = run_cli(capsys, "--output", str(out), "--portrait", str(bad))
    assert code == 2
    assert "holiday.jpg" in err and "cannot read the portrait" in err
    assert err.count("\n") == 1  # one line
    assert list(tmp_path.iterdir()) == [bad]  # no output, no temporary file


def test_portrait_without_a_face(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    flat = tmp_path / "wall.png"
    gradient = np.tile(np.linspace(60, 200, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    cv2.imwrite(str(flat), gradient)
    code, err = run_cli(capsys, "--output", str(tmp_path / "o.mp4"), "--portrait", str(flat))
    assert code == 2
    assert "wall.png" in err and "no face" in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.fixtures
def test_portrait_with_several_faces(tmp_path: Path, portraits_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    group = portraits_dir / "multi_pg_fom_multi_person.jpg"
    code, err = run_cli(capsys, "--output", str(tmp_path / "o.mp4"), "--portrait", str(group))
    assert code == 2
    assert "multi_pg_fom_multi_person.jpg" in err
    assert "faces" in err and "--multi-face" in err
    n = int(err.split("found ")[1].split(" faces")[0])
    assert n >= 2
    assert list(tmp_path.iterdir()) == []


def test_unreadable_driving_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "me.mp4"
    bad.write_text("not a video")
    code, err = run_cli(capsys, "--output", str(tmp_path / "o.mp4"), "--driving", str(bad))
    assert code == 2 and "me.mp4" in err and "cannot read the video file" in err
    assert list(tmp_path.iterdir()) == [bad]


def test_output_in_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nope" / "demo.mp4"
    code, err = run_cli(capsys, "--output", str(out))
    assert code == 2 and "does not exist" in err and str(out) in err


@pytest.mark.fixtures
def test_portrait_option_with_a_real_photo(tmp_path: Path, portraits_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s42.mp4"
    code, err = run_cli(capsys, "--output", str(out), "--portrait",
                        str(portraits_dir / "lp_s42.jpg"), "--seconds", "1", "--size", "256")
    assert code == 0, err
    info = probe_video(out)
    assert info.size == (256, 256) and info.frame_count == 30
    assert "30 frames" in err and str(out) in err


@pytest.mark.fixtures
def test_a_tight_photo_gets_a_crop_inside_it(portraits_dir: Path) -> None:
    """lp_s42's face crop for the engine reaches past the photo's bottom edge; the demo's
    output is its crop, so the demo keeps its square inside the photo (no edge repeated
    as streaks) and the face in it."""
    from live.face.portraits import find_portrait, load_image
    from live.geometry import picture_box
    from live.jobs.demo import portrait_face_crop

    image = load_image(portraits_dir / "lp_s42.jpg")
    h, w = image.shape[:2]
    found = find_portrait(image, 256)  # the engine's crop for live and animate
    assert picture_box(found.crop.crop_to_frame, (w, h), 256)[3] < 250
    crop = portrait_face_crop(image, size=256, name="lp_s42.jpg")
    m = crop.crop_to_frame
    left, top = m[0, 2] - 0.5 * m[0, 0], m[1, 2] - 0.5 * m[1, 1]
    right, bottom = m[0, 2] + 255.5 * m[0, 0], m[1, 2] + 255.5 * m[1, 1]
    assert left >= -0.5 - 1e-6 and top >= -0.5 - 1e-6
    assert right <= w - 0.5 + 1e-6 and bottom <= h - 0.5 + 1e-6
    assert crop.landmarks is not None
    assert crop.landmarks[:, :2].min() > 0 and crop.landmarks[:, :2].max() < 256


@pytest.mark.slow
@pytest.mark.fixtures
def test_driving_video_keeps_fps_and_audio(tmp_path: Path, driving_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    driving = driving_dir / "tps_driving.mp4"  # 25 fps, audible AAC
    out = tmp_path / "driven.mp4"
    code, err = run_cli(capsys, "--output", str(out), "--driving", str(driving),
                        "--seconds", "2", "--size", "256")
    assert code == 0, err
    info = probe_video(out)
    assert info.fps_fraction == 25 and info.frame_count == 50
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.has_audio and info.audio_codec == "aac"
    assert info.audio_duration == pytest.approx(2.0, abs=0.05)
    assert "with audio" in err and "0 without a face" in err
    with VideoReader(out) as reader:
        frames = [f.image for f in reader]
    change = max(np.abs(f.astype(int) - frames[0]).mean() for f in frames)
    assert change > 1.0  # the talking driver moves the portrait


def _driving_with_a_gap(src: Path, out: Path, *, face: bool = True) -> None:
    """20 frames of ``src``, 15 black frames (no face), 15 more frames of ``src``."""
    from live.io.video import VideoWriter

    with VideoReader(src, resize=(256, 256)) as reader, \
            VideoWriter(out, fps=25, size=(256, 256)) as writer:
        for frame in reader:
            if frame.index >= 50:
                break
            blank = not face or 20 <= frame.index < 35
            writer.write(np.zeros_like(frame.image) if blank else frame.image)


@pytest.mark.slow
@pytest.mark.fixtures
def test_lost_driving_face_holds_and_never_crashes(tmp_path: Path, driving_dir: Path) -> None:
    from live.jobs.demo import run_demo

    driving = tmp_path / "gap.mp4"
    _driving_with_a_gap(driving_dir / "lp_d0.mp4", driving)
    result = run_demo(tmp_path / "out.mp4", driving=driving, size=256, preview=False)
    assert result.frames == 50
    assert 15 <= result.lost_frames <= 17  # the black frames (+ re-acquiring)
    assert not result.audio
    assert probe_video(result.output).frame_count == 50


@pytest.mark.fixtures
def test_driving_video_without_any_face(tmp_path: Path, driving_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    driving = tmp_path / "black.mp4"
    _driving_with_a_gap(driving_dir / "lp_d0.mp4", driving, face=False)
    out = tmp_path / "out.mp4"
    code, err = run_cli(capsys, "--output", str(out), "--driving", str(driving), "--size", "128")
    assert code == 2 and "black.mp4" in err and "no face" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black.mp4"]


def test_unreachable_display_does_not_crash_the_preview(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenCV's Qt window aborts the process on a dead display; the demo must carry on."""
    from live.jobs.demo import run_demo

    monkeypatch.setenv("DISPLAY", ":97")  # announced, but no X server there
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level("WARNING", logger="live.jobs.demo"):
        result = run_demo(tmp_path / "p.mp4", seconds=0.5, size=256, preview=True)
    assert result.frames == 15 and result.output.exists()
    assert "no preview window" in caplog.text
