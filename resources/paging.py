"""Paging through a vendor's cursors, once for every client that follows one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def cursor_pages(fetch: Callable[[str | None], T], next_cursor: Callable[[T], str | None]) -> Iterator[T]:
    """``fetch(None)``, then ``fetch(cursor)`` for as long as the last page names a next cursor."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield page
        cursor = next_cursor(page)
        if not cursor:
            return
