"""A no-change incremental sync against the full sync before it: HubSpot deals, sandbox -> Postgres.

    .venv/bin/python bench/incremental.py [--records 100000] [--repeat 3]

Each repetition starts from empty warehouse tables and a new Dagster instance on Postgres storage, as
production's dagster.yaml (database ``bench_incremental_dagster``), which keeps the state one sync records
for the next. A fresh process materializes the real ``hubspot/deals`` asset (a full sync: no state yet)
from the sandbox (``--records`` deals, rate limits off) into the database ``bench_incremental``. Then
another fresh process materializes it again, nothing having changed at the vendor: an incremental sync
from the watermark the first one recorded. Timed in each process: the wall time of ``materialize``,
imports excluded (as bench/e2e.py, whose Dagster instance is in memory instead), and the sync proper
(the materialization's ``duration_ms``: the entity's reads, transforms and commits, without Dagster's
run and step events).

Reported: both times (medians and range), the incremental's share of the full sync's time, and what the
incremental did: ``records_reread`` (read again, found unchanged), ``records_synced`` (written: must be 0),
its API calls, and, from the warehouse itself, the rows it rewrote (``updated_at`` moved).
Target (watermark engine issue): the no-change incremental takes under 5% of the full sync's time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script: the engine under test comes from the first checkout on PYTHONPATH (another checkout in a
# before/after comparison, bench/README.md), else from this one; bench.support always from this one.
ENGINE_PATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
sys.path[:0] = [*ENGINE_PATH, str(Path(__file__).resolve().parents[1])]

import sqlalchemy as sa  # noqa: E402

from bench.support import (  # noqa: E402
    ADMIN_URL,
    RESULTS_DIR,
    WORKSPACE,
    Sandbox,
    machine,
    peak_rss_mb,
    prepare_hubspot_workspace,
    recreate_database,
    run_child,
    sync_resources,
    write_results,
)

DB_NAME = "bench_incremental"
DAGSTER_DB_NAME = "bench_incremental_dagster"
TIME_SHARE_TARGET = 0.05
SCRIPT = Path(__file__).resolve()
PROFILE = RESULTS_DIR / "incremental_profile.txt"
PROFILE_LINES = 60
NO_PROFILE = "-"


def child_sync(profile_to: Path | None) -> dict[str, Any]:
    """One materialize of hubspot/deals on the instance of $DAGSTER_HOME: its time and metadata; with
    ``profile_to``, under cProfile, whose top functions (by time including callees), and the engine's own,
    go to that file."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

    from definitions import connector_assets
    from sync_assets import CONNECTORS_BY_NAME

    connector = CONNECTORS_BY_NAME["hubspot"]
    key = AssetKey(["hubspot", "deals"])
    assets = next(a for a in connector_assets if key in a.keys)
    instance = DagsterInstance.get()
    profiler = cProfile.Profile() if profile_to else None
    started, cpu = time.perf_counter(), time.process_time()
    with profiler or contextlib.nullcontext():
        result = materialize(
            [assets],
            instance=instance,
            partition_key=WORKSPACE,
            selection=["hubspot/deals"],
            resources=sync_resources(connector.name, connector.resource),
        )
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    if profiler and profile_to:
        profile_to.parent.mkdir(parents=True, exist_ok=True)
        with profile_to.open("w") as out:
            stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
            stats.print_stats(PROFILE_LINES)
            out.write("\nThe engine's own functions (sync_assets/, resources/):\n")
            stats.print_stats(r"/(sync_assets|resources)/", PROFILE_LINES)
    record = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[WORKSPACE]), limit=1)
    meta = {k: v.value for k, v in record.records[0].asset_materialization.metadata.items()}
    return {
        "success": result.success,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "mode": meta["mode"],
        "sync_seconds": meta["duration_ms"] / 1000,
        "records_synced": meta["records_synced"],
        # The engine before the watermark rewrite rewrote what it re-read and did not count it apart.
        "records_reread": meta.get("records_reread"),
        "api_calls": meta["api_calls"],
        "pages": meta["pages"],
        "peak_rss_mb": peak_rss_mb(),
    }


def warehouse_state(url: str) -> tuple[int, Any]:
    """The deals in the warehouse and the latest time one was written."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows, last_write = conn.exec_driver_sql("SELECT count(*), max(updated_at) FROM deals").one()
    engine.dispose()
    return int(rows), last_write


def rows_written_since(url: str, moment: Any) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        written = conn.execute(sa.text("SELECT count(*) FROM deals WHERE updated_at > :t"), {"t": moment}).scalar()
    engine.dispose()
    return int(written)


def new_dagster_home(home: Path) -> None:
    """An empty Dagster instance on Postgres storage in ``home``, the workspace partition added."""
    from dagster import DagsterInstance

    url = recreate_dagster_database()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {url}\ntelemetry:\n  enabled: false\n"
    )
    instance = DagsterInstance.from_config(str(home))  # creates Dagster's tables, outside any timing
    instance.add_dynamic_partitions("workspace", [WORKSPACE])
    instance.dispose()


def recreate_dagster_database() -> str:
    """An empty database for Dagster's storage, as the psycopg2 URL dagster-postgres needs (dagster.yaml)."""
    from scripts.databases import create_database

    url = create_database(DAGSTER_DB_NAME, migrated=False, admin=ADMIN_URL)
    return sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def repetition(url: str, sandbox: Sandbox, records: int, profile_to: Path | None = None) -> dict[str, Any]:
    """A full sync then a no-change incremental one, each in a fresh process, on a new Dagster instance;
    with ``profile_to``, one more no-change incremental under cProfile (not timed)."""
    sandbox.reset_deals(records)
    prepare_hubspot_workspace(url, sandbox)
    with tempfile.TemporaryDirectory(prefix="bench_incremental_home_") as home:
        new_dagster_home(Path(home))
        env = {"WAREHOUSE_URL": url, "DAGSTER_HOME": home}
        full = run_child(SCRIPT, ["sync", NO_PROFILE], env=env)
        landed, last_write = warehouse_state(url)
        if not full["success"] or full["mode"] != "full" or full["records_synced"] != records or landed != records:
            raise RuntimeError(f"full sync wrote {full['records_synced']} / landed {landed} of {records}: {full}")
        incremental = run_child(SCRIPT, ["sync", NO_PROFILE], env=env)
        if profile_to:
            run_child(SCRIPT, ["sync", str(profile_to)], env=env)
    if not incremental["success"] or incremental["mode"] != "incremental":
        raise RuntimeError(f"the second sync was not a successful incremental one: {incremental}")
    return {
        "full": full,
        "incremental": incremental,
        "time_share": incremental["seconds"] / full["seconds"],
        "sync_time_share": incremental["sync_seconds"] / full["sync_seconds"],
        # Independent of the sync's own count: rows whose updated_at the incremental moved.
        "rows_rewritten": rows_written_since(url, last_write),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="deals at the vendor")
    parser.add_argument("--repeat", type=int, default=3, help="full + incremental pairs (medians reported)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"after the last repetition, profile one more no-change incremental (cProfile) into {PROFILE.name}",
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        profile_to = args.child[1]
        print(json.dumps(child_sync(None if profile_to == NO_PROFILE else Path(profile_to))))
        return

    from resources.secrets import generate_key

    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    began = time.monotonic()
    url = recreate_database(DB_NAME)
    runs: list[dict[str, Any]] = []
    with Sandbox() as sandbox:
        for rep in range(args.repeat):
            last = rep == args.repeat - 1
            runs.append(repetition(url, sandbox, args.records, PROFILE if args.profile and last else None))
            run = runs[-1]
            full, incremental = run["full"], run["incremental"]
            print(
                f"rep {rep + 1}: full {full['seconds']:.2f} s (sync {full['sync_seconds']:.2f} s), "
                f"incremental {incremental['seconds']:.3f} s (sync {incremental['sync_seconds']:.3f} s), "
                f"{run['time_share']:.1%} of the full; re-read {incremental['records_reread']}, "
                f"synced {incremental['records_synced']}, {incremental['api_calls']} API call(s), "
                f"{run['rows_rewritten']} row(s) rewritten",
                flush=True,
            )

    def spread(pick: Callable[[dict[str, Any]], float]) -> dict[str, float]:
        values = [pick(run) for run in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    timings = {
        "full_seconds": spread(lambda r: r["full"]["seconds"]),
        "incremental_seconds": spread(lambda r: r["incremental"]["seconds"]),
        "time_share": spread(lambda r: r["time_share"]),
        "full_sync_seconds": spread(lambda r: r["full"]["sync_seconds"]),
        "incremental_sync_seconds": spread(lambda r: r["incremental"]["sync_seconds"]),
        "sync_time_share": spread(lambda r: r["sync_time_share"]),
    }
    figures: dict[str, Any] = {name: t["median"] for name, t in timings.items()}
    # Counts: the most of any repetition, so that a single stray rewrite shows.
    figures |= {
        "records_reread": max(r["incremental"]["records_reread"] or 0 for r in runs),
        "records_synced": max(r["incremental"]["records_synced"] for r in runs),
        "rows_rewritten": max(r["rows_rewritten"] for r in runs),
        "incremental_api_calls": max(r["incremental"]["api_calls"] for r in runs),
        "full_api_calls": max(r["full"]["api_calls"] for r in runs),
    }
    print(
        f"\n{args.records:,} deals: full sync {figures['full_seconds']:.2f} s, no-change incremental "
        f"{figures['incremental_seconds']:.3f} s = {figures['time_share']:.1%} of the full "
        f"(target < {TIME_SHARE_TARGET:.0%}); the syncs proper {figures['full_sync_seconds']:.2f} s and "
        f"{figures['incremental_sync_seconds']:.3f} s = {figures['sync_time_share']:.1%}"
    )
    print(
        f"incremental: {figures['records_reread']} re-read, {figures['records_synced']} synced (target 0), "
        f"{figures['rows_rewritten']} row(s) rewritten, {figures['incremental_api_calls']} API call(s)"
    )
    path = write_results(
        "incremental",
        {
            "benchmark": "bench/incremental.py",
            "machine": machine(),
            "config": {"records": args.records, "repeat": args.repeat},
            "figures": figures,
            "spread": timings,
            "targets": {"time_share": TIME_SHARE_TARGET, "records_synced": 0},
            "runs": runs,
            "total_runtime_s": round(time.monotonic() - began, 1),
        },
    )
    print(f"wrote {path}" + (f" and {PROFILE}" if args.profile else ""))


if __name__ == "__main__":
    main()
