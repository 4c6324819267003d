"""Output files: the containers the video writer makes (mp4, mov, mkv, webm, GIF), the H.264
level, codec and container failures as one error line, outputs that would replace an input or
an existing file, and the temporary files of killed runs. Self-contained (no ../shared)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from _media import write_wav

import live.io.video as video
from calibrate.errors import InputError
from live.cli.main import main
from live.io.video import (
    OUTPUT_FORMATS,
    VideoWriter,
    check_output,
    h264_level,
    probe_video,
    remove_stale_partials,
)

REPO = Path(__file__).resolve().parents[1]
W, H = 96, 64
FPS = 25
COLOURS = ((220, 30, 30), (30, 200, 40), (30, 40, 210), (240, 200, 20))


def frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Four coloured quadrants and a white bar that moves with ``i``."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = COLOURS[0]
    img[: h // 2, w // 2:] = COLOURS[1]
    img[h // 2:, : w // 2] = COLOURS[2]
    img[h // 2:, w // 2:] = COLOURS[3]
    x = (i * 2) % (w - 8)
    img[:, x:x + 8] = 255
    return img


def write(path: Path, n: int = 25, fps: float = FPS, **options: object) -> None:
    with VideoWriter(path, fps=fps, size=(W, H), **options) as writer:  # type: ignore[arg-type]
        for i in range(n):
            writer.write(frame(i))


def codecs(path: Path) -> tuple[str, str | None]:
    with av.open(str(path)) as c:
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        return c.streams.video[0].codec_context.name, audio


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return sum(f.samples for f in c.decode(stream)) / stream.codec_context.sample_rate


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def demo(out: Path, *extra: str) -> int:
    return main(["demo", "-o", str(out), "--seconds", "0.3", "--size", "64", "--no-preview",
                 *extra])


# ------------------------------------------------------------------------------- containers


@pytest.mark.parametrize(("suffix", "video_codec", "audio_codec"), [
    (".mp4", "h264", "aac"), (".mov", "h264", "aac"), (".mkv", "h264", "aac"),
    (".webm", "vp9", "opus")])
def test_each_container_keeps_frames_rate_and_sound(tmp_path: Path, suffix: str,
                                                    video_codec: str, audio_codec: str) -> None:
    wav = tmp_path / "tone.wav"
    write_wav(wav, seconds=3.0)
    out = tmp_path / f"clip{suffix}"
    write(out, 50, audio_from=wav)  # 2 s of video, 3 s of sound
    assert codecs(out) == (video_codec, audio_codec)
    info = probe_video(out)
    assert info.fps_fraction == FPS and info.size == (W, H)
    frames = decode(out)
    assert len(frames) == 50
    for i in (0, 17, 49):  # colours and the moving bar come back
        assert np.abs(frames[i].astype(int) - frame(i)).mean() < 6, i
    assert audio_seconds(out) == pytest.approx(2.0, abs=0.1)  # trimmed to the video
    assert names(tmp_path) == sorted([out.name, wav.name])  # no temporary files left


def test_gif_keeps_the_rate_and_the_colours_and_notes_the_missing_sound(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wav = tmp_path / "tone.wav"
    write_wav(wav, seconds=3.0)
    out = tmp_path / "clip.gif"
    with caplog.at_level(logging.WARNING, logger="live.io.video"):
        write(out, 50, audio_from=wav)
    assert "an animated GIF has no sound" in caplog.text and "tone.wav" in caplog.text
    with av.open(str(out)) as c:
        assert c.format.name == "gif" and not c.streams.audio
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        seconds = c.duration / 1_000_000
    assert len(frames) == 50 and seconds == pytest.approx(50 / FPS, abs=0.02)  # 25 fps kept
    for i in (0, 17, 49):
        # the palette comes from the video: its flat colours are exact, the bar is there
        got = frames[i].astype(int)
        assert np.abs(got - frame(i)).mean() < 4, i
        for k, (y, x) in enumerate(((8, 4), (8, W - 4), (H - 8, 4), (H - 8, W - 4))):
            if not (i * 2) % (W - 8) <= x < (i * 2) % (W - 8) + 8:
                assert np.abs(got[y, x] - COLOURS[k]).max() <= 6, (i, k, got[y, x])
    assert names(tmp_path) == ["clip.gif", "tone.wav"]  # the spool file is gone


def test_gif_faster_than_50_fps_keeps_every_second_frame(tmp_path: Path) -> None:
    out = tmp_path / "fast.gif"
    write(out, 60, fps=60)
    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(video=0))
        seconds = c.duration / 1_000_000
    assert n == 30 and seconds == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", ["clip.avi", "clip.jpg", "clip"])
def test_other_extensions_are_refused_listing_what_works(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="unsupported output format") as err:
        VideoWriter(tmp_path / name, fps=25, size=(W, H))
    for suffix in OUTPUT_FORMATS:
        assert suffix in str(err.value)
    assert names(tmp_path) == []


def test_demo_writes_webm_and_gif(tmp_path: Path) -> None:
    for suffix, video_codec in ((".webm", "vp9"), (".gif", "gif")):
        out = tmp_path / f"d{suffix}"
        assert demo(out) == 0
        assert codecs(out) == (video_codec, None)
        assert len(decode(out)) == 9  # 0.3 s at 30 fps
    assert names(tmp_path) == ["d.gif", "d.webm"]


# ------------------------------------------------------------------------------ H.264 level


@pytest.mark.parametrize(("size", "fps", "level"), [
    ((640, 360), 25, 30), ((512, 512), 30, 30), ((1080, 1920), 60, 42),
    ((1920, 1440), 30, 50), ((4096, 2160), 30, 52), ((8192, 4320), 30, 60),
    ((6000, 8000), 30, None), ((8000, 6000), 1, None)])
def test_h264_level_is_the_lowest_that_holds_size_and_rate(size: tuple[int, int], fps: float,
                                                           level: int | None) -> None:
    assert h264_level(*size, fps) == level


def test_the_written_stream_declares_the_level_of_its_size_and_rate(tmp_path: Path) -> None:
    out = tmp_path / "tall.mp4"
    with VideoWriter(out, fps=30, size=(1440, 1920), preset="ultrafast") as writer:
        for i in range(3):
            writer.write(np.full((1920, 1440, 3), 40 * i, np.uint8))
    with av.open(str(out)) as c:
        declared = c.streams.video[0].codec_context.level
    assert declared == h264_level(1440, 1920, 30) == 50  # 5.0: 10800 macroblocks a frame


def test_a_frame_too_large_for_h264_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"too large for H\.264.*max-size"):
        VideoWriter(tmp_path / "huge.mp4", fps=30, size=(6000, 8000))
    assert names(tmp_path) == []


# ---------------------------------------------------------------- codec and container failures


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output is written through a link to /dev/full: it fails like a full disk."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    reserve = video._reserve_temp

    def to_dev_full(path: Path, parent: Path) -> Path:
        temp: Path = reserve(path, parent)
        temp.unlink()
        temp.symlink_to("/dev/full")
        return temp

    monkeypatch.setattr(video, "_reserve_temp", to_dev_full)


@pytest.mark.parametrize("suffix", list(OUTPUT_FORMATS))
@pytest.mark.usefixtures("full_disk")
def test_a_codec_or_container_failure_is_one_error_line(
        tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"demo{suffix}"
    assert demo(out) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mimicam: error:")]
    assert len(errors) == 1, err
    assert str(out) in errors[0] and "No space left on device" in errors[0]
    assert "Traceback" not in err
    assert names(tmp_path) == []  # neither the output nor a temporary file


# ------------------------------------------------------------------ outputs that replace files


def test_an_output_that_is_an_input_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.mp4"
    write(clip)
    before = clip.read_bytes()
    (tmp_path / "link.mp4").symlink_to(clip)
    portrait = tmp_path / "missing.png"  # never read: the output is checked first
    for out in (clip, tmp_path / "." / "clip.mp4", tmp_path / "link.mp4"):
        for extra in ([], ["--overwrite"]):
            code = main(["animate", "--source-image", str(portrait), "--driving-video",
                         str(clip), "-o", str(out), *extra])
            err = capsys.readouterr().err
            assert code == 2 and "would replace an input" in err and "driving video" in err, err
            assert "missing.png" not in err.replace(str(out), "")
    # the audio file and the portrait count too
    code = main(["animate", "--source-image", str(portrait), "--driving-video",
                 str(tmp_path / "other.mp4"), "--audio", str(clip), "-o", str(clip), "-y"])
    assert code == 2 and "the audio file" in capsys.readouterr().err
    gif_portrait = tmp_path / "p.gif"
    gif_portrait.write_bytes(b"GIF89a")
    code = main(["animate", "--source-image", str(gif_portrait), "--driving-video", str(clip),
                 "-o", str(gif_portrait), "-y"])
    assert code == 2 and "the portrait" in capsys.readouterr().err
    # demo and live alike
    assert main(["demo", "--driving", str(clip), "-o", str(clip), "-y", "--no-preview"]) == 2
    assert "would replace an input" in capsys.readouterr().err
    assert main(["live", "--portrait", str(portrait), "--driver", str(clip), "--record",
                 str(clip), "-y", "--no-vcam", "--no-preview"]) == 2
    assert "would replace an input" in capsys.readouterr().err
    assert clip.read_bytes() == before
    assert names(tmp_path) == ["clip.mp4", "link.mp4", "p.gif"]


def test_a_stats_file_is_checked_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # live writes --stats at the end of the run: a folder that is not there ended a whole
    # session in a traceback, and --stats on the portrait replaced the picture with JSON
    clip = tmp_path / "clip.mp4"
    write(clip)
    portrait = tmp_path / "me.png"
    portrait.write_bytes(b"my picture")
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    cases = [
        (tmp_path / "gone" / "s.json", "cannot write the stats file", "gone does not exist"),
        (tmp_path, "cannot write the stats file", "a directory"),
        (portrait, "the stats file would replace an input", "the portrait"),
        (clip, "the stats file would replace an input", "the driver video"),
        (kept, "the stats file already exists", "--overwrite (-y)"),
    ]
    for stats, message, detail in cases:
        code = main(["live", "--portrait", str(portrait), "--driver", str(clip), "--stats",
                     str(stats), "--no-vcam", "--no-preview"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and detail in err, (stats, err)
        assert "Traceback" not in err and "cannot read the portrait" not in err
    assert portrait.read_bytes() == b"my picture" and kept.read_text() == "{}"
    # the recording counts as an input of the stats file too
    code = main(["live", "--portrait", str(portrait), "--driver", str(clip), "--record",
                 str(tmp_path / "r.mp4"), "--stats", str(tmp_path / "r.mp4"), "--no-vcam",
                 "--no-preview"])
    assert code == 2 and "the recording" in capsys.readouterr().err
    assert video.check_output_file(kept, what="stats file", overwrite=True) == kept
    assert names(tmp_path) == ["clip.mp4", "kept.json", "me.png"]


def test_a_system_error_is_one_line_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # whatever the checks beforehand, the system can still refuse (a full disk)
    import live.cli.demo as demo_cli

    def full_disk(args: object) -> int:
        raise OSError(28, "No space left on device", "out.mp4")

    monkeypatch.setattr(demo_cli, "run", full_disk)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "mimicam: error: [Errno 28] No space left on device: 'out.mp4'"


def test_an_existing_output_is_kept_unless_overwrite(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"precious")
    code = main(["animate", "--source-image", str(tmp_path / "p.png"), "--driving-video",
                 str(tmp_path / "d.mp4"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--overwrite (-y)" in err
    assert demo(out) == 2 and "already exists" in capsys.readouterr().err
    assert main(["live", "--portrait", str(tmp_path / "p.png"), "--record", str(out),
                 "--no-vcam", "--no-preview"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert demo(out, "-y") == 0
    assert probe_video(out).frame_count == 9
    with pytest.raises(InputError, match="already exists"):
        check_output(out)
    assert check_output(out, overwrite=True).video == "h264"
    assert names(tmp_path) == ["mine.mp4"]


def test_the_demo_replaces_its_own_default_output(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from live.jobs.demo import DEFAULT_OUTPUT

    monkeypatch.chdir(tmp_path)
    args = ["demo", "--seconds", "0.3", "--size", "64", "--no-preview"]
    assert main(args) == 0
    first = (tmp_path / DEFAULT_OUTPUT).stat().st_ino
    assert main(args) == 0
    assert (tmp_path / DEFAULT_OUTPUT).stat().st_ino != first  # a new file took its name
    assert names(tmp_path) == [DEFAULT_OUTPUT]


def test_a_writer_told_not_to_overwrite_keeps_a_file_that_appeared_meanwhile(
        tmp_path: Path) -> None:
    out = tmp_path / "race.mp4"
    writer = VideoWriter(out, fps=25, size=(W, H), overwrite=False)
    writer.write(frame(0))
    out.write_bytes(b"someone else's")
    with pytest.raises(InputError, match="already exists"):
        writer.close()
    assert out.read_bytes() == b"someone else's"
    assert names(tmp_path) == ["race.mp4"]


# --------------------------------------------------------------- partial files of killed runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partial_files_of_killed_runs_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [f".clip.mp4.partial-{dead}-0123abcd.mp4",
             f".a.gif.partial-{dead}-0123abcd.gif.spool.mkv",
             ".old.mp4.partial-fedcba98.mp4"]  # an older version's name, unchanged for an hour
    kept = [f".other.mp4.partial-{os.getpid()}-89abcdef.mp4",  # a writer still at work
            ".new.mp4.partial-76543210.mp4",  # an older version's name, written just now
            f".stats.json.partial-{dead}",  # not a video writer's
            f"notes.partial-{dead}-0123abcd.txt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(tmp_path / stale[2], (hour_ago, hour_ago))
    write(tmp_path / "clip.mp4")
    assert names(tmp_path) == sorted(["clip.mp4", *kept])
    assert remove_stale_partials(tmp_path) == []


def test_a_killed_demo_leaves_a_partial_file_that_the_next_run_removes(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "live.cli", "demo", "-o", str(out), "--seconds", "20",
         "--size", "128", "--no-preview"], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        partial: list[Path] = []
        while time.monotonic() < deadline and not any(p.stat().st_size for p in partial):
            partial = list(tmp_path.glob(".demo.mp4.partial-*"))
            time.sleep(0.05)
        assert partial, "the demo never started writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert [p.exists() for p in partial] == [True]  # killed: nothing cleaned up
    assert demo(out) == 0
    assert names(tmp_path) == ["demo.mp4"]
