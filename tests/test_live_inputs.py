"""What ``mimicam live`` does with bad inputs: portrait folders with unreadable and faceless
files, no usable portrait, and driver videos without a frame. Self-contained: the portrait is
scikit-image's astronaut, the driver a synthetic clip."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from calibrate.errors import InputError
from live.cli.main import main
from live.face.portraits import usable_portraits
from live.io.capture import VideoFileSource
from live.io.video import VideoWriter


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture
def folder(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """A portrait folder whose first file is broken, with a faceless picture and a text file
    named like a picture before the one good portrait."""
    portraits = tmp_path / "portraits"
    portraits.mkdir()
    (portraits / "1_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off here")
    cv2.imwrite(str(portraits / "2_wall.png"), np.full((300, 400, 3), 120, np.uint8))
    (portraits / "3_notes.png").write_text("not a picture")
    cv2.imwrite(str(portraits / "4_astronaut.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    return portraits


@pytest.fixture
def driver(tmp_path: Path) -> Path:
    path = tmp_path / "driver.mp4"
    with VideoWriter(path, fps=25, size=(160, 120)) as writer:
        for i in range(25):
            writer.write(np.full((120, 160, 3), 60 + 4 * i, np.uint8))
    return path


def live(*args: str) -> int:
    return main(["live", "--no-vcam", "--no-preview", *args])


def test_bad_files_of_a_folder_are_skipped_with_one_warning_each(
        folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="live.face.portraits"):
        good = usable_portraits(sorted(folder.iterdir()), folder=folder)
    assert [p.name for p in good] == ["4_astronaut.jpg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    broken, wall, notes = warnings
    assert "1_broken.jpg" in broken and "cannot read the portrait" in broken
    assert "2_wall.png" in wall and "no face" in wall
    assert "3_notes.png" in notes and "cannot read the portrait" in notes


def test_a_folder_without_a_usable_portrait_is_one_clear_error(
        folder: Path, capsys: pytest.CaptureFixture[str], driver: Path) -> None:
    (folder / "4_astronaut.jpg").unlink()
    with pytest.raises(InputError, match="no usable portrait") as err:
        usable_portraits(sorted(folder.iterdir()), folder=folder)
    for name in ("1_broken.jpg", "2_wall.png", "3_notes.png"):
        assert name in str(err.value)
    assert live("--portrait", str(folder), "--driver", str(driver), "--duration", "1") == 2
    lines = capsys.readouterr().err.splitlines()
    assert [ln for ln in lines if ln.startswith("mimicam: error:")] == [
        f"mimicam: error: {err.value}"]


def test_live_starts_with_the_good_portraits_and_counts_only_them(
        folder: Path, driver: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stats = tmp_path / "stats.json"
    with caplog.at_level(logging.INFO):
        code = live("--portrait", str(folder), "--driver", str(driver), "--no-loop",
                    "--duration", "20", "--stats", str(stats))
    assert code == 0
    summary = json.loads(stats.read_text())
    assert summary["portraits"] == 1 and summary["frames_sent"] == 25  # the whole driver
    assert "mesh engine, 1 portrait(s)" in caplog.text
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and r.getMessage().startswith("skipping portrait")]
    assert len(skipped) == 3


def test_a_driver_video_without_frames_is_an_error(
        tmp_path: Path, driver: Path, astronaut: np.ndarray,
        capsys: pytest.CaptureFixture[str]) -> None:
    portrait = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(portrait), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    # an mp4 whose index lists frames but whose data is cut off before the first one
    data = driver.read_bytes()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(data[:data.index(b"mdat") + 4])
    with pytest.raises(InputError, match="has no frames"):
        VideoFileSource(empty)
    assert live("--portrait", str(portrait), "--driver", str(empty)) == 2
    err = capsys.readouterr().err
    assert "empty.mp4: the driver video has no frames" in err and "Traceback" not in err


def test_a_driver_video_none_of_whose_frames_decode_is_an_error(
        tmp_path: Path, driver: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import live.io.video as video

    class NothingDecodes(video.VideoReader):
        def __iter__(self) -> Iterator[Any]:
            return iter(())

    monkeypatch.setattr(video, "VideoReader", NothingDecodes)
    portrait = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(portrait), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert live("--portrait", str(portrait), "--driver", str(driver), "--duration", "20") == 2
    err = capsys.readouterr().err
    assert "no frame of the driver video could be decoded" in err and "Traceback" not in err
