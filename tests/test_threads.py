"""live.io.threads.Prefetch: bounded, nothing dropped, errors reach the consumer, close stops it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from live.io.threads import Prefetch


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_bounded_in_order_and_nothing_dropped() -> None:
    with Prefetch(iter(range(50)), max_queue=3, name="t-bounded") as feed:
        items = iter(feed)
        _wait_for(lambda: feed.produced == 4)
        time.sleep(0.2)  # every chance to run further ahead: it must not
        assert feed.produced == 4 and feed.max_pending == 4
        got = []
        for item in items:
            time.sleep(0.002)  # a consumer slower than the producer
            assert feed.produced - feed.consumed <= 4
            got.append(item)
    assert got == list(range(50))
    assert feed.consumed == 50 and feed.max_pending == 4


def test_an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    got: list[int] = []
    with Prefetch(items(), max_queue=1, name="t-error") as feed, \
            pytest.raises(OSError, match="disk gone"):
        for item in feed:
            got.append(item)
    assert got == [1, 2]


def test_close_stops_a_producer_waiting_on_a_full_queue() -> None:
    cleaned = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            cleaned.set()

    feed = Prefetch(endless(), max_queue=2, name="t-close")
    items = iter(feed)
    assert next(items) == 0
    _wait_for(lambda: feed.produced >= 4)
    assert _threads("t-close")
    feed.close()
    feed.close()
    assert not _threads("t-close")
    assert cleaned.is_set()  # the generator's finally ran
    assert feed.produced < 10


def test_iterate_once_and_not_after_close() -> None:
    feed = Prefetch(iter([1]), name="t-once")
    assert list(feed) == [1]
    with pytest.raises(ValueError, match="only once"):
        iter(feed)
    feed.close()
    unused = Prefetch(iter([1]), name="t-unused")
    unused.close()
    with pytest.raises(ValueError, match="closed"):
        unused.start()
    with pytest.raises(ValueError, match="max_queue"):
        Prefetch(iter([1]), max_queue=0)
