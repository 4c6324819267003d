"""Threads joined to the caller by a bounded queue: :class:`Prefetch` and :class:`Worker`.

:class:`Prefetch` is a producer thread: used where one stage of a streaming job should run
ahead of the next on its own thread (video decoding in :class:`~live.io.video.VideoReader`,
face tracking in ``mimicam animate``) without ever holding more than a few items: the
producer waits while the queue is full (back-pressure, nothing is dropped), an exception of
the producer is raised in the consumer, and closing stops the thread even while it waits on
a full queue.

:class:`Worker` is its consumer twin: the caller hands items to a thread that does the slow
part (video encoding in ``mimicam animate`` and in the live recorder), waiting while the
queue is full or dropping what does not fit, as the caller chooses.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

__all__ = ["Prefetch", "Worker"]

T = TypeVar("T")

_PUT_POLL = 0.05  # seconds between checks for close() while the queue is full
_GET_POLL = 0.5  # seconds between checks for a closed or vanished producer while waiting


class _End:
    """Queue marker: the producer finished (cleanly, or after queuing its error)."""


class _Failure:
    """Queue item: the producer raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()


class Prefetch(Generic[T]):
    """Iterate ``items`` on a thread of its own, at most ``max_queue`` items ahead.

    The thread starts at :meth:`start` or at the first ``iter()``; iterate once. While the
    queue is full the producer waits with its next item in hand, so the stage never holds
    more than ``max_queue + 1`` items. An exception raised by ``items`` reaches the consumer
    after the items produced before it. :meth:`close` (also at the end of a ``with`` block)
    stops the thread, closes ``items`` when it has a ``close`` method (a generator's
    ``finally`` blocks run on the producer thread) and drops what is still queued; it may be
    called any number of times, from any thread.
    """

    def __init__(self, items: Iterable[T], *, max_queue: int = 4, name: str = "prefetch"
                 ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue: expected >= 1, got {max_queue}")
        self.name = name
        self._items = items
        self._queue: queue.Queue[T | _Failure | _End] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._iterated = False
        self._closed = False
        self._produced = 0
        self._consumed = 0
        self._max_pending = 0

    # -- statistics -----------------------------------------------------------------------------
    @property
    def produced(self) -> int:
        """Items the producer has taken from ``items`` so far."""
        return self._produced

    @property
    def consumed(self) -> int:
        """Items handed to the consumer so far."""
        return self._consumed

    @property
    def max_pending(self) -> int:
        """Most items ever held at once: the queued ones plus the one the producer is handing
        over (at most ``max_queue + 1``)."""
        return self._max_pending

    @property
    def started(self) -> bool:
        return self._thread is not None

    # -- producer -------------------------------------------------------------------------------
    def start(self) -> Prefetch[T]:
        """Start the producer thread (once; later calls do nothing)."""
        if self._closed:
            raise ValueError(f"{self.name}: closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def _put(self, item: T | _Failure | _End) -> bool:
        """Blocking put that gives up when closed; True if queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _loop(self) -> None:
        try:
            for item in self._items:
                self._produced += 1
                self._max_pending = max(self._max_pending, self._queue.qsize() + 1)
                if not self._put(item):
                    return
        except BaseException as exc:  # everything reaches the consumer, nothing is swallowed
            self._put(_Failure(exc))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    log.debug("%s: closing the producer failed", self.name, exc_info=True)
                    self._put(_Failure(exc))
            self._put(_END)

    # -- consumer -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[T]:
        if self._iterated:
            raise ValueError(f"{self.name}: a Prefetch can be iterated only once")
        self._iterated = True
        self.start()
        return self._drain()

    def _drain(self) -> Iterator[T]:
        while True:
            try:
                item = self._queue.get(timeout=_GET_POLL)
            except queue.Empty:
                thread = self._thread
                if self._closed or (thread is not None and not thread.is_alive()
                                    and self._queue.empty()):
                    return
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            self._consumed += 1
            yield item

    def close(self) -> None:
        """Stop the producer thread and drop what is queued; harmless to call again."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None:
            # unblock a producer waiting on a full queue, then wait for it to finish
            while thread.is_alive():
                self._clear()
                thread.join(timeout=_PUT_POLL)
        else:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
        self._clear()

    def _clear(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Worker(Generic[T]):
    """Hand items to ``handle`` on a thread of its own, through a queue of ``max_queue`` items.

    The thread starts at once. :meth:`put` waits while the queue is full (back-pressure,
    nothing is dropped) or, with ``block=False``, returns False at once (the caller drops the
    item and counts it). The first exception ``handle`` raises is kept (:attr:`error`); the
    thread then drops every further item, so the caller never blocks on a dead consumer, and
    :meth:`raise_error` raises it in the caller (once). :meth:`close` (also at the end of a
    ``with`` block) waits until everything queued is handled, or drops it with ``drop=True``
    (a ``with`` block left by an exception), and stops the thread; it may be called again.
    """

    def __init__(self, handle: Callable[[T], object], *, max_queue: int = 4,
                 name: str = "worker") -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue: expected >= 1, got {max_queue}")
        self.name = name
        self._handle = handle
        self._queue: queue.Queue[T | _End] = queue.Queue(max_queue)
        self._error: BaseException | None = None
        self._reported = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def error(self) -> BaseException | None:
        """The first exception ``handle`` raised, or None."""
        return self._error

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                return
            if self._error is not None:
                continue  # keep draining so the caller never blocks
            try:
                self._handle(item)
            except BaseException as exc:  # reaches the caller through raise_error()
                self._error = exc

    def put(self, item: T, *, block: bool = True) -> bool:
        """Queue ``item``; True if queued. ``block=False`` returns False when the queue is
        full. Raises ``ValueError`` after :meth:`close`."""
        if self._closed:
            raise ValueError(f"{self.name}: closed")
        if block:
            self._queue.put(item)
            return True
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def raise_error(self) -> None:
        """Raise the thread's error, if any and not raised here before."""
        if self._error is not None and not self._reported:
            self._reported = True  # the error stays set: the thread keeps dropping items
            raise self._error

    def close(self, *, drop: bool = False) -> None:
        """Handle everything queued (``drop=True``: drop it) and stop the thread; harmless to
        call again. Does not raise the thread's error (see :meth:`raise_error`)."""
        if self._closed:
            return
        self._closed = True
        if drop:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
        self._queue.put(_END)
        self._thread.join()

    def __enter__(self) -> Worker[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(drop=exc_type is not None)
