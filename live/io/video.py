"""Streaming video files: probe, decode to :class:`~live.packets.Frame`, encode mp4, mov, mkv,
webm or an animated GIF.

Everything streams, so memory does not grow with the length of a video:

- :class:`VideoReader` decodes on a thread into a *bounded* queue that never drops frames
  (the decoder waits while the consumer is busy). Decode errors in the middle of a file
  (corrupt or truncated data) reach the consumer as :class:`~calibrate.errors.InputError`.
  A video's display matrix (a phone video stored as landscape frames to be shown turned) is
  applied to every frame, so frames and :class:`VideoInfo` sizes are upright.
- :class:`VideoWriter` encodes by the file's extension (:data:`OUTPUT_FORMATS`): H.264
  yuv420p (libx264 when PyAV's FFmpeg has it, at the lowest H.264 level that fits the size and
  rate) + AAC in ``.mp4``, ``.mov`` and ``.mkv``; VP9 + Opus in ``.webm``; an animated GIF
  (one palette made from the whole video, no sound). It muxes the audio of another file as it
  goes (copied when the container's codec, else transcoded, trimmed to the video's length),
  moves the mp4/mov index to the front (``faststart``) so browsers can play it while
  downloading, and writes to a temporary name (``.NAME.partial-PID-XXXXXXXX``) that is renamed
  only when complete; such files left by a killed run are removed by the next writer in
  that folder. Any codec or container failure is raised as a
  :class:`~calibrate.errors.MimicamError`.
- :func:`check_output` refuses an output path before any work: an unsupported extension, a
  path that is one of the job's inputs, an existing file without ``overwrite``.
- ``VideoWriter(..., alpha=True)`` takes RGBA frames and keeps their alpha channel
  (:data:`ALPHA_OUTPUTS`: VP9 with alpha, yuva420p, in ``.webm``; ProRes 4444 with alpha in
  ``.mov``), for video editors; :func:`read_rgba` decodes such a file back. FFmpeg's own VP9
  decoder ignores the alpha plane (stored beside the picture, as WebM's BlockAdditional), so
  VP9 is decoded with ``libvpx-vp9`` there.

PyAV is imported lazily inside the functions that need it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from calibrate.errors import BackendError, InputError
from live.geometry import Orientation
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
_AUDIO_LAG = 0.25  # seconds the muxed audio trails the written video until close()
_PEEK_PACKETS = 64  # packets probe_video decodes at most to find the first frame


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
    from the duration (None when neither is known; 0 when the file ended before any frame
    decoded). ``width`` and ``height`` are the upright size, after ``orientation`` (the
    video's display matrix, which :class:`VideoReader` applies to every frame).
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
    orientation: Orientation = field(default_factory=Orientation)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), upright."""
        return self.width, self.height

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) of the frames as the file stores them (before ``orientation``)."""
        return self.orientation.size(self.width, self.height)


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


@dataclass(frozen=True)
class _Peek:
    """What decoding the start of a video found: the display matrix of its first frame and
    whether the file ended before any frame decoded."""

    orientation: Orientation = field(default_factory=Orientation)
    empty: bool = False


def _matrix_orientation(matrix: Sequence[float]) -> Orientation | None:
    """The :class:`Orientation` of an FFmpeg display matrix (9 values, ``a b u / c d v / x y
    w``, mapping stored pixel ``(p, q)`` to shown ``(a*p + c*q, b*p + d*q)``); None unless it
    turns by a multiple of 90 degrees."""
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    scale = max(abs(a), abs(b), abs(c), abs(d))
    if scale == 0:
        return None
    a, b, c, d = (v / scale for v in (a, b, c, d))
    eps = 1e-3
    if abs(b) < eps and abs(c) < eps and abs(a) > 1 - eps and abs(d) > 1 - eps:
        return Orientation(False, a < 0, d < 0)
    if abs(a) < eps and abs(d) < eps and abs(b) > 1 - eps and abs(c) > 1 - eps:
        return Orientation(True, c < 0, b < 0)
    return None


def _frame_orientation(path: Path, vframe: Any) -> Orientation:
    """The display matrix of a decoded frame (upright when it has none)."""
    side = vframe.side_data.get("DISPLAYMATRIX")
    if side is None:
        return Orientation()
    matrix = np.frombuffer(bytes(side), dtype=np.int32)  # 16.16 fixed point, native order
    if matrix.size < 9:
        return Orientation()
    orientation = _matrix_orientation([float(v) for v in matrix[:9]])
    if orientation is None:
        log.warning("%s: the video is to be shown rotated by %d degrees, which is not a "
                    "multiple of 90; its frames are used as stored", path, vframe.rotation)
        return Orientation()
    return orientation


def _peek(path: Path) -> _Peek:
    """Decode the first frame of ``path`` (its own container; at most a few dozen packets) for
    its display matrix. A file that cannot be decoded here is reported by the reader."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError):
        return _Peek()
    try:
        if not container.streams.video:
            return _Peek()
        stream = container.streams.video[0]
        for packets, packet in enumerate(container.demux(stream), start=1):
            for vframe in packet.decode():
                return _Peek(_frame_orientation(path, vframe))
            if packets > _PEEK_PACKETS:
                return _Peek()
        return _Peek(empty=True)
    except (av.FFmpegError, OSError, ValueError):
        log.debug("%s: decoding the first frame failed", path, exc_info=True)
        return _Peek()
    finally:
        container.close()


def _info_from_container(path: Path, container: Any, peek: _Peek | None = None) -> VideoInfo:
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
    peek = peek if peek is not None else _Peek()
    if peek.empty:
        frame_count = 0
    width, height = peek.orientation.size(int(ctx.width), int(ctx.height))
    audio = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        path=path,
        width=width,
        height=height,
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
        orientation=peek.orientation,
    )


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video file's header: upright size, exact frame rate, frame count, audio (and
    decode its first frame, for the display matrix).

    Raises :class:`InputError` naming the file when it is missing, unreadable, not a video
    (e.g. a text file or a still image) or has no video stream.
    """
    p = Path(path)
    container = _open_input(p)
    try:
        return _info_from_container(p, container, _peek(p))
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
    nothing is dropped), so memory stays flat for any length. Frames are turned upright by the
    video's display matrix (``info.orientation``). ``resize=(w, h)`` (upright) scales frames
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
            self.info = _info_from_container(self.path, self._container, _peek(self.path))
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
        orientation = self.info.orientation
        resize = orientation.size(*self.resize) if self.resize is not None else None
        index = 0
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                for vframe in packet.decode():
                    if resize is not None:
                        image = vframe.to_ndarray(format="rgb24", width=resize[0],
                                                  height=resize[1], interpolation="AREA")
                    else:
                        image = vframe.to_ndarray(format="rgb24")
                    image = orientation.apply(image)
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


@dataclass(frozen=True)
class OutputFormat:
    """What :class:`VideoWriter` writes for one file extension."""

    suffix: str
    container: str
    """FFmpeg's muxer."""
    video: Literal["h264", "vp9", "gif"]
    audio: Literal["aac", "opus"] | None
    """The audio codec; None: the format has no sound."""
    copy_audio: tuple[str, ...] = ()
    """Audio codecs muxed as they are (any other is transcoded to ``audio``)."""
    faststart: bool = False
    """Move the index to the front (mp4, mov), so browsers can play while downloading."""
    description: str = ""
    alpha: Literal["vp9", "prores"] | None = None
    """The video codec with an alpha channel (``VideoWriter(alpha=True)``); None: the
    container gets none here."""


OUTPUT_FORMATS: dict[str, OutputFormat] = {f.suffix: f for f in (
    OutputFormat(".mp4", "mp4", "h264", "aac", ("aac",), True, "H.264 + AAC"),
    OutputFormat(".mov", "mov", "h264", "aac", ("aac",), True, "H.264 + AAC", "prores"),
    OutputFormat(".mkv", "matroska", "h264", "aac", ("aac",), False, "H.264 + AAC"),
    OutputFormat(".webm", "webm", "vp9", "opus", ("opus", "vorbis"), False, "VP9 + Opus",
                 "vp9"),
    OutputFormat(".gif", "gif", "gif", None, (), False, "animated GIF, no sound"),
)}
"""The files :class:`VideoWriter` writes, by extension (lower case)."""

ALPHA_OUTPUTS: dict[str, str] = {
    ".webm": "VP9 with alpha (yuva420p) + Opus",
    ".mov": "ProRes 4444 with alpha (yuva444p10le) + AAC",
}
"""The files written with an alpha channel (``VideoWriter(alpha=True)``), by extension."""
_ALPHA_CODECS = {"vp9": ("libvpx-vp9", "yuva420p", {}),
                 "prores": ("prores_ks", "yuva444p10le", {"profile": "4444",
                                                          "vendor": "apl0"})}


def check_alpha_output(path: PathLike) -> OutputFormat:
    """The :class:`OutputFormat` of ``path`` when it can hold an alpha channel; any other
    extension raises :class:`InputError` naming the ones that can."""
    p = Path(path)
    fmt = output_format(p)
    if fmt.alpha is None:
        raise InputError("this output format has no alpha channel (background transparent)",
                         path=p, expected="a file name ending in " + " or ".join(
                             f"{k} ({v})" for k, v in ALPHA_OUTPUTS.items()),
                         got=f"'{p.suffix}'")
    return fmt

GIF_MAX_FPS = 50.0
"""Browsers slow down GIF frames shorter than 2/100 s; faster videos keep every 2nd frame."""

# H.264 levels (ITU-T H.264 table A-1): level_idc, macroblocks a second, macroblocks a frame
_H264_LEVELS = ((10, 1485, 99), (11, 3000, 396), (12, 6000, 396), (13, 11880, 396),
                (20, 11880, 396), (21, 19800, 792), (22, 20250, 1620), (30, 40500, 1620),
                (31, 108000, 3600), (32, 216000, 5120), (40, 245760, 8192),
                (42, 522240, 8704), (50, 589824, 22080), (51, 983040, 36864),
                (52, 2073600, 36864), (60, 4177920, 139264), (61, 8355840, 139264),
                (62, 16711680, 139264))
_VP9_MAX_SIDE = 16384  # VP9 levels 6.x
_VP9_MAX_PICTURE = 35_651_584
_GIF_MAX_SIDE = 65535


def supported_outputs() -> str:
    """The output extensions, for messages: ``.mp4 (H.264 + AAC), ...``."""
    return ", ".join(f"{f.suffix} ({f.description})" for f in OUTPUT_FORMATS.values())


def output_format(path: PathLike) -> OutputFormat:
    """The :class:`OutputFormat` of ``path``'s extension; any other extension raises
    :class:`InputError` listing the supported ones."""
    p = Path(path)
    fmt = OUTPUT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError("unsupported output format", path=p,
                         expected=f"a file name ending in {supported_outputs()}",
                         got=f"'{p.suffix}'" if p.suffix else "no extension")
    return fmt


def h264_level(width: int, height: int, fps: float) -> int | None:
    """The lowest H.264 level (``level_idc``: 30 is 3.0, 42 is 4.2) whose limits hold a
    ``width`` x ``height`` video at ``fps``: macroblocks a frame, macroblocks a second, and
    each side at most sqrt(8 x the frame limit) macroblocks. None when no level does (more
    than level 6.2's 139264 macroblocks a frame, e.g. 8192x4320)."""
    mb_w, mb_h = math.ceil(width / 16), math.ceil(height / 16)
    frame = mb_w * mb_h
    rate = frame * float(fps)
    for idc, max_rate, max_frame in _H264_LEVELS:
        side = math.sqrt(8 * max_frame)
        if frame <= max_frame and rate <= max_rate and mb_w <= side and mb_h <= side:
            return idc
    return None


def check_video_size(fmt: OutputFormat, size: tuple[int, int], fps: float, *,
                     path: PathLike | None = None) -> None:
    """Raise :class:`InputError` when ``fmt`` cannot hold ``size`` (w, h) frames at ``fps``:
    H.264 beyond level 6.2, VP9 beyond its level 6.2, a GIF side beyond 65535 pixels."""
    w, h = (int(v) for v in size)
    path = Path(path) if path is not None else None
    if fmt.video == "h264" and h264_level(w + w % 2, h + h % 2, fps) is None:
        mbs = math.ceil(w / 16) * math.ceil(h / 16)
        raise InputError(
            "the video is too large for H.264", path=path,
            expected="at most 139264 macroblocks of 16x16 pixels a frame and 16711680 a "
            "second (level 6.2, the highest; e.g. 8192x4320 at 30 fps): a smaller size "
            "(mimicam animate --max-size)",
            got=f"{w}x{h} at {fps:g} fps: {mbs} macroblocks a frame, {round(mbs * fps)} a "
                "second")
    if fmt.video == "vp9" and (max(w, h) > _VP9_MAX_SIDE or w * h > _VP9_MAX_PICTURE):
        raise InputError("the video is too large for VP9", path=path,
                         expected=f"sides up to {_VP9_MAX_SIDE} and at most "
                         f"{_VP9_MAX_PICTURE} pixels (VP9 level 6.2)", got=f"{w}x{h}")
    if fmt.video == "gif" and max(w, h) > _GIF_MAX_SIDE:
        raise InputError("the video is too large for a GIF", path=path,
                         expected=f"sides up to {_GIF_MAX_SIDE} pixels", got=f"{w}x{h}")


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


def _encoder(names: Sequence[str], what: str) -> str:
    """The first of ``names`` PyAV's FFmpeg has; :class:`BackendError` when none."""
    import av

    for name in names:
        if name in av.codecs_available:
            return name
    raise BackendError(f"no {what} encoder in PyAV's FFmpeg build; tried {', '.join(names)}")


def _video_encoder(fmt: OutputFormat, alpha: bool = False) -> str:
    if alpha and fmt.alpha is not None:
        name = _ALPHA_CODECS[fmt.alpha][0]
        return _encoder((name,), f"{fmt.alpha} with alpha")
    if fmt.video == "h264":
        return h264_encoder()
    if fmt.video == "vp9":
        return _encoder(("libvpx-vp9",), "VP9")
    return _encoder(("gif",), "GIF")


def _check_output_folder(path: Path, what: str) -> Path:
    """``path`` names a file in an existing folder (returned); else InputError."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"cannot write the {what}", path=path,
                         expected="a file name", got="a directory")
    if not parent.exists():
        raise InputError(f"cannot write the {what}", path=path,
                         expected="an existing folder", got=f"{parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write the {what}", path=path,
                         expected="a folder", got=f"{parent} is not a folder")
    return parent


def _check_output_path(path: Path) -> Path:
    parent = _check_output_folder(path, "output video")
    output_format(path)
    return parent


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (links followed; a path that does not
    exist yet is compared by its absolute, resolved name)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(a.resolve()) == os.path.normcase(b.resolve())


def _output_exists(path: Path, what: str = "output file") -> InputError:
    return InputError(f"the {what} already exists", path=path,
                      expected="a new file name, or --overwrite (-y) to replace it",
                      got="an existing file (left as it is)")


def check_output(path: PathLike, *, inputs: Mapping[str, PathLike | None] | None = None,
                 overwrite: bool = False) -> OutputFormat:
    """Check an output video path before any work; returns its :class:`OutputFormat`.

    Raises :class:`InputError` when the extension is not one :class:`VideoWriter` writes,
    the folder does not exist, the path is one of ``inputs`` (``{"driving video": path,
    ...}``; None values are skipped; links and different spellings of one file count as the
    same), or the file exists and ``overwrite`` is False.
    """
    p = Path(path)
    _check_output_folder(p, "output video")
    fmt = output_format(p)  # (the format after the folder, as the writer checks them)
    _check_new_output(p, "output file", inputs, overwrite)
    return fmt


def check_output_file(path: PathLike, *, what: str,
                      inputs: Mapping[str, PathLike | None] | None = None,
                      overwrite: bool = False) -> Path:
    """:func:`check_output` for an output that is not a video (``what`` it is, e.g. "stats
    file"): a file name in an existing folder, none of ``inputs``, new unless ``overwrite``;
    returns it as a Path."""
    p = Path(path)
    _check_output_folder(p, what)
    _check_new_output(p, what, inputs, overwrite)
    return p


def _check_new_output(p: Path, what: str, inputs: Mapping[str, PathLike | None] | None,
                      overwrite: bool) -> None:
    """InputError when ``p`` is one of ``inputs`` or exists and ``overwrite`` is False."""
    for name, other in (inputs or {}).items():
        if other is not None and _same_file(p, Path(other)):
            raise InputError(f"the {what} would replace an input", path=p,
                             expected="an output file that is none of the inputs",
                             got=f"the {name} ({other})")
    if p.exists() and not overwrite:
        raise _output_exists(p, what)


# Temporary names: .NAME.partial-PID-XXXXXXXX.EXT (older versions: no PID).
_PARTIAL_NAME = re.compile(r"^\..+\.partial-(?:(?P<pid>\d+)-)?[0-9a-f]{8}(?:\.[A-Za-z0-9]+)*$")
_UNOWNED_PARTIAL_AGE = 600.0  # s without a write after which a partial without PID is stale


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when that cannot be told)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return bool(kernel32.GetLastError() == 5)  # access denied: it exists
        code = ctypes.c_ulong()
        try:
            ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        finally:
            kernel32.CloseHandle(handle)
        return not ok or code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_partials(folder: PathLike) -> list[Path]:
    """Delete the temporary files that writers killed before they finished left in ``folder``
    (``.NAME.partial-PID-XXXXXXXX...`` of a process that no longer runs on this machine; those
    of older versions, without a PID, once unchanged for 10 minutes). Returns what was
    removed; never raises."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _PARTIAL_NAME.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            pid = match.group("pid")
            stale = (not _pid_alive(int(pid)) if pid is not None
                     else now - entry.stat().st_mtime > _UNOWNED_PARTIAL_AGE)
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            log.debug("could not remove %s", entry.path, exc_info=True)
    if removed:
        log.info("removed %d unfinished file(s) of an earlier, killed run from %s: %s",
                 len(removed), folder, ", ".join(p.name for p in removed))
    return removed


def _reserve_temp(path: Path, parent: Path) -> Path:
    """Create an empty temporary file next to ``path`` (proves the folder is writable)."""
    for _ in range(20):
        temp = parent / f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
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

    def __init__(self, path: Path, output: Any, fmt: OutputFormat) -> None:
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
            self.copy = self._in.codec_context.name in fmt.copy_audio
            try:
                if self.copy:
                    self._out = output.add_stream_from_template(self._in)
                else:
                    self._add_encoder(output, fmt)
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise BackendError(f"cannot put the audio of {path} into a {fmt.suffix} file: "
                                   f"{_describe(exc)}") from None
            self._packets = self._input.demux(self._in)
            self._pending: tuple[Any, float] | None = None
            self._done = False
        except BaseException:
            self._input.close()
            raise

    def _add_encoder(self, output: Any, fmt: OutputFormat) -> None:
        av = self._av
        channels = self._in.codec_context.channels or 2
        if fmt.audio == "opus":
            rate = 48000  # Opus runs at 48 kHz (or 8-24 kHz); resample everything to it
            self._out = output.add_stream(_encoder(("libopus",), "Opus"), rate=rate)
            bit_rate = 96_000 if channels == 1 else 128_000
        else:
            rate = int(self._in.codec_context.sample_rate or 48000)
            self._out = output.add_stream("aac", rate=rate)
            bit_rate = 128_000 if channels == 1 else 192_000
        self._out.codec_context.layout = "mono" if channels == 1 else "stereo"
        self._out.codec_context.bit_rate = bit_rate
        self._out.codec_context.time_base = Fraction(1, rate)
        self._samples_out = 0
        self._resampler = av.AudioResampler(format=self._out.codec_context.format.name,
                                            layout=self._out.codec_context.layout, rate=rate)
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
                        # packed samples (Opus's s16) are one row of interleaved channels
                        width = n if chunk.format.is_planar else n * len(chunk.layout.channels)
                        data = chunk.to_ndarray()[:, :width]
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




class _GifEncoder:
    """An animated GIF in two passes, with one palette made from the whole video.

    :meth:`write` hands each frame to FFmpeg's ``palettegen`` (which only counts colours) and
    stores it losslessly (FFV1) in a spool file next to the output; :meth:`finish` maps the
    spooled frames onto that palette with ``paletteuse`` (ordered dithering, which does not
    crawl from frame to frame, and only the changed rectangle of each frame redrawn) and
    encodes the GIF at the frames' rate. Memory stays flat; :meth:`close` removes the spool.
    """

    def __init__(self, path: Path, size: tuple[int, int], rate: Fraction) -> None:
        import av
        import av.filter

        self.path = path
        self.size = size
        self.rate = rate
        self.time_base = Fraction(1, 1) / rate
        self.frames = 0
        self.spool_path = path.with_name(path.name + ".spool.mkv")
        w, h = size
        self._spool: Any = av.open(str(self.spool_path), mode="w", format="matroska")
        self._spool_stream: Any = self._spool.add_stream("ffv1", rate=rate)
        ctx = self._spool_stream.codec_context
        ctx.width, ctx.height = w, h
        ctx.pix_fmt = "bgr0"
        ctx.time_base = self.time_base
        self._graph: Any = av.filter.Graph()
        self._source: Any = self._graph.add_buffer(width=w, height=h,
                                                   format=av.VideoFormat("rgb24"),
                                                   time_base=self.time_base)
        palettegen = self._graph.add("palettegen",
                                     "max_colors=256:reserve_transparent=0:stats_mode=full")
        self._palette = self._graph.add("buffersink")
        self._source.link_to(palettegen)
        palettegen.link_to(self._palette)
        self._graph.configure()

    def write(self, image: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames
        frame.time_base = self.time_base
        self._source.push(frame)
        spooled = frame.reformat(format="bgr0")
        spooled.pts = self.frames
        spooled.time_base = self.time_base
        for packet in self._spool_stream.encode(spooled):
            self._spool.mux(packet)
        self.frames += 1

    def finish(self) -> None:
        """Write the GIF (the spool is read back once)."""
        import av
        import av.filter

        for packet in self._spool_stream.encode(None):
            self._spool.mux(packet)
        spool, self._spool = self._spool, None
        spool.close()
        self._source.push(None)
        palette: Any = self._palette.pull()
        palette.pts = 0
        palette.time_base = self.time_base
        w, h = self.size
        graph: Any = av.filter.Graph()
        frames_in = graph.add_buffer(width=w, height=h, format="bgr0", time_base=self.time_base)
        palette_in = graph.add_buffer(width=palette.width, height=palette.height,
                                      format=palette.format.name, time_base=self.time_base)
        use = graph.add("paletteuse", "dither=bayer:bayer_scale=4:diff_mode=rectangle")
        sink = graph.add("buffersink")
        frames_in.link_to(use, 0, 0)
        palette_in.link_to(use, 0, 1)
        use.link_to(sink)
        graph.configure()
        palette_in.push(palette)
        palette_in.push(None)
        with av.open(str(self.path), mode="w", format="gif") as out:
            stream: Any = out.add_stream("gif", rate=self.rate)
            out_ctx = stream.codec_context
            out_ctx.width, out_ctx.height = w, h
            out_ctx.pix_fmt = "pal8"
            out_ctx.time_base = self.time_base

            def drain() -> None:
                while True:
                    try:
                        frame = sink.pull()
                    except (av.BlockingIOError, av.EOFError):
                        return
                    for packet in stream.encode(frame):
                        out.mux(packet)

            with av.open(str(self.spool_path), mode="r") as spooled:
                for index, frame in enumerate(spooled.decode(video=0)):
                    frame.pts = index
                    frame.time_base = self.time_base
                    frames_in.push(frame)
                    drain()
            frames_in.push(None)
            drain()
            for packet in stream.encode(None):
                out.mux(packet)

    def close(self) -> None:
        """Release the spool file (and delete it); harmless to call again."""
        spool, self._spool = self._spool, None
        if spool is not None:
            try:
                spool.close()
            except Exception:
                log.debug("closing the GIF spool %s failed", self.spool_path, exc_info=True)
        try:
            self.spool_path.unlink(missing_ok=True)
        except OSError:  # pragma: no cover
            log.warning("could not delete the temporary file %s", self.spool_path)


class VideoWriter:
    """Encode RGB frames to a video file, optionally with another file's audio.

    The extension picks the format (:data:`OUTPUT_FORMATS`): ``.mp4``, ``.mov`` and ``.mkv``
    are H.264 yuv420p at the lowest H.264 level that holds the size and rate, with AAC audio;
    ``.webm`` is VP9 with Opus audio; ``.gif`` an animated GIF with one palette made from all
    its frames, at the video's rate (up to :data:`GIF_MAX_FPS`; a faster video keeps every
    2nd or 3rd frame) and without sound (``audio_from`` is then left out, with a warning).
    Any other extension raises :class:`InputError` listing these.

    ``fps`` may be a float or an exact :class:`~fractions.Fraction` (e.g. 30000/1001).
    ``size`` is (width, height) of the frames given to :meth:`write`; odd sizes are padded
    by one pixel (edge copy) for H.264 and VP9, whose yuv420p needs even dimensions. ``crf``
    is the quality (lower is better; None: 18 for H.264, 31 for VP9); ``preset`` is x264's.
    ``audio_from`` is a file whose first audio stream is muxed in (copied when it already has
    the format's codec, else transcoded) and trimmed to the video's duration. ``alpha=True``
    takes RGBA frames and writes their alpha channel (:data:`ALPHA_OUTPUTS`: ``.webm`` VP9
    yuva420p, ``.mov`` ProRes 4444; any other extension raises :class:`InputError`).

    The file is written to a hidden temporary name in the target folder
    (``.NAME.partial-PID-XXXXXXXX``; such files of killed runs are removed first) and renamed to
    ``path`` by a successful :meth:`close`; an exception inside the ``with`` block, or
    :meth:`abort`, deletes it and leaves no output. ``overwrite=False`` keeps an existing
    ``path``: refused at construction, and checked again before the rename.

    A missing or unwritable target folder, an unsupported extension, a size the codec cannot
    hold, an existing file without ``overwrite``, an unreadable ``audio_from`` file or one
    without audio raise :class:`InputError` at construction, before any work. Codec and
    container failures (also a full disk) raise :class:`BackendError` from the call that met
    them; no PyAV exception escapes.
    """

    def __init__(self, path: PathLike, *, fps: float | Fraction, size: tuple[int, int],
                 audio_from: PathLike | None = None, crf: int | None = None,
                 preset: str = "medium", overwrite: bool = True, alpha: bool = False) -> None:
        self.path = Path(path)
        parent = _check_output_path(self.path)
        self.format = check_alpha_output(self.path) if alpha else output_format(self.path)
        self.alpha = alpha
        """Frames are RGBA and the file keeps their alpha channel."""
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        if rate <= 0:
            raise ValueError(f"fps: expected > 0, got {fps!r}")
        width, height = int(size[0]), int(size[1])
        if width < 2 or height < 2:
            raise ValueError(f"size: expected (width, height) of at least 2x2, got {size!r}")
        gif = self.format.video == "gif"
        self.fps = rate
        self.size = (width, height)
        self.encoded_size = (width, height) if gif else (width + width % 2, height + height % 2)
        if self.encoded_size != self.size:
            log.info("%s: padding %dx%d frames to %dx%d (yuv420p needs even sizes)",
                     self.path, width, height, *self.encoded_size)
        self.frames_written = 0
        self.overwrite = overwrite
        self._closed = False
        self._audio: _AudioMuxer | None = None
        self._gif: _GifEncoder | None = None
        self._gif_step = max(1, math.ceil(float(rate) / GIF_MAX_FPS - 1e-9)) if gif else 1
        self._out: Any = None
        if not overwrite and self.path.exists():
            raise _output_exists(self.path)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        """Where the audio comes from (None: a silent video, or a GIF)."""
        if self.audio_from is not None and _same_file(self.path, self.audio_from):
            raise InputError("the output would replace its audio source", path=self.path,
                             expected="an output file other than the audio file",
                             got=f"the audio file ({self.audio_from})")
        if gif and self.audio_from is not None:
            log.warning("%s: an animated GIF has no sound; the audio of %s is left out",
                        self.path, self.audio_from)
            self.audio_from = None
        if self._gif_step > 1:
            log.info("%s: GIF frames shorter than 1/%g s play slowed down in browsers; keeping "
                     "every %d. frame (%g fps)", self.path, GIF_MAX_FPS, self._gif_step,
                     float(rate) / self._gif_step)
        self._check_size()
        encoder = _video_encoder(self.format, alpha)
        remove_stale_partials(parent)
        self._temp = _reserve_temp(self.path, parent)
        try:
            if gif:
                self._open_gif()
            else:
                self._open(encoder, crf, preset)
        except BaseException:
            self._discard()
            raise

    def _check_size(self) -> None:
        check_video_size(self.format, self.encoded_size, float(self.fps), path=self.path)

    def _failure(self, doing: str, exc: BaseException) -> BackendError:
        return BackendError(f"{self.path}: {doing} ({self.format.suffix}, "
                            f"{self.format.description}) failed: {_describe(exc)}")

    def _open(self, encoder: str, crf: int | None, preset: str) -> None:
        import av

        fmt = self.format
        rate = self.fps
        options = {"movflags": "+faststart"} if fmt.faststart else {}
        stream_options: dict[str, str] = {}
        self._pix_fmt = "yuv420p"
        if self.alpha and fmt.alpha is not None:
            _, self._pix_fmt, extra = _ALPHA_CODECS[fmt.alpha]
            stream_options = dict(extra)
        if encoder == "libx264":
            level = h264_level(*self.encoded_size, float(rate))
            stream_options = {"crf": str(18 if crf is None else crf), "preset": preset}
            if level is not None:
                stream_options["level"] = f"{level // 10}.{level % 10}"
        elif encoder == "libvpx-vp9":
            # constant quality (b=0); "good" at cpu-used 5 is ~3x x264 veryfast's time
            stream_options = {"crf": str(31 if crf is None else crf), "b": "0",
                              "deadline": "good", "cpu-used": "5", "row-mt": "1"}
        try:
            self._out = av.open(str(self._temp), mode="w", format=fmt.container,
                                container_options=options)
            self._stream: Any = self._out.add_stream(encoder, rate=rate, options=stream_options)
            ctx: Any = self._stream.codec_context
            ctx.width, ctx.height = self.encoded_size
            ctx.pix_fmt = self._pix_fmt
            ctx.time_base = Fraction(1, 1) / rate
            if encoder not in ("libx264", "libvpx-vp9", "prores_ks"):
                w, h = self.encoded_size
                ctx.bit_rate = max(1_000_000, int(w * h * float(rate) * 0.15))
            # Tag the colours the frames are converted with (BT.709, limited range).
            ctx.colorspace = 1
            ctx.color_primaries = 1
            ctx.color_trc = 1
            ctx.color_range = 1
        except (av.FFmpegError, OSError, ValueError, TypeError) as exc:
            raise self._failure(f"setting up {encoder}", exc) from None
        if self.audio_from is not None:
            self._audio = _AudioMuxer(self.audio_from, self._out, fmt)

    def _open_gif(self) -> None:
        import av

        try:
            self._gif = _GifEncoder(self._temp, self.encoded_size, self.fps / self._gif_step)
        except (av.FFmpegError, OSError, ValueError, TypeError) as exc:
            raise self._failure("setting up the GIF encoder", exc) from None

    @property
    def temp_path(self) -> Path:
        """Where the file is being written until :meth:`close` renames it."""
        return self._temp

    @property
    def duration(self) -> float:
        """Seconds of video written so far."""
        return float(self.frames_written / self.fps)

    def write(self, image: np.ndarray) -> None:
        """Encode one RGB uint8 frame of the writer's ``size`` (RGBA with ``alpha``)."""
        import av

        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        if self.alpha:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 4:
                raise ValueError(f"frame: expected an RGBA uint8 array of shape (H, W, 4), "
                                 f"got dtype {image.dtype} shape {image.shape}")
        else:
            check_rgb(image, "frame")
        if (image.shape[1], image.shape[0]) != self.size:
            raise ValueError(f"frame: expected size {self.size[0]}x{self.size[1]}, "
                             f"got {image.shape[1]}x{image.shape[0]}")
        if self._gif is not None:
            try:
                if self.frames_written % self._gif_step == 0:
                    self._gif.write(np.ascontiguousarray(image))
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise self._failure("writing the video", exc) from None
            self.frames_written += 1
            return
        if self.encoded_size != self.size:
            pad_y = self.encoded_size[1] - self.size[1]
            pad_x = self.encoded_size[0] - self.size[0]
            image = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image),
                                           format="rgba" if self.alpha else "rgb24")
        frame = frame.reformat(format=self._pix_fmt, dst_colorspace="ITU709",
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
        except (av.FFmpegError, OSError) as exc:
            raise self._failure("writing the video", exc) from None

    def close(self) -> None:
        """Flush the encoder, finish the audio, write the index and rename the file into
        place. Harmless to call again. If finishing fails, the partial file is removed."""
        import av

        if self._closed:
            return
        self._closed = True
        try:
            if self._gif is not None:
                if self.frames_written:
                    self._gif.finish()
                self._gif.close()
            else:
                for packet in self._stream.encode(None):
                    self._out.mux(packet)
                if self._audio is not None:
                    self._audio.feed(self._out, self.duration, final=True)
                    self._audio.close()
                self._out.close()
        except BaseException as exc:
            self._discard()
            if isinstance(exc, (av.FFmpegError, OSError)):
                raise self._failure("finishing the video", exc) from None
            raise
        if self.frames_written == 0:
            self._discard()
            raise ValueError(f"{self.path}: no frames were written; nothing saved")
        if not self.overwrite and self.path.exists():
            self._discard()
            raise _output_exists(self.path)
        try:
            os.replace(self._temp, self.path)
        except OSError as exc:
            self._discard()
            raise InputError("cannot save the output video", path=self.path,
                             expected="a writable file name", got=_describe(exc)) from None
        log.debug("wrote %s (%d frames, %.2f s)", self.path, self.frames_written, self.duration)

    def abort(self) -> None:
        """Stop without saving: the temporary file is deleted; harmless to call again."""
        if self._closed:
            return
        self._closed = True
        self._discard()

    def _discard(self) -> None:
        for closer in (getattr(self, "_audio", None), getattr(self, "_out", None),
                       getattr(self, "_gif", None)):
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


def read_rgba(path: PathLike, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video as RGBA uint8 arrays, alpha included (opaque when the file has
    none): what :class:`VideoWriter` wrote with ``alpha=True``, e.g. for a check. VP9 is
    decoded with ``libvpx-vp9``, which reads WebM's alpha plane (FFmpeg's own VP9 decoder
    drops it); everything else with FFmpeg's default decoder."""
    import itertools

    import av

    p = Path(path)
    container = _open_input(p)
    try:
        stream = container.streams.video[0]
        decoder: Any = None
        if stream.codec_context.name == "vp9" and "libvpx-vp9" in av.codecs_available:
            decoder = av.CodecContext.create("libvpx-vp9", "r")

        def frames() -> Iterator[Any]:
            if decoder is None:
                yield from container.decode(stream)
                return
            for packet in container.demux(stream):
                yield from decoder.decode(packet)  # the flush packet (None data) included

        for vframe in itertools.islice(frames(), max_frames):
            yield np.ascontiguousarray(vframe.to_ndarray(format="rgba"))
    except av.FFmpegError as exc:
        raise InputError("cannot decode the video", path=p, got=_describe(exc)) from None
    finally:
        container.close()


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
