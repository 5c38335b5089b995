"""Launch and follow syncs through Dagster's GraphQL API (docs/graphql.md): the documents sent, the
variables each recipe builds, and a small CLI.

    python -m scripts.trigger workspace acme hubspot gong      # the workspace's active connectors
    python -m scripts.trigger connector acme hubspot
    python -m scripts.trigger connector acme hubspot --full-refresh --lookback-hours 48
    python -m scripts.trigger backfill acme globex --connectors hubspot gong
    python -m scripts.trigger run <run id>
    python -m scripts.trigger backfill-status <backfill id>
    python -m scripts.trigger metadata hubspot/deals acme

The webserver is DAGSTER_GRAPHQL_URL (default http://127.0.0.1:3000/graphql). Which connectors a workspace
has active is the platform's knowledge, not Dagster's: ask the REST API (GET /api/workspaces/{id}/connections)
or the warehouse's ``connections`` table, then pass them here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import requests

from sync_assets.runs import PARTITION_TAG, SYNC_TYPE_TAG, connector_asset_names, sync_run_config

LOCATION = "sales_sync"  # workspace.yaml's location_name
REPOSITORY = "__repository__"  # the one repository of a `Definitions` code location
DEFAULT_URL = "http://127.0.0.1:3000/graphql"
TIMEOUT_S = 60

# The documents docs/graphql.md shows; tests/e2e/test_graphql_recipes.py checks the two never drift.
LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on Error { message }
  }
}
""".strip()

LAUNCH_BACKFILL = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on Error { message }
  }
}
""".strip()

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
    ... on Error { message }
  }
}
""".strip()

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status partitionNames runs { runId status tags { key value } } }
    ... on Error { message }
  }
}
""".strip()

ASSET_METADATA = """
query AssetMetadata($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: $partitions, limit: 1) {
        runId
        partition
        timestamp
        metadataEntries {
          __typename
          label
          ... on TimestampMetadataEntry { timestamp }
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
        }
      }
    }
    ... on Error { message }
  }
}
""".strip()

DOCUMENTS = {
    "LaunchRun": LAUNCH_RUN,
    "LaunchBackfill": LAUNCH_BACKFILL,
    "RunStatus": RUN_STATUS,
    "BackfillStatus": BACKFILL_STATUS,
    "AssetMetadata": ASSET_METADATA,
}


class GraphQLError(RuntimeError):
    """The webserver answered with errors, or the mutation's result was not a success."""


def asset_keys(connectors: list[str]) -> list[dict[str, list[str]]]:
    return [{"path": name.split("/")} for name in connector_asset_names(connectors)]


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags.items()]


def workspace_run(
    workspace_id: str,
    connectors: list[str],
    *,
    full_refresh: bool = False,
    lookback_hours: int | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``launchRun`` variables: ``sync_workspace`` for one workspace, selecting its active connectors' assets."""
    return {
        "executionParams": {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": "sync_workspace",
                "assetSelection": asset_keys(connectors),
            },
            "runConfigData": sync_run_config(connectors, full_refresh=full_refresh, lookback_hours=lookback_hours),
            "executionMetadata": {
                "tags": tag_list({PARTITION_TAG: workspace_id, SYNC_TYPE_TAG: "manual", **(tags or {})})
            },
        }
    }


def connector_run(
    workspace_id: str,
    connector: str,
    *,
    full_refresh: bool = False,
    lookback_hours: int | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``launchRun`` variables: the connector's own job (``sync_<connector>``) for one workspace."""
    return {
        "executionParams": {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": f"sync_{connector}",
            },
            "runConfigData": sync_run_config([connector], full_refresh=full_refresh, lookback_hours=lookback_hours),
            "executionMetadata": {
                "tags": tag_list({PARTITION_TAG: workspace_id, SYNC_TYPE_TAG: "manual", **(tags or {})})
            },
        }
    }


def backfill(
    workspace_ids: list[str], connectors: list[str], *, full_refresh: bool = False, title: str | None = None
) -> dict[str, Any]:
    """``launchPartitionBackfill`` variables: one run per workspace over these connectors' assets. A
    workspace without one of them materializes its assets as skipped, so the backfill still succeeds."""
    params: dict[str, Any] = {
        "partitionNames": workspace_ids,
        "assetSelection": asset_keys(connectors),
        "runConfigData": sync_run_config(connectors, full_refresh=full_refresh),
        "tags": tag_list({SYNC_TYPE_TAG: "backfill"}),
        "fromFailure": False,
    }
    if title:
        params["title"] = title
    return {"backfillParams": params}


def asset_metadata(asset: str, workspace_id: str) -> dict[str, Any]:
    """``AssetMetadata`` variables: the latest materialization of ``asset`` ("hubspot/deals") for a workspace."""
    return {"assetKey": {"path": asset.split("/")}, "partitions": [workspace_id]}


def execute(document: str, variables: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """POST one document; the ``data`` of the answer (GraphQL errors raise)."""
    response = requests.post(
        url or os.environ.get("DAGSTER_GRAPHQL_URL", DEFAULT_URL),
        json={"query": document, "variables": variables},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise GraphQLError(json.dumps(body["errors"]))
    return body["data"]


def launch_run(variables: dict[str, Any], url: str | None = None) -> str:
    """Launch a run (``workspace_run`` / ``connector_run`` variables); its run id."""
    result = execute(LAUNCH_RUN, variables, url)["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise GraphQLError(f"{result['__typename']}: {json.dumps(result)}")
    return result["run"]["runId"]


def launch_backfill(variables: dict[str, Any], url: str | None = None) -> str:
    """Launch a backfill (``backfill`` variables); its backfill id."""
    result = execute(LAUNCH_BACKFILL, variables, url)["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"{result['__typename']}: {json.dumps(result)}")
    return result["backfillId"]


def run_status(run_id: str, url: str | None = None) -> dict[str, Any]:
    return execute(RUN_STATUS, {"runId": run_id}, url)["runOrError"]


def backfill_status(backfill_id: str, url: str | None = None) -> dict[str, Any]:
    return execute(BACKFILL_STATUS, {"backfillId": backfill_id}, url)["partitionBackfillOrError"]


def latest_materialization(asset: str, workspace_id: str, url: str | None = None) -> dict[str, Any] | None:
    """The latest materialization of ``asset`` for the workspace (run id, metadata entries), or None."""
    result = execute(ASSET_METADATA, asset_metadata(asset, workspace_id), url)["assetOrError"]
    if result["__typename"] != "Asset":
        raise GraphQLError(f"{result['__typename']}: {result.get('message')}")
    found = result["assetMaterializations"]
    return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.trigger", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help=f"GraphQL endpoint (default DAGSTER_GRAPHQL_URL or {DEFAULT_URL})")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("workspace", "connector"):
        command = commands.add_parser(name)
        command.add_argument("workspace_id")
        command.add_argument("connectors", nargs="+" if name == "workspace" else 1)
        command.add_argument("--full-refresh", action="store_true")
        command.add_argument("--lookback-hours", type=int)
    fill = commands.add_parser("backfill")
    fill.add_argument("workspace_ids", nargs="+")
    fill.add_argument("--connectors", nargs="+", required=True)
    fill.add_argument("--full-refresh", action="store_true")
    commands.add_parser("run").add_argument("run_id")
    commands.add_parser("backfill-status").add_argument("backfill_id")
    metadata = commands.add_parser("metadata")
    metadata.add_argument("asset")
    metadata.add_argument("workspace_id")
    args = parser.parse_args(argv)

    if args.command == "workspace":
        options = {"full_refresh": args.full_refresh, "lookback_hours": args.lookback_hours}
        answer: Any = launch_run(workspace_run(args.workspace_id, args.connectors, **options), args.url)
    elif args.command == "connector":
        options = {"full_refresh": args.full_refresh, "lookback_hours": args.lookback_hours}
        answer = launch_run(connector_run(args.workspace_id, args.connectors[0], **options), args.url)
    elif args.command == "backfill":
        variables = backfill(args.workspace_ids, args.connectors, full_refresh=args.full_refresh)
        answer = launch_backfill(variables, args.url)
    elif args.command == "run":
        answer = run_status(args.run_id, args.url)
    elif args.command == "backfill-status":
        answer = backfill_status(args.backfill_id, args.url)
    else:
        answer = latest_materialization(args.asset, args.workspace_id, args.url)
    print(answer if isinstance(answer, str) else json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
