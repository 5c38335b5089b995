"""The Dagster UI (and the REST API's /docs) in a real browser after a real sync: Playwright for Python
driving Debian's Chromium headless (/usr/bin/chromium; no browser download). One workspace syncs every
sandbox connector with one bad HubSpot deal injected; the tests then read what a data engineer would see.
Screenshots land in .run/screenshots/ (one per check, named after it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import quote

import pytest
import requests
from dagster import DagsterRunStatus
from playwright.sync_api import Browser, Page, expect, sync_playwright

from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import get_engine
from resources.hubspot import HubSpotResource
from resources.settings import warehouse_url
from resources.warehouse import WarehouseResource
from sync_assets import CONNECTORS
from sync_assets.health import FAILED_RECORDS_CHECK, FRESHNESS_CHECK
from sync_assets.partitions import WORKSPACE_PARTITIONS_NAME
from sync_assets.state import asset_key
from tests.stack import LOCATION, Stack
from tests.support import REPO, SANDBOX_URL_ENV, rows

WORKSPACE = "browser-ws"
UNSYNCED = "browser-pending"  # a registered partition that never syncs: the contrast for "materialized"
SIZES = {
    "hubspot": {"deals": 30, "contacts": 20, "companies": 10, "tasks": 10},
    "salesforce": {"Opportunity": 20, "Contact": 20, "Account": 10, "Task": 10},
    "monday": {"boards": 1, "items": 20},
    "google_drive": {"files": 20},
}
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts on the closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 60_000  # the webserver shares 2 cores with the daemon and other test sessions
SCREENSHOTS = REPO / ".run" / "screenshots"


@dataclass
class SyncedWorkspace:
    run_id: str
    bad_deal_id: str


@pytest.fixture(scope="module")
def synced(stack: Stack, pg_url: str) -> Iterator[SyncedWorkspace]:
    """One `sync_workspace` run of every connector the sandbox offers, with one bad HubSpot deal."""
    stack.sandbox.reset(sizes=SIZES)
    offered = stack.sandbox.connections()
    assert sorted(offered) == sorted(c.name for c in CONNECTORS)
    engine = get_engine(warehouse_url())
    upsert_workspace(engine, WORKSPACE, "Browser check")
    # A workspace without connections: the registry sensor keeps the partitions of registered workspaces only.
    upsert_workspace(engine, UNSYNCED, "Never synced")
    for name, connection in offered.items():
        upsert_connection(engine, WORKSPACE, name, connection["credentials"], connection["config"])
    stack.instance.add_dynamic_partitions(WORKSPACE_PARTITIONS_NAME, [WORKSPACE, UNSYNCED])

    with pytest.MonkeyPatch.context() as env:  # this process reads the stack's sandbox, as its workers do
        env.setenv(SANDBOX_URL_ENV, stack.sandbox.url)
        hubspot = HubSpotResource().client_for(WarehouseResource().get_connection(WORKSPACE, "hubspot"))
        bad_deal_id = next(hubspot.objects_by_id("deals", ["dealname"])).records[0].id
    stack.sandbox.faults("hubspot", bad_records=[bad_deal_id])
    run_id = stack.launch("sync_workspace", WORKSPACE)
    run = stack.wait_for_run(run_id, timeout_s=300)
    stack.sandbox.clear_faults("hubspot")
    assert run.status == DagsterRunStatus.SUCCESS
    yield SyncedWorkspace(run_id, bad_deal_id)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    # A first visit on localhost opens Dagster's "Join the community" dialog over the page; dismiss it as
    # its Skip button does, for the whole instance.
    dismissed = requests.post(
        f"http://127.0.0.1:{stack.dagster_port}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30
    )
    assert dismissed.json() == {"data": {"setNuxSeen": True}}
    context = browser.new_context(
        viewport={"width": 1400, "height": 900},
        base_url=f"http://127.0.0.1:{stack.dagster_port}",
        timezone_id="UTC",
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def asset_links(page: Page) -> set[str]:
    """The asset keys a list page links to (its asset-name column)."""
    hrefs = page.locator('a[href^="/assets/"]').evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return {href.removeprefix("/assets/") for href in hrefs if "?" not in href}


def expect_metadata(page: Page, key: str, value: str) -> None:
    """A metadata table shows exactly one row for `key`, with a cell holding exactly `value`."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell", name=value, exact=True)).to_be_visible()


def test_one_asset_group_per_connector_lists_its_entity_assets(synced, page):
    for connector in CONNECTORS:
        expected = {asset_key(connector, e).to_user_string() for e in connector.entities}
        page.goto(f"/locations/{LOCATION}/asset-groups/{connector.name}/list")
        expect(page.get_by_text(f"{connector.name}", exact=True).first).to_be_visible()
        for key in expected:
            expect(page.get_by_role("link", name=key.replace("/", " / ")).first).to_be_visible()
        # Wait for the status column too, so the screenshot shows each asset's partition counts.
        expect(page.get_by_text(re.compile(r"^\d+ partitions?$"))).to_have_count(len(expected))
        screenshot(page, f"group_{connector.name}")
        assert asset_links(page) == expected


def test_workspace_partition_is_materialized_and_the_unsynced_one_is_not(synced, page):
    page.goto("/assets/hubspot/deals?view=partitions")
    # Other e2e modules share this instance, so the counts vary: check our two partitions by name.
    expect(page.get_by_text("Materialized (", exact=False).first).to_be_visible()
    expect(page.get_by_text("Missing (", exact=False).first).to_be_visible()
    # The list truncates long keys with a hidden copy beside each; .first is the shown one.
    expect(page.get_by_text(UNSYNCED, exact=True).first).to_be_visible()
    for state in ("Failed", "Materializing", "Missing"):
        page.get_by_text(f"{state} (", exact=False).click()
    expect(page.get_by_text(UNSYNCED, exact=True)).to_have_count(0)
    page.get_by_text(WORKSPACE, exact=True).first.click()
    # The selected partition's latest materialization: the sync's run, with its metadata.
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=synced.run_id[:8])).to_have_attribute(
        "href", re.compile(f"^/runs/{synced.run_id}")
    )
    expect_metadata(page, "records_synced", str(SIZES["hubspot"]["deals"] - 1))
    screenshot(page, "partitions_materialized")


def test_asset_page_shows_the_sync_metadata(synced, page):
    committed, watermark = rows(
        "SELECT count(*), max(source_updated_at) FROM deals WHERE workspace_id = :w AND source = 'hubspot'",
        w=WORKSPACE,
    )[0]
    assert committed == SIZES["hubspot"]["deals"] - 1
    page.goto("/assets/hubspot/deals")
    metadata = {
        "records_synced": str(committed),
        "records_failed": "1",
        "mode": "full",
        # A timestamp value, shown in the page's (UTC) time zone to the second.
        "watermark": watermark.astimezone(UTC).strftime("%b %-d, %Y, %-I:%M:%S %p UTC"),
    }
    for key, value in metadata.items():
        expect_metadata(page, key, value)
    screenshot(page, "asset_metadata_hubspot_deals")


def test_warn_check_fails_on_the_asset_with_the_bad_record_and_passes_elsewhere(synced, page):
    page.goto("/assets/hubspot/deals?view=checks")
    expect(page.get_by_text("This is a non-blocking asset check.")).to_be_visible()
    page.get_by_text(FAILED_RECORDS_CHECK, exact=True).first.click()
    # One deal in 30 failed: under the 5% share, so a WARN; the other checks of the asset passed.
    expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
    expect_metadata(page, "records_failed", "1")
    expect_metadata(page, "records_read", str(SIZES["hubspot"]["deals"]))
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(3)
    screenshot(page, "check_failed_hubspot_deals")

    page.goto("/assets/hubspot/contacts?view=checks")
    expect(page.get_by_text(FAILED_RECORDS_CHECK, exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(4)
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
    screenshot(page, "check_passed_hubspot_contacts")


def test_api_docs_page_renders_when_the_stack_runs_the_api(synced, stack, browser):
    """Runs the API check when the stack started the API (it does whenever api/app.py exists)."""
    runs_api = any(service.name == "api" for service in stack.services)
    assert runs_api == (REPO / "api" / "app.py").exists()
    if not runs_api:
        return
    spec = requests.get(f"{stack.api_url}/openapi.json", timeout=30).json()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    docs = context.new_page()
    docs.goto(f"{stack.api_url}/docs")
    expect(docs.get_by_text(spec["info"]["title"]).first).to_be_visible()
    for path in spec["paths"]:
        expect(docs.locator(f'[data-path="{path}"]').first).to_be_visible()
    screenshot(docs, "api_docs")
    context.close()


def test_warehouse_deals_page_shows_its_writers_columns_row_count_and_partition_checks(synced, page):
    committed = rows("SELECT count(*) FROM deals WHERE workspace_id = :w", w=WORKSPACE)[0][0]
    assert committed == SIZES["hubspot"]["deals"] - 1 + SIZES["salesforce"]["Opportunity"]
    page.goto("/assets/warehouse/deals")
    # Lineage: both writers upstream, and nothing downstream.
    lineage = page.get_by_text("Upstream assets", exact=True).locator("xpath=../..")
    for writer in ("hubspot / deals", "salesforce / deals"):
        expect(lineage.get_by_role("link", name=writer).first).to_be_visible()
    # The table as Postgres holds it: its name, and its column schema from resources/schema.py.
    expect(page.get_by_text("public.deals", exact=True).first).to_be_visible()
    amount = page.get_by_role("row").filter(has=page.get_by_text("amount", exact=True))
    expect(amount.get_by_text("NUMERIC(20, 2)", exact=True)).to_be_visible()
    workspace_id = page.get_by_role("row").filter(has=page.get_by_text("workspace_id", exact=True))
    expect(workspace_id.get_by_text("non-nullable", exact=True)).to_be_visible()
    # The workspace's row count, as the header's "Row count" and as the materialization's metadata.
    expect(page.get_by_text("Row count", exact=True).locator("xpath=..")).to_contain_text(str(committed))
    expect_metadata(page, "dagster/partition_row_count", str(committed))
    screenshot(page, "warehouse_deals_overview")

    # The freshness check's latest result, for this workspace's partition.
    page.goto("/assets/warehouse/deals?view=checks")
    expect(page.get_by_text(FRESHNESS_CHECK, exact=True).first).to_be_visible()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    expect(page.get_by_text("Partition", exact=True).locator("xpath=..")).to_contain_text(WORKSPACE)
    screenshot(page, "warehouse_deals_checks")
    # Per partition: passed for the synced workspace only. The others (the one that never synced, and the
    # workspaces earlier modules left in the session's warehouse, which the registry sensor adds) are missing.
    page.get_by_role("tab", name="Partitions").last.click()
    expect(page.get_by_text("Passed (1)", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Missing \([1-9]\d*\)$")).first).to_be_visible()
    expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
    screenshot(page, "warehouse_deals_check_partitions")


def test_asset_graph_shows_the_warehouse_group_beside_the_connector_groups(synced, page):
    page.goto("/asset-groups")
    for group in (*(c.name for c in CONNECTORS), "warehouse"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    expect(page.get_by_text("(fetching statuses)", exact=False)).to_have_count(0)
    # Every group open (as clicking each group's unfold icon does), so the graph shows each entity asset
    # and the tables it feeds.
    groups = ",".join(f"global@global:{group}" for group in (*(c.name for c in CONNECTORS), "warehouse"))
    page.goto(f"/asset-groups?expanded={quote(groups)}")
    expect(page.get_by_role("img", name="unfold_more")).to_have_count(0)
    expect(page.get_by_text("sync_errors", exact=True).first).to_be_visible()
    expect(page.get_by_text("(fetching statuses)", exact=False)).to_have_count(0)
    # Zoomed out until the tables and their writers fit the view.
    for _ in range(4):
        page.get_by_role("button", name="zoom_out").click()
    expect(page.get_by_text("Loading...", exact=True)).to_have_count(0)
    # The README's Orchestration section shows this screenshot (docs/img/asset-graph.png, copied by hand:
    # a test run never writes into the repository).
    screenshot(page, "asset_graph")
