"""Load benchmark: resources.loader.upsert_rows against its peers, side by side, in one process.

    .venv/bin/python bench/load.py [--rows 200000] [--repeat 3] [--batch-size 5000] [--sweep]

Scenarios: (a) first load of N deal rows into the empty, indexed ``deals`` table; (b) re-load of the
same N keys with changed values, so every row conflicts and is updated. Contenders: ours
(upsert_rows per batch, one transaction per batch), naive (SQLAlchemy Core multi-row
INSERT … ON CONFLICT DO UPDATE, 500 rows a statement), dlt (merge/upsert to postgres), and raw COPY
into the empty indexed table (the physical limit; also the reference for the re-load).
Every contender repetition starts from a freshly created database ``bench_load``; data is generated
once, up front, and never timed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata as pkg_metadata
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from the repo root: make the code location importable

from resources import schema  # noqa: E402
from resources.loader import KEY_COLUMNS, upsert_rows  # noqa: E402

DB_NAME = "bench_load"
RESULTS = ROOT / "bench" / "results" / "load.json"
NAIVE_BATCH = 500
SWEEP_BATCH_SIZES = (1000, 5000, 10000)
deals = schema.deals

Rows = list[dict[str, Any]]

# --- data ----------------------------------------------------------------------------------------

STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
          "contractsent", "closedwon", "closedlost")
PIPELINES = ("default", "enterprise", "renewals")


def generate(n: int, seed: int = 7) -> tuple[Rows, Rows]:
    """HubSpot-like deal rows: 10 typed columns + a 15-field ``properties`` record; then a re-sync
    of the same keys a day later in which every row changed."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(3, 10))) for _ in range(800)]
    base = datetime(2024, 1, 1, tzinfo=UTC)
    first: Rows = []
    for i in range(n):
        updated = base + timedelta(seconds=i * 13)
        close = updated + timedelta(days=rnd.randint(7, 120))
        amount = Decimal(rnd.randint(1_000, 50_000_000)) / 100
        stage, pipeline, owner = rnd.choice(STAGES), rnd.choice(PIPELINES), str(rnd.randint(10_000, 10_400))
        name = f"{rnd.choice(words).title()} {rnd.choice(words)} – deal {i}"
        properties = {
            "hs_object_id": str(9_000_000 + i),
            "dealname": name,
            "amount": str(amount),
            "dealstage": stage,
            "pipeline": pipeline,
            "closedate": close.isoformat(),
            "createdate": (base + timedelta(seconds=i)).isoformat(),
            "hs_lastmodifieddate": updated.isoformat(),
            "hubspot_owner_id": owner,
            "dealtype": rnd.choice(("newbusiness", "existingbusiness")),
            "description": " ".join(rnd.choices(words, k=rnd.randint(5, 20))),
            "hs_forecast_category": rnd.choice(("PIPELINE", "BEST_CASE", "COMMIT", "OMIT")),
            "hs_priority": rnd.choice(("low", "medium", "high")),
            "hs_next_step": rnd.choice(("", "Send proposal", "Call back\tMonday", 'Review "MSA"')),
            "hs_deal_stage_probability": f"0.{rnd.randint(0, 9)}",
        }
        first.append({
            "workspace_id": "ws_bench", "source": "hubspot", "source_id": str(9_000_000 + i),
            "name": name, "amount": amount, "stage": stage, "pipeline": pipeline, "close_date": close,
            "owner_id": owner, "properties": properties, "source_updated_at": updated,
        })
    second: Rows = []
    for row in first:
        updated = row["source_updated_at"] + timedelta(days=1)
        amount = row["amount"] + Decimal("10.00")
        stage = rnd.choice(STAGES)
        properties = {**row["properties"], "amount": str(amount), "dealstage": stage,
                      "hs_lastmodifieddate": updated.isoformat()}
        second.append({**row, "amount": amount, "stage": stage, "properties": properties,
                       "source_updated_at": updated})
    return first, second


# --- database ------------------------------------------------------------------------------------


class Server:
    def __init__(self, url: str) -> None:
        self.admin_url = sa.make_url(url).set(drivername="postgresql+psycopg", database="postgres")
        self.url = self.admin_url.set(database=DB_NAME)
        self._admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def recreate(self) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {DB_NAME}")

    def checkpoint(self) -> None:
        # Flush the previous step's dirty pages now, so they are not written during the next timing.
        with self._admin.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")

    def drop(self) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        self._admin.dispose()

    def version(self) -> str:
        with self._admin.connect() as conn:
            return str(conn.exec_driver_sql("SHOW server_version").scalar_one())


def check_table(engine: sa.Engine, table: str, expected: Rows) -> None:
    """Untimed: the table holds exactly the expected keys' latest amounts."""
    want = (len(expected), sum(r["amount"] for r in expected))
    with engine.connect() as conn:
        got = tuple(conn.exec_driver_sql(f"SELECT count(*), sum(amount) FROM {table}").one())
    if got != want:
        raise AssertionError(f"{table}: expected (rows, sum(amount)) = {want}, got {got}")


# --- contenders ----------------------------------------------------------------------------------
# Each takes the fresh database's URL and returns a loader: rows -> None, called for (a) then (b).


def ours(batch_size: int) -> Callable[[Server], Callable[[Rows], None]]:
    def setup(server: Server) -> Callable[[Rows], None]:
        engine = sa.create_engine(server.url)
        schema.metadata.create_all(engine, tables=[deals])

        def load(rows: Rows) -> None:
            for start in range(0, len(rows), batch_size):
                with engine.begin() as conn:
                    upsert_rows(conn, deals, rows[start : start + batch_size])

        load.engine = engine  # type: ignore[attr-defined]
        return load

    return setup


def naive(page_size: int) -> Callable[[Server], Callable[[Rows], None]]:
    def setup(server: Server) -> Callable[[Rows], None]:
        engine = sa.create_engine(server.url)
        schema.metadata.create_all(engine, tables=[deals])

        def load(rows: Rows) -> None:
            # Same transaction per page as ours; within it, 500-row multi-VALUES statements.
            for page in range(0, len(rows), page_size):
                with engine.begin() as conn:
                    for start in range(page, min(page + page_size, len(rows)), NAIVE_BATCH):
                        stmt = pg_insert(deals).values(rows[start : start + NAIVE_BATCH])
                        updates = {c: stmt.excluded[c] for c in rows[0] if c not in KEY_COLUMNS}
                        updates["updated_at"] = sa.func.now()
                        conn.execute(stmt.on_conflict_do_update(index_elements=KEY_COLUMNS, set_=updates))

        load.engine = engine  # type: ignore[attr-defined]
        return load

    return setup


_encode_json = json.JSONEncoder(ensure_ascii=False, check_circular=False, allow_nan=False).encode


def raw_copy(server: Server) -> Callable[[Rows], None]:
    engine = sa.create_engine(server.url)
    schema.metadata.create_all(engine, tables=[deals])

    def load(rows: Rows) -> None:
        # One COPY straight into the indexed table, formatted the same way as ours (psycopg write_row).
        columns = list(rows[0])
        getter, props = itemgetter(*columns), columns.index("properties")
        with engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            with cur, cur.copy(f"COPY deals ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    values = list(getter(row))
                    values[props] = _encode_json(values[props])
                    copy.write_row(values)

    load.engine = engine  # type: ignore[attr-defined]
    return load


def dlt_upsert(server: Server) -> Callable[[Rows], None]:
    import dlt  # bench extra; imported late so the other contenders run without it

    # dlt connects with psycopg2 and insists on a password; trust auth ignores it.
    url = server.url.set(drivername="postgresql", password=server.url.password or "unused")
    workdir = tempfile.TemporaryDirectory(prefix="bench_dlt_")
    pipeline = dlt.pipeline(
        pipeline_name="bench_load",
        pipelines_dir=workdir.name,
        destination=dlt.destinations.postgres(url.render_as_string(hide_password=False)),
        dataset_name="dlt_bench",
    )

    def load(rows: Rows) -> None:
        resource = dlt.resource(
            rows,
            name="deals",
            write_disposition={"disposition": "merge", "strategy": "upsert"},
            primary_key=KEY_COLUMNS,
            # Keep the raw record as one jsonb column, like ours (dlt would otherwise flatten it).
            columns={"properties": {"data_type": "json"}},
        )
        pipeline.run(resource)  # extract + normalize + load, all counted

    load.engine = sa.create_engine(server.url)  # type: ignore[attr-defined]
    load.workdir = workdir  # type: ignore[attr-defined]
    return load


# --- runner --------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    detail: str
    seconds: dict[str, list[float]] = field(default_factory=lambda: {"first_load": [], "reload": []})

    def rate(self, scenario: str, rows: int) -> float | None:
        runs = self.seconds[scenario]
        return rows / statistics.median(runs) if runs else None


def timed(server: Server, load: Callable[[Rows], None], rows: Rows) -> float:
    server.checkpoint()
    gc.collect()
    start = time.perf_counter()
    load(rows)
    return time.perf_counter() - start


def run_contender(
    server: Server, result: Result, setup: Callable[[Server], Any], table: str,
    first: Rows, second: Rows, repeat: int, reload_on_fresh_db: bool = False,
) -> None:
    for rep in range(repeat):
        server.recreate()
        load = setup(server)
        try:
            result.seconds["first_load"].append(timed(server, load, first))
            check_table(load.engine, table, first)
            if reload_on_fresh_db:  # COPY cannot upsert: its reference is COPY into an empty table again
                load.engine.dispose()
                server.recreate()
                load = setup(server)
            result.seconds["reload"].append(timed(server, load, second))
            check_table(load.engine, table, second)
        finally:
            load.engine.dispose()
            if hasattr(load, "workdir"):
                load.workdir.cleanup()
        a, b = result.seconds["first_load"][-1], result.seconds["reload"][-1]
        print(f"  {result.name:<6} rep {rep + 1}/{repeat}: first load {a:6.2f} s, re-load {b:6.2f} s", flush=True)


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def version_of(dist: str) -> str | None:
    try:
        return pkg_metadata.version(dist)
    except pkg_metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per contender (median reported)")
    parser.add_argument("--slow-repeat", type=int, default=1,
                        help="repetitions for the slow contenders, naive and dlt (default 1: ~5 min in all)")
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per upsert_rows call (ours)")
    parser.add_argument("--sweep", action="store_true", help=f"also time ours at {SWEEP_BATCH_SIZES} rows/batch")
    parser.add_argument("--skip", default="", help="comma-separated contenders to skip: naive,dlt,copy")
    parser.add_argument("--server", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server URL; the benchmark creates and drops database bench_load")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if "dlt" not in skip and version_of("dlt") is None:
        print("dlt is not installed (pip install 'dlt[postgres]'): skipping it")
        skip.add("dlt")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no network calls from the benchmark

    started = time.perf_counter()
    print(f"generating {args.rows:,} deal rows (+ a changed copy for the re-load) ...", flush=True)
    first, second = generate(args.rows)
    gc.collect()
    gc.freeze()  # the generated data is immortal: keep the collector from rescanning it in every timing

    server = Server(args.server)
    n = args.rows
    results: list[Result] = []
    plan: list[tuple[Result, Callable[[Server], Any], str, int, bool]] = [
        (Result("ours", f"upsert_rows, {args.batch_size}/batch, 1 txn/batch"), ours(args.batch_size),
         "deals", args.repeat, False),
    ]
    if "naive" not in skip:
        plan.append((Result("naive", f"Core multi-row INSERT..ON CONFLICT, {NAIVE_BATCH}/stmt, "
                                     f"1 txn/{args.batch_size}"),
                     naive(args.batch_size), "deals", args.slow_repeat, False))
    if "dlt" not in skip:
        plan.append((Result("dlt", f"dlt {version_of('dlt')} merge/upsert, insert_values"), dlt_upsert,
                     "dlt_bench.deals", args.slow_repeat, False))
    if "copy" not in skip:
        plan.append((Result("copy", "one COPY into empty indexed table"), raw_copy, "deals", args.repeat, True))

    try:
        for result, setup, table, repeat, fresh in plan:
            print(f"{result.name}: {result.detail}", flush=True)
            run_contender(server, result, setup, table, first, second, repeat, fresh)
            results.append(result)
        sweep: list[Result] = []
        if args.sweep:
            for size in SWEEP_BATCH_SIZES:
                result = Result(f"ours@{size}", f"upsert_rows, {size}/batch")
                print(f"sweep {result.name}", flush=True)
                run_contender(server, result, ours(size), "deals", first, second, args.repeat)
                sweep.append(result)
        pg_version = server.version()
    finally:
        server.drop()

    by_name = {r.name: r for r in results}
    scenarios = ("first_load", "reload")
    rates = {r.name: {s: r.rate(s, n) for s in scenarios} for r in results + sweep}
    ours_rates = rates["ours"]

    print()
    print(f"rows={n:,}  repeat={args.repeat} (naive, dlt: {args.slow_repeat})  batch={args.batch_size}  "
          f"PostgreSQL {pg_version}  cpus={os.cpu_count()}")
    header = f"{'contender':<8} {'rows/s first load':>18} {'rows/s re-load':>15}  {'ours/this (a)':>13} " \
             f"{'ours/this (b)':>13}  detail"
    print(header)
    print("-" * len(header))
    for r in results + sweep:
        a, b = rates[r.name]["first_load"], rates[r.name]["reload"]
        print(f"{r.name:<8} {fmt_rate(a):>18} {fmt_rate(b):>15}  "
              f"{fmt_ratio(ours_rates['first_load'], a):>13} {fmt_ratio(ours_rates['reload'], b):>13}  {r.detail}")
    print()
    ratios: dict[str, dict[str, float | None]] = {}
    for peer, target in (("dlt", 4.0), ("copy", 0.5)):
        if peer not in by_name:
            continue
        ratios[f"ours/{peer}"] = {}
        for s in scenarios:
            ratio = None if rates[peer][s] is None else ours_rates[s] / rates[peer][s]
            ratios[f"ours/{peer}"][s] = ratio
            verdict = "meets" if ratio is not None and ratio >= target else "MISSES"
            print(f"ours/{peer:<5} {s:<10} {fmt_ratio(ours_rates[s], rates[peer][s]):>7}  "
                  f"(target >= {target}x: {verdict})")

    report = {
        "benchmark": "bench/load.py",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "rows": n, "repeat": args.repeat, "slow_repeat": args.slow_repeat, "batch_size": args.batch_size,
            "naive_batch": NAIVE_BATCH, "postgres": pg_version, "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "versions": {d: version_of(d) for d in ("sqlalchemy", "psycopg", "psycopg-binary", "dlt")},
        },
        "contenders": {
            r.name: {
                "detail": r.detail,
                "seconds": r.seconds,
                "rows_per_s_median": rates[r.name],
            }
            for r in results + sweep
        },
        "ratios": ratios,
        "total_runtime_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
          f"  (total {report['total_runtime_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
