"""The warehouse tables as assets and the per-workspace health checks, through real jobs on Postgres and the
sandbox: table metadata and row counts, partitioned check results and their thresholds, the limit metrics,
and the hourly list of stale workspaces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    EventRecordsFilter,
    TableColumn,
    TableColumnConstraints,
    define_asset_job,
)
from dagster._core.storage.defs_state.base import set_defs_state_storage
from sqlalchemy import insert, update

from definitions import connector_job_selection
from resources import schema
from resources.warehouse import RowCounts, WarehouseResource
from schedules.freshness import stale_workspaces
from sync_assets import CONNECTORS, CONNECTORS_BY_NAME
from sync_assets.entity_read import EntityResult
from sync_assets.factory import build_connector_assets
from sync_assets.health import (
    FAILED_RECORDS_CHECK,
    FRESHNESS_CHECK,
    RECONCILIATION_CHECK,
    THROTTLING_CHECK,
    reconciliation_result,
)
from sync_assets.runs import sync_asset_names
from sync_assets.tables import build_warehouse_assets, column_schema, table_metadata
from tests.conftest import register
from tests.support import latest_metadata, sync_resources

WS = "acme"
DEALS = AssetKey(["hubspot", "deals"])
WAREHOUSE_DEALS = AssetKey(["warehouse", "deals"])
SIZES = {"deals": 5, "contacts": 1, "companies": 1, "tasks": 1}


@pytest.fixture
def defs(pg_url: str) -> Iterator[Definitions]:
    """The code location as it loads against the Postgres warehouse (the kinds and table names follow
    WAREHOUSE_URL, which the pg_url fixture sets). Loading reads the current instance's definitions state:
    none here, rather than one an earlier test's instance left current after it was gone."""
    hubspot = CONNECTORS_BY_NAME["hubspot"]
    with set_defs_state_storage(None):
        yield Definitions(
            assets=[*(build_connector_assets(c) for c in CONNECTORS), build_warehouse_assets(CONNECTORS)],
            jobs=[define_asset_job("sync_hubspot", selection=connector_job_selection(hubspot)), stale_workspaces],
            resources=sync_resources(),
        )


@pytest.fixture(autouse=True)
def no_platform_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_RATE_LIMITS", json.dumps({"hubspot": False, "hubspot:search": False}))


def sync_hubspot(defs: Definitions, instance: DagsterInstance, workspace: str = WS):
    return defs.resolve_job_def("sync_hubspot").execute_in_process(
        instance=instance, partition_key=workspace, raise_on_error=False
    )


def checks_of(result, key: AssetKey) -> dict[str, AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


def runless_checks(instance: DagsterInstance) -> list[AssetCheckEvaluation]:
    records = instance.get_event_records(EventRecordsFilter(DagsterEventType.ASSET_CHECK_EVALUATION), limit=1000)
    return [r.event_log_entry.dagster_event.event_specific_data for r in records if not r.run_id]


def test_tables_are_assets_downstream_of_their_writers_with_postgres_metadata(defs):
    graph = defs.get_repository_def().asset_graph
    assert graph.get(WAREHOUSE_DEALS).parent_keys == {DEALS, AssetKey(["salesforce", "deals"])}
    assert graph.get(AssetKey(["warehouse", "tasks"])).parent_keys == {
        AssetKey(["hubspot", "tasks"]),
        AssetKey(["salesforce", "tasks"]),
        AssetKey(["monday", "tasks"]),
    }
    assert len(graph.get(AssetKey(["warehouse", "sync_errors"])).parent_keys) == 12
    deals = graph.get(WAREHOUSE_DEALS)
    assert (deals.group_name, deals.kinds, deals.partitions_def.name) == (
        "warehouse",
        {"postgres", "table"},
        "workspace",
    )
    assert graph.get(DEALS).kinds == {"hubspot", "postgres"}
    for key in (DEALS, WAREHOUSE_DEALS):
        metadata = graph.get(key).metadata
        assert metadata["dagster/table_name"] == "public.deals"
        columns = {c.name: c for c in metadata["dagster/column_schema"].columns}
        assert columns["amount"] == TableColumn("amount", "NUMERIC(20, 2)", constraints=TableColumnConstraints())
        assert columns["properties"] == TableColumn(
            "properties", "JSONB", "The vendor's whole record.", TableColumnConstraints()
        )
        assert columns["workspace_id"] == TableColumn(
            "workspace_id",
            "VARCHAR(63)",
            "The workspace (tenant) the row belongs to.",
            TableColumnConstraints(nullable=False),
        )
        assert columns["id"] == TableColumn("id", "BIGINT", constraints=TableColumnConstraints(False, True))
        assert len(columns) == 18
    # Every check is partitioned by workspace.
    for key in (DEALS, WAREHOUSE_DEALS):
        for check_key in graph.get(key).check_keys:
            assert graph.get(check_key).partitions_def.name == "workspace"
    assert {c.name for c in graph.get(DEALS).check_keys} == {
        FAILED_RECORDS_CHECK,
        RECONCILIATION_CHECK,
        THROTTLING_CHECK,
        FRESHNESS_CHECK,
    }


def test_on_sqlite_the_tables_are_main_tables_typed_as_sqlite_types_them(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("WAREHOUSE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    assert table_metadata("calls")["dagster/table_name"] == "main.calls"
    columns = {c.name: c.type for c in column_schema(schema.calls).columns}
    assert (columns["id"], columns["participants"], columns["started_at"]) == ("INTEGER", "JSON", "DATETIME")
    spec = next(s for s in build_warehouse_assets(CONNECTORS).specs if s.key == AssetKey(["warehouse", "calls"]))
    assert spec.kinds == {"sqlite", "table"}
    # The row counts the table assets record, on SQLite's dialect (its FILTER clause) too.
    sqlite = WarehouseResource()
    schema.metadata.create_all(sqlite.engine)
    row = {"workspace_id": "a", "source": "gong", "is_deleted": False}
    with sqlite.engine.begin() as conn:
        conn.execute(
            insert(schema.calls),
            [
                {**row, "source_id": "1", "is_deleted": True},
                {**row, "source_id": "2"},
                {**row, "workspace_id": "b", "source_id": "3"},
            ],
        )
    assert sqlite.row_counts("calls", "a") == RowCounts(rows=2, live=1)
    assert sqlite.row_counts("calls", "a", "fireflies") == RowCounts(rows=0, live=0)


def test_a_sync_records_row_counts_limits_and_check_results_for_its_workspace(warehouse, instance, sandbox, defs):
    sandbox.reset(sizes={"hubspot": SIZES}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"])
    bad = str(30_000_002)  # the sandbox's deal 2
    sandbox.faults("hubspot", bad_records=[bad])
    result = sync_hubspot(defs, instance)
    assert result.success

    meta = latest_metadata(instance, "hubspot/deals", WS)
    assert "table" not in meta
    assert {k: meta[k] for k in ("dagster/table_name", "dagster/partition_row_count", "records_failed")} == {
        "dagster/table_name": "public.deals",
        "dagster/partition_row_count": 4,
        "records_failed": 1,
    }
    assert {k: meta[k] for k in ("throttled_calls", "retries", "rate_limit_wait_ms", "records_reread")} == {
        "throttled_calls": 0,
        "retries": 0,
        "rate_limit_wait_ms": 0,
        "records_reread": 0,
    }
    table = latest_metadata(instance, "warehouse/deals", WS)
    assert table == {
        "dagster/table_name": "public.deals",
        "dagster/row_count": 4,
        "dagster/partition_row_count": 4,
        "live_rows": 4,
    }
    assert latest_metadata(instance, "warehouse/sync_errors", WS)["dagster/partition_row_count"] == 1
    assert latest_metadata(instance, "warehouse/tasks", WS)["dagster/partition_row_count"] == 1

    deals = checks_of(result, DEALS)
    assert {name: e.partition for name, e in deals.items()} == dict.fromkeys(
        (FAILED_RECORDS_CHECK, RECONCILIATION_CHECK, THROTTLING_CHECK, FRESHNESS_CHECK), WS
    )
    # One deal in five failed: above the default 5%, an ERROR.
    failed = deals[FAILED_RECORDS_CHECK]
    assert (failed.passed, failed.severity, failed.metadata["failed_share"].value) == (
        False,
        AssetCheckSeverity.ERROR,
        0.2,
    )
    # The vendor's total (5) less the record that failed is what the warehouse holds.
    reconciled = deals[RECONCILIATION_CHECK]
    assert reconciled.passed
    assert {k: reconciled.metadata[k].value for k in ("vendor_total", "warehouse_rows", "difference")} == {
        "vendor_total": 5,
        "warehouse_rows": 4,
        "difference": -1,
    }
    assert deals[THROTTLING_CHECK].passed and deals[FRESHNESS_CHECK].passed
    assert checks_of(result, AssetKey(["hubspot", "contacts"]))[FAILED_RECORDS_CHECK].passed
    fresh = checks_of(result, WAREHOUSE_DEALS)[FRESHNESS_CHECK]
    assert (fresh.passed, fresh.partition, fresh.metadata["stale_connectors"].value) == (True, WS, [])

    # An incremental sync has no total to compare with.
    again = sync_hubspot(defs, instance)
    reconciled = checks_of(again, DEALS)[RECONCILIATION_CHECK]
    assert (reconciled.passed, reconciled.metadata["reason"].value) == (True, "incremental sync")


def test_a_connection_may_allow_a_larger_failed_share_which_only_warns(warehouse, instance, sandbox, defs):
    sandbox.reset(sizes={"hubspot": SIZES}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"], max_failed_share=0.25)
    sandbox.faults("hubspot", bad_records=[str(30_000_002)])
    result = sync_hubspot(defs, instance)
    failed = checks_of(result, DEALS)[FAILED_RECORDS_CHECK]
    assert (failed.passed, failed.severity, failed.metadata["max_failed_share"].value) == (
        False,
        AssetCheckSeverity.WARN,
        0.25,
    )


def test_throttling_and_rate_limit_waits_are_numeric_metadata_and_warn(
    warehouse, instance, sandbox, defs, monkeypatch: pytest.MonkeyPatch
):
    # One search call per 0.5 s (with the margin, 0.515 s apart).
    monkeypatch.setenv(
        "SYNC_RATE_LIMITS", json.dumps({"hubspot": False, "hubspot:search": {"requests": 1, "per_seconds": 0.5}})
    )
    sandbox.reset(sizes={"hubspot": {**SIZES, "deals": 30}}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"], page_size=10)
    sandbox.faults("hubspot", next_429=1)
    result = defs.resolve_job_def("sync_hubspot").execute_in_process(
        instance=instance, partition_key=WS, asset_selection=[DEALS]
    )
    meta = latest_metadata(instance, "hubspot/deals", WS)
    # The 429'd search is retried after a 2 s backoff: 5 calls, one throttled.
    assert (meta["api_calls"], meta["throttled_calls"], meta["retries"]) == (5, 1, 1)
    # Searches 3 and 4 wait for their slots (the 2 s backoff already spaced the retry), each less the time
    # the page before them took; nothing else waits.
    assert 200 <= meta["rate_limit_wait_ms"] <= 2 * 515
    throttling = checks_of(result, DEALS)[THROTTLING_CHECK]
    assert (throttling.passed, throttling.severity, throttling.metadata["throttle_ratio"].value) == (
        False,
        AssetCheckSeverity.WARN,
        0.2,
    )


def test_reconciliation_fails_when_the_warehouse_holds_other_than_the_vendor_total():
    result = EntityResult("deals", "full", None, records_failed=1, vendor_total=10)
    assert [reconciliation_result(DEALS, result, live).passed for live in (8, 9, 10, 11)] == [False, True, True, False]
    mismatch = reconciliation_result(DEALS, result, 12)
    assert (mismatch.severity, mismatch.metadata["difference"].value) == (AssetCheckSeverity.WARN, 2)
    no_total = reconciliation_result(DEALS, EntityResult("deals", "full", None), 3)
    assert (no_total.passed, no_total.description, no_total.metadata["reason"].value) == (
        True,
        "Not compared: no total.",
        "no total",
    )


def test_a_workspace_without_the_connection_still_records_its_tables(warehouse, instance, sandbox, defs):
    """sync_hubspot for a workspace with Gong only: the HubSpot assets are materialized as skipped (so the
    run and a backfill succeed) and the tables they feed record what they hold for the workspace."""
    register(warehouse, instance, sandbox, WS, ["gong"])
    result = sync_hubspot(defs, instance)
    assert result.success
    assert latest_metadata(instance, "hubspot/deals", WS)["skipped"] == "no active connection"
    assert latest_metadata(instance, "warehouse/deals", WS)["dagster/partition_row_count"] == 0
    fresh = checks_of(result, WAREHOUSE_DEALS)[FRESHNESS_CHECK]
    # Gong feeds no deals: nothing that feeds the table can be stale.
    assert (fresh.passed, fresh.metadata["last_sync_at"].value) == (True, {})


def test_stale_workspaces_are_listed_and_their_partitions_checks_fail(warehouse, instance, sandbox, defs):
    now = datetime.now(UTC)
    for workspace, connectors in (("fresh", ["hubspot"]), ("stale", ["hubspot", "gong"]), ("gone", ["hubspot"])):
        register(warehouse, instance, sandbox, workspace, connectors)
    c, ws = schema.connections, schema.workspaces
    with warehouse.begin() as conn:
        conn.execute(update(c).where(c.c.workspace_id == "fresh").values(last_sync_at=now - timedelta(hours=1)))
        conn.execute(
            update(c)
            .where(c.c.workspace_id == "stale", c.c.connector_name == "hubspot")
            .values(last_sync_at=now - timedelta(hours=30))
        )
        conn.execute(update(ws).where(ws.c.id == "gone").values(status="deleted"))

    result = defs.resolve_job_def("stale_workspaces").execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    listed = output.event_specific_data.metadata
    assert listed["stale_workspaces"].value == ["stale"]
    assert [(s["workspace_id"], s["connector"]) for s in listed["stale_connections"].value] == [
        ("stale", "gong"),
        ("stale", "hubspot"),
    ]
    assert listed["stale_connections"].value[0]["last_sync_at"] is None

    evaluations = {(e.asset_key.to_user_string(), e.partition): e for e in runless_checks(instance)}
    assert {partition for _, partition in evaluations} == {"stale"}
    assert sorted(key for key, _ in evaluations) == sorted(
        [
            "gong/calls",
            *(f"hubspot/{e}" for e in ("accounts", "contacts", "deals", "tasks")),
            *(f"warehouse/{t}" for t in ("accounts", "calls", "contacts", "deals", "sync_errors", "tasks")),
        ]
    )
    deals = evaluations[("hubspot/deals", "stale")]
    assert (deals.check_name, deals.passed, deals.severity) == (FRESHNESS_CHECK, False, AssetCheckSeverity.WARN)
    errors = evaluations[("warehouse/sync_errors", "stale")]
    assert errors.metadata["stale_connectors"].value == ["gong", "hubspot"]


def test_a_workspace_sync_selects_its_connectors_and_the_tables_they_write():
    assert sync_asset_names(["gong", "monday"]) == [
        "gong/calls",
        "monday/tasks",
        "warehouse/calls",
        "warehouse/sync_errors",
        "warehouse/tasks",
    ]
