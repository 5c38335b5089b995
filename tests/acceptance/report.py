"""The seed's "Test Execution Log", filled from the pytest outcomes of tests/acceptance (one test per ID)."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

# (ID, the seed's description, how the expectation maps onto this design / what the test narrows)
PLAN: list[tuple[str, str, str]] = [
    (
        "QW-1",
        "Salesforce async queue",
        "202 in < 500 ms with syncId/jobId/status/statusUrl; `jobs` row = the Dagster run, created by the API's "
        "launcher a moment after the 202 (QUEUED/STARTED, then SUCCESS); the sync_log row is written when "
        "the run's step starts ('running', then 'completed'), "
        "not as 'pending' at request time; 409 duplicate, 404 unknown workspace / no connection",
    ),
    (
        "QW-2",
        "Scheduler fire-and-forget",
        "`daily_sync` schedule evaluated through GraphQL `scheduleDryRun` (the UI's Test schedule) in < 5 s; "
        "log lines read from the code server's log; its run requests launched and QUEUED ('pending'); busy "
        "workspace skipped",
    ),
    (
        "QW-3",
        "Stale lock cleanup",
        "the seed's stale sync_log INSERT; POST /sync fails every row older than 1 h with the seed's error and "
        "completed_at, and proceeds; a 10-minute-old running row gives 409",
    ),
    (
        "QW-4",
        "Gong throttling",
        "default 100/min: 20 requests (not 120), 0.6 s apart on average and none closer than 0.51 s; "
        "sandbox enforcing the same rate over a 10-request/6 s window returns no 429",
    ),
    (
        "QW-5",
        "Monday throttling",
        "default 60/min: 16 requests (not 60+), 1 s apart on average, each gap 0.85-1.5 s; "
        "sandbox enforcing 10 per 10 s returns no 429",
    ),
    (
        "QW-6",
        "Salesforce incremental",
        "watermark = materialization metadata, mirrored in connections.last_sync_at; second sync's SOQL "
        "`WHERE SystemModstamp >= <watermark>` and the client's 'Using incremental WHERE clause' log line",
    ),
    (
        "MW-1",
        "Timeout enforcement",
        "timeoutMs=5000 -> run tag dagster/max_runtime=5; run monitoring fails the run (5-20 s: the daemon polls "
        "every 5 s) with 'Job <id> exceeded timeout of 5000ms'; default 600 s from dagster.yaml",
    ),
    (
        "MW-2",
        "429 retry backoff",
        "Gong 429 x3 -> retries after 2 s, 4 s, 8 s; Monday 429 with Retry-After 1 s honoured; persistent 429 "
        "gives up after 3 retries (4 attempts); log lines from the run's event log",
    ),
    (
        "MW-3",
        "Incremental everywhere",
        "all six connectors: second sync is mode 'incremental' with watermark_from = first watermark_to; "
        "`last_sync_at` set; vendor-side filters checked in the sandbox request log",
    ),
    (
        "LW-1",
        "Per-record error capture",
        "malformed record injected by the sandbox for Salesforce, HubSpot, Gong, Fireflies; job "
        "'completed_with_errors'; sync_log.errors `<Entity>: <error> (<id>)`, sync_errors dead-letter row",
    ),
    (
        "LW-2",
        "Deduplication",
        "the seed's hand-inserted row (source = the connector, since the sync upserts its own source) in each "
        "of the six tables is updated in place: count 1, updated_at bumped",
    ),
    (
        "LW-3",
        "Progress webhooks",
        "local receiver; seed's Python verifier on every body; test event, progress, completed, failed; receiver "
        "returning 500 is logged in the outbox and the sync still completes",
    ),
    (
        "INT-1",
        "Full sync flow",
        "six connectors + webhook, one POST /sync: pickup = RUN_ENQUEUED -> RUN_STARTING < 2 s; step intervals "
        "overlap; second sync incremental with injected bad records -> 'completed_with_errors'",
    ),
    (
        "INT-2",
        "Scheduled sync",
        "3 workspaces from the schedule's run requests (launched over GraphQL): run intervals overlap, all SUCCESS",
    ),
    (
        "INT-3",
        "Concurrent syncs",
        "workspace A Salesforce, B HubSpot, C Gong via the REST API: 3 x 202, all STARTED at once, all completed",
    ),
    (
        "INT-4",
        "Error recovery",
        "revoked credentials -> failed job + sync.failed webhook with the cause; 429s -> retried to success; "
        "bad record -> completed_with_errors; timeout -> failed + sync.failed; no partial/duplicate rows",
    ),
    ("EDGE-1", "Duplicate sync prevention", "10 parallel POST /sync: exactly one 202, nine 409"),
    ("EDGE-2", "Invalid webhook URL", "PUT webhook 'not-a-url' and ftp:// -> 400; nothing stored"),
    (
        "EDGE-3",
        "Webhook timeout",
        "receiver answers after 6 s: outbox shows 'timed out after 5 s', the sync completes on time",
    ),
    (
        "EDGE-4",
        "Large dataset (>10K)",
        "12,000 Salesforce accounts -> COUNT() then a Bulk API 2.0 job (sandbox request log); every row once",
    ),
    ("EDGE-5", "Zero records", "incremental re-sync with no changes: completed, 0 records, watermark kept"),
    (
        "EDGE-6",
        "Database connection loss",
        "the sync's warehouse backend is terminated mid-page: the step fails, is retried (RetryRequested) and "
        "the job completes with no duplicates; sync_log keeps the failed attempt with its error",
    ),
]
_ID = re.compile(r"::test_(QW|MW|LW|INT|EDGE)_(\d+)_")


def seed_id(nodeid: str) -> str | None:
    match = _ID.search(nodeid)
    return f"{match.group(1)}-{match.group(2)}" if match else None


@dataclass
class ExecutionLog:
    started: float
    outcomes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def record(self, test_id: str, report: pytest.TestReport) -> None:
        if report.failed:
            self.outcomes[test_id] = "FAIL"
            line = str(report.longrepr).strip().splitlines()[-1] if report.longrepr else report.when
            self.failures.setdefault(test_id, f"{report.when}: {line}"[:300])
        elif report.when == "call" and self.outcomes.get(test_id) != "FAIL":
            self.outcomes[test_id] = "PASS" if report.passed else "FAIL"

    def render(self, finished: float) -> str:
        minutes, seconds = divmod(int(finished - self.started), 60)
        rows = []
        for test_id, description, note in PLAN:
            status = self.outcomes.get(test_id, "NOT RUN")
            detail = f"{note}. **Failure:** {self.failures[test_id]}" if test_id in self.failures else note
            rows.append(
                f"| {test_id} | {description} | {'✅' if status == 'PASS' else '❌'} {status} | "
                f"{detail.replace('|', '/')} |"
            )
        overall = "PASS" if all(self.outcomes.get(i) == "PASS" for i, _, _ in PLAN) else "FAIL"
        issues = [f"{i}: {self.failures[i]}" for i, _, _ in PLAN if i in self.failures]
        issues += [f"{i}: not run" for i, _, _ in PLAN if i not in self.outcomes]
        date = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            "# Test Execution Log",
            "",
            "Generated by `make acceptance` from the outcomes of `tests/acceptance/` (one test per seed ID; see",
            "`tests/acceptance/report.py`). Do not edit by hand.",
            "",
            f"### Test Run: {date}",
            "**Tester:** `make acceptance` (automated)",
            f"**Environment:** {environment()}",
            f"**Duration:** {minutes} min {seconds} s",
            "",
            "| Test ID | Description | Status | Notes |",
            "|---------|-------------|--------|-------|",
            *rows,
            "",
            f"**Overall Result:** {'✅' if overall == 'PASS' else '❌'} {overall} "
            f"({sum(1 for v in self.outcomes.values() if v == 'PASS')}/{len(PLAN)} passed)",
            "",
            "**Issues Found:**",
            *([f"{n}. {issue}" for n, issue in enumerate(issues, 1)] or ["None."]),
            "",
        ]
        return "\n".join(lines)


def environment() -> str:
    import dagster

    return (
        f"production-like local stack (dagster-webserver + dagster-daemon on Postgres, REST API, sandbox, local "
        f"webhook receiver) on {platform.node()} ({platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs); Python {platform.python_version()}; Dagster {dagster.__version__}; "
        f"{postgres_version()}"
    )


def postgres_version() -> str:
    from sqlalchemy import create_engine, text

    url = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
        return f"PostgreSQL {version}"
    except Exception as exc:  # the log is still written when Postgres went away
        return f"PostgreSQL (version unavailable: {type(exc).__name__})"
