"""Rate-limit benchmark: several processes share one Gong credential against the sandbox.

    .venv/bin/python bench/ratelimit.py [--minutes 3] [--processes 3] [--compare]

Each worker process pages ``POST /v2/calls/extensive`` with the real Gong client (100 requests/minute,
slots in Postgres) from the same start instant until the deadline. The sandbox enforces Gong's budget
(100 per rolling 60 s per credential, 429 + Retry-After) and logs every arrival; the figures come from
that log: the most requests in any 60-s window, mean and minimum spacing, 429s, and achieved/allowed
throughput. ``--compare`` repeats the run with process-local limiters (what a per-process counter
gives). Targets: at most 100 per window, zero 429s, throughput at least 95% of the limit.
Results go to ``bench/results/ratelimit.json``; the database ``bench_ratelimit`` is created afresh.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from the repo root: make the code location importable

from bench.support import write_results  # noqa: E402
from resources import schema  # noqa: E402
from resources.connections import Connection  # noqa: E402
from resources.gong import GongResource  # noqa: E402
from resources.http import VendorError  # noqa: E402
from resources.rate_limit import RateLimit  # noqa: E402
from scripts.databases import create_database  # noqa: E402

DB_NAME = "bench_ratelimit"
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LIMIT, PER_SECONDS = 100, 60.0
CALLS = 20_000  # 200 pages; workers wrap around when they reach the end
WINDOW_S = 60.0
START_DELAY_S = 3.0  # lets every worker import and connect before the common start instant


# --- worker ---------------------------------------------------------------------------------------


def worker(sandbox: str, store_url: str, start_at: float, until: float) -> None:
    credentials = requests.get(f"{sandbox}/_sandbox/connections", timeout=10).json()["gong"]
    connection = Connection(workspace_id="bench", connector="gong", credentials=credentials["credentials"], config={})
    client = GongResource(rate_limit_store_url=store_url).client_for(connection)
    since, now = datetime(2010, 1, 1, tzinfo=UTC), datetime.now(UTC)
    time.sleep(max(start_at - time.time(), 0))
    while time.time() < until:
        try:
            for _ in client.extensive_calls(since, now):
                if time.time() >= until:
                    return
        except VendorError as exc:  # a contender that overruns the limit gives up on a page; keep going
            print(f"worker: {exc}", file=sys.stderr)


# --- driver ---------------------------------------------------------------------------------------


def fresh_database() -> str:
    url = create_database(DB_NAME, migrated=False, admin=ADMIN_URL)
    engine = sa.create_engine(url)
    schema.rate_limit_slots.create(engine)
    engine.dispose()
    return url


def start_sandbox() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "sandbox listening on http://127.0.0.1:PORT"
    if not line.startswith("sandbox listening on "):
        process.terminate()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    url = line.split()[-1]
    deadline = time.monotonic() + 30
    while True:  # the line comes just before the server accepts connections
        try:
            if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                process.terminate()
                raise
        time.sleep(0.1)


def run(name: str, store_url: str, sandbox: str, processes: int, minutes: float) -> dict[str, Any]:
    reset = {"sizes": {"gong": {"calls": CALLS}}}
    requests.post(f"{sandbox}/_sandbox/reset", json=reset, timeout=60).raise_for_status()
    start_at = time.time() + START_DELAY_S
    until = start_at + minutes * 60
    args = ["--worker", "--sandbox", sandbox, "--store", store_url, "--start-at", str(start_at), "--until", str(until)]
    workers = [subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT) for _ in range(processes)]
    codes = [w.wait(timeout=minutes * 60 + 120) for w in workers]
    log = requests.get(f"{sandbox}/_sandbox/gong/requests", timeout=60).json()["requests"]
    calls = [r for r in log if r["path"] == "/gong/v2/calls/extensive"]
    return {"contender": name, "worker_exit_codes": codes, **measure(calls, minutes)}


def measure(calls: list[dict[str, Any]], minutes: float) -> dict[str, Any]:
    stamps = sorted(r["ts_ms"] / 1000 for r in calls)
    ok = sorted(r["ts_ms"] / 1000 for r in calls if r["status"] == 200)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    achieved = (len(ok) - 1) / (ok[-1] - ok[0]) * 60 if len(ok) > 1 else 0.0
    return {
        "minutes": minutes,
        "requests": len(stamps),
        "accepted": len(ok),
        "rejected_429": sum(1 for r in calls if r["status"] == 429),
        "max_in_any_60s_window": max_in_window(stamps, WINDOW_S),
        "max_accepted_in_any_60s_window": max_in_window(ok, WINDOW_S),
        "mean_spacing_s": round(statistics.fmean(gaps), 4) if gaps else None,
        "min_spacing_s": round(min(gaps), 4) if gaps else None,
        "span_s": round(span, 2),
        "achieved_per_min": round(achieved, 2),
        "allowed_per_min": LIMIT * 60 / PER_SECONDS,
        "achieved_over_allowed": round(achieved / (LIMIT * 60 / PER_SECONDS), 4),
    }


def max_in_window(stamps: list[float], window_s: float) -> int:
    """The most timestamps in any half-open window [t, t + window_s) (two pointers over sorted times)."""
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def table(results: list[dict[str, Any]]) -> str:
    columns = [
        ("contender", "contender"),
        ("requests", "requests"),
        ("429s", "rejected_429"),
        ("max/60s", "max_in_any_60s_window"),
        ("mean gap s", "mean_spacing_s"),
        ("min gap s", "min_spacing_s"),
        ("req/min", "achieved_per_min"),
        ("achieved/allowed", "achieved_over_allowed"),
    ]
    rows = [[h for h, _ in columns]] + [[str(r[k]) for _, k in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run process-local limiters")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sandbox", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.sandbox, args.store, args.start_at, args.until)
        return

    load_before = os.getloadavg()
    store_url = fresh_database()
    sandbox, url = start_sandbox()
    os.environ["SYNC_VENDOR_SANDBOX_URL"] = url  # the operator's setting; the workers inherit it
    try:
        results = [run("shared (Postgres slots)", store_url, url, args.processes, args.minutes)]
        if args.compare:
            results.append(run("process-local", "memory", url, args.processes, args.minutes))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    print(f"{args.processes} processes, one Gong credential, limit {LIMIT}/{PER_SECONDS:g}s, {args.minutes:g} min")
    print(table(results))
    shared = results[0]
    targets = {
        "max_per_window_le_limit": shared["max_in_any_60s_window"] <= LIMIT,
        "zero_429": shared["rejected_429"] == 0,
        "throughput_ge_95pct": shared["achieved_over_allowed"] >= 0.95,
    }
    print("targets:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    path = write_results(
        "ratelimit",
        {
            "benchmark": "ratelimit",
            "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average_1_5_15_before": load_before,
                "load_average_1_5_15_after": os.getloadavg(),
            },
            "settings": {
                "processes": args.processes,
                "minutes": args.minutes,
                "limit": LIMIT,
                "per_seconds": PER_SECONDS,
                "interval_s": round(RateLimit(LIMIT, PER_SECONDS).interval_s, 4),
            },
            "results": results,
            "targets": targets,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
