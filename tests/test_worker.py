"""live.io.threads.Worker: the encoder thread of ``animate`` and the live recorder."""

from __future__ import annotations

import threading
import time

import pytest

from live.io.threads import Worker


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_every_item_is_handled_in_order_before_close_returns() -> None:
    seen: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.002)
        seen.append(item)

    with Worker(slow, max_queue=2, name="w-order") as worker:
        for i in range(30):
            assert worker.put(i)  # waits while the queue is full
    assert seen == list(range(30))
    assert not _threads("w-order")


def test_a_full_queue_refuses_without_blocking() -> None:
    release = threading.Event()
    worker: Worker[int] = Worker(lambda _: release.wait(), max_queue=1, name="w-full")
    worker.put(0)  # taken by the thread, which then waits
    deadline = time.monotonic() + 10
    while not worker.put(1, block=False):  # fills the queue once the thread holds item 0
        assert time.monotonic() < deadline
    assert not worker.put(2, block=False)
    release.set()
    worker.close()
    with pytest.raises(ValueError, match="closed"):
        worker.put(3)


def test_an_error_is_raised_once_and_later_items_are_dropped() -> None:
    handled: list[int] = []

    def fail_on_two(item: int) -> None:
        if item == 2:
            raise OSError("disk full")
        handled.append(item)

    worker = Worker(fail_on_two, max_queue=2, name="w-error")
    for i in range(20):  # never blocks, even though the thread stopped handling items
        worker.put(i)
    worker.close()
    assert handled == [0, 1]
    assert isinstance(worker.error, OSError)
    with pytest.raises(OSError, match="disk full"):
        worker.raise_error()
    worker.raise_error()  # once only


def test_leaving_with_an_exception_drops_what_is_queued() -> None:
    started, release = threading.Event(), threading.Event()
    handled: list[int] = []

    def wait_then_keep(item: int) -> None:
        started.set()
        release.wait()
        handled.append(item)

    with pytest.raises(KeyError), Worker(wait_then_keep, max_queue=5, name="w-drop") as worker:
        for i in range(5):
            worker.put(i)
        assert started.wait(10)
        # the thread holds item 0 until after the queued items were dropped
        threading.Timer(0.3, release.set).start()
        raise KeyError("stop")
    assert handled == [0]
    assert not _threads("w-drop")
