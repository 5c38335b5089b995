"""The sync loop commits pages together: up to COMMIT_ROWS records, or COMMIT_INTERVAL_S after the last
commit, whichever comes first (a vendor failure part-way commits what was read: see the HubSpot crash
test)."""

from __future__ import annotations

import time

from sync_assets import pages
from sync_assets.pages import PageBatch


def page(n: int, start: int = 0) -> list[dict]:
    return [{"source_id": str(start + i)} for i in range(n)]


def test_pages_wait_until_the_batch_holds_commit_rows_records():
    batch = PageBatch()
    for index in range(pages.COMMIT_ROWS // 100 - 1):
        batch.add(page(100, index * 100), [])
        assert not batch.due()
    batch.add(page(99, 900), [{"error": "bad"}])  # dead letters count towards the batch too
    assert batch.due()
    taken = batch.take()
    assert (len(taken.rows), taken.failures, taken.pages) == (999, [{"error": "bad"}], 10)
    assert [r["source_id"] for r in taken.rows] == [str(i) for i in range(999)]
    assert (batch.rows, batch.failures, batch.pages, batch.due()) == ([], [], 0, False)


def test_a_slow_vendor_still_commits_page_by_page(monkeypatch):
    monkeypatch.setattr(pages, "COMMIT_INTERVAL_S", 0.05)
    batch = PageBatch()
    time.sleep(0.06)  # the first page took longer than the interval to arrive
    batch.add(page(1), [])
    assert batch.due()
    assert batch.take().pages == 1
    batch.add(page(1), [])
    assert not batch.due()  # the interval restarts at each commit
