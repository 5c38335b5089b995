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
import signal
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata as pkg_metadata
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from the repo root: make the code location importable

from resources import loader as loader_module  # noqa: E402
from resources import schema  # noqa: E402
from resources.loader import KEY_COLUMNS, upsert_rows  # noqa: E402

DB_NAME = "bench_load"
RESULTS = ROOT / "bench" / "results" / "load.json"
NAIVE_BATCH = 500
SWEEP_BATCH_SIZES = (1000, 5000, 10000)
deals = schema.deals

Rows = list[dict[str, Any]]

# --- data ----------------------------------------------------------------------------------------

STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
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
        first.append(
            {
                "workspace_id": "ws_bench",
                "source": "hubspot",
                "source_id": str(9_000_000 + i),
                "name": name,
                "amount": amount,
                "stage": stage,
                "pipeline": pipeline,
                "close_date": close,
                "owner_id": owner,
                "properties": properties,
                "source_updated_at": updated,
            }
        )
    second: Rows = []
    for row in first:
        updated = row["source_updated_at"] + timedelta(days=1)
        amount = row["amount"] + Decimal("10.00")
        stage = rnd.choice(STAGES)
        properties = {
            **row["properties"],
            "amount": str(amount),
            "dealstage": stage,
            "hs_lastmodifieddate": updated.isoformat(),
        }
        second.append({**row, "amount": amount, "stage": stage, "properties": properties, "source_updated_at": updated})
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


class Loader:
    """One contender on one fresh database: ``load(rows)`` is what gets timed."""

    table = "deals"

    def __init__(self, server: Server) -> None:
        self.engine = sa.create_engine(server.url)
        schema.metadata.create_all(self.engine, tables=[deals])

    def load(self, rows: Rows) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.engine.dispose()


class Ours(Loader):
    batch_size = 5000

    def load(self, rows: Rows) -> None:
        # One transaction per batch, as the sync loop commits each page.
        for start in range(0, len(rows), self.batch_size):
            with self.engine.begin() as conn:
                upsert_rows(conn, deals, rows[start : start + self.batch_size])


def ours_with(batch_size: int, text_copy: bool = False) -> type[Loader]:
    class Configured(Ours):
        def load(self, rows: Rows) -> None:
            if not text_copy:
                return super().load(rows)
            # Diagnostic only: force the text COPY path to show what binary COPY buys.
            real = loader_module._binary_copy_types
            loader_module._binary_copy_types = lambda *args: None
            try:
                super().load(rows)
            finally:
                loader_module._binary_copy_types = real

    Configured.batch_size = batch_size
    return Configured


class Naive(Loader):
    page_size = 5000

    def load(self, rows: Rows) -> None:
        # The same transaction per page as ours; within it, 500-row multi-VALUES statements.
        for page in range(0, len(rows), self.page_size):
            with self.engine.begin() as conn:
                for start in range(page, min(page + self.page_size, len(rows)), NAIVE_BATCH):
                    stmt = pg_insert(deals).values(rows[start : start + NAIVE_BATCH])
                    updates = {c: stmt.excluded[c] for c in rows[0] if c not in KEY_COLUMNS}
                    updates["updated_at"] = sa.func.now()
                    conn.execute(stmt.on_conflict_do_update(index_elements=KEY_COLUMNS, set_=updates))


# The reference COPYs encode JSON as fast as ours does (orjson), so the ratio measures the loader.
_encode_json = orjson.dumps


class RawCopy(Loader):
    def load(self, rows: Rows) -> None:
        # One text COPY straight into the indexed table, rows formatted by psycopg's C write_row.
        columns = list(rows[0])
        getter, props = itemgetter(*columns), columns.index("properties")
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            with cur, cur.copy(f"COPY deals ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    values = list(getter(row))
                    values[props] = _encode_json(values[props]).decode()
                    copy.write_row(values)


class RawCopyBinary(Loader):
    def load(self, rows: Rows) -> None:
        # The same in binary format: ours uses binary COPY for such batches, so measure its limit too.
        from psycopg.types.json import set_json_dumps

        columns = list(rows[0])
        getter = itemgetter(*columns)
        types = [
            "text",
            "text",
            "text",
            "text",
            "numeric",
            "text",
            "text",
            "timestamptz",
            "text",
            "jsonb",
            "timestamptz",
        ]
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            set_json_dumps(_encode_json, context=cur)
            with cur, cur.copy(f"COPY deals ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(getter(row))


class Dlt(Loader):
    table = "dlt_bench.deals"

    def __init__(self, server: Server) -> None:
        import dlt  # bench extra; imported late so the other contenders run without it

        self.engine = sa.create_engine(server.url)  # for the untimed checks only
        # dlt connects with psycopg2 and insists on a password; trust auth ignores it.
        url = server.url.set(drivername="postgresql", password=server.url.password or "unused")
        self._workdir = tempfile.TemporaryDirectory(prefix="bench_dlt_")
        self._dlt = dlt
        self.pipeline = dlt.pipeline(
            pipeline_name="bench_load",
            pipelines_dir=self._workdir.name,
            destination=dlt.destinations.postgres(url.render_as_string(hide_password=False)),
            dataset_name="dlt_bench",
        )

    def load(self, rows: Rows) -> None:
        resource = self._dlt.resource(
            rows,
            name="deals",
            write_disposition={"disposition": "merge", "strategy": "upsert"},
            primary_key=KEY_COLUMNS,
            # Keep the raw record as one jsonb column, like ours (dlt would otherwise flatten it).
            columns={"properties": {"data_type": "json"}},
        )
        self.pipeline.run(resource)  # extract + normalize + load, all counted

    def close(self) -> None:
        super().close()
        self._workdir.cleanup()


# --- runner --------------------------------------------------------------------------------------

SCENARIOS = ("first_load", "reload")


@dataclass
class Contender:
    name: str
    detail: str
    loader: type[Loader]
    repeat: int
    # COPY cannot upsert: its re-load reference is a COPY of the changed rows into a fresh, empty table.
    reload_into_empty: bool = False
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SCENARIOS})

    def rate(self, scenario: str, rows: int) -> float | None:
        runs = self.seconds[scenario]
        return rows / statistics.median(runs) if runs else None


def timed(server: Server, loader: Loader, rows: Rows) -> float:
    server.checkpoint()
    gc.collect()
    start = time.perf_counter()
    loader.load(rows)
    return time.perf_counter() - start


def run_once(server: Server, contender: Contender, first: Rows, second: Rows) -> None:
    """(a) then (b) on a freshly created database, each checked (untimed) afterwards."""
    server.recreate()
    loader = contender.loader(server)
    try:
        contender.seconds["first_load"].append(timed(server, loader, first))
        check_table(loader.engine, loader.table, first)
        if contender.reload_into_empty:
            loader.close()
            server.recreate()
            loader = contender.loader(server)
        contender.seconds["reload"].append(timed(server, loader, second))
        check_table(loader.engine, loader.table, second)
    finally:
        loader.close()


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
    parser.add_argument(
        "--slow-repeat",
        type=int,
        default=1,
        help="repetitions for the slow contenders, naive and dlt (default 1: ~5 min in all)",
    )
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per upsert_rows call (ours)")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"also time ours at {SWEEP_BATCH_SIZES} rows/batch, and with text COPY forced",
    )
    parser.add_argument("--skip", default="", help="comma-separated contenders to skip: naive,dlt,copy")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL; the benchmark creates and drops database bench_load",
    )
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
    gc.freeze()  # the generated data lives to the end: keep the collector from rescanning it in every timing

    n, batch = args.rows, args.batch_size
    contenders = [
        Contender("ours", f"upsert_rows, {batch} rows/call, 1 txn/call", ours_with(batch), args.repeat),
    ]
    if "naive" not in skip:
        contenders.append(
            Contender("naive", f"Core INSERT..VALUES (500 rows)..ON CONFLICT, 1 txn/{batch}", Naive, args.slow_repeat)
        )
    if "dlt" not in skip:
        contenders.append(
            Contender("dlt", f"dlt {version_of('dlt')} merge/upsert, defaults (insert_values)", Dlt, args.slow_repeat)
        )
    if "copy" not in skip:
        contenders.append(
            Contender(
                "copy", "one text COPY into the empty indexed table", RawCopy, args.repeat, reload_into_empty=True
            )
        )
        contenders.append(
            Contender(
                "copy-bin",
                "one binary COPY into the empty indexed table",
                RawCopyBinary,
                args.repeat,
                reload_into_empty=True,
            )
        )
    if args.sweep:
        for size in SWEEP_BATCH_SIZES:
            contenders.append(Contender(f"ours@{size}", f"upsert_rows, {size} rows/call", ours_with(size), args.repeat))
        contenders.append(
            Contender(
                "ours-txt", f"upsert_rows, {batch} rows/call, text COPY forced", ours_with(batch, True), args.repeat
            )
        )

    server = Server(args.server)
    # Turn SIGTERM into SystemExit so the finally below still drops bench_load.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        # Repetitions are interleaved (rep 1 of every contender, then rep 2, ...) so that drifting
        # machine load spreads over all contenders instead of landing on one.
        for rep in range(max(c.repeat for c in contenders)):
            for c in contenders:
                if rep >= c.repeat:
                    continue
                run_once(server, c, first, second)
                a, b = c.seconds["first_load"][-1], c.seconds["reload"][-1]
                print(f"  rep {rep + 1}  {c.name:<10} first load {a:6.2f} s   re-load {b:6.2f} s", flush=True)
        pg_version = server.version()
    finally:
        server.drop()

    rates = {c.name: {s: c.rate(s, n) for s in SCENARIOS} for c in contenders}
    ours = rates["ours"]
    print()
    print(
        f"rows={n:,}  repeat={args.repeat} (naive, dlt: {args.slow_repeat})  batch={batch}  "
        f"PostgreSQL {pg_version}  cpus={os.cpu_count()}"
    )
    header = (
        f"{'contender':<10} {'rows/s (a) first load':>22} {'rows/s (b) re-load':>19}  "
        f"{'ours/it (a)':>11} {'ours/it (b)':>11}  detail"
    )
    print(header)
    print("-" * len(header))
    for c in contenders:
        a, b = rates[c.name]["first_load"], rates[c.name]["reload"]
        print(
            f"{c.name:<10} {fmt_rate(a):>22} {fmt_rate(b):>19}  "
            f"{fmt_ratio(ours['first_load'], a):>11} {fmt_ratio(ours['reload'], b):>11}  {c.detail}"
        )
    print()
    ratios: dict[str, dict[str, float | None]] = {}
    for peer, target in (("dlt", 4.0), ("copy", 0.5), ("copy-bin", 0.5)):
        if peer not in rates:
            continue
        ratios[f"ours/{peer}"] = {}
        for s in SCENARIOS:
            peer_rate = rates[peer][s]
            ratio = None if peer_rate is None or ours[s] is None else ours[s] / peer_rate
            ratios[f"ours/{peer}"][s] = ratio
            verdict = "meets" if ratio is not None and ratio >= target else "MISSES"
            shown = fmt_ratio(ours[s], peer_rate)
            print(f"ours/{peer:<9} {s:<10} {shown:>7}  (target >= {target}x: {verdict})")

    report = {
        "benchmark": "bench/load.py",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "rows": n,
            "repeat": args.repeat,
            "slow_repeat": args.slow_repeat,
            "batch_size": batch,
            "naive_batch": NAIVE_BATCH,
            "postgres": pg_version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "versions": {d: version_of(d) for d in ("sqlalchemy", "psycopg", "psycopg-binary", "dlt")},
        },
        "contenders": {
            c.name: {"detail": c.detail, "seconds": c.seconds, "rows_per_s_median": rates[c.name]} for c in contenders
        },
        "ratios": ratios,
        "total_runtime_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"\nwrote {shown}  (total {report['total_runtime_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
