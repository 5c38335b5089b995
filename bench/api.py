"""REST API latency: 20 concurrent clients over 20 workspaces, each with its own workspace token.

Each round a client triggers a sync (POST /sync, the 202 path: auth, workspace lock, stale check,
Dagster in-flight check, the launch committed to the outbox), reads GET /sync/status and
GET /sync/jobs/{id}, triggers again (the 409 path), waits until the API's launcher has created and
queued the run (reported as "202 -> run created", no target), then cancels it so the next round can
launch. Each client first makes one untimed round (warm-up). The dagster-daemon is stopped once the
stack is up, so runs stay QUEUED and the figures are the API's own, not the executor's competing for
the same cores. Targets (seed): p99 < 500 ms;
p50 < 50 ms for the 202.

Run: .venv/bin/python bench/api.py [--clients 20] [--rounds 10]
Writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from dagster import DagsterRunStatus, RunsFilter  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.support import write_results  # noqa: E402

ADMIN_PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WAREHOUSE_DB = "bench_api"
ADMIN_TOKEN = "bench-admin-token"
ENDPOINTS = ("POST /sync (202)", "POST /sync (409)", "GET /sync/status", "GET /sync/jobs/{id}")
# Not a request: from the 202 to its run existing in Dagster (the launch outbox's lag; no target).
LAUNCHED = "202 -> run created"
LAUNCH_POLL_S = 0.05


def fresh_warehouse() -> str:
    from resources.secrets import generate_key
    from scripts.databases import create_database

    url = create_database(WAREHOUSE_DB, admin=ADMIN_PG)
    os.environ["WAREHOUSE_URL"] = url
    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    os.environ["SYNC_ADMIN_TOKEN"] = ADMIN_TOKEN
    return url


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summarize(samples: list[float]) -> dict:
    ms = [s * 1000 for s in samples]
    return {
        "count": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def setup_workspaces(base: str, offered: dict, count: int) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tokens = {}
    for i in range(count):
        ws = f"bench-{i:02d}"
        requests.post(
            f"{base}/api/workspaces", json={"id": ws, "name": ws}, headers=admin, timeout=60
        ).raise_for_status()
        body = {"credentials": offered["hubspot"]["credentials"], "config": offered["hubspot"]["config"]}
        requests.put(f"{base}/api/workspaces/{ws}/connections/hubspot", json=body, headers=admin, timeout=60)
        token = requests.post(f"{base}/api/workspaces/{ws}/tokens", headers=admin, timeout=60).json()["token"]
        tokens[ws] = token
    return tokens


class LaunchWatcher:
    """Waits for the clients' runs to be queued with one query per poll for all of them, so 20 waiting
    clients do not load the machine whose latency they measure."""

    def __init__(self, instance) -> None:
        self.instance = instance
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def wait(self, run_id: str) -> None:
        queued = threading.Event()
        with self._lock:
            self._waiting[run_id] = queued
        queued.wait()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(LAUNCH_POLL_S):
            with self._lock:
                ids = list(self._waiting)
            if ids:
                for run in self.instance.get_runs(RunsFilter(run_ids=ids)):
                    if run.status != DagsterRunStatus.NOT_STARTED:
                        with self._lock:
                            self._waiting.pop(run.run_id).set()


def client(
    base: str, ws: str, token: str, rounds: int, instance, launches: LaunchWatcher, samples: dict, lock: threading.Lock
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    mine: dict[str, list[float]] = {name: [] for name in (*ENDPOINTS, LAUNCHED)}

    def timed(name: str, method: str, path: str, expect: int) -> dict:
        started = time.perf_counter()
        response = session.request(method, f"{base}/api/workspaces/{ws}{path}", timeout=60)
        elapsed = time.perf_counter() - started
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        mine[name].append(elapsed)
        return response.json()

    # Warm-up, untimed: the API plans each job selection once per process (a code-server call of a few
    # hundred ms that the first triggers of a selection wait for), then reuses the plan.
    warm = session.post(f"{base}/api/workspaces/{ws}/sync", timeout=60)
    if warm.status_code != 202:
        raise RuntimeError(f"warm-up POST /sync: {warm.status_code} {warm.text[:200]}")
    launches.wait(warm.json()["jobId"])
    instance.run_coordinator.cancel_run(warm.json()["jobId"])

    for _ in range(rounds):
        job_id = timed("POST /sync (202)", "POST", "/sync", 202)["jobId"]
        accepted_at = time.perf_counter()
        timed("GET /sync/status", "GET", "/sync/status", 200)
        timed("GET /sync/jobs/{id}", "GET", f"/sync/jobs/{job_id}", 200)
        timed("POST /sync (409)", "POST", "/sync", 409)
        launches.wait(job_id)  # the API's launcher creates and queues the run after the 202
        mine[LAUNCHED].append(time.perf_counter() - accepted_at)
        instance.run_coordinator.cancel_run(job_id)  # QUEUED (no daemon): canceled at once
    with lock:
        for name, values in mine.items():
            samples[name] += values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    from scripts import stack as processes
    from tests.stack import start_stack, stop_stack

    url = fresh_warehouse()
    stack = start_stack(url, with_api=True, extra_env={"SYNC_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        processes.stop([s for s in stack.services if s.name == "dagster-daemon"])
        base = stack.api_url
        tokens = setup_workspaces(base, stack.sandbox.connections(), args.clients)
        instance = stack.instance
        samples: dict[str, list[float]] = {name: [] for name in (*ENDPOINTS, LAUNCHED)}
        lock = threading.Lock()
        load_before = os.getloadavg()
        launches = LaunchWatcher(instance)
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(args.clients) as pool:
                futures = [
                    pool.submit(client, base, ws, token, args.rounds, instance, launches, samples, lock)
                    for ws, token in tokens.items()
                ]
                for future in futures:
                    future.result()
        finally:
            launches.close()
        wall_s = time.monotonic() - started
    finally:
        stop_stack(stack)
        admin = create_engine(ADMIN_PG, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{WAREHOUSE_DB}" WITH (FORCE)'))
        admin.dispose()

    figures = {name: summarize(samples[name]) for name in ENDPOINTS}
    launch_lag = summarize(samples[LAUNCHED])
    print(f"{args.clients} clients x {args.rounds} rounds, {wall_s:.1f} s wall, load avg before {load_before[0]:.1f}")
    print(f"{'endpoint':<22}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, f in figures.items():
        print(f"{name:<22}{f['count']:>7}{f['p50_ms']:>10}{f['p95_ms']:>10}{f['p99_ms']:>10}{f['max_ms']:>10}")
    print(
        f"{LAUNCHED:<22}{launch_lag['count']:>7}{launch_lag['p50_ms']:>10}{launch_lag['p95_ms']:>10}"
        f"{launch_lag['p99_ms']:>10}{launch_lag['max_ms']:>10}  (not a request; no target)"
    )
    accepted = figures["POST /sync (202)"]
    verdict = {
        "p99_under_500ms_all": all(f["p99_ms"] < 500 for f in figures.values()),
        "p50_202_under_50ms": accepted["p50_ms"] < 50,
    }
    print("targets:", verdict)
    path = write_results(
        "api",
        {
            "benchmark": "api",
            "when": datetime.now(UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "clients": args.clients,
            "rounds": args.rounds,
            "wall_s": round(wall_s, 1),
            "figures": figures,
            "launch_lag": launch_lag,
            "targets": verdict,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
