"""Streaming video files: probe, decode to :class:`~live.packets.Frame`, encode H.264 mp4.

Everything streams, so memory does not grow with the length of a video:

- :class:`VideoReader` decodes on a thread into a *bounded* queue that never drops frames
  (the decoder waits while the consumer is busy). Decode errors in the middle of a file
  (corrupt or truncated data) reach the consumer as :class:`~calibrate.errors.InputError`.
- :class:`VideoWriter` encodes H.264 yuv420p (libx264 when PyAV's FFmpeg has it), muxes the
  audio of another file as it goes (copied when it is AAC, else transcoded to AAC, trimmed
  to the video's length), moves the index to the front (``faststart``) so browsers can play
  it while downloading, and writes to a temporary name that is renamed only when complete.

PyAV is imported lazily inside the functions that need it.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from calibrate.errors import BackendError, InputError
from live.io.threads import Prefetch
from live.packets import Frame, check_rgb

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# Demuxers that read still images; a "video" opened by one of these is a picture.
_IMAGE_FORMAT_HINTS = ("image2", "_pipe", "png", "jpeg", "webp", "gif", "bmp", "tiff")
# Software encoders first; hardware ones only if they can really be opened on this machine.
_H264_ENCODERS = ("libx264", "libopenh264", "h264_nvenc", "h264_qsv", "h264_amf", "h264_vaapi",
                  "h264_videotoolbox", "h264_mf", "h264_v4l2m2m")
_COPYABLE_AUDIO = ("aac",)
_FASTSTART_SUFFIXES = (".mp4", ".m4v", ".mov")
_AUDIO_LAG = 0.25  # seconds the muxed audio trails the written video until close()


def _ffmpeg_error_type() -> type[BaseException]:
    import av

    return av.FFmpegError


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------
# probe


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`probe_video` found in a video file.

    ``fps`` is the float value of the exact rate ``fps_fraction`` (e.g. 30000/1001).
    ``frame_count`` comes from the container's index when it has one, else it is estimated
    from the duration (None when neither is known).
    """

    path: Path
    width: int
    height: int
    fps: float
    fps_fraction: Fraction
    frame_count: int | None
    duration: float | None
    codec: str
    pix_fmt: str | None
    has_audio: bool
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_duration: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height


def _open_input(path: Path, what: str = "video") -> Any:
    """``av.open(path)`` with every failure turned into an :class:`InputError`."""
    import av

    if not path.exists():
        raise InputError(f"cannot read the {what} file", path=path,
                         expected="an existing file", got="no such file")
    if path.is_dir():
        raise InputError(f"cannot read the {what} file", path=path,
                         expected="a file", got="a directory")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise InputError(f"cannot read the {what} file", path=path,
                         expected=f"{_article(what)} {what} file FFmpeg can open",
                         got=_describe(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot read the {what} file", path=path,
                         got=_describe(exc)) from None


def _stream_rate(stream: Any) -> Fraction | None:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, attr, None)
        if rate:
            return Fraction(rate)
    return None


def _seconds(value: int | None, time_base: Any) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _info_from_container(path: Path, container: Any) -> VideoInfo:
    fmt_name = container.format.name or ""
    if not container.streams.video:
        raise InputError("not a video", path=path, expected="a file with a video stream",
                         got=f"{fmt_name} with no video stream")
    if any(hint in fmt_name for hint in _IMAGE_FORMAT_HINTS):
        raise InputError("not a video", path=path, expected="a video file",
                         got=f"a still image ({fmt_name})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = _stream_rate(stream)
    if rate is None or rate <= 0:
        raise InputError("video has no usable frame rate", path=path,
                         expected="a positive frame rate", got=str(rate))
    duration = _seconds(stream.duration, stream.time_base)
    if duration is None and container.duration is not None:
        duration = container.duration / 1_000_000
    frame_count: int | None = int(stream.frames) if stream.frames else None
    if frame_count is None and duration is not None:
        frame_count = round(duration * rate)
    if not ctx.width or not ctx.height:
        raise InputError("video has no frame size", path=path,
                         expected="width and height > 0", got=f"{ctx.width}x{ctx.height}")
    audio = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        path=path,
        width=int(ctx.width),
        height=int(ctx.height),
        fps=float(rate),
        fps_fraction=rate,
        frame_count=frame_count,
        duration=duration,
        codec=ctx.name,
        pix_fmt=ctx.pix_fmt,
        has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        audio_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
        audio_duration=_seconds(audio.duration, audio.time_base) if audio is not None else None,
    )


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video file's header: size, exact frame rate, frame count, audio.

    Raises :class:`InputError` naming the file when it is missing, unreadable, not a video
    (e.g. a text file or a still image) or has no video stream.
    """
    p = Path(path)
    container = _open_input(p)
    try:
        return _info_from_container(p, container)
    finally:
        container.close()


# ----------------------------------------------------------------------------------------------
# reading


class _DecodeFailure(Exception):
    """Raised by the decode generator (on the decode thread) and caught in the consumer."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(f"frame {index}: {detail}")
        self.index = index
        self.detail = detail


class VideoReader:
    """Iterate a video file's frames as RGB :class:`~live.packets.Frame` packets.

    Decoding runs on a thread (a :class:`~live.io.threads.Prefetch`) that feeds a queue of at
    most ``max_queue`` frames; when the queue is full the decoder waits (back-pressure,
    nothing is dropped), so memory stays flat for any length. ``resize=(w, h)`` scales frames
    while decoding. A decode error in the middle of the file raises :class:`InputError` with
    the frame index in the consumer (``on_error="raise"``), or ends the iteration with a
    warning (``on_error="stop"``).

    Use it as a context manager; :meth:`close` stops the decoder (also when the consumer
    stops early) and may be called any number of times.
    """

    def __init__(self, path: PathLike, *, max_queue: int = 8,
                 resize: tuple[int, int] | None = None,
                 on_error: Literal["raise", "stop"] = "raise") -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue: expected >= 1, got {max_queue}")
        if on_error not in ("raise", "stop"):
            raise ValueError(f"on_error: expected 'raise' or 'stop', got {on_error!r}")
        if resize is not None and (len(resize) != 2 or min(resize) < 1):
            raise ValueError(f"resize: expected (width, height) > 0, got {resize!r}")
        self.path = Path(path)
        self.max_queue = max_queue
        self.resize = (int(resize[0]), int(resize[1])) if resize is not None else None
        self.on_error = on_error
        self._container = _open_input(self.path)
        try:
            self.info = _info_from_container(self.path, self._container)
        except BaseException:
            self._container.close()
            raise
        self._feed: Prefetch[Frame] | None = None  # the decode thread, made by __iter__
        self._closed = False

    # -- statistics (read by tests and benchmarks) --------------------------------------------
    @property
    def frames_decoded(self) -> int:
        """Frames the decode thread has produced so far."""
        return self._feed.produced if self._feed is not None else 0

    @property
    def frames_read(self) -> int:
        """Frames handed to the consumer so far."""
        return self._feed.consumed if self._feed is not None else 0

    @property
    def max_pending(self) -> int:
        """Most frames the reader ever held at once: the queued ones plus the one the decoder
        is handing over (at most ``max_queue + 1``)."""
        return self._feed.max_pending if self._feed is not None else 0

    # -- decode thread --------------------------------------------------------------------------
    def _decode(self) -> Iterator[Frame]:
        """The frames of the file (runs on the decode thread); any failure is raised as a
        :class:`_DecodeFailure` naming the frame index. Closes the container at the end."""
        av_error = _ffmpeg_error_type()
        container = self._container
        index = 0
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                for vframe in packet.decode():
                    if self.resize is not None:
                        image = vframe.to_ndarray(format="rgb24", width=self.resize[0],
                                                  height=self.resize[1], interpolation="AREA")
                    else:
                        image = vframe.to_ndarray(format="rgb24")
                    yield Frame(image=np.ascontiguousarray(image), index=index,
                                t_capture=time.perf_counter(),
                                pts=float(vframe.time) if vframe.time is not None else None)
                    index += 1
            expected = self.info.frame_count if self._indexed() else None
            if expected is not None and index < expected - max(2, expected // 100):
                raise _DecodeFailure(
                    index, f"the file ends early: decoded {index} of the {expected} frames "
                           "its index lists (truncated?)")
        except _DecodeFailure:
            raise
        except av_error as exc:
            raise _DecodeFailure(index, _describe(exc)) from None
        except Exception as exc:  # anything else: report it in the consumer, never swallow
            log.debug("decode thread failed", exc_info=True)
            raise _DecodeFailure(index, f"{type(exc).__name__}: {exc}") from exc
        finally:
            try:
                container.close()
            except Exception:  # pragma: no cover - closing a broken container
                log.debug("closing %s failed", self.path, exc_info=True)

    def _indexed(self) -> bool:
        """True when the container has an exact frame index (mp4/mov)."""
        return any(n in (self._container.format.name or "") for n in ("mp4", "mov"))

    # -- consumer side --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise ValueError(f"{self.path}: the reader is closed")
        if self._feed is not None:
            raise ValueError(f"{self.path}: a VideoReader can be iterated only once")
        self._feed = Prefetch(self._decode(), max_queue=self.max_queue,
                              name=f"decode-{self.path.name}")
        return self._frames(iter(self._feed))

    def _frames(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        try:
            yield from frames
        except _DecodeFailure as failure:
            msg = f"corrupt or truncated video at frame {failure.index}"
            if self.on_error == "raise":
                self.close()
                raise InputError(msg, path=self.path, expected="a complete, decodable video",
                                 got=failure.detail) from None
            log.warning("%s: %s (%s); stopping there", self.path, msg, failure.detail)
        finally:
            # The consumer finished, failed or dropped the iterator: stop the decoder.
            self.close()

    def close(self) -> None:
        """Stop the decode thread and release the file; harmless to call again."""
        if self._closed:
            return
        self._closed = True
        if self._feed is not None:
            self._feed.close()  # the decode generator closes the container as it ends
        else:
            self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# writing

_encoder_cache: dict[str, str] = {}


def h264_encoder() -> str:
    """Name of the H.264 encoder to use: libx264 if PyAV's FFmpeg has it, else the first
    other H.264 encoder that opens on this machine. Raises :class:`BackendError` if none."""
    if "h264" in _encoder_cache:
        return _encoder_cache["h264"]
    import av

    available = av.codecs_available
    tried: list[str] = []
    for name in _H264_ENCODERS:
        if name not in available:
            continue
        try:
            ctx: Any = av.CodecContext.create(name, "w")
            ctx.width, ctx.height = 64, 64
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = Fraction(1, 25)
            ctx.framerate = Fraction(25)
            ctx.open()
        except Exception as exc:
            tried.append(f"{name} ({_describe(exc)})")
            continue
        _encoder_cache["h264"] = name
        if name != "libx264":
            log.info("libx264 is not available; encoding H.264 with %s", name)
        return name
    raise BackendError("no H.264 encoder in PyAV's FFmpeg build; tried: "
                       + (", ".join(tried) if tried else "none of "
                          + ", ".join(_H264_ENCODERS) + " is present"))


def _check_output_path(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError("cannot write the output video", path=path,
                         expected="a file name", got="a directory")
    if not parent.exists():
        raise InputError("cannot write the output video", path=path,
                         expected="an existing folder", got=f"{parent} does not exist")
    if not parent.is_dir():
        raise InputError("cannot write the output video", path=path,
                         expected="a folder", got=f"{parent} is not a folder")
    if not path.suffix:
        raise InputError("cannot write the output video", path=path,
                         expected="a file name ending in .mp4", got="no extension")
    return parent


def _reserve_temp(path: Path, parent: Path) -> Path:
    """Create an empty temporary file next to ``path`` (proves the folder is writable)."""
    for _ in range(20):
        temp = parent / f".{path.name}.partial-{secrets.token_hex(4)}{path.suffix}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError("cannot write the output video", path=path,
                             expected="a writable folder", got=_describe(exc)) from None
        os.close(fd)
        return temp
    raise InputError("cannot write the output video", path=path,
                     got="could not create a temporary file next to it")


class _AudioMuxer:
    """Feeds the audio of another file into the output, up to a given video time."""

    def __init__(self, path: Path, output: Any) -> None:
        import av

        self.path = path
        self._av = av
        self._input = _open_input(path, what="audio")
        try:
            if not self._input.streams.audio:
                raise InputError("no audio to copy", path=path,
                                 expected="a file with an audio stream",
                                 got="no audio stream")
            self._in = self._input.streams.audio[0]
            # Align with the first video frame of the source when it has video.
            start = None
            if self._input.streams.video:
                v = self._input.streams.video[0]
                start = _seconds(v.start_time, v.time_base)
            self._offset = float(start or 0.0)
            self.copy = self._in.codec_context.name in _COPYABLE_AUDIO
            if self.copy:
                self._out = output.add_stream_from_template(self._in)
            else:
                rate = int(self._in.codec_context.sample_rate or 48000)
                self._out = output.add_stream("aac", rate=rate)
                channels = self._in.codec_context.channels or 2
                self._out.codec_context.layout = "mono" if channels == 1 else "stereo"
                self._out.codec_context.bit_rate = 128_000 if channels == 1 else 192_000
                self._out.codec_context.time_base = Fraction(1, rate)
                self._samples_out = 0
                self._resampler = av.AudioResampler(format="fltp",
                                                    layout=self._out.codec_context.layout,
                                                    rate=rate)
            self._packets = self._input.demux(self._in)
            self._pending: tuple[Any, float] | None = None
            self._done = False
        except BaseException:
            self._input.close()
            raise

    def _fail(self, exc: BaseException) -> InputError:
        return InputError("cannot read the audio", path=self.path,
                          expected="a decodable audio stream", got=_describe(exc))

    def _next_packet(self) -> tuple[Any, float] | None:
        """The next audio packet and its start in output seconds (None at the end)."""
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                return None
            except self._av.FFmpegError as exc:
                raise self._fail(exc) from None
            if packet.dts is None or packet.size == 0:
                continue  # the demuxer's flush packet
            tb = packet.time_base
            ts = packet.pts if packet.pts is not None else packet.dts
            start = float(ts * tb) - self._offset
            if packet.duration and start + float(packet.duration * tb) <= 0.0:
                continue  # entirely before the first video frame
            return packet, start

    def feed(self, output: Any, until: float, *, final: bool = False) -> None:
        """Mux the audio that starts before ``until`` seconds of output time; with ``final``
        trim it to end at ``until`` and flush the encoder. Unreadable audio raises
        :class:`InputError`; muxing errors propagate as they are."""
        while not self._done:
            item = self._next_packet()
            if item is None:
                self._done = True
                break
            packet, start = item
            if start >= until:
                if final:
                    self._done = True
                else:
                    self._pending = item
                break
            if self.copy:
                self._mux_copy(output, packet)
            else:
                self._mux_transcode(output, packet, until if final else None)
        if final:
            self._done = True
            if not self.copy:
                for out_packet in self._out.encode(None):
                    output.mux(out_packet)

    def _mux_copy(self, output: Any, packet: Any) -> None:
        shift = round(self._offset / packet.time_base) if self._offset else 0
        if shift:
            packet.pts = packet.pts - shift if packet.pts is not None else None
            packet.dts = packet.dts - shift
        packet.stream = self._out
        output.mux(packet)

    def _mux_transcode(self, output: Any, packet: Any, limit: float | None) -> None:
        av = self._av
        rate = self._out.codec_context.sample_rate
        limit_samples = round(limit * rate) if limit is not None else None
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            raise self._fail(exc) from None
        for frame in frames:
            frame.pts = None
            for chunk in self._resampler.resample(frame):
                n = chunk.samples
                if limit_samples is not None:
                    n = min(n, limit_samples - self._samples_out)
                    if n <= 0:
                        self._done = True
                        return
                    if n < chunk.samples:
                        data = chunk.to_ndarray()[:, :n]
                        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(data),
                                                           format=chunk.format.name,
                                                           layout=chunk.layout.name)
                        chunk.sample_rate = rate
                chunk.pts = self._samples_out
                chunk.time_base = Fraction(1, rate)
                self._samples_out += n
                for out_packet in self._out.encode(chunk):
                    output.mux(out_packet)

    def close(self) -> None:
        self._input.close()


class VideoWriter:
    """Encode RGB frames to an H.264 (yuv420p) video, optionally with another file's audio.

    ``fps`` may be a float or an exact :class:`~fractions.Fraction` (e.g. 30000/1001).
    ``size`` is (width, height) of the frames given to :meth:`write`; odd sizes are padded
    by one pixel (edge copy) because yuv420p needs even dimensions. ``audio_from`` is a
    file whose first audio stream is muxed in (copied when AAC, else transcoded to AAC) and
    trimmed to the video's duration. The file is written to a hidden temporary name in the
    target folder and renamed to ``path`` by a successful :meth:`close`; an exception inside
    the ``with`` block, or :meth:`abort`, deletes it and leaves no output.

    A missing or unwritable target folder, an unreadable ``audio_from`` file or one without
    audio raise :class:`InputError` at construction, before any work.
    """

    def __init__(self, path: PathLike, *, fps: float | Fraction, size: tuple[int, int],
                 audio_from: PathLike | None = None, crf: int = 18,
                 preset: str = "medium") -> None:
        import av

        self.path = Path(path)
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        if rate <= 0:
            raise ValueError(f"fps: expected > 0, got {fps!r}")
        width, height = int(size[0]), int(size[1])
        if width < 2 or height < 2:
            raise ValueError(f"size: expected (width, height) of at least 2x2, got {size!r}")
        self.fps = rate
        self.size = (width, height)
        self.encoded_size = (width + width % 2, height + height % 2)
        if self.encoded_size != self.size:
            log.info("%s: padding %dx%d frames to %dx%d (H.264 yuv420p needs even sizes)",
                     self.path, width, height, *self.encoded_size)
        self.frames_written = 0
        self._closed = False
        self._audio: _AudioMuxer | None = None
        parent = _check_output_path(self.path)
        encoder = h264_encoder()
        self._temp = _reserve_temp(self.path, parent)
        try:
            options = {"movflags": "+faststart"} \
                if self.path.suffix.lower() in _FASTSTART_SUFFIXES else {}
            try:
                self._out: Any = av.open(str(self._temp), mode="w", container_options=options)
            except (av.FFmpegError, ValueError) as exc:
                raise InputError("cannot write the output video", path=self.path,
                                 expected="a video file extension such as .mp4",
                                 got=_describe(exc)) from None
            stream_options = {"crf": str(crf), "preset": preset} if encoder == "libx264" else {}
            self._stream: Any = self._out.add_stream(encoder, rate=rate, options=stream_options)
            ctx: Any = self._stream.codec_context
            ctx.width, ctx.height = self.encoded_size
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = Fraction(1, 1) / rate
            if encoder != "libx264":
                ctx.bit_rate = max(1_000_000, int(width * height * float(rate) * 0.15))
            # Tag the colours the frames are converted with (BT.709, limited range).
            ctx.colorspace = 1
            ctx.color_primaries = 1
            ctx.color_trc = 1
            ctx.color_range = 1
            if audio_from is not None:
                self._audio = _AudioMuxer(Path(audio_from), self._out)
        except BaseException:
            self._discard()
            raise

    @property
    def temp_path(self) -> Path:
        """Where the file is being written until :meth:`close` renames it."""
        return self._temp

    @property
    def duration(self) -> float:
        """Seconds of video written so far."""
        return float(self.frames_written / self.fps)

    def write(self, image: np.ndarray) -> None:
        """Encode one RGB uint8 frame of the writer's ``size``."""
        import av

        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        check_rgb(image, "frame")
        if (image.shape[1], image.shape[0]) != self.size:
            raise ValueError(f"frame: expected size {self.size[0]}x{self.size[1]}, "
                             f"got {image.shape[1]}x{image.shape[0]}")
        if self.encoded_size != self.size:
            pad_y = self.encoded_size[1] - self.size[1]
            pad_x = self.encoded_size[0] - self.size[0]
            image = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709",
                               dst_color_range="MPEG")
        frame.pts = self.frames_written
        try:
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
            self.frames_written += 1
            if self._audio is not None:
                # Keep the audio a little behind the video, so that nothing past the final
                # length is muxed before close() trims it.
                self._audio.feed(self._out, self.duration - _AUDIO_LAG)
        except av.FFmpegError as exc:
            raise BackendError(f"{self.path}: writing the video failed: "
                               f"{_describe(exc)}") from None

    def close(self) -> None:
        """Flush the encoder, finish the audio, write the index and rename the file into
        place. Harmless to call again. If finishing fails, the partial file is removed."""
        import av

        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            if self._audio is not None:
                self._audio.feed(self._out, self.duration, final=True)
                self._audio.close()
            self._out.close()
        except BaseException as exc:
            self._discard()
            if isinstance(exc, av.FFmpegError):
                raise BackendError(f"{self.path}: could not finish the video: "
                                   f"{_describe(exc)}") from None
            raise
        if self.frames_written == 0:
            self._discard()
            raise ValueError(f"{self.path}: no frames were written; nothing saved")
        os.replace(self._temp, self.path)
        log.debug("wrote %s (%d frames, %.2f s)", self.path, self.frames_written, self.duration)

    def abort(self) -> None:
        """Stop without saving: the temporary file is deleted; harmless to call again."""
        if self._closed:
            return
        self._closed = True
        self._discard()

    def _discard(self) -> None:
        for closer in (getattr(self, "_audio", None), getattr(self, "_out", None)):
            if closer is None:
                continue
            try:
                closer.close()
            except Exception:
                log.debug("closing while discarding %s failed", self.path, exc_info=True)
        try:
            self._temp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover
            log.warning("could not delete the partial file %s", self._temp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


# ----------------------------------------------------------------------------------------------
# progress


def progress(total: int | None, *, desc: str, unit: str = "frame",
             disable: bool | None = None) -> tqdm:
    """A tqdm progress bar on stderr showing count, frames per second and ETA.

    ``disable=None`` turns it off when stderr is not a terminal; pass False to force it on.
    Use ``bar.update(n)`` and ``bar.close()`` (or ``with``).
    """
    from tqdm import tqdm

    if disable is None:
        disable = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)
