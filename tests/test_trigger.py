"""scripts/trigger.py builds the GraphQL calls docs/graphql.md documents; the doc shows exactly the documents
the helper sends (tests/e2e/test_graphql_recipes.py runs them against the webserver)."""

from __future__ import annotations

import re

from scripts import trigger
from tests.support import REPO

DOC = REPO / "docs" / "graphql.md"
HUBSPOT_ASSETS = [["hubspot", "deals"], ["hubspot", "contacts"], ["hubspot", "accounts"], ["hubspot", "tasks"]]


def graphql_blocks() -> dict[str, str]:
    """The doc's ```graphql blocks, by operation name."""
    blocks = re.findall(r"```graphql\n(.*?)\n```", DOC.read_text(), flags=re.DOTALL)
    return {re.match(r"(?:query|mutation) (\w+)", block).group(1): block for block in blocks}


def test_the_doc_shows_the_documents_the_helper_sends():
    assert graphql_blocks() == trigger.DOCUMENTS


def test_workspace_run_selects_the_connectors_assets_and_tags_the_partition():
    variables = trigger.workspace_run("acme", ["hubspot"], full_refresh=True, lookback_hours=48)
    assert variables == {
        "executionParams": {
            "selector": {
                "repositoryLocationName": "sales_sync",
                "repositoryName": "__repository__",
                "jobName": "sync_workspace",
                "assetSelection": [{"path": p} for p in HUBSPOT_ASSETS],
            },
            "runConfigData": {"ops": {"hubspot_sync": {"config": {"full_refresh": True, "lookback_hours": 48}}}},
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/partition", "value": "acme"},
                    {"key": "sales-sync/sync_type", "value": "manual"},
                ]
            },
        }
    }


def test_connector_run_uses_the_connectors_job():
    selector = trigger.connector_run("acme", "gong")["executionParams"]["selector"]
    assert selector == {
        "repositoryLocationName": "sales_sync",
        "repositoryName": "__repository__",
        "jobName": "sync_gong",
    }


def test_backfill_names_the_workspaces_and_assets():
    assert trigger.backfill(["a", "b"], ["hubspot"]) == {
        "backfillParams": {
            "partitionNames": ["a", "b"],
            "assetSelection": [{"path": p} for p in HUBSPOT_ASSETS],
            "runConfigData": {"ops": {"hubspot_sync": {"config": {"full_refresh": False}}}},
            "tags": [{"key": "sales-sync/sync_type", "value": "backfill"}],
            "fromFailure": False,
        }
    }
