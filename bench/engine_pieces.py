"""The sync path's pieces one at a time: CPU per record of each, for the engine on PYTHONPATH.

    .venv/bin/python bench/engine_pieces.py [--records 20000] [--repeat 5]
    PYTHONPATH=/tmp/bench-before .venv/bin/python bench/engine_pieces.py     # another checkout's engine

Where bench/engine.py gives one figure for the whole path, this times each piece alone on the same deals
(captured once from the sandbox as list pages of 100), so that a change of a few percent in one piece
shows on a shared machine: each figure is the least of ``--repeat`` timings (the run least disturbed by
other work), as CPU time of this process per record:

* ``decode``: ``HubSpotPage.model_validate_json`` of every page (JSON and ``HubSpotObject`` validation);
* ``transform``: ``deal(record).as_row()`` for every record (the ``DealRow`` and its columns);
* ``watermark bookkeeping``: what the loop does with committed rows to move the watermark, per 1,000 rows;
* ``upsert client, first load`` / ``unchanged re-load``: ``upsert_rows`` in 1,000-row transactions into
  ``deals`` (database ``bench_pieces``, migrated by the engine's own migrations): staging, binary ``COPY``,
  the upsert statement, as seen from this process;
* ``upsert server, first load``: the same first load's Postgres backend CPU (``/proc/<pid>/stat``, which
  counts in ticks of 10 ms: about 0.5 us a record at 20,000 records).

Alternate runs against each engine to compare them (bench/README.md, "Before and after").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script: the engine under test comes from the first checkout on PYTHONPATH (another checkout in a
# before/after comparison, bench/README.md), else from this one; bench.support always from this one.
ENGINE_PATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
sys.path[:0] = [*ENGINE_PATH, str(Path(__file__).resolve().parents[1])]

import sqlalchemy as sa  # noqa: E402

from bench.engine import capture_records, page_bodies  # noqa: E402
from bench.support import Sandbox, engine_under_test, recreate_database  # noqa: E402

DB_NAME = "bench_pieces"
COMMIT_ROWS = 1000  # rows per transaction, as the sync loop commits


def least_cpu_per_record(work: Callable[[], Any], records: int, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        work()
        timings.append(time.process_time() - started)
    return min(timings) / records * 1e6


def watermark_bookkeeping(rows: list[dict[str, Any]]) -> Callable[[], None]:
    """The engine's own bookkeeping of committed rows: WatermarkTracker since the watermark engine, the
    loop's advance_watermark before it."""
    try:
        from sync_assets.watermark import Cursor, FilterKind, WatermarkTracker
    except ImportError:
        from sync_assets.loop import ConnectorSync, EntityResult

        def before() -> None:
            result = EntityResult("deals", "full", None, None)
            for start in range(0, len(rows), COMMIT_ROWS):
                ConnectorSync.advance_watermark(result, rows[start : start + COMMIT_ROWS])

        return before

    cursor = Cursor(field="hs_lastmodifieddate", filter=FilterKind.EXACT)

    def after() -> None:
        tracker = WatermarkTracker(cursor, None, datetime.now(UTC))
        for start in range(0, len(rows), COMMIT_ROWS):
            tracker.committed(rows[start : start + COMMIT_ROWS])

    return after


def backend_cpu_s(conn: sa.Connection) -> float:
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    conn.commit()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="timings of each piece; the least counts")
    args = parser.parse_args()

    from resources import schema
    from resources.hubspot import HubSpotPage
    from resources.loader import upsert_rows
    from sync_assets.hubspot import deal

    with Sandbox() as sandbox:
        bodies = page_bodies(capture_records(sandbox, args.records), args.records, 100)
    n = args.records
    records = [r for body in bodies for r in HubSpotPage.model_validate_json(body).results]

    def rows_of_records() -> list[dict[str, Any]]:
        rows = []
        for record in records:
            row = deal(record).as_row()
            row |= {"workspace_id": "bench", "source": "hubspot", "properties": record.payload}
            rows.append(row)
        return rows

    rows = rows_of_records()
    figures = {
        "decode": least_cpu_per_record(lambda: [HubSpotPage.model_validate_json(b) for b in bodies], n, args.repeat),
        "transform": least_cpu_per_record(lambda: [deal(r).as_row() for r in records], n, args.repeat),
        "watermark bookkeeping": least_cpu_per_record(watermark_bookkeeping(rows), n, args.repeat),
    }

    engine = sa.create_engine(recreate_database(DB_NAME))
    deals = schema.deals

    def load() -> None:
        with engine.connect() as conn:
            for start in range(0, n, COMMIT_ROWS):
                with conn.begin():
                    upsert_rows(conn, deals, rows[start : start + COMMIT_ROWS])

    def first_load() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE deals")
        load()

    figures["upsert client, first load"] = least_cpu_per_record(first_load, n, args.repeat)
    figures["upsert client, unchanged re-load"] = least_cpu_per_record(load, n, args.repeat)
    server = []
    for _ in range(args.repeat):
        with engine.connect() as conn:
            conn.exec_driver_sql("TRUNCATE deals")
            conn.exec_driver_sql("CHECKPOINT")
            conn.commit()
            before = backend_cpu_s(conn)
            for start in range(0, n, COMMIT_ROWS):
                with conn.begin():
                    upsert_rows(conn, deals, rows[start : start + COMMIT_ROWS])
            server.append(backend_cpu_s(conn) - before)
    figures["upsert server, first load"] = min(server) / n * 1e6
    engine.dispose()

    checkout = engine_under_test()
    print(f"engine: {checkout['checkout']} ({(checkout['commit'] or '?')[:7]}); {n:,} deals, least of {args.repeat}")
    for name, value in figures.items():
        print(f"{name:<34} {value:6.2f} us/record")
    print(json.dumps({"engine_under_test": checkout, "us_per_record": figures}))


if __name__ == "__main__":
    main()
