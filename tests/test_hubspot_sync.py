"""HubSpot's own behaviour, against the sandbox over HTTP through the real assets: the search bodies of its
keyset reads (by object id for full syncs, by last-modified time for incremental ones), many records
sharing one modified instant, the 10,000-result search cap, and its backoff timing. What every connector
does (full then incremental, bad records, throttling, tokens, replay, reconciliation) is in tests/contract.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.hubspot import HubSpotResource
from resources.warehouse import WarehouseResource
from sync_assets.hubspot import CONNECTOR, PROPERTIES
from sync_assets.runs import sync_run_config
from sync_assets.watermark import ReadWindow
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

HUBSPOT = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
WS = "acme"
DEAL_ID_BASE = 30_000_000  # the sandbox's deal i has id 30000000 + i
DEALS_READ = CONNECTOR.entities[0].read
DEAL_PROPERTIES = PROPERTIES["deals"] + ["hs_lastmodifieddate", "createdate", "hs_merged_object_ids"]
SEARCH = "/hubspot/crm/v3/objects/deals/search"
ARCHIVE = "/hubspot/crm/v3/objects/deals"  # the list endpoint, asked for the archive


@pytest.fixture(autouse=True)
def no_platform_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox is this suite's alone: no platform limit on HubSpot calls, nor on its search scope."""
    monkeypatch.setenv("SYNC_RATE_LIMITS", json.dumps({"hubspot": False, "hubspot:search": False}))


def setup(warehouse, instance, sandbox, deals: int, **config) -> None:
    sizes = {"deals": deals, "contacts": 1, "companies": 1, "tasks": 1}
    sandbox.reset(sizes={"hubspot": sizes}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"], **config)


def sync(instance, *entities: str):
    return run_sync(instance, HUBSPOT, WS, selection=[f"hubspot/{e}" for e in entities or ("deals",)])


def metadata(instance, entity: str = "deals") -> dict:
    return latest_metadata(instance, f"hubspot/{entity}", WS)


def deal_id(index: int) -> str:
    return str(DEAL_ID_BASE + index)


def epoch_ms(moment: str | float | datetime) -> int:
    """An ISO instant, epoch seconds (a watermark's metadata value) or a datetime, in epoch ms."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    elif isinstance(moment, float | int):
        moment = datetime.fromtimestamp(moment, UTC)
    return int(moment.timestamp() * 1000)


def searches(sandbox, object_type: str = "deals") -> list[dict]:
    path = f"/hubspot/crm/v3/objects/{object_type}/search"
    return [r for r in sandbox.requests("hubspot") if r["path"] == path]


def archive_reads(sandbox) -> list[tuple[str, dict, int]]:
    """(method, query, status) of each request for the deals' archive."""
    return [(r["method"], r["query"], r["status"]) for r in sandbox.requests("hubspot") if r["path"] == ARCHIVE]


def archive_query(after: str | None = None) -> dict[str, str]:
    query = {"limit": "100", "archived": "true", "properties": ",".join(DEAL_PROPERTIES)}
    return query if after is None else {**query, "after": after}


def filters_sent(sandbox, object_type: str = "deals") -> list[list[tuple[str, str, str]]]:
    """Each search's filters as (property, operator, value), in the order the sandbox saw them."""
    return [
        [(f["propertyName"], f["operator"], f["value"]) for f in r["body"]["filterGroups"][0]["filters"]]
        for r in searches(sandbox, object_type)
    ]


def modified_ms(sandbox) -> dict[str, int]:
    """Each deal's hs_lastmodifieddate at the vendor, in epoch ms."""
    return {r["id"]: epoch_ms(r["modified"]) for r in sandbox.truth("hubspot", "deals")}


def deal_names() -> dict[str, str]:
    return dict(rows("SELECT source_id, name FROM deals WHERE workspace_id = :w", w=WS))


def test_a_full_sync_searches_by_object_id_above_the_last_id_read(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, deals=50, page_size=20)
    assert sync(instance).success
    by_id = [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
    assert [r["body"] for r in searches(sandbox)] == [
        {
            "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": after}]}],
            "sorts": by_id,
            "properties": DEAL_PROPERTIES,
            "limit": 20,
            "after": "0",
        }
        for after in ("0", deal_id(19), deal_id(39))
    ]
    assert [r["status"] for r in searches(sandbox)] == [200] * 3
    # Then the whole archive (search never returns archived records); nothing else, no GET by id.
    crm = [(r["method"], r["path"]) for r in sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert crm == [("POST", SEARCH)] * 3 + [("GET", ARCHIVE)]
    assert archive_reads(sandbox) == [("GET", archive_query(), 200)]
    assert sorted(deal_names()) == [deal_id(i) for i in range(50)]


def test_an_incremental_sync_searches_last_modified_from_the_watermark_in_epoch_ms(warehouse, instance, sandbox):
    """Deals filter on hs_lastmodifieddate, contacts on lastmodifieddate (no hs_ prefix); oldest first."""
    setup(warehouse, instance, sandbox, deals=30, page_size=20)
    assert sync(instance, "deals", "contacts").success
    marks = {e: metadata(instance, e)["watermark"] for e in ("deals", "contacts")}
    # The dataset lies in the past: each watermark is its newest record's time (the last one generated).
    assert epoch_ms(marks["deals"]) == modified_ms(sandbox)[deal_id(29)]
    edited = sandbox.mutate("hubspot", "deals", 3)["ids"]
    sandbox.mutate("hubspot", "contacts", ids=[sandbox.truth("hubspot", "contacts")[0]["id"]])
    sandbox.clear_requests("hubspot")

    assert sync(instance, "deals", "contacts").success
    for object_type, entity, prop in (
        ("deals", "deals", "hs_lastmodifieddate"),
        ("contacts", "contacts", "lastmodifieddate"),
    ):
        [request] = searches(sandbox, object_type)
        assert request["body"]["filterGroups"] == [
            {"filters": [{"propertyName": prop, "operator": "GTE", "value": str(epoch_ms(marks[entity]))}]}
        ]
        assert request["body"]["sorts"] == [{"propertyName": prop, "direction": "ASCENDING"}]
        assert (request["body"]["after"], request["body"]["limit"]) == ("0", 20)
    deals = metadata(instance, "deals")
    # The newest deal of the full sync is at the watermark itself: read again, unchanged, not counted.
    assert (deals["mode"], deals["records_synced"], deals["records_reread"]) == ("incremental", 3, 1)
    contacts = metadata(instance, "contacts")
    assert (contacts["records_synced"], contacts["records_reread"]) == (1, 0)  # the only contact, edited
    names = deal_names()
    assert sorted(i for i, name in names.items() if name.endswith(" (rev 1)")) == sorted(edited)


def test_an_archived_deal_comes_from_the_archive_pass_with_its_archived_at_as_deleted_at(warehouse, instance, sandbox):
    """Archiving leaves hs_lastmodifieddate alone, so the incremental search cannot see it: the archive pass
    (the list endpoint with ``archived=true``) brings the deal, archived, with the instant it was archived."""
    setup(warehouse, instance, sandbox, deals=30, page_size=20)
    assert sync(instance).success
    watermark = epoch_ms(metadata(instance)["watermark"])
    archived = sandbox.mutate("hubspot", "deals", action="archive", ids=[deal_id(3)])
    assert archived["modified_at"] is None  # the modified time stays
    sandbox.clear_requests("hubspot")

    assert sync(instance).success
    assert filters_sent(sandbox) == [[("hs_lastmodifieddate", "GTE", str(watermark))]]  # deal 29 alone
    assert archive_reads(sandbox) == [("GET", archive_query(), 200)]
    [(deleted, deleted_at, updated_at, merged_into, record)] = rows(
        "SELECT is_deleted, deleted_at, source_updated_at, merged_into, properties FROM deals WHERE source_id = :i",
        i=deal_id(3),
    )
    assert (deleted, deleted_at, merged_into) == (True, datetime.fromisoformat(archived["changed_at"]), None)
    assert epoch_ms(updated_at) == modified_ms(sandbox)[deal_id(3)]
    assert (record["archived"], record["archivedAt"]) == (True, archived["changed_at"])
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"], meta["records_deleted"]) == (0, 1, 1)

    # Every sync pages the whole archive again: the deal the warehouse holds archived costs no write.
    assert sync(instance).success
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"], meta["records_deleted"]) == (0, 2, 0)


def test_a_deal_edited_behind_the_incremental_reader_hides_no_unread_deal(warehouse, instance, sandbox):
    """Regression: the incremental read paged with search's ``after``, an offset into the last-modified
    order. A deal of page 1 edited after page 1 was served moved to the end of that order, every later
    deal moved up one place, and the deal at the start of page 2 was never read: 399 of 400 deals."""
    setup(warehouse, instance, sandbox, deals=400, page_size=100)
    since = datetime(2024, 1, 1, tzinfo=UTC)  # before every deal: all 400 match
    before = modified_ms(sandbox)
    sandbox.faults(
        "hubspot",
        mutate_after_requests=[
            {"after": 1, "path_contains": "/deals/search", "mutation": {"entity": "deals", "ids": [deal_id(0)]}}
        ],
    )
    client = HubSpotResource().client_for(WarehouseResource().get_connection(WS, "hubspot"))
    *searched, archive = DEALS_READ(client, ReadWindow(since=since))

    read = [record.id for page in searched for record in page.records]
    assert set(read) == {deal_id(i) for i in range(400)}
    # Deal 0 twice: before its edit on page 1, after it at the end. Every other deal exactly once.
    assert len(read) == 401 and read.count(deal_id(0)) == 2 and read[-1] == deal_id(0)
    assert searched[-1].records[-1].properties["dealname"].endswith(" (rev 1)")
    assert (archive.records, archive.deletions) == ([], [])  # the archive, after the search: empty
    assert archive_reads(sandbox) == [("GET", archive_query(), 200)]
    # Each request starts at the last instant read (keyset), from offset 0.
    frontier = [str(epoch_ms(since))] + [str(before[deal_id(i)]) for i in (99, 198, 297, 396)]
    assert filters_sent(sandbox) == [[("hs_lastmodifieddate", "GTE", value)] for value in frontier]
    assert {r["body"]["after"] for r in searches(sandbox)} == {"0"}


def test_a_deal_edited_behind_the_full_sync_is_read_by_the_next_incremental_one(warehouse, instance, sandbox):
    """Regression: deal A is read on page 1 and then edited; deal B, on page 3, is edited after A and
    before its page is read. The watermark used to be the greatest committed time, B's, which is later
    than A's edit, so the next incremental sync started after A's edit and never re-read A. Now the
    watermark never passes the read's start (less HubSpot's search lag), so A's edit is found."""
    setup(warehouse, instance, sandbox, deals=60, page_size=20)
    deal_a, deal_b = deal_id(5), deal_id(45)
    edit = [{"entity": "deals", "ids": [deal_a]}, {"entity": "deals", "ids": [deal_b]}]
    sandbox.faults(
        "hubspot",
        mutate_after_requests=[{"after": 1, "path_contains": "/deals/search", "mutation": m} for m in edit],
    )
    assert sync(instance).success
    names = deal_names()
    assert not names[deal_a].endswith(" (rev 1)") and names[deal_b].endswith(" (rev 1)")
    full = metadata(instance)
    assert modified_ms(sandbox)[deal_b] > modified_ms(sandbox)[deal_a] >= full["read_started_at"] * 1000
    assert full["watermark"] == full["read_started_at"] - 120  # the read start less the 2-minute search lag
    assert filters_sent(sandbox) == [[("hs_object_id", "GT", v)] for v in ("0", deal_id(19), deal_id(39))]
    sandbox.clear_requests("hubspot")

    assert sync(instance).success
    assert filters_sent(sandbox) == [[("hs_lastmodifieddate", "GTE", str(epoch_ms(full["watermark"])))]]
    incremental = metadata(instance)
    assert (incremental["records_synced"], incremental["records_reread"]) == (1, 1)  # A written, B unchanged
    names = deal_names()
    assert sorted(i for i, name in names.items() if name.endswith(" (rev 1)")) == [deal_a, deal_b]


def test_a_page_all_at_one_instant_is_paged_by_id_and_nothing_is_lost(warehouse, instance, sandbox):
    """One mutation stamps all its deals with one instant: more of them than a page holds. A ``>=`` on that
    instant would serve the same first page forever, so the instant is paged by object id, then passed."""
    setup(warehouse, instance, sandbox, deals=120, page_size=20)
    assert sync(instance).success
    watermark = epoch_ms(metadata(instance)["watermark"])
    edited = sandbox.mutate("hubspot", "deals", 50)
    instant = epoch_ms(edited["modified_at"])
    assert edited["ids"] == [deal_id(i) for i in range(50)]
    sandbox.clear_requests("hubspot")

    assert sync(instance).success
    at_instant = ("hs_lastmodifieddate", "EQ", str(instant))
    assert filters_sent(sandbox) == [
        [("hs_lastmodifieddate", "GTE", str(watermark))],  # deal 119 (the watermark), deals 0-18
        [("hs_lastmodifieddate", "GTE", str(instant))],  # deals 0-19: only deal 19 is new
        [("hs_lastmodifieddate", "GTE", str(instant))],  # deals 0-19 again: a full page, all read
        [at_instant, ("hs_object_id", "GT", "0")],
        [at_instant, ("hs_object_id", "GT", deal_id(19))],
        [at_instant, ("hs_object_id", "GT", deal_id(39))],
        [("hs_lastmodifieddate", "GTE", str(instant + 1))],
    ]
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"], meta["records_failed"]) == (50, 1, 0)
    names = deal_names()
    assert sorted(i for i, name in names.items() if name.endswith(" (rev 1)")) == sorted(edited["ids"])
    assert len(names) == 120


def test_more_than_10000_changed_deals_never_reach_the_search_cap(warehouse, instance, sandbox):
    """Search answers at most 10,000 results per query (``after`` >= 10,000 is a 400). Keyset requests always
    start at offset 0, so 10,450 deals changed at one instant are all read."""
    setup(warehouse, instance, sandbox, deals=10_450)
    assert sync(instance).success
    assert metadata(instance)["records_synced"] == 10_450
    assert len(sandbox.mutate("hubspot", "deals", 10_450)["ids"]) == 10_450
    sandbox.clear_requests("hubspot")

    assert sync(instance).success
    sent = searches(sandbox)
    assert {(r["status"], r["body"]["after"]) for r in sent} == {(200, "0")}
    # Every deal is at one instant: its first page read, that page served again (all read), 53 pages of
    # the instant by id, then one search past the instant.
    assert len(sent) == 2 + 53 + 1
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"], meta["records_failed"]) == (10_450, 0, 0)
    assert rows(
        "SELECT count(*), count(DISTINCT source_id), count(*) FILTER (WHERE name LIKE '% (rev 1)') FROM deals"
    ) == [(10_450, 10_450, 10_450)]


def test_throttling_without_retry_after_backs_off_2_4_and_8_seconds(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, deals=30)
    sandbox.faults("hubspot", next_429=3)
    result = sync(instance)
    assert result.success
    data = [r for r in sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert [(r["path"], r["status"]) for r in data] == [(SEARCH, 429)] * 3 + [(SEARCH, 200), (ARCHIVE, 200)]
    searched = data[:4]
    gaps = [(b["ts_ms"] - a["ts_ms"]) / 1000 for a, b in zip(searched, searched[1:], strict=False)]
    for gap, expected in zip(gaps, (2, 4, 8), strict=True):
        assert expected <= gap < expected + 1.5, gaps
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    retries = [m for m in logged if m.startswith("[HubSpot Client] Rate limited")]
    assert retries == [f"[HubSpot Client] Rate limited (429), retrying in {ms}ms" for ms in (2000, 4000, 8000)]


def test_each_row_keeps_the_record_exactly_as_search_serves_it(warehouse, instance, sandbox):
    """The client builds each record's payload by hand (for speed): it must equal the record on the wire."""
    setup(warehouse, instance, sandbox, deals=30)
    assert sync(instance).success
    client = HubSpotResource().client_for(WarehouseResource().get_connection(WS, "hubspot"))
    body = {"properties": DEAL_PROPERTIES, "limit": 100, "sorts": [{"propertyName": "hs_object_id"}]}
    served = client.request("POST", "/crm/v3/objects/deals/search", json=body).json()["results"]
    stored = dict(rows("SELECT source_id, properties FROM deals"))
    assert len(served) == len(stored) == 30
    assert {r["id"]: r for r in served} == stored


def test_a_deal_swept_while_its_survivor_was_archived_learns_the_survivor_when_it_returns(warehouse, instance, sandbox):
    """Regression (found by the reconciliation race): deal 3 merged into deal 5, then deal 5 archived. A full
    read's sweep asks for deal 3, HubSpot answers 404 (its survivor is archived), and the row is marked
    deleted with no survivor. Deal 5 restored lists deal 3 in hs_merged_object_ids: the row learns it."""
    setup(warehouse, instance, sandbox, deals=30, page_size=20)
    assert sync(instance).success
    sandbox.mutate("hubspot", "deals", action="merge", ids=[deal_id(3)], into=deal_id(5))
    sandbox.mutate("hubspot", "deals", action="archive", ids=[deal_id(5)])
    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals"], tags={"full_refresh": "true"}).success
    lifecycle = "SELECT source_id, is_deleted, merged_into FROM deals WHERE source_id IN (:a, :b) ORDER BY 1"
    assert rows(lifecycle, a=deal_id(3), b=deal_id(5)) == [(deal_id(3), True, None), (deal_id(5), True, None)]

    sandbox.mutate("hubspot", "deals", action="restore", ids=[deal_id(5)])
    assert sync(instance).success
    assert rows(lifecycle, a=deal_id(3), b=deal_id(5)) == [(deal_id(3), True, deal_id(5)), (deal_id(5), False, None)]


def test_a_bad_deal_read_again_keeps_one_open_dead_letter_from_the_latest_run(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, deals=30)
    bad = deal_id(3)
    sandbox.faults("hubspot", bad_records=[bad])
    first = sync(instance)
    again = run_sync(
        instance, HUBSPOT, WS, selection=["hubspot/deals"], run_config=sync_run_config(["hubspot"], full_refresh=True)
    )
    assert first.success and again.success
    assert metadata(instance)["records_failed"] == 1
    assert rows("SELECT source_id, run_id, resolved_at FROM sync_errors") == [(bad, again.run_id, None)]
