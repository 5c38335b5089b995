"""Google Drive end to end: sandbox over HTTP -> client -> sync loop -> Postgres, through Dagster."""

from __future__ import annotations

from datetime import datetime

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.google_drive import FIELDS_MASK, GoogleDriveResource
from resources.warehouse import WarehouseResource
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

DRIVE = next(a for a in connector_assets if AssetKey(["google_drive", "documents"]) in a.keys)
WS = "acme"
FAST_RETRY = {"backoff_base_s": 0.1, "max_backoff_s": 0.5}
# 150 files, every tenth trashed: 135 documents, 50 per page -> 3 pages
SIZES = {"google_drive": {"files": 150}}


def metadata(instance) -> dict:
    return latest_metadata(instance, "google_drive/documents", WS)


def list_calls(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("google_drive") if r["path"] == "/google_drive/drive/v3/files"]


def file_id(index: int) -> str:
    ids = rows("SELECT source_id FROM documents ORDER BY source_id LIMIT 1")
    return ids[0][0][:-7] + f"{index:07d}"


@pytest.fixture
def drive_ws(warehouse, instance, sandbox):
    sandbox.reset(sizes=SIZES)
    register(warehouse, instance, sandbox, WS, ["google_drive"], rate_limit=False, retry=FAST_RETRY, page_size=50)
    return warehouse


def test_full_then_incremental_lists_by_modified_time(drive_ws, instance, sandbox):
    assert run_sync(instance, DRIVE, WS).success
    full = metadata(instance)
    assert (full["mode"], full["records_synced"], full["pages"], full["api_calls"]) == ("full", 135, 3, 4)
    calls = list_calls(sandbox)
    assert [r["status"] for r in calls] == [200, 200, 200]
    assert calls[0]["query"] == {
        "q": "trashed = false",
        "pageSize": "50",
        "orderBy": "modifiedTime",
        "fields": FIELDS_MASK,
        "supportsAllDrives": "true",
        "includeItemsFromAllDrives": "true",
    }
    assert "pageToken" not in calls[0]["query"] and calls[1]["query"]["pageToken"].startswith("~!!~")
    (max_modified,) = rows("SELECT max(source_updated_at) FROM documents")[0]
    assert datetime.fromisoformat(full["watermark"]) == max_modified
    assert rows("SELECT count(*) FROM documents WHERE trashed") == [(0,)]

    (title, mime, url, owner, size, modified, props) = rows(
        "SELECT title, mime_type, url, owner_email, size_bytes, modified_at, properties FROM documents "
        "WHERE source_id = :id",
        id=file_id(3),
    )[0]
    assert (title, mime, url) == (props["name"], props["mimeType"], props["webViewLink"])
    assert owner == props["owners"][0]["emailAddress"] and owner.endswith("@example.com")
    assert size == (int(props["size"]) if "size" in props else None)
    assert modified == datetime.fromisoformat(props["modifiedTime"])
    sized = rows("SELECT count(*) FROM documents WHERE properties ? 'size'")[0][0]
    assert rows("SELECT count(*) FROM documents WHERE size_bytes IS NOT NULL") == [(sized,)]
    assert 0 < sized < 135  # Google-native files have no size

    mutated = sandbox.mutate("google_drive", "files", 3)["ids"]
    sandbox.clear_requests("google_drive")
    assert run_sync(instance, DRIVE, WS).success
    after = metadata(instance)
    # >= returns the boundary file again; the loop knows it was committed and skips it.
    assert (after["mode"], after["records_synced"]) == ("incremental", 3)
    watermark = datetime.fromisoformat(full["watermark"])
    q = [r["query"]["q"] for r in list_calls(sandbox)]
    assert q == [f"modifiedTime >= '{watermark.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z' and trashed = false"]
    changed = rows("SELECT source_id FROM documents WHERE source_updated_at > :w", w=watermark)
    assert {r[0] for r in changed} == set(mutated)
    assert rows("SELECT count(*) FROM documents") == [(135,)]
    assert rows("SELECT status, mode, records_synced FROM sync_log ORDER BY id") == [
        ("completed", "full", 135),
        ("completed", "incremental", 3),
    ]


def test_expired_token_refreshes_and_continues(drive_ws, instance, sandbox):
    connection = WarehouseResource().get_connection(WS, "google_drive")
    pages = GoogleDriveResource().client_for(connection).files_modified_since(None)
    assert len(next(pages).records) == 50
    sandbox.faults("google_drive", expire_tokens=True)
    assert len(next(pages).records) == 50
    calls = [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in sandbox.requests("google_drive")]
    assert calls == [("token", 200), ("files", 200), ("files", 401), ("token", 200), ("files", 200)]
    token_form = sandbox.requests("google_drive")[0]["body"]
    assert token_form["grant_type"] == "refresh_token"
    assert token_form["refresh_token"] == connection.credentials["refresh_token"]


def test_revoked_refresh_token_fails_with_googles_reason(drive_ws, instance, sandbox):
    sandbox.faults("google_drive", revoke=True)
    assert not run_sync(instance, DRIVE, WS).success
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            "[Google Drive] OAuth refresh refused: HTTP 400 invalid_grant on POST token endpoint: "
            "Token has been expired or revoked.",
        )
    ]


@pytest.mark.parametrize(("status", "reason"), [(403, "userRateLimitExceeded"), (429, "rateLimitExceeded")])
def test_rate_limit_errors_are_retried(drive_ws, instance, sandbox, status, reason):
    sandbox.faults("google_drive", next_429=2, throttle_status=status)
    assert run_sync(instance, DRIVE, WS).success
    calls = list_calls(sandbox)
    assert [r["status"] for r in calls] == [status, status, 200, 200, 200]
    assert rows("SELECT count(*) FROM documents") == [(135,)]


def test_persistent_quota_error_fails_with_a_clear_message(drive_ws, instance, sandbox):
    sandbox.faults("google_drive", rate_429=1.0)
    assert not run_sync(instance, DRIVE, WS).success
    assert [r["status"] for r in list_calls(sandbox)] == [403] * 4
    (status, error) = rows("SELECT status, error FROM sync_log")[0]
    assert status == "failed"
    assert error.startswith(
        "[Google Drive] Rate limited (403) on GET /drive/v3/files; gave up after 3 retries: "
        "HTTP 403 userRateLimitExceeded on GET /drive/v3/files: User Rate Limit Exceeded."
    )


def test_bad_file_is_captured_and_the_rest_land(drive_ws, instance, sandbox):
    """LW-1 for Google Drive."""
    assert run_sync(instance, DRIVE, WS).success
    bad_id = file_id(5)
    sandbox.faults("google_drive", bad_records=[bad_id])
    sandbox.mutate("google_drive", "files", ids=[bad_id, file_id(6)])
    result = run_sync(instance, DRIVE, WS)
    assert result.success
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_failed"]) == (1, 1)
    status, errors, failed = rows("SELECT status, errors, records_failed FROM sync_log ORDER BY id DESC LIMIT 1")[0]
    assert (status, failed, len(errors)) == ("completed_with_errors", 1, 1)
    assert errors[0].startswith("Document: source_updated_at: ") and errors[0].endswith(f" ({bad_id})")
    dead = rows("SELECT entity, source_id, error, payload->>'modifiedTime' FROM sync_errors")
    assert dead == [("documents", bad_id, errors[0], "not-a-date")]
    assert [(e.passed, e.severity.value) for e in result.get_asset_check_evaluations()] == [(False, "WARN")]


def test_sandbox_serves_every_modified_time_operator_and_trashed(drive_ws, sandbox):
    client = GoogleDriveResource().client_for(WarehouseResource().get_connection(WS, "google_drive"))

    def listed(q: str) -> list[str]:
        params = {"q": q, "orderBy": "modifiedTime", "pageSize": 1000, "fields": "files(id,modifiedTime)"}
        return [f["id"] for f in client.request("GET", "/drive/v3/files", params=params).json()["files"]]

    untrashed = listed("trashed = false")
    assert len(untrashed) == 135 and len(listed("trashed = true")) == 15 and len(listed("")) == 150
    pivot_file = client.request(
        "GET",
        "/drive/v3/files",
        params={"q": "trashed = false", "orderBy": "modifiedTime", "pageSize": 11, "fields": "files(modifiedTime)"},
    ).json()["files"][10]
    pivot = pivot_file["modifiedTime"]
    expected = {">": untrashed[11:], ">=": untrashed[10:], "<": untrashed[:10], "<=": untrashed[:11]}
    for op, ids in expected.items():
        assert listed(f"modifiedTime {op} '{pivot}' and trashed = false") == ids, op
