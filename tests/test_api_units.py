"""Pure parts of the REST API: the timeout wording, the status mapping, input checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from dagster import DagsterRunStatus
from pydantic import ValidationError

from api.locks import lock_key
from api.models import ConnectionPut, WebhookPut
from api.syncs import STALE_MESSAGE, SyncOptions, job_status, run_tags, timeout_message


def test_timeout_messages_use_the_seed_wording():
    assert STALE_MESSAGE == "Sync timed out (exceeded 1 hour)"
    assert timeout_message(7200) == "Sync timed out (exceeded 2 hours)"
    assert timeout_message(600) == "Sync timed out (exceeded 10 minutes)"
    assert timeout_message(90) == "Sync timed out (exceeded 90 seconds)"
    assert timeout_message(1) == "Sync timed out (exceeded 1 second)"


@pytest.mark.parametrize(
    ("status", "logs", "expected"),
    [
        (DagsterRunStatus.QUEUED, [], "queued"),
        (DagsterRunStatus.NOT_STARTED, [], "queued"),
        (DagsterRunStatus.STARTING, [], "running"),
        (DagsterRunStatus.STARTED, [], "running"),
        (DagsterRunStatus.CANCELING, [], "running"),
        (DagsterRunStatus.SUCCESS, [SimpleNamespace(status="completed", records_failed=0)], "completed"),
        (
            DagsterRunStatus.SUCCESS,
            [SimpleNamespace(status="completed_with_errors", records_failed=2)],
            "completed_with_errors",
        ),
        (DagsterRunStatus.FAILURE, [], "failed"),
        (DagsterRunStatus.CANCELED, [], "canceled"),
    ],
)
def test_job_status_mapping(status, logs, expected):
    assert job_status(status, logs) == expected


def test_run_tags_map_the_options():
    assert run_tags("s1", SyncOptions()) == {
        "sales-sync/sync_type": "manual",
        "sales-sync/sync_id": "s1",
        "dagster/priority": "10",
    }
    tags = run_tags("s1", SyncOptions(full_refresh=True, timeout_ms=1500))
    assert (tags["sales-sync/full_refresh"], tags["dagster/max_runtime"]) == ("true", "1.5")
    assert run_tags("s1", SyncOptions(timeout_ms=3_600_000))["dagster/max_runtime"] == "3600"


def test_webhook_urls_must_be_http_or_https():
    assert WebhookPut(webhookUrl=" https://example.com/h ", webhookSecret="s").webhookUrl == "https://example.com/h"
    for bad in ("not-a-url", "ftp://example.com", "http://", "https://example.com:99999/x", "//example.com"):
        with pytest.raises(ValidationError):
            WebhookPut(webhookUrl=bad, webhookSecret="s")


def test_nul_characters_are_refused_anywhere_in_a_connection_config():
    with pytest.raises(ValidationError):
        ConnectionPut(credentials={"a": "b"}, config={"nested": [{"k\x00": 1}]})
    assert ConnectionPut(credentials={"a": "b"}, config={"nested": [{"k": "v"}]}).config == {"nested": [{"k": "v"}]}


def test_lock_keys_are_stable_signed_64_bit_and_distinct():
    assert lock_key("ws-a") == lock_key("ws-a") != lock_key("ws-b")
    assert -(2**63) <= lock_key("ws-a") < 2**63
