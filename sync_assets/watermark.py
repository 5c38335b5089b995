"""The incremental rule, in one place: which window a sync reads, and how far its watermark may move.

The rule (README "Decisions"): the stored watermark never passes a record this sync may not have read.
It is the smaller of

* the greatest cursor value now committed (this sync's rows, or the previous watermark), and
* the vendor-clock instant at which this entity's read began, less the connector's safety lag.

The second bound covers every way a record can be missed by a read that was under way while the vendor
changed: an edit that lands behind the reader, a search index that lags, a transaction that commits
rows stamped before the read began. Whatever the read missed carries a cursor value after the read
start (less the lag), so the next read, from the watermark, finds it. Re-reading is free: the upsert
writes only rows that changed (resources/loader.py), so re-read rows are neither rewritten nor counted.

A record dated after the vendor's own present (a client-set time in the future) is synced, but cannot
drag the watermark past the read start: it is counted as ``future_dated``.

Nothing here touches Dagster or a database, so the rule is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

FUTURE_MARGIN = timedelta(seconds=1)


class FilterKind(StrEnum):
    """How the vendor filters on the cursor field."""

    EXACT = "exact"  # by the cursor field itself, at its own resolution (HubSpot, Salesforce)
    DAY = "day"  # by the cursor field's day only; finer edits within the day are re-read (monday)
    WINDOW = "window"  # a time window on a field that is not a modification time (Gong, Fireflies)
    CHANGE_LOG = "change_log"  # an opaque position in the vendor's change log (Drive changes)


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """How one entity is read incrementally: declared by its connector recipe.

    ``field`` is the vendor field the vendor filters on; the watermark is taken from the same field (a
    transform sets ``source_updated_at`` from it). ``lookback`` widens every incremental read backwards
    (vendors whose records arrive late with old cursor values). ``safety_lag`` holds the watermark back
    from the read start (vendors whose reads can miss records stamped shortly before the read);
    ``lag_reason`` says which documented vendor behaviour needs it.
    """

    field: str
    filter: FilterKind
    lookback: timedelta = timedelta(0)
    safety_lag: timedelta = timedelta(0)
    lag_reason: str = ""
    # Vendors with no deletion feed and no modified time (Gong, Fireflies): a full read this often finds
    # what was deleted and what was edited outside the lookback.
    full_refresh_every: timedelta | None = None

    def with_overrides(self, config: Mapping[str, Any]) -> Cursor:
        """A connection's ``lookback_hours`` / ``safety_lag_seconds`` override the declared ones."""
        lookback = _non_negative(config, "lookback_hours", timedelta(hours=1), self.lookback)
        lag = _non_negative(config, "safety_lag_seconds", timedelta(seconds=1), self.safety_lag)
        return replace(self, lookback=lookback, safety_lag=lag)  # everything else as declared


def _non_negative(config: Mapping[str, Any], key: str, unit: timedelta, default: timedelta) -> timedelta:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a non-negative number, not {value!r}")
    return unit * value


@dataclass(frozen=True)
class StoredState:
    """What the previous sync of (entity, workspace) left: its watermark and, for change logs, the
    position to resume from. ``account`` is the vendor account the state belongs to; ``last_full_at``
    when a full read last completed."""

    watermark: datetime | None = None
    resume_token: str | None = None
    account: str | None = None
    last_full_at: datetime | None = None
    read_started_at: datetime | None = None  # by the vendor's clock


@dataclass(frozen=True)
class ReadWindow:
    """What one sync asks the vendor for. Full when it has neither a lower bound nor a token.
    ``deleted_since`` is where a vendor's deletion log must be read from: the previous read's start
    (less the safety lag), which may be long after ``since`` when nothing changed for a while."""

    since: datetime | None = None  # cursor values at or after this instant
    resume_token: str | None = None  # change-log position (CHANGE_LOG cursors)
    deleted_since: datetime | None = None

    @property
    def is_full(self) -> bool:
        return self.since is None and self.resume_token is None


FULL_READ = ReadWindow()


def plan_read(
    cursor: Cursor, stored: StoredState | None, *, full_refresh: bool, account: str | None, now: datetime
) -> ReadWindow:
    """The window of the next read. A forced refresh, a first sync, state that belongs to another vendor
    account (the connection was re-pointed), or a periodic full refresh that is due reads everything."""
    if full_refresh or stored is None:
        return FULL_READ
    if account is not None and stored.account is not None and stored.account != account:
        return FULL_READ
    every, last_full = cursor.full_refresh_every, stored.last_full_at
    if every is not None and last_full is not None and now - last_full >= every:
        return FULL_READ
    if cursor.filter is FilterKind.CHANGE_LOG:
        return ReadWindow(resume_token=stored.resume_token) if stored.resume_token else FULL_READ
    if stored.watermark is None:
        return FULL_READ
    since = stored.watermark - cursor.lookback
    deleted_since = since if stored.read_started_at is None else stored.read_started_at - cursor.safety_lag
    return ReadWindow(since=since, deleted_since=deleted_since)


class WatermarkTracker:
    """Follows one entity's read: what was committed, and when (by the vendor's clock) the read began."""

    def __init__(self, cursor: Cursor, previous: datetime | None, read_start: datetime | None = None) -> None:
        self.cursor = cursor
        self.previous = previous
        self.read_start = read_start
        self.max_committed: datetime | None = None
        self.future_dated = 0
        self.first_future_dated: tuple[str, datetime] | None = None

    def began(self, read_start: datetime) -> None:
        """The vendor-clock instant of the read's first response (the earliest the read can see)."""
        if self.read_start is None:
            self.read_start = read_start

    def committed(self, rows: Iterable[Mapping[str, Any]], vendor_now: datetime) -> None:
        """Rows now durable in the warehouse (written, or found unchanged), as of ``vendor_now`` by the
        vendor's clock (whole seconds, floored: a record of this very second is not in the future)."""
        future = vendor_now + FUTURE_MARGIN
        for row in rows:
            value = row["source_updated_at"]
            if value is None:
                continue
            if self.max_committed is None or value > self.max_committed:
                self.max_committed = value
            if value > future:
                self.future_dated += 1
                if self.first_future_dated is None:
                    self.first_future_dated = (str(row["source_id"]), value)

    @property
    def ceiling(self) -> datetime | None:
        """The latest instant the watermark may take: the read start less the safety lag."""
        return None if self.read_start is None else self.read_start - self.cursor.safety_lag

    def watermark(self) -> datetime | None:
        """The smaller of the greatest committed cursor value (or the previous watermark) and the ceiling."""
        marks = [m for m in (self.previous, self.max_committed) if m is not None]
        if not marks:
            return None
        highest, ceiling = max(marks), self.ceiling
        # It may even go back (a longer lag, a vendor clock set back): a re-read costs nothing, a loss does.
        return highest if ceiling is None else min(highest, ceiling)
