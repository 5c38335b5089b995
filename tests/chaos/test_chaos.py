"""The chaos suite (issue 20, item 5): one workspace with all six connectors on the production-like stack,
synced while every vendor throttles and fails (30 % 429, 10 % 5xx), 1 % of each entity's records are
malformed, the run worker is killed mid-sync, the warehouse goes away for 20 s mid-sync and the webhook
receiver refuses everything for its first minute. Then, with the vendors well again, quiescent syncs run
and the warehouse must equal the vendors record by record, every malformed record must be dead-lettered
exactly once, and every webhook event must reach the receiver exactly once.

The malformed records stay malformed at the vendor throughout: the platform keeps a dead letter for each
and never re-reads an unchanged record, so they are the records the warehouse must not hold."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import ROOT_RUN_ID_TAG

from resources.db import get_engine
from resources.schema import ENTITY_TABLES
from resources.settings import warehouse_url
from resources.webhooks.config import set_webhook
from sync_assets import CONNECTORS
from tests.conftest import register
from tests.contract.cases import CASES
from tests.contract.conftest import Connected
from tests.contract.test_reconciliation import first_difference
from tests.receiver import Receiver
from tests.stack import FINISHED, Stack
from tests.support import REPO, SANDBOX_URL_ENV, rows, wait_until
from tests.tcp_proxy import TcpProxy

WS = "chaos"
# Half the contract suite's datasets (about 500 records): the chaos, not the volume, is under test.
SIZES = {c.name: {entity: max(n // 2, 10) for entity, n in c.sizes.items()} for c in CASES.values()}
SEED = 20
TRANSPORT_FAULTS = {"rate_429": 0.3, "rate_5xx": 0.1}
MALFORMED_SHARE = 0.01
# What an operator sets for vendors this flaky: with 37 % of calls faulted, the default 3 retries give up on
# about 2 % of calls, and a sync of hundreds of calls would all but never finish.
RETRY = {"max_retries": 10, "backoff_base_s": 0.1, "max_backoff_s": 2.0}
OUTAGE_S = 20
RECEIVER_DOWN_S = 60
QUIESCENT_RUNS_MAX = 4
JOB = "sync_workspace"
WEBHOOK_SECRET = "chaos-secret"
FIGURES_PATH = REPO / ".run" / "chaos-figures.json"
WILL_RETRY_TAG = "dagster/will_retry"
# Vendor mutations while the chaos runs: (lifecycle action that removes a record, edits) per entity. Gong and
# Fireflies are left alone: they have no deletion feed, and an edit does not move the time they filter on.
DELETIONS = {"hubspot": "delete", "salesforce": "delete", "monday": "archive", "google_drive": "trash"}
EDITS_PER_ENTITY = 2


@dataclass
class Chaos:
    """What was done to the platform, and what it did about it: the figures the suite prints."""

    started: float = field(default_factory=time.monotonic)
    malformed: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (connector, entity) -> ids
    deleted: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    killed_pids: list[int] = field(default_factory=list)
    outage_s: float = 0.0
    runs: dict[str, str] = field(default_factory=dict)  # role -> run id

    def malformed_ids(self, connector: str, entity: str) -> set[str]:
        return self.malformed.get((connector, entity), set())


def entity_rows() -> int:
    return sum(rows(f"SELECT count(*) FROM {table} WHERE workspace_id = :w", w=WS)[0][0] for table in ENTITY_TABLES)


def running_syncs(run_id: str) -> int:
    return rows("SELECT count(*) FROM sync_log WHERE run_id = :r AND status = 'running'", r=run_id)[0][0]


def wait_mid_sync(run_id: str, rows_before: int) -> None:
    """A sync of the run is running and has committed rows since ``rows_before`` was counted."""
    wait_until(lambda: running_syncs(run_id) and entity_rows() > rows_before, 240, f"run {run_id} committing rows")


def run_worker_pid(stack: Stack, run_id: str) -> int | None:
    for event in stack.instance.all_logs(run_id):
        match = re.search(r"parent process \(pid: (\d+)\)", event.user_message or "")
        if match:
            return int(match.group(1))
    return None


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (the run worker's step processes), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def workspace_runs(stack: Stack) -> list[DagsterRun]:
    return stack.instance.get_runs(RunsFilter(tags={"dagster/partition": WS}))


def choose_malformed(stack: Stack, rng: random.Random) -> dict[tuple[str, str], set[str]]:
    """1 % of each entity's records (at least one), picked with the seeded generator."""
    chosen = {}
    for case in CASES.values():
        for entity, vendor_entity in case.entities.items():
            ids = sorted(r["id"] for r in stack.sandbox.truth(case.name, vendor_entity) if case.is_live(r))
            chosen[(case.name, entity)] = set(rng.sample(ids, max(1, round(len(ids) * MALFORMED_SHARE))))
    return chosen


def mutate_stored_records(stack: Stack, chaos: Chaos, rng: random.Random) -> None:
    """Delete one already-synced record per entity and edit two more, between the killed run and its retry."""
    for name, action in DELETIONS.items():
        case = CASES[name]
        for entity, vendor_entity in case.entities.items():
            stored = rows(
                f"SELECT source_id FROM {entity} WHERE workspace_id = :w AND source = :s AND NOT is_deleted",
                w=WS,
                s=name,
            )
            candidates = sorted({source_id for (source_id,) in stored} - chaos.malformed_ids(name, entity))
            if len(candidates) < 1 + EDITS_PER_ENTITY:
                continue  # the killed run had not reached this entity: its first full read sees it as it is
            doomed, *edited = rng.sample(candidates, 1 + EDITS_PER_ENTITY)
            stack.sandbox.mutate(name, vendor_entity, action=action, ids=[doomed])
            stack.sandbox.mutate(name, vendor_entity, ids=edited)
            chaos.deleted[(name, entity)] = {doomed}


def reconcile(c: Connected, chaos: Chaos) -> dict[str, int]:
    """The warehouse equals the vendor for one connector: live rows are the vendor's live records (whole
    records, read back through its API), rows of removed records are soft-deleted, the malformed records
    have no row. Returns the rows compared per table."""
    stored, at_vendor, lifecycle = c.warehouse_rows(), c.vendor_rows(), c.warehouse_lifecycle()
    compared = {}
    for entity, vendor_entity in c.case.entities.items():
        truth = {r["id"]: r for r in c.sandbox.truth(c.case.name, vendor_entity)}
        malformed = chaos.malformed_ids(c.case.name, entity)
        live = {i for i, r in truth.items() if c.case.is_live(r)} - malformed
        kept = {i for i in stored[entity] if not lifecycle[entity][i][0]}
        gone = {i for i in stored[entity] if lifecycle[entity][i][0]}
        missing, extra = sorted(live - kept), sorted(kept - live)
        stale = sorted(i for i in live & kept if stored[entity][i] != at_vendor[entity].get(i))
        detail = first_difference(stored[entity], at_vendor[entity], stale)
        where = f"{c.case.name} {entity}"
        assert (missing, stale, extra) == ([], [], []), f"{where}: missing, stale, extra rows; {detail}"
        assert sorted(set(stored[entity]) - set(truth)) == [], f"{where}: rows of records the vendor never had"
        removed = {i for i in stored[entity] if i in truth and not c.case.is_live(truth[i])}
        assert gone == removed, f"{where}: soft-deleted rows are not the rows of removed records"
        assert chaos.deleted.get((c.case.name, entity), set()) <= gone, f"{where}: a deletion not applied"
        assert malformed.isdisjoint(stored[entity]), f"{where}: a malformed record has a row"
        compared[entity] = len(stored[entity])
    return compared


def quiet(run_id: str) -> bool:
    """Whether the run's syncs all completed without writing or deleting anything."""
    log = rows("SELECT status, records_synced + records_deleted FROM sync_log WHERE run_id = :r", r=run_id)
    return bool(log) and all(s in ("completed", "completed_with_errors") and n == 0 for s, n in log)


def failure_detail(stack: Stack, run_id: str) -> str:
    """The run's syncs as sync_log has them, and its step failures: for an assertion's message."""
    syncs = rows("SELECT connector_type, status, error FROM sync_log WHERE run_id = :r ORDER BY id", r=run_id)
    steps = [
        f"{e.step_key}: {e.dagster_event.step_failure_data.error.message}"
        for e in stack.instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        if e.dagster_event and e.dagster_event.step_failure_data and e.dagster_event.step_failure_data.error
    ]
    return f"sync_log {syncs}; step failures {steps}"


def outcomes_queued(stack: Stack) -> bool:
    """Every finished run of the workspace has its outcome event in the outbox (runs Dagster retries report
    through their retry)."""
    keys = {k for (k,) in rows("SELECT dedupe_key FROM webhook_deliveries WHERE workspace_id = :w", w=WS)}
    ended = [r for r in workspace_runs(stack) if r.status in FINISHED and r.tags.get(WILL_RETRY_TAG) != "true"]
    return all(f"{r.run_id}:{r.status.value}" in keys for r in ended)


def all_delivered() -> bool:
    return rows("SELECT count(*) FROM webhook_deliveries WHERE workspace_id = :w AND status <> 'delivered'", w=WS) == [
        (0,)
    ]


def step_events(stack: Stack, runs: list[DagsterRun], kind: DagsterEventType) -> int:
    return sum(len(stack.instance.all_logs(r.run_id, of_type=kind)) for r in runs)


def figures(
    stack: Stack, chaos: Chaos, proxy: TcpProxy, receiver: Receiver, compared: dict[str, int]
) -> dict[str, Any]:
    requests = {c.name: stack.sandbox.requests(c.name) for c in CONNECTORS}
    runs = workspace_runs(stack)
    reaped = rows("SELECT count(*) FROM sync_log WHERE workspace_id = :w AND error LIKE 'Sync worker lost%'", w=WS)[0][
        0
    ]
    delivery = rows(
        "SELECT count(*), sum(attempts), max(attempts) FROM webhook_deliveries WHERE workspace_id = :w", w=WS
    )[0]
    return {
        "faults_injected": {
            "vendor_requests": {v: len(log) for v, log in requests.items()},
            "rate_429": {v: sum(r["fault"] == "rate_429" for r in log) for v, log in requests.items()},
            "rate_5xx": {v: sum(r["fault"] == "rate_5xx" for r in log) for v, log in requests.items()},
            "malformed_records": {f"{c}/{e}": len(ids) for (c, e), ids in sorted(chaos.malformed.items())},
            "run_worker_kills": 1,
            "processes_killed": len(chaos.killed_pids),
            "warehouse_outage_s": round(chaos.outage_s, 1),
            "proxy_cuts": proxy.cuts,
            "proxy_connections_refused": proxy.refused,
            "webhook_receiver_down_s": RECEIVER_DOWN_S,
            "vendor_records_deleted": sum(len(ids) for ids in chaos.deleted.values()),
        },
        "retries_seen": {
            # Every faulted vendor answer was retried by the client: no call gave up (sync_log says so).
            "vendor_calls_retried": sum(r["fault"] is not None for log in requests.values() for r in log),
            "webhook_attempts_refused": sum(r.status == 503 for r in receiver.events()),
            "webhook_attempts_total": delivery[1],
            "webhook_max_attempts_for_one_event": delivery[2],
        },
        "recoveries": {
            "runs": {role: str(stack.instance.get_run_by_id(run).status.value) for role, run in chaos.runs.items()},
            "run_retries_by_dagster": sum(1 for r in runs if r.tags.get(ROOT_RUN_ID_TAG)),
            "step_retries": step_events(stack, runs, DagsterEventType.STEP_UP_FOR_RETRY),
            "step_restarts": step_events(stack, runs, DagsterEventType.STEP_RESTARTED),
            "sync_log_rows_reaped_or_closed_as_worker_lost": reaped,
        },
        "records_compared": compared,
        "webhook_events_delivered": delivery[0],
        "seconds": round(time.monotonic() - chaos.started, 1),
    }


@pytest.mark.timeout(330)
def test_the_warehouse_equals_the_vendors_after_chaos(
    chaos_stack: Stack, warehouse_proxy: TcpProxy, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, proxy, rng = chaos_stack, warehouse_proxy, random.Random(SEED)
    chaos = Chaos()
    monkeypatch.setenv(SANDBOX_URL_ENV, stack.sandbox.url)  # this process reads the vendors back too
    stack.sandbox.reset(seed=SEED, sizes=SIZES, enforce_limits=False)
    for case in CASES.values():
        register(warehouse, stack.instance, stack.sandbox, WS, [case.name], **case.small_pages, retry=RETRY)
    chaos.malformed = choose_malformed(stack, rng)
    for case in CASES.values():
        bad = sorted(set().union(*(chaos.malformed_ids(case.name, e) for e in case.entities)))
        stack.sandbox.faults(case.name, bad_records=bad, **TRANSPORT_FAULTS)

    # The receiver answers 503 to everything for its first minute: the delivery sensor must keep retrying.
    receiver = Receiver()
    receiver.status = 503
    receiver.start()
    recovers = threading.Timer(RECEIVER_DOWN_S, lambda: setattr(receiver, "status", 200))
    recovers.start()
    try:
        assert set_webhook(get_engine(warehouse_url()), WS, receiver.url, WEBHOOK_SECRET)
        chaos_then_quiescence(stack, proxy, chaos, rng)
        for case in CASES.values():  # the vendors well again, malformed records and all, to read them back
            stack.sandbox.clear_faults(case.name)
        compared = Counter[str]()
        for case in CASES.values():
            compared.update(reconcile(Connected(case, stack.instance, stack.sandbox, WS), chaos))
        wait_until(lambda: outcomes_queued(stack), 120, "every run's outcome queued")
        wait_until(all_delivered, 240, "every webhook event delivered")
        report = figures(stack, chaos, proxy, receiver, dict(sorted(compared.items())))
    finally:
        recovers.cancel()
        receiver.stop()
    FIGURES_PATH.parent.mkdir(exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nchaos figures ({FIGURES_PATH.relative_to(REPO)}):\n{json.dumps(report, indent=2)}")

    for table in ENTITY_TABLES:
        [(total, distinct)] = rows(
            f"SELECT count(*), count(DISTINCT (workspace_id, source, source_id)) FROM {table} WHERE workspace_id = :w",
            w=WS,
        )
        assert total == distinct, f"{table}: {total - distinct} duplicated row(s)"
    gave_up = rows("SELECT error FROM sync_log WHERE workspace_id = :w AND error LIKE '%gave up after%'", w=WS)
    assert gave_up == [], "a vendor call gave up despite the retry settings"

    accepted = [r.envelope["id"] for r in receiver.events() if r.status == 200 and r.answered]
    assert [i for i, n in Counter(accepted).items() if n > 1] == [], "events delivered more than once"
    queued = {i for (i,) in rows("SELECT id FROM webhook_deliveries WHERE workspace_id = :w", w=WS)}
    assert set(accepted) == queued

    assert stack.instance.get_run_by_id(chaos.runs["outage"]).status == DagsterRunStatus.SUCCESS, (
        f"the run through the {OUTAGE_S} s warehouse outage failed: the platform did not ride it out"
    )
    # Last: one dead letter per malformed record (this branch stores one per failed read; see bench/README.md).
    dead_letters = rows(
        "SELECT connector, entity, source_id, count(*) FROM sync_errors WHERE workspace_id = :w "
        "AND resolved_at IS NULL GROUP BY connector, entity, source_id",
        w=WS,
    )
    expected = {(c, e, i): 1 for (c, e), ids in chaos.malformed.items() for i in ids}
    assert {(c, e, i): n for c, e, i, n in dead_letters} == expected


def chaos_then_quiescence(stack: Stack, proxy: TcpProxy, chaos: Chaos, rng: random.Random) -> None:
    # 1. kill -9 of the run worker (and its step processes) once syncs have committed rows.
    killed = stack.launch(JOB, WS)
    chaos.runs["killed"] = killed
    wait_mid_sync(killed, 0)
    worker = wait_until(lambda: run_worker_pid(stack, killed), 30, "the run worker's pid")
    chaos.killed_pids = process_tree(worker)
    for pid in chaos.killed_pids:
        os.kill(pid, signal.SIGKILL)
    assert stack.wait_for_run(killed, timeout_s=120).status == DagsterRunStatus.FAILURE
    wait_until(lambda: not running_syncs(killed), 120, "the killed run's syncs closed")
    mutate_stored_records(stack, chaos, rng)

    # 2. Dagster retries the run; 20 s into its sync the warehouse goes away for 20 s.
    rows_before = entity_rows()
    resumed = wait_until(lambda: stack.retry_of(killed), 120, "Dagster's retry of the killed run").run_id
    chaos.runs["outage"] = resumed
    wait_mid_sync(resumed, rows_before)
    cut_at = time.monotonic()
    proxy.cut()
    time.sleep(OUTAGE_S)
    proxy.restore()
    chaos.outage_s = time.monotonic() - cut_at
    stack.wait_for_run(resumed, timeout_s=300)

    # 3. The vendors well (their malformed records aside): sync until a sync finds nothing to change.
    for case in CASES.values():
        stack.sandbox.faults(case.name, rate_429=0, rate_5xx=0)
    for attempt in range(1, QUIESCENT_RUNS_MAX + 1):
        run_id = stack.launch(JOB, WS)
        chaos.runs[f"quiescent_{attempt}"] = run_id
        status = stack.wait_for_run(run_id, timeout_s=180).status
        assert status == DagsterRunStatus.SUCCESS, failure_detail(stack, run_id)
        if quiet(run_id):
            return
    raise AssertionError(f"still changing after {QUIESCENT_RUNS_MAX} quiescent syncs")
