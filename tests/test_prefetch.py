"""Pages are fetched ahead on a thread while the current one is written: in order, at most PAGES_AHEAD
ahead, a fetch error surfaces in the loop, and a loop that stops early stops the fetching."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sync_assets.pages import PAGES_AHEAD, prefetched


class Vendor:
    def __init__(self, pages: int, fail_at: int | None = None) -> None:
        self.pages, self.fail_at = pages, fail_at
        self.fetched = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[int]:
        try:
            for number in range(self.pages):
                if number == self.fail_at:
                    raise ConnectionError(f"vendor down at page {number}")
                self.fetched += 1
                yield number
        finally:
            self.closed.set()


def settle() -> None:
    time.sleep(0.3)  # long enough for the fetch thread to run as far ahead as it may


def test_pages_come_out_in_order_and_never_more_than_pages_ahead():
    vendor = Vendor(pages=20)
    pages = prefetched(iter(vendor))
    assert next(pages) == 0
    settle()
    # The page in hand, PAGES_AHEAD queued, and one more the fetch thread holds while the queue is full.
    assert vendor.fetched == 1 + PAGES_AHEAD + 1
    assert list(pages) == list(range(1, 20))


def test_a_fetch_error_reaches_the_loop_after_the_pages_before_it():
    pages = prefetched(iter(Vendor(pages=10, fail_at=3)))
    assert [next(pages) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ConnectionError, match="vendor down at page 3"):
        next(pages)


def test_a_loop_that_stops_early_stops_the_fetching():
    vendor = Vendor(pages=1000)
    pages = prefetched(iter(vendor))
    assert next(pages) == 0
    pages.close()
    assert vendor.closed.wait(5)
    fetched = vendor.fetched
    settle()
    assert vendor.fetched == fetched <= 1 + PAGES_AHEAD + 1
