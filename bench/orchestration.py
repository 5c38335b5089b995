"""Orchestration figures on a real Postgres instance and a real dagster-daemon.

1. Schedule tick: evaluation time of the daily schedule with 1,000 and 10,000 registered workspaces
   (target < 5 s at 10,000, the seed's bound).
2. Pickup: 20 runs for 20 workspaces submitted at once; QUEUED->STARTING and QUEUED->STARTED,
   p50/p95 (target QUEUED->STARTING p95 < 2 s).
3. Parallelism: wall time for 1, 5 and 20 workspaces each syncing a small HubSpot dataset; speed-up
   against running them one after another.

Run: .venv/bin/python bench/orchestration.py [--sizes 1000,10000] [--parallel 1,5,20]
Writes bench/results/orchestration.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dagster import DagsterEventType, DagsterRunStatus, RunsFilter, build_schedule_context  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402

from bench.support import write_results  # noqa: E402

ADMIN = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WAREHOUSE_DB = "bench_orchestration"
PARENT_RUN_TAG = "dagster/parent_run_id"  # set by Dagster on a run retry


def fresh_warehouse() -> str:
    from resources.secrets import generate_key
    from scripts.databases import create_database

    url = create_database(WAREHOUSE_DB, admin=ADMIN)
    os.environ["WAREHOUSE_URL"] = url
    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    return url


def seed_workspaces(url: str, count: int, sandbox_connection: dict) -> list[str]:
    from resources import schema
    from resources.secrets import encrypt_json

    engine = create_engine(url)
    ids = [f"bench-{i:05d}" for i in range(count)]
    credentials = encrypt_json(sandbox_connection["credentials"])
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE workspaces, connections CASCADE"))
        conn.execute(insert(schema.workspaces), [{"id": i, "name": i} for i in ids])
        conn.execute(
            insert(schema.connections),
            [
                {
                    "workspace_id": i,
                    "connector_name": "hubspot",
                    "credentials": credentials,
                    "config": sandbox_connection["config"],
                }
                for i in ids
            ],
        )
    engine.dispose()
    return ids


def schedule_tick(stack, url: str, sizes: list[int]) -> dict:
    import definitions

    repo = definitions.defs.get_repository_def()
    schedule = repo.get_schedule_def("daily_sync")
    instance = stack.instance
    results = {}
    connection = stack.sandbox.connections()["hubspot"]
    for size in sizes:
        ids = seed_workspaces(url, size, connection)
        known = set(instance.get_dynamic_partitions("workspace"))
        missing = [i for i in ids if i not in known]
        for start in range(0, len(missing), 5000):
            instance.add_dynamic_partitions("workspace", missing[start : start + 5000])
        timings = []
        for _ in range(3):
            context = build_schedule_context(
                instance=instance,
                repository_def=repo,
                resources={"warehouse": definitions.defs.resources["warehouse"]},
                scheduled_execution_time=datetime(2026, 12, 1, 2, tzinfo=UTC),
            )
            began = time.perf_counter()
            result = schedule.evaluate_tick(context)
            timings.append(time.perf_counter() - began)
            assert len(result.run_requests) == size, (len(result.run_requests), result.skip_message)
        results[size] = {"median_s": statistics.median(timings), "runs": timings}
        print(f"schedule tick, {size:>6} workspaces: {statistics.median(timings):.2f} s (median of 3)", flush=True)
    return results


def event_time(instance, run_id: str, event_type: DagsterEventType) -> float | None:
    for event in instance.all_logs(run_id, of_type=event_type):
        return event.timestamp
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def error_lines(instance, run_id: str) -> list[str]:
    """What the run's error events say: the serialized error where there is one (its user message is
    often empty), else the message."""
    lines = []
    for event in instance.all_logs(run_id):
        if event.level < 40:
            continue
        error = getattr(event.dagster_event.event_specific_data, "error", None) if event.dagster_event else None
        lines.append(error.to_string()[-1500:] if error else event.user_message or event.message or "")
    return lines


def submit_all(stack, workspaces: list[str]) -> list[str]:
    with ThreadPoolExecutor(len(workspaces)) as pool:
        return list(pool.map(lambda ws: stack.launch("sync_hubspot", ws), workspaces))


def pickup(stack, url: str, count: int) -> dict:
    connection = stack.sandbox.connections()["hubspot"]
    workspaces = seed_workspaces(url, count + 1, connection)
    stack.instance.add_dynamic_partitions("workspace", workspaces)
    # A running service is measured, not a cold one: one run first loads the daemon's code location.
    warm_up, workspaces = workspaces[0], workspaces[1:]
    stack.wait_for_run(stack.launch("sync_hubspot", warm_up), timeout_s=600)
    run_ids = submit_all(stack, workspaces)
    instance = stack.instance
    jobs = [job_runs(stack, run_id) for run_id in run_ids]
    # A launch can fail when the daemon's 60-second workspace refresh retires the code server it was
    # about to start the run on; run retries launch the job again, and its pickup lasts until that run
    # starts. A job whose every launch failed has no pickup: it is counted and named instead.
    done = DagsterRunStatus.SUCCESS
    failed = {job[0].run_id: error_lines(instance, job[-1].run_id)[:1] for job in jobs if job[-1].status != done}
    relaunched = {job[0].run_id: error_lines(instance, job[0].run_id)[:1] for job in jobs if len(job) > 1}
    if failed:
        print(f"WARNING: {len(failed)} of {count} pickup jobs never ran: {failed}", flush=True)
    to_starting, to_started = [], []
    for job in (job for job in jobs if job[-1].status == done):
        queued = event_time(instance, job[0].run_id, DagsterEventType.RUN_ENQUEUED)
        to_starting.append(event_time(instance, job[-1].run_id, DagsterEventType.RUN_STARTING) - queued)
        to_started.append(event_time(instance, job[-1].run_id, DagsterEventType.RUN_START) - queued)
    figures = {
        "queued_to_starting_p50_s": percentile(to_starting, 0.5),
        "queued_to_starting_p95_s": percentile(to_starting, 0.95),
        "queued_to_started_p50_s": percentile(to_started, 0.5),
        "queued_to_started_p95_s": percentile(to_started, 0.95),
        "relaunched_by_run_retries": relaunched,
        "failed_jobs": failed,
        "jobs": count,
    }
    print(
        f"pickup of {count} runs: QUEUED->STARTING p50 {figures['queued_to_starting_p50_s']:.2f} s, "
        f"p95 {figures['queued_to_starting_p95_s']:.2f} s; QUEUED->STARTED p50 "
        f"{figures['queued_to_started_p50_s']:.2f} s, p95 {figures['queued_to_started_p95_s']:.2f} s; "
        f"{len(relaunched)} relaunched by run retries after a failed launch, {len(failed)} never ran",
        flush=True,
    )
    return figures


def job_runs(stack, run_id: str, timeout_s: float = 600) -> list:
    """The run and the runs Dagster's run retries launched after it failed, until one ends otherwise."""
    runs = [stack.wait_for_run(run_id, timeout_s=timeout_s)]
    while runs[-1].status == DagsterRunStatus.FAILURE:
        deadline = time.monotonic() + 60
        retry = None
        while retry is None and time.monotonic() < deadline:
            retry = next(iter(stack.instance.get_runs(RunsFilter(tags={PARENT_RUN_TAG: runs[-1].run_id}))), None)
            time.sleep(0.5)
        if retry is None:
            break
        runs.append(stack.wait_for_run(retry.run_id, timeout_s=timeout_s))
    return runs


def parallelism(stack, url: str, counts: list[int]) -> dict:
    connection = stack.sandbox.connections()["hubspot"]
    results = {}
    for count in counts:
        workspaces = seed_workspaces(url, count, connection)
        stack.instance.add_dynamic_partitions("workspace", workspaces)
        began = time.perf_counter()
        run_ids = submit_all(stack, workspaces)
        runs = [stack.wait_for_run(r, timeout_s=900) for r in run_ids]
        wall = time.perf_counter() - began
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
        results[count] = {"wall_s": wall}
        print(f"parallelism: {count:>2} workspace(s) in {wall:.1f} s", flush=True)
    base = results[counts[0]]["wall_s"] / counts[0]
    for count in counts:
        results[count]["speedup_vs_serial"] = base * count / results[count]["wall_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--pickup", type=int, default=20)
    parser.add_argument("--parallel", default="1,5,20")
    parser.add_argument("--only", choices=["tick", "pickup", "parallel"], help="run one section")
    args = parser.parse_args()
    from tests.stack import start_stack, stop_stack

    url = fresh_warehouse()
    stack = start_stack(url, with_api=False)
    try:
        stack.sandbox.reset(sizes={"hubspot": {"deals": 50, "contacts": 50, "companies": 20, "tasks": 20}})
        wanted = {args.only} if args.only else {"tick", "pickup", "parallel"}
        report = {"date": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
        if "tick" in wanted:
            report["schedule_tick"] = schedule_tick(stack, url, [int(s) for s in args.sizes.split(",")])
        if "pickup" in wanted:
            report["pickup"] = pickup(stack, url, args.pickup)
        if "parallel" in wanted:
            report["parallelism"] = parallelism(stack, url, [int(s) for s in args.parallel.split(",")])
    finally:
        stop_stack(stack)
    print("\nfigure                              value      target     ratio")
    for size, figures in report.get("schedule_tick", {}).items():
        print(
            f"schedule tick @ {size:<6}              {figures['median_s']:>6.2f} s   < 5 s      "
            f"{figures['median_s'] / 5:.2f}"
        )
    if "pickup" in report:
        p95 = report["pickup"]["queued_to_starting_p95_s"]
        print(f"pickup QUEUED->STARTING p95          {p95:>6.2f} s   < 2 s      {p95 / 2:.2f}")
    for count, figures in report.get("parallelism", {}).items():
        print(f"parallel {count:>2} workspaces speed-up      {figures['speedup_vs_serial']:>6.2f}x")
    write_results("orchestration", report)


if __name__ == "__main__":
    main()
