"""Salesforce Bulk API 2.0 benchmark: sandbox -> client -> sync loop -> Postgres, through Dagster.

    .venv/bin/python bench/salesforce_bulk.py [--sizes 20000 200000]

For each size, the sandbox serves that many Accounts and a fresh subprocess materializes the real
``salesforce/accounts`` asset for one workspace (full sync, Bulk path, rate limits off) into the
database ``bench_salesforce``. The subprocess reports the materialize wall time and its own peak RSS
(``ru_maxrss``), so each figure is one sync process, imports included. The simulated bulk job completes
at its first status poll: Salesforce's own processing time is not ours to measure.
Set BENCH_PROFILE=<file> to write a cProfile of each sync (the last size wins).
Targets (issue 3): peak RSS at the largest size <= 1.3x at the smallest; >= 20,000 records/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from the repo root: make the code location importable

from bench.support import sync_resources, tenant_config, vendor_limits_off, write_results  # noqa: E402
from scripts.databases import create_database  # noqa: E402

DB_NAME = "bench_salesforce"
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WORKSPACE = "bench"
RSS_TARGET_RATIO = 1.3
THROUGHPUT_TARGET = 20_000


def child(workspace: str) -> None:
    """One sync, in this process: materialize salesforce/accounts and report time and peak RSS."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

    from definitions import connector_assets
    from sync_assets import CONNECTORS_BY_NAME

    connector = CONNECTORS_BY_NAME["salesforce"]
    assets = next(a for a in connector_assets if AssetKey(["salesforce", "accounts"]) in a.keys)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("workspace", [workspace])
    profile = os.environ.get("BENCH_PROFILE")
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    result = materialize(
        [assets],
        instance=instance,
        partition_key=workspace,
        selection=["salesforce/accounts"],
        resources=sync_resources(connector.name, connector.resource),
    )
    seconds = time.perf_counter() - started
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["salesforce", "accounts"]), asset_partitions=[workspace]), limit=1
    ).records[0]
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    print(
        json.dumps(
            {
                "success": result.success,
                "seconds": seconds,
                "records_synced": meta["records_synced"],
                "sync_ms": meta["duration_ms"],
                "api_calls": meta["api_calls"],
                "pages": meta["pages"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def recreate_database() -> str:
    return create_database(DB_NAME, admin=ADMIN_URL)


def start_sandbox() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("sandbox listening on "):
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, line.split()[-1]


def prepare(url: str, sandbox: str, size: int) -> None:
    """A sandbox org of ``size`` Accounts and an empty warehouse with one Salesforce connection."""
    from resources.control_plane import upsert_connection, upsert_workspace
    from resources.schema import metadata

    body = {
        "sizes": {"salesforce": {"Account": size, "Opportunity": 0, "Contact": 0, "Task": 0}},
        "enforce_limits": False,
    }
    requests.post(f"{sandbox}/_sandbox/reset", json=body, timeout=60).raise_for_status()
    requests.post(
        f"{sandbox}/_sandbox/salesforce/faults", json={"bulk_polls_in_progress": 0}, timeout=10
    ).raise_for_status()
    offered = requests.get(f"{sandbox}/_sandbox/connections", timeout=10).json()["salesforce"]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(t.name for t in reversed(metadata.sorted_tables))} CASCADE")
    upsert_workspace(engine, WORKSPACE, "Bench")
    upsert_connection(engine, WORKSPACE, "salesforce", offered["credentials"], tenant_config(offered))
    engine.dispose()


def run_one(url: str, sandbox: str, size: int) -> dict[str, Any]:
    prepare(url, sandbox, size)
    env = {**os.environ, "WAREHOUSE_URL": url, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", WORKSPACE], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if not report["success"] or report["records_synced"] != size:
        raise RuntimeError(f"sync of {size} accounts did not complete: {report}\n{out.stderr[-3000:]}")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        landed = conn.exec_driver_sql("SELECT count(DISTINCT source_id) FROM accounts").scalar_one()
    engine.dispose()
    if landed != size:
        raise RuntimeError(f"{landed} accounts landed, expected {size}")
    report["size"] = size
    report["records_per_s"] = size / report["seconds"]
    report["sync_records_per_s"] = size / (report["sync_ms"] / 1000)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--child", metavar="WORKSPACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from resources.secrets import generate_key

    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    url = recreate_database()
    proc, sandbox = start_sandbox()
    # The operator's settings for a sandbox this benchmark alone uses; the child syncs inherit them.
    os.environ["SYNC_VENDOR_SANDBOX_URL"] = sandbox
    vendor_limits_off("salesforce")
    try:
        results = [run_one(url, sandbox, size) for size in args.sizes]
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{'accounts':>10} {'end-to-end s':>13} {'records/s':>10} {'sync-loop rec/s':>16} {'peak RSS MB':>12}")
    for r in results:
        print(
            f"{r['size']:>10,} {r['seconds']:>13.2f} {r['records_per_s']:>10,.0f} "
            f"{r['sync_records_per_s']:>16,.0f} {r['peak_rss_mb']:>12.1f}"
        )
    ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
    slowest = min(r["records_per_s"] for r in results)
    print(
        f"peak RSS ratio {results[-1]['size']:,} / {results[0]['size']:,}: {ratio:.2f} "
        f"(target <= {RSS_TARGET_RATIO}) {'OK' if ratio <= RSS_TARGET_RATIO else 'MISSED'}"
    )
    print(
        f"slowest end-to-end rate: {slowest:,.0f} records/s (target >= {THROUGHPUT_TARGET:,}) "
        f"{'OK' if slowest >= THROUGHPUT_TARGET else 'MISSED'}"
    )
    path = write_results(
        "salesforce_bulk",
        {
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_average_1m_after": os.getloadavg()[0],
            },
            "rss_ratio": ratio,
            "rss_target": RSS_TARGET_RATIO,
            "throughput_target": THROUGHPUT_TARGET,
            "runs": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
