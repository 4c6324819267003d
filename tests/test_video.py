"""Streaming video I/O: probe, VideoReader (bounded queue, errors), VideoWriter (H.264, audio,
atomic output)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _media import write_wav

from calibrate.errors import InputError
from live.io.video import VideoReader, VideoWriter, probe_video, progress

W, H = 128, 96


def synthetic_frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A frame with a bar that moves with ``i`` (so frames differ) on a coloured ground."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (40, 90, 160)
    x = (i * 3) % (w - 16)
    img[:, x:x + 16] = (250, 220, 30)
    return img


def write_clip(path: Path, n: int, fps: float | Fraction, audio_from: Path | None = None,
               size: tuple[int, int] = (W, H)) -> None:
    with VideoWriter(path, fps=fps, size=size, audio_from=audio_from) as writer:
        for i in range(n):
            writer.write(synthetic_frame(i, *size))


def audio_peak(path: Path) -> float:
    with av.open(str(path)) as c:
        return max(float(np.abs(f.to_ndarray()).max()) for f in c.decode(c.streams.audio[0]))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.fixture(scope="module")
def talking_video(driving_dir: Path) -> Path:
    """A driving video with an audible AAC track."""
    path = driving_dir / "lp_d11.mp4"
    if not path.exists():
        pytest.skip(f"needs {path.name} in the shared fixtures")
    return path


# ---------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001)], ids=["25", "29.97"])
@pytest.mark.fixtures
def test_round_trip_with_copied_audio(tmp_path: Path, talking_video: Path,
                                      fps: Fraction) -> None:
    out = tmp_path / "clip.mp4"
    n = 40
    write_clip(out, n, fps, audio_from=talking_video)

    info = probe_video(out)
    assert info.frame_count == n
    assert info.fps_fraction == fps
    assert info.fps == pytest.approx(float(fps))
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.size == (W, H)
    assert info.has_audio and info.audio_codec == "aac" and info.audio_rate == 44100
    video_seconds = n / float(fps)
    assert info.duration == pytest.approx(video_seconds, abs=1e-3)
    # Copied AAC packets are ~23 ms long: the audio ends within one packet of the video.
    assert info.audio_duration == pytest.approx(video_seconds, abs=0.03)
    assert audio_peak(out) > 0.05  # the audible track really came along
    assert leftovers(tmp_path) == []
    # faststart: the index (moov) precedes the media data so browsers can start playing.
    head = out.read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < max(head.find(b"mdat"), 4096)

    with VideoReader(out) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == list(range(n))
    assert frames[-1].pts == pytest.approx((n - 1) / float(fps), abs=1e-3)
    for i in (0, n // 2, n - 1):
        diff = np.abs(frames[i].image.astype(int) - synthetic_frame(i).astype(int)).mean()
        assert diff < 6, f"frame {i} decoded {diff:.1f} levels away from what was written"


def test_without_audio(tmp_path: Path) -> None:
    out = tmp_path / "silent.mp4"
    write_clip(out, 12, 30)
    info = probe_video(out)
    assert not info.has_audio and info.audio_codec is None
    assert info.frame_count == 12 and info.fps_fraction == 30


def test_non_aac_audio_is_transcoded_and_trimmed(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_wav(wav, seconds=5.0)
    out = tmp_path / "tone.mp4"
    write_clip(out, 50, 25, audio_from=wav)  # 2 s of video, 5 s of audio
    info = probe_video(out)
    assert info.audio_codec == "aac" and info.audio_rate == 22050
    assert info.audio_duration == pytest.approx(2.0, abs=0.03)
    assert audio_peak(out) > 0.2


def test_audio_shorter_than_video_is_kept_whole(tmp_path: Path) -> None:
    wav = tmp_path / "short.wav"
    write_wav(wav, seconds=0.5)
    out = tmp_path / "short.mp4"
    write_clip(out, 50, 25, audio_from=wav)
    info = probe_video(out)
    assert info.frame_count == 50
    assert info.audio_duration == pytest.approx(0.5, abs=0.05)


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, fps=25, size=(33, 31)) as writer:
        assert writer.encoded_size == (34, 32)
        for i in range(3):
            writer.write(synthetic_frame(i, 33, 31))
    info = probe_video(out)
    assert (info.width, info.height) == (34, 32)


def test_output_respects_umask_not_private(tmp_path: Path) -> None:
    out = tmp_path / "perm.mp4"
    write_clip(out, 2, 25)
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_wrong_frame_size_is_rejected(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "x.mp4", fps=25, size=(W, H)) as writer:
        writer.write(synthetic_frame(0))
        with pytest.raises(ValueError, match="expected size 128x96"):
            writer.write(synthetic_frame(0, 64, 64))


# ------------------------------------------------------------------------- atomic output


def test_exception_inside_with_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"), \
            VideoWriter(out, fps=25, size=(W, H)) as writer:
        for i in range(5):
            writer.write(synthetic_frame(i))
        assert writer.temp_path.exists() and writer.temp_path.parent == tmp_path
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing_and_keeps_an_older_file(tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"an older result")
    writer = VideoWriter(out, fps=25, size=(W, H))
    writer.write(synthetic_frame(0))
    writer.abort()
    writer.abort()
    writer.close()  # after abort: nothing to do
    assert out.read_bytes() == b"an older result"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["missing", "file"])
def test_unwritable_folder_fails_at_open(tmp_path: Path, where: str) -> None:
    if where == "missing":
        out = tmp_path / "no" / "such" / "dir" / "out.mp4"
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        out = blocker / "out.mp4"
    with pytest.raises(InputError, match="cannot write the output video") as err:
        VideoWriter(out, fps=25, size=(W, H))
    assert str(out) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["a_file"] if where == "file" else [])


@pytest.mark.fixtures
def test_bad_audio_source_fails_at_open(tmp_path: Path, driving_dir: Path) -> None:
    text = tmp_path / "notes.m4a"
    text.write_text("not audio")
    with pytest.raises(InputError, match=r"notes\.m4a"):
        VideoWriter(tmp_path / "a.mp4", fps=25, size=(W, H), audio_from=text)
    silent = driving_dir / "lp_d0.mp4"  # a real video without an audio track
    with pytest.raises(InputError, match="no audio stream"):
        VideoWriter(tmp_path / "b.mp4", fps=25, size=(W, H), audio_from=silent)
    assert list(tmp_path.iterdir()) == [text]


# ------------------------------------------------------------------------------- bad input


@pytest.mark.fixtures
def test_truncated_video_raises_with_frame_index(tmp_path: Path, driving_dir: Path) -> None:
    # tps_driving.mp4 keeps its index at the front, so half of it still opens.
    src = driving_dir / "tps_driving.mp4"
    cut = tmp_path / "cut.mp4"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    probe_video(cut)  # the header is intact
    got = 0
    with pytest.raises(InputError, match=r"cut\.mp4: corrupt or truncated video at frame \d+"), \
            VideoReader(cut) as reader:
        for _ in reader:
            got += 1
    assert 0 < got < 169


@pytest.mark.fixtures
def test_truncated_video_on_error_stop_ends_quietly(tmp_path: Path, driving_dir: Path) -> None:
    data = (driving_dir / "tps_driving.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(cut, on_error="stop") as reader:
        n = sum(1 for _ in reader)
    assert 0 < n < 169


@pytest.mark.fixtures
def test_truncated_index_at_end_fails_at_open(tmp_path: Path, talking_video: Path) -> None:
    data = talking_video.read_bytes()  # index (moov) at the end: the first half has none
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"half\.mp4: cannot read the video file"):
        probe_video(cut)
    with pytest.raises(InputError, match=r"half\.mp4"):
        VideoReader(cut)


@pytest.mark.fixtures
def test_not_a_video(tmp_path: Path, portraits_dir: Path) -> None:
    text = tmp_path / "readme.mp4"
    text.write_text("this is text, not a video\n")
    with pytest.raises(InputError, match=r"readme\.mp4: cannot read the video file"):
        probe_video(text)
    with pytest.raises(InputError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="still image"):
        probe_video(portraits_dir / "lp_s42.jpg")
    wav = tmp_path / "tone.wav"
    write_wav(wav, 0.2)
    with pytest.raises(InputError, match="no video stream"):
        VideoReader(wav)


# ------------------------------------------------------------------------------ the reader


@pytest.mark.fixtures
def test_probe_fixture(talking_video: Path) -> None:
    info = probe_video(talking_video)
    assert info.size == (512, 512)
    assert info.frame_count == 225 and info.fps_fraction == 25
    assert info.duration == pytest.approx(9.0, abs=0.05)
    assert info.has_audio and info.audio_codec == "aac"


@pytest.mark.fixtures
def test_reader_queue_is_bounded_with_a_slow_consumer(driving_dir: Path) -> None:
    max_queue = 3
    with VideoReader(driving_dir / "lp_d0.mp4", max_queue=max_queue) as reader:
        frames = iter(reader)  # starts the decoder; nothing is consumed yet
        deadline = time.monotonic() + 30
        while reader.frames_decoded < max_queue + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # every chance to run further ahead: it must not
        # The queue is full and the decoder waits with one more frame: nothing dropped,
        # nothing more decoded.
        assert reader.frames_decoded == max_queue + 1
        assert reader.max_pending == max_queue + 1
        for i, frame in enumerate(frames):
            time.sleep(0.005)  # a consumer slower than the decoder
            assert frame.index == i
            assert reader.frames_decoded - reader.frames_read <= max_queue + 1
            if i == 40:
                break
        assert reader.max_pending == max_queue + 1
    assert reader.frames_read == 41


@pytest.mark.fixtures
def test_reader_stops_its_thread_when_the_consumer_stops_early(driving_dir: Path) -> None:
    def decode_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("decode-lp_d3")]

    reader = VideoReader(driving_dir / "lp_d3.mp4", max_queue=2)
    it = iter(reader)
    first = next(it)
    assert first.image.shape == (512, 512, 3) and first.image.dtype == np.uint8
    assert first.pts == 0.0
    assert decode_threads()
    reader.close()
    reader.close()
    assert decode_threads() == []
    assert reader.frames_decoded < 354  # it did not decode the whole video


@pytest.mark.fixtures
def test_reader_resize_and_order(driving_dir: Path) -> None:
    with VideoReader(driving_dir / "lp_d13.mp4", resize=(144, 256)) as reader:
        frames = []
        for frame in reader:
            frames.append(frame)
            if len(frames) == 5:
                break
    assert all(f.image.shape == (256, 144, 3) for f in frames)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    pts = [f.pts for f in frames]
    assert None not in pts and pts == sorted(set(pts))  # type: ignore[type-var]
    assert all(b.t_capture >= a.t_capture for a, b in itertools.pairwise(frames))


@pytest.mark.fixtures
def test_reader_reads_every_frame(driving_dir: Path) -> None:
    with VideoReader(driving_dir / "lp_d18.mp4") as reader:
        assert reader.info.frame_count == 216
        n = sum(1 for _ in reader)
    assert n == 216


# ---------------------------------------------------------------------------------- progress


def test_progress_is_silent_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(10, desc="demo")
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""


def test_progress_forced_shows_count_rate_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(10, desc="demo", disable=False)
    bar.update(4)
    bar.refresh()
    bar.close()
    err = capsys.readouterr().err
    assert "demo" in err and "4/10" in err and "frame/s" in err and "<" in err


@pytest.mark.fixtures
def test_dropping_the_iterator_stops_the_decoder(driving_dir: Path) -> None:
    reader = VideoReader(driving_dir / "lp_d18.mp4", max_queue=2)
    for _ in reader:
        break  # no close(), no with: the generator's end must stop the thread
    assert not [t for t in threading.enumerate() if t.name.startswith("decode-lp_d18")]
