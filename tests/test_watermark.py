"""The incremental rule on its own (sync_assets/watermark.py): no database, no sandbox, no Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync_assets.watermark import (
    FULL_READ,
    Cursor,
    FilterKind,
    ReadWindow,
    StoredState,
    WatermarkTracker,
    plan_read,
)

T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXACT = Cursor(field="modified", filter=FilterKind.EXACT, safety_lag=timedelta(minutes=2))


def row(source_id: str, at: datetime) -> dict:
    return {"source_id": source_id, "source_updated_at": at}


def test_the_watermark_is_the_greatest_committed_value_when_the_read_began_later():
    tracker = WatermarkTracker(EXACT, previous=None, read_start=T)
    tracker.committed([row("a", T - timedelta(hours=3)), row("b", T - timedelta(hours=1))], T)
    assert tracker.watermark() == T - timedelta(hours=1)


def test_the_watermark_never_passes_the_read_start_less_the_safety_lag():
    """A deal read early and edited later, and one edited before its page was read: the second's time
    is after the read began, so the watermark stops at the read start (less the lag) and the first
    deal's edit is read next time."""
    tracker = WatermarkTracker(EXACT, previous=None, read_start=T)
    tracker.committed([row("edited-before-read", T + timedelta(seconds=30))], T)
    assert tracker.watermark() == T - timedelta(minutes=2)


def test_a_future_dated_record_is_counted_and_never_becomes_the_watermark():
    tracker = WatermarkTracker(EXACT, previous=T - timedelta(days=1), read_start=T)
    year_2099 = datetime(2099, 1, 1, tzinfo=UTC)
    # Edited during the read (after it began, before the vendor's present): not in the future.
    edited_meanwhile = row("edited", T + timedelta(seconds=40))
    tracker.committed(
        [row("ok", T - timedelta(hours=5)), edited_meanwhile, row("2099", year_2099)], T + timedelta(minutes=1)
    )
    assert tracker.future_dated == 1
    assert tracker.first_future_dated == ("2099", year_2099)
    assert tracker.watermark() == T - timedelta(minutes=2)


def test_nothing_new_keeps_the_previous_watermark():
    previous = T - timedelta(days=2)
    tracker = WatermarkTracker(EXACT, previous=previous, read_start=T)
    tracker.committed([], T)
    assert tracker.watermark() == previous


def test_the_watermark_may_move_back_when_the_ceiling_drops_below_it():
    """A longer safety lag (or a vendor clock set back): re-reading is free, passing a record is not."""
    previous = T - timedelta(seconds=30)
    tracker = WatermarkTracker(EXACT, previous=previous, read_start=T)
    assert tracker.watermark() == T - timedelta(minutes=2)


def test_a_read_that_committed_nothing_has_no_watermark():
    assert WatermarkTracker(EXACT, previous=None, read_start=T).watermark() is None


def test_the_read_start_is_the_first_one_seen():
    tracker = WatermarkTracker(EXACT, previous=None)
    tracker.began(T)
    tracker.began(T + timedelta(minutes=5))
    assert tracker.read_start == T


def test_rows_without_a_cursor_value_do_not_move_the_watermark():
    tracker = WatermarkTracker(EXACT, previous=None, read_start=T)
    tracker.committed([row("x", None), row("y", T - timedelta(hours=2))], T)
    assert tracker.watermark() == T - timedelta(hours=2)


# --- the window a sync reads ---------------------------------------------------------------------


def test_first_sync_and_forced_refresh_read_everything():
    stored = StoredState(watermark=T)
    assert plan_read(EXACT, None, full_refresh=False, account=None, now=T) == FULL_READ
    assert plan_read(EXACT, stored, full_refresh=True, account=None, now=T) == FULL_READ
    assert FULL_READ.is_full


def test_an_incremental_read_starts_a_lookback_before_the_watermark():
    cursor = Cursor(field="started", filter=FilterKind.WINDOW, lookback=timedelta(days=1))
    window = plan_read(cursor, StoredState(watermark=T), full_refresh=False, account=None, now=T)
    assert window == ReadWindow(since=T - timedelta(days=1), deleted_since=T - timedelta(days=1))
    assert not window.is_full


def test_a_deletion_log_is_read_from_the_previous_read_start_less_the_lag():
    """Nothing changed for weeks, so the watermark is old; deletions were checked up to the last read."""
    stored = StoredState(watermark=T - timedelta(days=40), read_started_at=T - timedelta(hours=1))
    window = plan_read(EXACT, stored, full_refresh=False, account=None, now=T)
    assert (window.since, window.deleted_since) == (T - timedelta(days=40), T - timedelta(hours=1, minutes=2))


def test_a_periodic_full_refresh_is_due_after_its_interval():
    cursor = Cursor(field="started", filter=FilterKind.WINDOW, full_refresh_every=timedelta(days=7))
    fresh = StoredState(watermark=T, last_full_at=T - timedelta(days=6))
    due = StoredState(watermark=T, last_full_at=T - timedelta(days=7))
    assert plan_read(cursor, fresh, full_refresh=False, account=None, now=T) == ReadWindow(since=T, deleted_since=T)
    assert plan_read(cursor, due, full_refresh=False, account=None, now=T) == FULL_READ
    assert plan_read(cursor, StoredState(watermark=T), full_refresh=False, account=None, now=T) == ReadWindow(
        since=T, deleted_since=T
    )


def test_a_change_log_cursor_resumes_from_its_token():
    cursor = Cursor(field="changes", filter=FilterKind.CHANGE_LOG)
    assert plan_read(cursor, StoredState(resume_token="42"), full_refresh=False, account=None, now=T) == ReadWindow(
        resume_token="42"
    )
    assert plan_read(cursor, StoredState(watermark=T), full_refresh=False, account=None, now=T) == FULL_READ


def test_state_of_another_vendor_account_means_a_full_read():
    stored = StoredState(watermark=T, account="portal-1")
    assert plan_read(EXACT, stored, full_refresh=False, account="portal-2", now=T) == FULL_READ
    assert plan_read(EXACT, stored, full_refresh=False, account="portal-1", now=T) == ReadWindow(
        since=T, deleted_since=T
    )
    assert plan_read(EXACT, StoredState(watermark=T), full_refresh=False, account="portal-1", now=T) == ReadWindow(
        since=T, deleted_since=T
    )


def test_a_connection_overrides_lookback_and_safety_lag():
    cursor = EXACT.with_overrides({"lookback_hours": 2, "safety_lag_seconds": 30})
    assert (cursor.lookback, cursor.safety_lag) == (timedelta(hours=2), timedelta(seconds=30))
    assert EXACT.with_overrides({}) == EXACT
    assert EXACT.with_overrides({"lookback_hours": None}) == EXACT


def test_overrides_keep_the_periodic_full_refresh():
    """Regression: overrides (applied to every cursor, even with none set) dropped ``full_refresh_every``, so
    Gong and Fireflies, which have no deletion feed, never read in full again."""
    cursor = Cursor(field="started", filter=FilterKind.WINDOW, full_refresh_every=timedelta(days=7))
    assert cursor.with_overrides({}) == cursor
    assert cursor.with_overrides({"lookback_hours": 2}).full_refresh_every == timedelta(days=7)
    due = StoredState(watermark=T, last_full_at=T - timedelta(days=7))
    assert plan_read(cursor.with_overrides({}), due, full_refresh=False, account=None, now=T) == FULL_READ


@pytest.mark.parametrize("bad", [-1, "2", True])
def test_a_bad_override_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match="lookback_hours must be a non-negative number"):
        EXACT.with_overrides({"lookback_hours": bad})
