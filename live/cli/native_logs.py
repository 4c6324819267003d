"""Quiet the info and warning lines that native libraries write straight to stderr.

MediaPipe's C++ graphs (absl logging, never initialised by its Python API), TensorFlow Lite and
Paddle's glog write lines such as ``W0000 00:00:17.5 1234 inference_feedback_manager.cc:114]
Feedback manager requires ...`` to file descriptor 2, a dozen per tracker, from their own
threads. Python's logging cannot reach them and none of these libraries reads an environment
variable that silences them (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL were tried). They bury
the one-line summary or error a user looks for.

:class:`NativeLogFilter` puts a pipe in place of descriptor 2 and a thread that copies
everything to the real stderr except those info/warning lines. Error and fatal lines
(``E...``/``F...``) pass. Python's ``sys.stderr`` (when it is descriptor 2) is pointed at the
real stderr directly, so progress bars still see a terminal and tracebacks never wait on the
thread.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import sys
import threading
from types import TracebackType
from typing import TextIO

__all__ = ["NativeLogFilter", "is_native_noise"]

_NOISE = re.compile(
    rb"^(?:"
    # absl / glog: severity I or W, MMDD, time, thread id, file:line]
    rb"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\]"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb")"
)
_FLUSH_AFTER = 0.1  # seconds an unterminated piece of output waits for the rest of its line


def is_native_noise(line: bytes) -> bool:
    """True for an info/warning line of absl, glog or TensorFlow Lite (what the filter drops)."""
    return _NOISE.match(line.lstrip(b"\r")) is not None


class NativeLogFilter:
    """Context manager: while open, native info/warning lines on descriptor 2 are dropped.

    Use it around a whole command. ``close()`` restores descriptor 2, forwards what is still
    in the pipe and is idempotent. Where descriptor 2 cannot be replaced (no such descriptor,
    an unsupported platform) it does nothing.
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._python_stderr: TextIO | None = None  # ours, while it stands in for sys.stderr
        self._previous_stderr: TextIO | None = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def open(self) -> NativeLogFilter:
        if self._saved is not None or not hasattr(select, "select"):
            return self
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            return self
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._saved = saved
        if _is_descriptor_2(sys.stderr):
            self._previous_stderr = sys.stderr
            self._python_stderr = os.fdopen(
                saved, "w", buffering=1, closefd=False,
                encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                errors="backslashreplace")
            sys.stderr = self._python_stderr
        self._thread = threading.Thread(target=self._pump, args=(read_fd, saved),
                                        name="native-log-filter", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            saved, self._saved = self._saved, None
        if saved is None:
            return
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        if self._python_stderr is not None:
            if sys.stderr is self._python_stderr:
                sys.stderr = self._previous_stderr
            self._python_stderr.close()
            self._python_stderr = self._previous_stderr = None
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees end of file
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        os.close(saved)

    def __enter__(self) -> NativeLogFilter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @staticmethod
    def _pump(read_fd: int, out_fd: int) -> None:
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([read_fd], [], [], _FLUSH_AFTER)
                if not ready:
                    if pending:  # a progress bar or prompt without a newline: show it now
                        _write_all(out_fd, pending)
                        pending = b""
                    continue
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = re.split(rb"(?<=[\n\r])", pending)
                kept = b"".join(line for line in lines if not is_native_noise(line))
                if kept:
                    _write_all(out_fd, kept)
            if pending and not is_native_noise(pending):
                _write_all(out_fd, pending)
        except OSError:
            pass
        finally:
            os.close(read_fd)


def _is_descriptor_2(stream: object) -> bool:
    try:
        return stream is not None and stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False  # a test harness's capture object, or no stderr at all


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
