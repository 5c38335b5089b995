"""Google Drive's own behaviour, against the sandbox over HTTP through the real assets: a full read takes the
change log's position, lists every file, then asks the change log whether a file left the listing while it
ran (and lists again if one did); incremental reads follow the Changes API from the stored token, because
``modifiedTime`` is set by clients (past or future) and a file shared into view keeps its old one. Google's
OAuth reasons and quota errors too. What every connector does is in tests/contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.google_drive import CHANGES_MASK, FILES_MASK, GoogleDriveResource
from resources.warehouse import WarehouseResource
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

DRIVE = next(a for a in connector_assets if AssetKey(["google_drive", "documents"]) in a.keys)
WS = "acme"
FILES, CHANGES = "/google_drive/drive/v3/files", "/google_drive/drive/v3/changes"
START_PAGE_TOKEN = f"{CHANGES}/startPageToken"
ALL_DRIVES = {"supportsAllDrives": "true", "includeItemsFromAllDrives": "true"}
LISTING = {"pageSize": "50", "fields": FILES_MASK, "corpora": "allDrives", **ALL_DRIVES}


def metadata(instance) -> dict:
    return latest_metadata(instance, "google_drive/documents", WS)


# Every run first asks which Drive user the token reads as (the sync state belongs to that user).
WHO = ("/google_drive/drive/v3/about", {"fields": "user(permissionId)"})


def data_requests(sandbox) -> list[tuple[str, dict]]:
    """(path, query) of every Drive API request, in order; the token endpoint left out."""
    return [(r["path"], r["query"]) for r in sandbox.requests("google_drive") if "/drive/v3/" in r["path"]]


def start_page_token() -> str:
    """The change log's position now, read through the client."""
    connection = WarehouseResource().get_connection(WS, "google_drive")
    return GoogleDriveResource().client_for(connection).start_page_token()


def changes_from(token: str) -> dict:
    return {"pageToken": token, "pageSize": "50", "includeRemoved": "true", "fields": CHANGES_MASK, **ALL_DRIVES}


def removals_from(token: str) -> dict:
    """After a listing: did the change log record a removal since ``token`` (only ``removed`` is asked for)?"""
    fields = "nextPageToken,newStartPageToken,changes(removed)"
    return {"pageToken": token, "pageSize": "50", "includeRemoved": "true", "fields": fields, **ALL_DRIVES}


def file_ids(sandbox) -> list[str]:
    return [r["id"] for r in sandbox.truth("google_drive", "files")]


def stored(source_id: str) -> tuple[datetime, str]:
    """A document's stored modifiedTime and Drive version."""
    [(modified, version)] = rows(
        "SELECT modified_at, properties->>'version' FROM documents WHERE source_id = :id", id=source_id
    )
    return modified, version


@pytest.fixture
def drive_ws(warehouse, instance, sandbox, unlimited):
    sandbox.reset(sizes={"google_drive": {"files": 150}})
    register(warehouse, instance, sandbox, WS, ["google_drive"], retry={"backoff_base_s": 0.1}, page_size=50)
    return warehouse


def test_a_full_read_lists_from_the_change_logs_position_and_the_next_reads_resume_from_it(drive_ws, instance, sandbox):
    assert run_sync(instance, DRIVE, WS).success
    tokens = [q.get("pageToken") for path, q in data_requests(sandbox) if path == FILES]
    full = metadata(instance)
    assert data_requests(sandbox) == [
        WHO,
        (START_PAGE_TOKEN, {"supportsAllDrives": "true"}),  # first: nothing changed during the listing is lost
        (FILES, LISTING),  # no q, no orderBy: every file the user can see, trashed ones too
        (FILES, {**LISTING, "pageToken": tokens[1]}),
        (FILES, {**LISTING, "pageToken": tokens[2]}),
        (CHANGES, removals_from(full["resume_token"])),  # no file left the listing: it named every file
    ]
    # A file in the trash is a deleted row (trashed too).
    assert (full["mode"], full["records_synced"], full["records_deleted"]) == ("full", 135, 15)
    assert full["resume_token"] == start_page_token()  # nothing has changed since
    assert rows("SELECT count(*) FILTER (WHERE trashed) FROM documents") == [(15,)]
    edited = sandbox.mutate("google_drive", "files", 3)["ids"]
    sandbox.clear_requests("google_drive")

    assert run_sync(instance, DRIVE, WS).success
    assert data_requests(sandbox) == [WHO, (CHANGES, changes_from(full["resume_token"]))]
    second = metadata(instance)
    assert (second["mode"], second["records_synced"], second["records_reread"]) == ("incremental", 3, 0)
    assert second["resume_token"] == start_page_token() != full["resume_token"]
    sandbox.clear_requests("google_drive")

    assert run_sync(instance, DRIVE, WS).success
    assert data_requests(sandbox) == [WHO, (CHANGES, changes_from(second["resume_token"]))]
    assert metadata(instance)["records_synced"] == 0
    truth = {r["id"]: r["modified"] for r in sandbox.truth("google_drive", "files")}
    assert {i: stored(i)[0] for i in edited} == {i: datetime.fromisoformat(truth[i]) for i in edited}


def test_a_file_edited_while_the_listing_runs_is_read_from_the_change_log_next_time(drive_ws, instance, sandbox):
    """The listing saw page 1 before one of its files changed; the change log, from the position taken
    before the listing, carries that change (and the one the listing saw on page 3) into the next sync."""
    ids = file_ids(sandbox)
    on_page_1, on_page_3 = ids[10], ids[120]
    edit = [{"entity": "files", "ids": [on_page_1]}, {"entity": "files", "ids": [on_page_3]}]
    sandbox.faults(
        "google_drive", mutate_after_requests=[{"after": 1, "path_contains": "/files", "mutation": m} for m in edit]
    )
    assert run_sync(instance, DRIVE, WS).success
    versions = {r["id"]: r for r in sandbox.truth("google_drive", "files")}
    assert stored(on_page_1)[0] < datetime.fromisoformat(versions[on_page_1]["modified"])  # listed before the edit
    assert stored(on_page_3)[0] == datetime.fromisoformat(versions[on_page_3]["modified"])  # listed after it
    sandbox.clear_faults("google_drive")

    assert run_sync(instance, DRIVE, WS).success
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"]) == (1, 1)
    assert stored(on_page_1)[0] == datetime.fromisoformat(versions[on_page_1]["modified"])


def test_a_file_purged_while_the_listing_runs_makes_it_list_again_and_loses_no_other_file(drive_ws, instance, sandbox):
    """files.list pages by position: a file of page 1 deleted for good before page 2 moves every later file up
    a place, and the first file of page 2 is never listed (no change brings it back). The change log shows
    the removal, so the files are listed again, from a new position; the removal itself comes from the
    change log next time."""
    ids = file_ids(sandbox)
    purged, first_of_page_2 = ids[10], ids[50]
    purge = {"entity": "files", "action": "purge", "ids": [purged]}
    sandbox.faults("google_drive", mutate_after_requests=[{"after": 1, "path_contains": "/files", "mutation": purge}])
    result = run_sync(instance, DRIVE, WS)
    assert result.success
    sent = data_requests(sandbox)
    position = start_page_token()  # the change log's position now: nothing has changed since the purge
    tokens = [q.get("pageToken") for path, q in sent if path == FILES]
    listing = [(FILES, {**LISTING, **({"pageToken": t} if t else {})}) for t in tokens[:3]]
    assert tokens[3:] == tokens[:3]  # page tokens are positions: the same ones again
    full = metadata(instance)
    assert sent == [
        WHO,
        (START_PAGE_TOKEN, {"supportsAllDrives": "true"}),
        *listing,  # the purge lands after page 1
        (CHANGES, removals_from(full["resume_token"])),  # a removal since the listing began: list again
        (START_PAGE_TOKEN, {"supportsAllDrives": "true"}),
        *listing,
        (CHANGES, removals_from(position)),  # none since the second listing began: settled
    ]
    assert "[Google Drive Client] files left the listing while it ran (try 1); listing again" in [
        e.user_message for e in instance.all_logs(result.run_id)
    ]
    assert full["resume_token"] != position  # the next sync reads the changes from before the first listing
    assert {r[0] for r in rows("SELECT source_id FROM documents")} == set(ids)
    assert rows("SELECT is_deleted FROM documents WHERE source_id = :i", i=first_of_page_2) == [(False,)]
    sandbox.clear_faults("google_drive")
    sandbox.clear_requests("google_drive")

    assert run_sync(instance, DRIVE, WS).success
    assert data_requests(sandbox) == [WHO, (CHANGES, changes_from(full["resume_token"]))]
    assert rows("SELECT source_id FROM documents WHERE is_deleted AND NOT trashed") == [(purged,)]
    assert metadata(instance)["records_deleted"] == 1


def test_a_file_whose_modified_time_is_set_into_the_past_or_future_is_still_synced(drive_ws, instance, sandbox):
    """A client may set modifiedTime to anything. Both files arrive through the change log; the future one
    is counted as future-dated and cannot drag the watermark past the read's start."""
    assert run_sync(instance, DRIVE, WS).success
    ids = file_ids(sandbox)
    past, future = ids[3], ids[4]
    sandbox.mutate("google_drive", "files", ids=[past], modified_time="2019-03-01T00:00:00.000Z")
    sandbox.mutate("google_drive", "files", ids=[future], modified_time="2099-01-01T00:00:00.000Z")

    assert run_sync(instance, DRIVE, WS).success
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_future_dated"]) == (2, 1)
    assert meta["watermark"] == meta["read_started_at"]
    assert stored(past)[0] == datetime(2019, 3, 1, tzinfo=UTC)
    assert stored(future)[0] == datetime(2099, 1, 1, tzinfo=UTC)


def test_a_file_revealed_with_an_old_modified_time_arrives_through_the_change_log(drive_ws, instance, sandbox):
    """A file moved or shared into the user's view keeps its old modifiedTime: a modifiedTime filter never
    finds it, the change log does."""
    [hidden] = sandbox.mutate("google_drive", "files", create=1, hidden=True, modified_time="2020-06-01T00:00:00.000Z")[
        "created_ids"
    ]
    assert run_sync(instance, DRIVE, WS).success
    full = metadata(instance)
    assert (full["records_synced"], full["records_deleted"]) == (135, 15)  # 150 files in view, 15 in the trash
    assert rows("SELECT count(*) FROM documents WHERE source_id = :id", id=hidden) == [(0,)]
    sandbox.mutate("google_drive", "files", action="reveal", ids=[hidden])

    assert run_sync(instance, DRIVE, WS).success
    assert metadata(instance)["records_synced"] == 1
    assert stored(hidden)[0] == datetime(2020, 6, 1, tzinfo=UTC)


def test_a_document_row_maps_drives_file_fields(drive_ws, instance, sandbox):
    assert run_sync(instance, DRIVE, WS).success
    (title, mime, url, owner, size, modified, trashed, props) = rows(
        "SELECT title, mime_type, url, owner_email, size_bytes, modified_at, trashed, properties FROM documents "
        "WHERE source_id = :id",
        id=file_ids(sandbox)[9],
    )[0]
    assert (title, mime, url) == (props["name"], props["mimeType"], props["webViewLink"])
    assert owner == props["owners"][0]["emailAddress"] and owner.endswith("@example.com")
    assert size == (int(props["size"]) if "size" in props else None)
    assert modified == datetime.fromisoformat(props["modifiedTime"])
    assert trashed is True  # every tenth file is in the trash
    sized = rows("SELECT count(*) FROM documents WHERE properties ? 'size'")[0][0]
    assert rows("SELECT count(*) FROM documents WHERE size_bytes IS NOT NULL") == [(sized,)]
    assert 0 < sized < 150  # Google-native files have no size
    shared = rows("SELECT count(*) FROM documents WHERE properties ? 'driveId'")[0][0]
    assert rows("SELECT count(*) FROM documents WHERE owner_email IS NULL") == [(shared,)]
    assert shared > 0  # shared-drive files have no owners


def test_a_refused_refresh_fails_with_googles_reason(drive_ws, instance, sandbox):
    sandbox.faults("google_drive", revoke=True)
    assert not run_sync(instance, DRIVE, WS).success
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            "[Google Drive] OAuth refresh refused: HTTP 400 invalid_grant on POST token endpoint: "
            "Token has been expired or revoked.",
        )
    ]


@pytest.mark.parametrize(
    "status", [pytest.param(403, id="403-userRateLimitExceeded"), pytest.param(429, id="429-rateLimitExceeded")]
)
def test_both_rate_limit_answers_are_retried(drive_ws, instance, sandbox, status):
    """Drive signals quota exhaustion as 403 userRateLimitExceeded as well as 429 rateLimitExceeded."""
    sandbox.faults("google_drive", next_429=2, throttle_status=status)
    result = run_sync(instance, DRIVE, WS)
    assert result.success
    statuses = [r["status"] for r in sandbox.requests("google_drive") if "/drive/v3/" in r["path"]]
    # about (twice refused), startPageToken, 3 pages, the removal check
    assert statuses == [status, status] + [200] * 6
    retries = [e.user_message for e in instance.all_logs(result.run_id) if "Client] Rate limited" in e.user_message]
    assert retries == [f"[Google Drive Client] Rate limited ({status}), retrying in {ms}ms" for ms in (100, 200)]
    assert rows("SELECT count(*) FROM documents") == [(150,)]
