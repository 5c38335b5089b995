"""`make demo`: a full workspace sync of every sandbox vendor through Dagster, on the embedded
default (SQLite + the sandbox), then a readable summary. A second run is incremental."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from sqlalchemy import text

from resources.connection_config import ENDPOINT_KEYS
from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import get_engine
from resources.settings import REPO_ROOT, sandbox_port, warehouse_url
from scripts.environment import prepare_embedded_environment
from sync_assets import CONNECTORS
from sync_assets.partitions import workspace_partitions
from sync_assets.runs import PARTITION_TAG, SYNC_TYPE_TAG
from sync_assets.state import watermark_text

WORKSPACE = "demo"
SEED = 42
EDITS_PER_ENTITY = 3
# Deletions the incremental runs make at the vendors, each on the entity's last live record: (vendor,
# entity, action). Merges fold the last record into the one before it.
DELETIONS = (
    ("hubspot", "deals", "archive"),
    ("salesforce", "Opportunity", "delete"),
    ("monday", "items", "archive"),
    ("google_drive", "files", "trash"),
)
MERGES = (("hubspot", "contacts"), ("salesforce", "Account"))
ASSET_FIELDS = ("mode", "records_synced", "records_deleted", "records_failed")
TABLES = ("deals", "contacts", "accounts", "calls", "documents", "tasks")


def say(message: str) -> None:
    print(message, flush=True)


def start_sandbox(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = sandbox_port()
    url = f"http://127.0.0.1:{port}"
    try:
        requests.get(f"{url}/_sandbox/health", timeout=1)
        raise SystemExit(f"port {port} is already in use; stop what runs there or set SANDBOX_PORT")
    except requests.ConnectionError:
        pass
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the sandbox did not start; see {log_path}")


def has_synced_before(instance: DagsterInstance) -> bool:
    return any(
        instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey([c.name, c.entities[0].name]), asset_partitions=[WORKSPACE]),
            limit=1,
        ).records
        for c in CONNECTORS
    )


def prepare_sandbox(url: str, incremental: bool) -> dict[str, Any]:
    sizes = requests.post(f"{url}/_sandbox/reset", json={"seed": SEED}, timeout=30).json()
    if incremental:
        # Same deterministic dataset as last time, plus a few edits since: the sync should fetch only those.
        for vendor, entities in (sizes.get("sizes") or sizes).items():
            for entity in entities:
                response = requests.post(
                    f"{url}/_sandbox/{vendor}/mutate", json={"entity": entity, "count": EDITS_PER_ENTITY}, timeout=30
                )
                # Containers (e.g. Monday boards) have no editable records; every record entity does.
                if response.status_code != 400:
                    response.raise_for_status()
        delete_and_merge(url)
    return requests.get(f"{url}/_sandbox/connections", timeout=30).json()


def delete_and_merge(url: str) -> None:
    """A few deletions, archives and merges at the vendors, for the incremental run to carry over."""

    def live_ids(vendor: str, entity: str) -> list[str]:
        truth = requests.get(f"{url}/_sandbox/{vendor}/truth", params={"entity": entity}, timeout=30).json()
        return [r["id"] for r in truth["records"] if r["state"] == "live"]

    def mutate(vendor: str, entity: str, **body: Any) -> None:
        requests.post(f"{url}/_sandbox/{vendor}/mutate", json={"entity": entity, **body}, timeout=30).raise_for_status()

    for vendor, entity, action in DELETIONS:
        mutate(vendor, entity, action=action, ids=live_ids(vendor, entity)[-1:])
    for vendor, entity in MERGES:
        survivor, loser = live_ids(vendor, entity)[-2:]
        mutate(vendor, entity, action="merge", ids=[loser], into=survivor)


def register(offered: dict[str, Any], instance: DagsterInstance) -> list[str]:
    engine = get_engine(warehouse_url())
    upsert_workspace(engine, WORKSPACE, "Demo workspace")
    names = [c.name for c in CONNECTORS if c.name in offered]
    for name in names:
        # The sandbox offers its endpoints too; they are the operator's setting (SYNC_VENDOR_SANDBOX_URL).
        config = {k: v for k, v in offered[name]["config"].items() if k not in ENDPOINT_KEYS}
        upsert_connection(engine, WORKSPACE, name, offered[name]["credentials"], config)
    instance.add_dynamic_partitions(workspace_partitions.name, [WORKSPACE])
    return names


def run_sync(connectors: list[str], log_path: Path) -> int:
    """Run the `sync_workspace` job through Dagster, printing per-connector progress meanwhile."""
    tags = {PARTITION_TAG: WORKSPACE, SYNC_TYPE_TAG: "manual"}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-f",
        str(REPO_ROOT / "definitions.py"),
        "-d",
        str(REPO_ROOT),
        "-j",
        "sync_workspace",
        "--tags",
        json.dumps(tags),
    ]
    started = datetime.now(UTC)
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
        shown: dict[str, tuple] = {}
        while process.poll() is None:
            time.sleep(1)
            for row in sync_log_since(started):
                state = (row.status, row.records_synced)
                if shown.get(row.connector_type) != state:
                    shown[row.connector_type] = state
                    say(f"  {row.connector_type:<13} {row.status:<22} {row.records_synced:>6} records")
    return process.returncode


def sync_log_since(started: datetime) -> list[Any]:
    with get_engine(warehouse_url()).connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT connector_type, status, records_synced, records_failed, mode, watermark_to, duration_ms "
                    "FROM sync_log WHERE workspace_id = :w AND started_at >= :s ORDER BY connector_type"
                ),
                {"w": WORKSPACE, "s": started.replace(tzinfo=None) if "sqlite" in warehouse_url() else started},
            )
        )


def summarize(instance: DagsterInstance, started: datetime, elapsed_s: float) -> dict[str, Any]:
    engine = get_engine(warehouse_url())
    tables: dict[str, dict[str, int]] = {}
    deleted: dict[str, int] = {}
    with engine.connect() as conn:
        for table in TABLES:
            counts = conn.execute(
                text(f"SELECT source, count(*) FROM {table} WHERE workspace_id = :w GROUP BY source ORDER BY source"),
                {"w": WORKSPACE},
            )
            tables[table] = {source: count for source, count in counts}
            deleted[table] = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE workspace_id = :w AND is_deleted"), {"w": WORKSPACE}
            ).scalar_one()
    runs = sync_log_since(started)
    watermarks: dict[str, Any] = {}
    synced: dict[str, Any] = {}
    for connector in CONNECTORS:
        for entity in connector.entities:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey([connector.name, entity.name]), asset_partitions=[WORKSPACE]),
                limit=1,
            ).records
            if not records:
                continue
            meta = records[0].asset_materialization.metadata
            name = f"{connector.name}/{entity.name}"
            watermarks[name] = watermark_text(meta)
            synced[name] = {k: getattr(meta.get(k), "value", None) for k in ASSET_FIELDS}
    return {
        "workspace": WORKSPACE,
        "tables": tables,
        "deleted_rows": deleted,
        "records_failed": sum(r.records_failed for r in runs),
        "watermarks": watermarks,
        "assets": synced,
        "connectors": {r.connector_type: r.status for r in runs},
        "duration_s": round(elapsed_s, 1),
    }


def print_summary(summary: dict[str, Any]) -> None:
    say("\nRows in the warehouse (workspace 'demo'; deleted rows are kept, marked is_deleted):")
    for table, by_source in summary["tables"].items():
        detail = ", ".join(f"{source} {count}" for source, count in by_source.items()) or "-"
        gone = summary["deleted_rows"][table]
        say(f"  {table:<10} {sum(by_source.values()):>6}   {f'{gone} deleted':<11} ({detail})")
    say("\nThis sync, per asset:")
    for name, info in summary["assets"].items():
        say(
            f"  {name:<26} {info['mode'] or '-':<12} synced {info['records_synced'] or 0:>5}  "
            f"deleted {info['records_deleted'] or 0:>3}  failed {info['records_failed'] or 0:>3}  "
            f"watermark {summary['watermarks'].get(name) or '-'}"
        )
    say(f"\nFailed records (dead-lettered in sync_errors): {summary['records_failed']}")
    say(f"Connector status: {', '.join(f'{k} {v}' for k, v in summary['connectors'].items())}")
    say(f"Duration: {summary['duration_s']} s")


def main() -> int:
    root = prepare_embedded_environment()
    say(f"Embedded environment in {root} (warehouse {warehouse_url()}, DAGSTER_HOME {os.environ['DAGSTER_HOME']})")
    instance = DagsterInstance.get()
    incremental = has_synced_before(instance)
    sandbox, url = start_sandbox(root / "sandbox.log")
    os.environ["SYNC_VENDOR_SANDBOX_URL"] = url  # the operator's setting: the sync run calls the sandbox
    try:
        offered = prepare_sandbox(url, incremental)
        connectors = register(offered, instance)
        say(f"Sandbox at {url}; workspace '{WORKSPACE}' has {len(connectors)} connection(s): {', '.join(connectors)}")
        kind = (
            "incremental: since the last demo a few records were edited, and some deleted, archived or merged"
            if incremental
            else "first sync: full"
        )
        say(f"Running sync_workspace ({kind})")
        started = datetime.now(UTC)
        clock = time.monotonic()
        code = run_sync(connectors, root / "last_run.log")
        summary = summarize(instance, started, time.monotonic() - clock)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    say(f"\nSummary written to {root / 'summary.json'}; Dagster run log in {root / 'last_run.log'}")
    if code != 0:
        say("The sync run failed; see the run log above.")
    return code


if __name__ == "__main__":
    sys.exit(main())
