"""Deletions reach the warehouse as soft deletes, for every connector: what an incremental read sees
(archives, deletions, merges, the trash, and their restores), and what only a full refresh's sweep can
find. A full refresh that fails part-way deletes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import register
from tests.contract.cases import CASES
from tests.contract.conftest import Connected
from tests.support import latest_metadata, rows

FULL_REFRESH = {"full_refresh": "true"}


def lifecycle(c: Connected, entity: str) -> dict[str, tuple[bool, bool, str | None]]:
    """source id -> (is_deleted, deleted_at is set, merged_into)."""
    return {
        source_id: (deleted, stamped, merged_into)
        for source_id, deleted, stamped, merged_into in rows(
            f"SELECT source_id, is_deleted, deleted_at IS NOT NULL, merged_into FROM {entity} "
            "WHERE workspace_id = :w AND source = :s",
            w=c.workspace,
            s=c.case.name,
        )
    }


def deleted_ids(c: Connected, entity: str) -> set[str]:
    return {i for i, (deleted, _, _) in lifecycle(c, entity).items() if deleted}


def live_ids(c: Connected, vendor_entity: str, count: int) -> list[str]:
    return [r["id"] for r in c.sandbox.truth(c.case.name, vendor_entity) if r["state"] == "live"][:count]


def test_a_full_refresh_marks_the_records_the_vendor_no_longer_has(connected: Connected):
    c = connected
    entity, vendor_entity = next(iter(c.case.entities.items()))
    assert c.sync().success
    before = deleted_ids(c, entity)
    gone = live_ids(c, vendor_entity, 3)
    c.sandbox.mutate(c.case.name, vendor_entity, action=c.case.vanish, ids=gone)

    assert c.sync(tags=FULL_REFRESH, selection=[f"{c.case.name}/{entity}"]).success
    assert deleted_ids(c, entity) - before == set(gone)
    assert all(lifecycle(c, entity)[i][1] for i in gone)  # deleted_at set
    meta = latest_metadata(c.instance, f"{c.case.name}/{entity}", c.workspace)
    assert (meta["mode"], meta["records_deleted"], meta["records_synced"]) == ("full", 3, 0)
    assert rows("SELECT records_deleted FROM sync_log ORDER BY id DESC LIMIT 1") == [(3,)]


def test_a_full_refresh_that_fails_part_way_deletes_nothing(connected: Connected, warehouse, sandbox):
    c = connected
    entity, vendor_entity = next(iter(c.case.entities.items()))
    assert c.sync().success
    before = deleted_ids(c, entity)
    c.sandbox.mutate(c.case.name, vendor_entity, action=c.case.vanish, ids=live_ids(c, vendor_entity, 3))
    register(warehouse, c.instance, sandbox, c.workspace, [c.case.name], **c.case.small_pages, retry={"max_retries": 0})
    c.sandbox.faults(c.case.name, outage_after_requests=c.case.requests_before_first_page + 1)

    assert not c.sync(tags=FULL_REFRESH, selection=[f"{c.case.name}/{entity}"]).success
    assert deleted_ids(c, entity) == before
    [(status, deleted)] = rows("SELECT status, records_deleted FROM sync_log ORDER BY id DESC LIMIT 1")
    assert (status, deleted) == ("failed", 0)

    c.sandbox.clear_faults(c.case.name)
    assert c.sync(tags=FULL_REFRESH, selection=[f"{c.case.name}/{entity}"]).success
    assert len(deleted_ids(c, entity) - before) == 3


RESTORABLE = [c.name for c in CASES.values() if any(t["action"] == "restore" for t in c.lifecycle)]


@pytest.mark.parametrize("case", RESTORABLE, indirect=True)
def test_an_incremental_sync_marks_deletions_and_a_restore_brings_the_row_back(connected: Connected):
    c = connected
    entity, vendor_entity = next(iter(c.case.entities.items()))
    action = next(t["action"] for t in c.case.lifecycle if t["action"] != "restore" and "entities" not in t)
    assert c.sync().success
    before = deleted_ids(c, entity)
    target = live_ids(c, vendor_entity, 1)
    c.sandbox.mutate(c.case.name, vendor_entity, action=action, ids=target)

    assert c.sync().success
    assert deleted_ids(c, entity) - before == set(target)
    meta = latest_metadata(c.instance, f"{c.case.name}/{entity}", c.workspace)
    assert (meta["mode"], meta["records_deleted"]) == ("incremental", 1)

    c.sandbox.mutate(c.case.name, vendor_entity, action="restore", ids=target)
    assert c.sync().success
    assert deleted_ids(c, entity) == before
    assert lifecycle(c, entity)[target[0]] == (False, False, None)


@pytest.mark.parametrize(
    ("case", "vendor_entity"), [("hubspot", "contacts"), ("salesforce", "Contact")], indirect=["case"]
)
def test_a_merged_away_record_is_deleted_and_names_its_survivor(connected: Connected, vendor_entity: str):
    c = connected
    entity = next(e for e, v in c.case.entities.items() if v == vendor_entity)
    assert c.sync().success
    loser, survivor = live_ids(c, vendor_entity, 2)
    c.sandbox.mutate(c.case.name, vendor_entity, action="merge", ids=[loser], into=survivor)

    assert c.sync().success
    assert lifecycle(c, entity)[loser] == (True, True, survivor)
    assert lifecycle(c, entity)[survivor][0] is False


@pytest.mark.parametrize("case", ["salesforce"], indirect=True)
def test_an_archived_salesforce_task_stays_live(connected: Connected):
    """queryAll returns archived Tasks (IsArchived) that query hides: archived is not deleted."""
    c = connected
    assert c.sync().success
    [task] = live_ids(c, "Task", 1)
    c.sandbox.mutate("salesforce", "Task", action="archive", ids=[task])
    assert c.sync().success
    assert c.sync(tags=FULL_REFRESH).success
    assert lifecycle(c, "tasks")[task] == (False, False, None)


@pytest.mark.parametrize("case", ["salesforce"], indirect=True)
def test_salesforce_hard_deletes_come_from_the_deleted_endpoint(connected: Connected):
    c = connected
    assert c.sync().success
    purged = live_ids(c, "Opportunity", 2)
    c.sandbox.mutate("salesforce", "Opportunity", action="purge", ids=purged)
    assert c.sync(selection=["salesforce/deals"]).success
    assert deleted_ids(c, "deals") == set(purged)
    deleted_calls = [
        r for r in c.sandbox.requests("salesforce") if r["path"].endswith("/sobjects/Opportunity/deleted/")
    ]
    assert len(deleted_calls) == 1 and set(deleted_calls[0]["query"]) == {"start", "end"}


@pytest.mark.parametrize("case", ["salesforce"], indirect=True)
def test_an_emptied_recycle_bin_makes_salesforce_read_everything(connected: Connected):
    """Deletions older than the recycle bin are gone from the deleted endpoint: the sync reads the object in
    full and sweeps the rows Salesforce no longer has."""
    c = connected
    assert c.sync().success
    purged = live_ids(c, "Opportunity", 2)
    c.sandbox.mutate("salesforce", "Opportunity", action="purge", ids=purged)
    c.sandbox.faults("salesforce", recycle_bin_emptied_at="now")
    assert c.sync(selection=["salesforce/deals"]).success
    assert latest_metadata(c.instance, "salesforce/deals", c.workspace)["mode"] == "full"
    assert deleted_ids(c, "deals") == set(purged)
