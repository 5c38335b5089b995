"""Webhook latency benchmark: from a run's end to its ``sync.completed`` arriving at a receiver.

    .venv/bin/python bench/webhooks.py [--runs 20] [--keep]

Starts the real processes (dagster-webserver + dagster-daemon via scripts/stack.py, the sandbox, a local
receiver) on a fresh Postgres instance database ``bench_webhooks_dagster`` and warehouse
``bench_webhooks``, launches HubSpot syncs one after another through Dagster's GraphQL API, and for each
measures received_at (receiver clock) - run end_time (the run record). Same machine, same clock.
One warm-up run (the run-status sensors' first tick only sets their cursor) is not counted.
Target: p95 < 10 s. Results go to bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from the repo root: make the code location importable

import sqlalchemy as sa  # noqa: E402
from dagster import DagsterInstance, DagsterRunStatus  # noqa: E402
from dagster_graphql import DagsterGraphQLClient  # noqa: E402

from bench.support import write_results  # noqa: E402
from resources.control_plane import upsert_connection, upsert_workspace  # noqa: E402
from resources.db import get_engine  # noqa: E402
from resources.secrets import generate_key  # noqa: E402
from resources.webhooks.config import set_webhook  # noqa: E402
from scripts import stack  # noqa: E402
from scripts.databases import create_database  # noqa: E402
from scripts.environment import migrate  # noqa: E402
from tests.receiver import Receiver  # noqa: E402
from tests.support import Sandbox, free_port  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
INSTANCE_DB, WAREHOUSE_DB = "bench_webhooks_dagster", "bench_webhooks"
WORKSPACE = "bench-hooks"
SECRET = "bench-secret"
SIZES = {"hubspot": {"deals": 50, "contacts": 50, "companies": 20, "tasks": 20}}
RUN_TIMEOUT_S = 120
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def fresh_database(name: str) -> str:
    return create_database(name, migrated=False, admin=PG_ADMIN)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def one_run(client: DagsterGraphQLClient, instance: DagsterInstance, receiver: Receiver) -> dict:
    seen = len(receiver.events("sync.completed"))
    run_id = client.submit_job_execution(
        "sync_hubspot",
        repository_location_name="sales_sync",
        repository_name="__repository__",
        tags={"dagster/partition": WORKSPACE},
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (record := instance.get_run_record_by_id(run_id)) is None or record.dagster_run.status not in FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not finish in {RUN_TIMEOUT_S}s")
        time.sleep(0.2)
    if record.dagster_run.status != DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"run {run_id} ended {record.dagster_run.status}")
    received = receiver.wait_for("sync.completed", count=seen + 1, timeout_s=60)[seen:]
    if not received or received[0].envelope["data"]["jobId"] != run_id:
        raise RuntimeError(f"no sync.completed for {run_id} within 60 s")
    return {"run_id": run_id, "latency_s": round(received[0].at - record.end_time, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args()

    instance_url = fresh_database(INSTANCE_DB).replace("+psycopg:", "+psycopg2:")
    warehouse_url = fresh_database(WAREHOUSE_DB)
    home = Path(tempfile.mkdtemp(prefix="bench_webhooks_home_"))
    stack.prepare_dagster_home(home, ROOT / "dagster.yaml")
    os.environ.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL=instance_url,
        WAREHOUSE_URL=warehouse_url,
        SYNC_SECRET_KEY=generate_key(),
        WEBHOOK_ALLOW_PRIVATE="1",
        CODE_SERVER_HOST="127.0.0.1",
        CODE_SERVER_PORT=str(free_port()),
    )
    migrate(warehouse_url)
    sandbox, receiver = Sandbox.start(), Receiver().start()
    # The operator's settings for the benchmark's own sandbox, read by the code server and run workers.
    os.environ.update(
        SYNC_VENDOR_SANDBOX_URL=sandbox.url, SYNC_RATE_LIMITS='{"hubspot": false, "hubspot:search": false}'
    )
    dagster_port = free_port()
    services = stack.services(
        dict(os.environ), dagster_port=dagster_port, api_port=0, sandbox_port=None, with_api=False
    )
    try:
        sandbox.reset(sizes=SIZES, enforce_limits=False)
        engine = get_engine(warehouse_url)
        upsert_workspace(engine, WORKSPACE, "Bench")
        offered = sandbox.connections()["hubspot"]
        upsert_connection(engine, WORKSPACE, "hubspot", offered["credentials"], offered["config"])
        set_webhook(engine, WORKSPACE, receiver.url, SECRET)
        instance = DagsterInstance.get()
        instance.add_dynamic_partitions("workspace", [WORKSPACE])
        stack.start(services, dict(os.environ), home / "process-logs")  # not DAGSTER_HOME/logs: telemetry empties it
        client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_port)
        time.sleep(6)  # let the run-status sensors take their first (cursor-only) tick
        warmup = one_run(client, instance, receiver)
        print(f"warm-up run {warmup['run_id']}: {warmup['latency_s']} s (not counted)", flush=True)
        samples = []
        for index in range(args.runs):
            sample = one_run(client, instance, receiver)
            samples.append(sample)
            print(f"run {index + 1:2}/{args.runs} {sample['run_id']}: {sample['latency_s']:.3f} s", flush=True)
    finally:
        stack.stop(services)
        receiver.stop()
        sandbox.stop()
    latencies = [s["latency_s"] for s in samples]
    summary = {
        "runs": len(latencies),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
        "target_p95_s": 10,
        "samples": samples,
    }
    write_results("webhooks", summary)
    print(
        f"run end -> sync.completed received over {len(latencies)} runs: p50 {summary['p50_s']} s, "
        f"p95 {summary['p95_s']} s, max {summary['max_s']} s (target p95 < 10 s)"
    )
    if not args.keep:
        get_engine(warehouse_url).dispose()
        for name in (INSTANCE_DB, WAREHOUSE_DB):
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
