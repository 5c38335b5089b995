"""The Gong limit belongs to the credential: two sync processes sharing one key stay under it together."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resources.rate_limit import DatabaseClock
from tests.conftest import register
from tests.support import REPO, assert_evenly_spaced, rows

WORKSPACES = ("north", "south")
CALLS = 5_950  # 60 pages of 100 per workspace: 120 requests in all, more than one minute's budget


def test_two_processes_sharing_one_gong_credential_never_exceed_100_per_minute(warehouse, instance, sandbox):
    sandbox.reset(sizes={"gong": {"calls": CALLS}})
    for workspace in WORKSPACES:
        register(warehouse, instance, sandbox, workspace, ["gong"])  # the same sandbox tenant: one key
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.sync_process", "gong", ws], cwd=REPO, env=env)
        for ws in WORKSPACES
    ]
    assert [p.wait(timeout=180) for p in processes] == [0, 0]

    requests = [r for r in sandbox.requests("gong") if r["path"] == "/gong/v2/calls/extensive"]
    assert len(requests) == 120
    assert len({r["credential"] for r in requests}) == 1
    assert [r["status"] for r in requests] == [200] * 120  # the sandbox enforces 100/60 s: no 429s
    stamps = [r["ts_ms"] / 1000 for r in requests]
    assert max(sum(1 for t in stamps if start <= t < start + 60) for start in stamps) <= 100
    assert_evenly_spaced(stamps, 0.6)
    # Both runs were under way together: the second one's first page came before the first one's last.
    first_pages = [i for i, r in enumerate(requests) if "cursor" not in r["body"]]
    assert len(first_pages) == 2 and first_pages[1] < 60
    counts = rows("SELECT workspace_id, count(*) FROM calls GROUP BY workspace_id ORDER BY workspace_id")
    assert counts == [("north", CALLS), ("south", CALLS)]


def test_database_clock_trusts_the_shortest_round_trip():
    clock = DatabaseClock()
    assert clock.offset_s == 0.0
    clock.observe(sent=100.0, received=100.2, db_now=105.0)  # slow: the offset is 4.9 +- 0.1
    clock.observe(sent=200.0, received=200.002, db_now=205.051)  # fast: 5.05 +- 0.001
    clock.observe(sent=300.0, received=300.5, db_now=300.0)
    assert clock.offset_s == pytest.approx(5.05)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_stores_in_one_database_hand_out_one_sequence_of_slots(dialect, pg_url, tmp_path):
    """Two stores on one database stand for two processes: their slots interleave, one interval apart."""
    from sqlalchemy import create_engine

    from resources import schema
    from resources.rate_limit import SlotStore

    url = pg_url if dialect == "postgresql" else f"sqlite:///{tmp_path / 'slots.db'}"
    engine = create_engine(url)
    schema.rate_limit_slots.create(engine, checkfirst=True)
    first, second = SlotStore(engine), SlotStore(create_engine(url))
    key = f"test:{dialect}:{tmp_path.name}"
    slots = [store.reserve(key, 0.5).slot_at for store in (first, second, first, second)]
    assert [round(b - a, 3) for a, b in zip(slots, slots[1:], strict=False)] == [0.5, 0.5, 0.5]
    engine.dispose()
