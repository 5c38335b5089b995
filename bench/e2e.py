"""End to end against a peer: HubSpot deals, sandbox -> Postgres, ours against dlt's rest_api source.

    .venv/bin/python bench/e2e.py [--records 100000] [--repeat 3] [--scaling 10000 1000000] [--skip-dlt]

ours: a fresh process materializes the real ``hubspot/deals`` asset for one workspace (full sync, rate
limits off) into the database ``bench_e2e``. dlt: a fresh process runs dlt's ``rest_api`` source on the
same list endpoint (``limit=100``, the same properties, cursor ``paging.next.after`` sent as ``after``,
a bearer token from the sandbox's OAuth endpoint) with ``write_disposition="merge"`` on ``id`` into the
schema ``dlt_e2e`` of the same database. Both start from empty tables every repetition; repetitions are
interleaved (ours, dlt, ours, dlt, ...) so a change in machine load hits both. Each process reports
the wall time of the sync (ours: ``materialize``; dlt: token + ``pipeline.run``), imports excluded, and
its own peak RSS (imports included). The scaling sizes add one ours sync each for the memory figure
(peak RSS at the largest size over the smallest, the --records median included).
Targets (issue 10): ours >= 3x dlt records/s, ours peak RSS below dlt's, RSS flat within 1.3x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

# Run as a script: the engine under test comes from the first checkout on PYTHONPATH (another checkout in a
# before/after comparison, bench/README.md), else from this one; bench.support always from this one.
ENGINE_PATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
sys.path[:0] = [*ENGINE_PATH, str(Path(__file__).resolve().parents[1])]

from bench.support import (  # noqa: E402
    DEALS_PROPERTIES,
    WORKSPACE,
    Sandbox,
    count,
    machine,
    peak_rss_mb,
    prepare_hubspot_workspace,
    recreate_database,
    run_child,
    sync_resources,
    write_results,
)

DB_NAME = "bench_e2e"
DLT_SCHEMA = "dlt_e2e"
THROUGHPUT_RATIO_TARGET = 3.0
RSS_SCALING_TARGET = 1.3
SCRIPT = Path(__file__).resolve()


# --- the two contenders, each in its own process ---------------------------------------------------


def child_ours(workspace: str) -> dict[str, Any]:
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

    from definitions import connector_assets
    from sync_assets import CONNECTORS_BY_NAME

    connector = CONNECTORS_BY_NAME["hubspot"]
    key = AssetKey(["hubspot", "deals"])
    assets = next(a for a in connector_assets if key in a.keys)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("workspace", [workspace])
    started, cpu = time.perf_counter(), time.process_time()
    result = materialize(
        [assets],
        instance=instance,
        partition_key=workspace,
        selection=["hubspot/deals"],
        resources=sync_resources(connector.name, connector.resource),
    )
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    record = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[workspace]), limit=1)
    meta = {k: v.value for k, v in record.records[0].asset_materialization.metadata.items()}
    return {
        "success": result.success,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "records": meta["records_synced"],
        "api_calls": meta["api_calls"],
        "peak_rss_mb": peak_rss_mb(),
    }


def child_dlt(url: str) -> dict[str, Any]:
    import dlt
    import requests
    from dlt.sources.rest_api import rest_api_source

    connection = json.loads(os.environ["BENCH_HUBSPOT_CONNECTION"])
    base, creds = connection["config"]["base_url"], connection["credentials"]
    workdir = tempfile.TemporaryDirectory(prefix="bench_e2e_dlt_")
    # dlt connects with psycopg2 and insists on a password; trust auth ignores it.
    dsn = sa.make_url(url).set(drivername="postgresql", password="unused").render_as_string(hide_password=False)
    pipeline = dlt.pipeline(
        pipeline_name="bench_e2e",
        pipelines_dir=workdir.name,
        destination=dlt.destinations.postgres(dsn),
        dataset_name=DLT_SCHEMA,
    )
    started, cpu = time.perf_counter(), time.process_time()
    token = requests.post(
        f"{base}/oauth/v1/token",
        data={"grant_type": "refresh_token", **creds},
        timeout=30,
    ).json()["access_token"]
    source = rest_api_source(
        {
            "client": {
                "base_url": f"{base}/crm/v3/objects/",
                "auth": {"type": "bearer", "token": token},
                "paginator": {"type": "cursor", "cursor_path": "paging.next.after", "cursor_param": "after"},
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                {
                    "name": "deals",
                    "endpoint": {
                        "path": "deals",
                        "params": {"limit": 100, "properties": DEALS_PROPERTIES},
                        "data_selector": "results",
                    },
                }
            ],
        }
    )
    info = pipeline.run(source)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("deals", 0)
    workdir.cleanup()
    return {
        "success": not info.has_failed_jobs,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "records": rows,
        "peak_rss_mb": peak_rss_mb(),
        "dlt_version": dlt.__version__,
    }


# --- the runner ---------------------------------------------------------------------------------------


def run_ours(url: str, sandbox: Sandbox, records: int) -> dict[str, Any]:
    sandbox.reset_deals(records)
    prepare_hubspot_workspace(url, sandbox)
    report = run_child(SCRIPT, ["ours", WORKSPACE], env={"WAREHOUSE_URL": url})
    landed = count(url, "SELECT count(DISTINCT source_id) FROM deals")
    if not report["success"] or report["records"] != records or landed != records:
        raise RuntimeError(f"ours synced {report['records']} / landed {landed} of {records} deals: {report}")
    return {**report, "size": records, "records_per_s": records / report["seconds"]}


def run_dlt(url: str, sandbox: Sandbox, records: int) -> dict[str, Any]:
    sandbox.reset_deals(records)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {DLT_SCHEMA} CASCADE")
    engine.dispose()
    connection = json.dumps(sandbox.hubspot_connection())
    report = run_child(SCRIPT, ["dlt", url], env={"BENCH_HUBSPOT_CONNECTION": connection})
    landed = count(url, f"SELECT count(DISTINCT id) FROM {DLT_SCHEMA}.deals")
    if not report["success"] or landed != records:
        raise RuntimeError(f"dlt landed {landed} of {records} deals: {report}")
    return {**report, "size": records, "records_per_s": records / report["seconds"]}


def median(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(r[field] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="deals per head-to-head sync")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each contender (median reported)")
    parser.add_argument(
        "--scaling", type=int, nargs="*", default=[10_000, 1_000_000], help="extra sizes for the RSS scaling figure"
    )
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, arg = args.child
        print(json.dumps(child_ours(arg) if kind == "ours" else child_dlt(arg)))
        return

    from resources.secrets import generate_key

    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    began = time.monotonic()
    url = recreate_database(DB_NAME)
    ours: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    scaling: list[dict[str, Any]] = []
    with Sandbox() as sandbox:
        for rep in range(args.repeat):
            ours.append(run_ours(url, sandbox, args.records))
            print(f"rep {rep + 1} ours: {ours[-1]['records_per_s']:,.0f} records/s, {ours[-1]['peak_rss_mb']:.0f} MB")
            if not args.skip_dlt:
                peer.append(run_dlt(url, sandbox, args.records))
                print(
                    f"rep {rep + 1} dlt:  {peer[-1]['records_per_s']:,.0f} records/s, {peer[-1]['peak_rss_mb']:.0f} MB"
                )
        for size in args.scaling:
            scaling.append(run_ours(url, sandbox, size))
            print(
                f"scaling {size:,}: {scaling[-1]['records_per_s']:,.0f} records/s, {scaling[-1]['peak_rss_mb']:.0f} MB"
            )

    figures: dict[str, Any] = {
        "ours_records_per_s": median(ours, "records_per_s"),
        "ours_peak_rss_mb": median(ours, "peak_rss_mb"),
        "ours_cpu_us_per_record": median(ours, "cpu_seconds") / args.records * 1e6,
    }
    if peer:
        figures |= {
            "dlt_records_per_s": median(peer, "records_per_s"),
            "dlt_peak_rss_mb": median(peer, "peak_rss_mb"),
            "dlt_cpu_us_per_record": median(peer, "cpu_seconds") / args.records * 1e6,
        }
        figures["throughput_ratio"] = figures["ours_records_per_s"] / figures["dlt_records_per_s"]
        figures["rss_ratio"] = figures["ours_peak_rss_mb"] / figures["dlt_peak_rss_mb"]
    rss_by_size = {args.records: figures["ours_peak_rss_mb"]} | {r["size"]: r["peak_rss_mb"] for r in scaling}
    sizes = sorted(rss_by_size)
    figures["rss_by_size_mb"] = {str(s): rss_by_size[s] for s in sizes}
    figures["rss_scaling_ratio"] = rss_by_size[sizes[-1]] / rss_by_size[sizes[0]]

    print(f"\n{'contender':<8} {'deals':>9} {'records/s (median)':>19} {'peak RSS MB':>12} {'CPU us/record':>14}")
    for name, runs in (("ours", ours), ("dlt", peer)):
        if runs:
            print(
                f"{name:<8} {args.records:>9,} {median(runs, 'records_per_s'):>19,.0f} "
                f"{median(runs, 'peak_rss_mb'):>12.1f} {median(runs, 'cpu_seconds') / args.records * 1e6:>14.1f}"
            )
    if peer:
        print(f"ours/dlt records/s: {figures['throughput_ratio']:.2f}x (target >= {THROUGHPUT_RATIO_TARGET}x)")
        print(f"ours/dlt peak RSS:  {figures['rss_ratio']:.2f} (target < 1)")
    print("peak RSS by size: " + ", ".join(f"{s:,}: {rss_by_size[s]:.1f} MB" for s in sizes))
    print(f"RSS {sizes[-1]:,} / {sizes[0]:,}: {figures['rss_scaling_ratio']:.2f} (target <= {RSS_SCALING_TARGET})")

    path = write_results(
        "e2e",
        {
            "benchmark": "bench/e2e.py",
            "machine": machine(),
            "config": {"records": args.records, "repeat": args.repeat, "scaling": args.scaling},
            "figures": figures,
            "targets": {
                "throughput_ratio": THROUGHPUT_RATIO_TARGET,
                "rss_ratio": 1.0,
                "rss_scaling": RSS_SCALING_TARGET,
            },
            "runs": {"ours": ours, "dlt": peer, "scaling": scaling},
            "total_runtime_s": round(time.monotonic() - began, 1),
        },
    )
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
