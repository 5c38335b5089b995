"""Celery scale-out benchmark: `sync_workspace` throughput with 1 and with 2 Celery workers, same
workload, side by side in one run.

    .venv/bin/python bench/celery.py [--workspaces 4] [--latency-ms 100] [--scale 1]

One platform (dagster-webserver + dagster-daemon on a Postgres instance, the sandbox, SYNC_EXECUTOR=celery,
RabbitMQ in a private vhost) serves both rounds. Each round starts N workers (`dagster-celery worker`,
concurrency 1), launches one full HubSpot + Salesforce sync per workspace at once and times from the first
launch to the last run's end. The sandbox adds --latency-ms to every vendor call, as a real API would; the
credential rate limit is off so that the vendor's limit does not cap both rounds alike. Databases
`bench_celery` (warehouse) and the stack's own instance database are created and dropped. Results:
printed, and written to bench/results/celery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import time
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from the repo root: make the code location importable

from dagster import DagsterEventType, DagsterRunStatus  # noqa: E402

from bench.support import HUBSPOT_LIMITS, write_results  # noqa: E402
from resources.control_plane import upsert_connection, upsert_workspace  # noqa: E402
from resources.db import dispose_all, get_engine  # noqa: E402
from resources.secrets import generate_key  # noqa: E402
from scripts import workers  # noqa: E402
from scripts.databases import create_database, drop_database  # noqa: E402
from sync_assets import CONNECTORS_BY_NAME  # noqa: E402
from sync_assets.state import asset_key  # noqa: E402
from tests.stack import Stack, start_stack, stop_stack  # noqa: E402

DB_NAME = "bench_celery"
CONNECTORS = ("hubspot", "salesforce")
SIZES = {
    "hubspot": {"deals": 1000, "contacts": 600, "companies": 200, "tasks": 200},
    "salesforce": {"Opportunity": 1000, "Contact": 600, "Account": 200, "Task": 200},
}
TABLES = ("deals", "contacts", "accounts", "tasks")


def scaled_sizes(scale: float) -> dict[str, dict[str, int]]:
    return {vendor: {k: int(v * scale) for k, v in sizes.items()} for vendor, sizes in SIZES.items()}


def register(stack: Stack, workspace: str) -> list[str]:
    engine = get_engine(os.environ["WAREHOUSE_URL"])
    upsert_workspace(engine, workspace, workspace)
    offered = stack.sandbox.connections()
    for name in CONNECTORS:
        upsert_connection(engine, workspace, name, offered[name]["credentials"], offered[name]["config"])
    stack.instance.add_dynamic_partitions("workspace", [workspace])
    return [
        "/".join(asset_key(CONNECTORS_BY_NAME[c], e).path) for c in CONNECTORS for e in CONNECTORS_BY_NAME[c].entities
    ]


def records_in(workspaces: list[str]) -> int:
    with get_engine(os.environ["WAREHOUSE_URL"]).connect() as conn:
        return sum(
            conn.execute(text(f"SELECT count(*) FROM {t} WHERE workspace_id = ANY(:w)"), {"w": workspaces}).scalar_one()
            for t in TABLES
        )


def failure_reasons(stack: Stack, run_id: str) -> list[str]:
    return [
        (e.user_message or "")[:500]
        for e in stack.instance.all_logs(run_id)
        if e.dagster_event
        and e.dagster_event.event_type in {DagsterEventType.RUN_FAILURE, DagsterEventType.STEP_FAILURE}
    ]


def one_round(stack: Stack, worker_count: int, workspaces: list[str], log_dir: Path) -> dict[str, float]:
    pool = workers.start_workers(worker_count, stack.env, log_dir, prefix=f"bench-{worker_count}w")
    try:
        selection = [register(stack, ws) for ws in workspaces][0]
        started = time.time()
        run_ids = [stack.launch("sync_workspace", ws, assets=selection) for ws in workspaces]
        runs = [stack.wait_for_run(run_id, timeout_s=1800) for run_id in run_ids]
        failed = {r.run_id: failure_reasons(stack, r.run_id) for r in runs if r.status != DagsterRunStatus.SUCCESS}
        if failed:
            raise SystemExit(f"runs failed with {worker_count} worker(s): {failed}")
        ended = max(stack.run_record(run_id).end_time for run_id in run_ids)
    finally:
        workers.stop_workers(pool)
    seconds = ended - started
    records = records_in(workspaces)
    load = os.getloadavg()[1]  # 5-minute average: the machine is shared, and the figures mean little without it
    return {
        "workers": worker_count,
        "seconds": round(seconds, 2),
        "records": records,
        "records_per_s": records / seconds,
        "loadavg_5min": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspaces", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument(
        "--sequence",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2],
        help="worker counts of the rounds, in order; e.g. 1,2,2,1 cancels a drift in machine load",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sandbox dataset sizes")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
    )
    args = parser.parse_args()

    os.environ["TEST_PG_ADMIN_URL"] = f"{args.server}/postgres"
    os.environ["WAREHOUSE_URL"] = create_database(DB_NAME)
    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())

    vhost = f"bench_celery_{secrets.token_hex(3)}"
    broker = workers.create_vhost(vhost)
    stack = start_stack(
        os.environ["WAREHOUSE_URL"],
        with_api=False,
        extra_env={
            "SYNC_EXECUTOR": "celery",
            "SYNC_CELERY_BROKER": broker,
            "SYNC_LEASE_SECONDS": "120",  # production's lease, not the e2e tests' short one
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "180",  # runs launched at once on a shared 2-core machine
            # The sandbox is the benchmark's alone: no platform rate limits (the operator's setting).
            "SYNC_RATE_LIMITS": json.dumps(dict.fromkeys([*CONNECTORS, *HUBSPOT_LIMITS], False)),
        },
    )
    results = []
    try:
        stack.sandbox.reset(sizes=scaled_sizes(args.scale), enforce_limits=False)
        for vendor in CONNECTORS:
            stack.sandbox.faults(vendor, latency_ms=args.latency_ms)
        for n, worker_count in enumerate(args.sequence):
            workspaces = [f"bench-{n}-{worker_count}w-{i}" for i in range(1, args.workspaces + 1)]
            results.append(one_round(stack, worker_count, workspaces, stack.logs))
            print(f"{worker_count} worker(s): {results[-1]}", flush=True)
    finally:
        stop_stack(stack)
        workers.delete_vhost(vhost)
        dispose_all()
        drop_database(DB_NAME)

    def best_rate(count: int) -> float:
        return max(r["records_per_s"] for r in results if r["workers"] == count)

    ratio = best_rate(2) / best_rate(1)
    steps = args.workspaces * len(CONNECTORS)
    print()
    print(f"workload: {args.workspaces} workspaces x {len(CONNECTORS)} connectors = {steps} steps, "
          f"{results[0]['records']} records, vendor latency {args.latency_ms} ms")  # fmt: skip
    print(f"{'workers':>8} {'seconds':>9} {'records/s':>10} {'steps/min':>10} {'load (5 min)':>13}")
    for r in results:
        per_min, load = steps / r["seconds"] * 60, r["loadavg_5min"]
        print(f"{r['workers']:>8} {r['seconds']:>9.1f} {r['records_per_s']:>10.0f} {per_min:>10.1f} {load:>13.1f}")
    print(f"2 workers / 1 worker throughput (best round each): {ratio:.2f}x")
    path = write_results(
        "celery",
        {
            "workload": {
                "workspaces": args.workspaces,
                "connectors": CONNECTORS,
                "latency_ms": args.latency_ms,
                "sizes": scaled_sizes(args.scale),
            },
            "results": results,
            "ratio_2_over_1": round(ratio, 3),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_end": os.getloadavg(),
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
