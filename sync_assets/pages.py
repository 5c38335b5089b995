"""How vendor pages flow into commits: fetched ahead in a thread, then batched into transactions."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from resources.models import Deletion

# Pages are committed together up to this many records, or this long after the last commit.
COMMIT_ROWS = 1000
COMMIT_INTERVAL_S = 1.0


@dataclass
class PageBatch:
    """Transformed pages waiting to be committed together: one transaction (and one round of staging
    statements and WAL flush) per COMMIT_ROWS rows rather than per vendor page of 100, but never more
    than COMMIT_INTERVAL_S of reading at risk, so a slow vendor still commits page by page."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    present_ids: list[str] = field(default_factory=list)
    pages: int = 0
    _since: float = field(default_factory=time.monotonic)

    def add(
        self,
        rows: list[dict[str, Any]],
        failures: list[dict[str, Any]],
        deletions: list[Deletion] | None = None,
        present_ids: list[str] | None = None,
    ) -> None:
        self.rows += rows
        self.failures += failures
        self.deletions += deletions or []
        self.present_ids += present_ids or []
        self.pages += 1

    def due(self) -> bool:
        size = len(self.rows) + len(self.failures) + len(self.deletions) + len(self.present_ids)
        return size >= COMMIT_ROWS or time.monotonic() - self._since >= COMMIT_INTERVAL_S

    def take(self) -> PageBatch:
        """What was batched; this batch starts over empty."""
        taken = PageBatch(self.rows, self.failures, self.deletions, self.present_ids, self.pages, self._since)
        self.rows, self.failures, self.deletions, self.present_ids = [], [], [], []
        self.pages, self._since = 0, time.monotonic()
        return taken


_END = object()
PAGES_AHEAD = 4


def prefetched(pages: Iterator[Any]) -> Iterator[Any]:
    """Fetch the next pages from the vendor in a background thread while the current one is
    transformed and committed. Pages still come out in order, and at most PAGES_AHEAD are held ahead:
    enough to keep fetching through a commit (one per up to ten HubSpot pages), still bounded memory."""
    handoff: queue.Queue = queue.Queue(maxsize=PAGES_AHEAD)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        handoff.put(page, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_END)
        except BaseException as exc:  # surfaced in the consumer, with its traceback
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="page-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        close = getattr(pages, "close", None)
        thread.join(timeout=5)
        if close and not thread.is_alive():
            close()
