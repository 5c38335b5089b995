"""Replay of dead letters (issue 20, item 4): the ``replay_dead_letters`` job and the REST endpoints that
list and replay a workspace's sync_errors. Real Postgres; the dead letters are inserted as an earlier
version of the platform left them, then replayed through today's transforms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import DagsterEventType
from fastapi.testclient import TestClient
from sqlalchemy import insert

from api.app import app
from api.auth import issue_token
from definitions import replay_dead_letters_job
from resources import schema
from resources.control_plane import upsert_workspace
from resources.hubspot import HubSpotObject
from resources.loader import upsert_rows
from resources.warehouse import WarehouseResource
from sync_assets.hubspot import contact
from tests.support import rows

WS, OTHER = "acme", "globex"
ADMIN = "admin-token-for-tests"
LONG_TITLE = "Head of " + "Really " * 50 + "Important Partnerships"  # 364 characters
LONG_PHONE = "5" * 65


def hubspot_contact(source_id: str, modified: str, **properties: str) -> dict:
    """A HubSpot contact's payload, as the sync stores it."""
    return {
        "id": source_id,
        "properties": {"lastmodifieddate": modified, "email": f"c{source_id}@example.com", **properties},
        "createdAt": "2024-12-01T00:00:00.000Z",
        "updatedAt": modified,
        "archived": False,
    }


def dead_letter(workspace: str, source_id: str, error: str, payload: dict, resolved: bool = False) -> dict:
    return {
        "workspace_id": workspace,
        "connector": "hubspot",
        "entity": "contacts",
        "source_id": source_id,
        "run_id": "run-before",
        "error": error,
        "payload": payload,
        "resolved_at": datetime(2025, 3, 1, tzinfo=UTC) if resolved else None,
    }


# What an earlier version left: a title it refused (today's model truncates titles), a phone too long for
# the column (still too long), a contact since synced in a newer version, another workspace's dead letter
# and one already resolved.
FIXED = hubspot_contact("11", "2025-01-05T00:00:00.000Z", jobtitle=LONG_TITLE)
STILL_BAD = hubspot_contact("12", "2025-01-06T00:00:00.000Z", phone=LONG_PHONE)
OLDER = hubspot_contact("13", "2025-01-07T00:00:00.000Z", firstname="Old")
LETTERS = [
    dead_letter(WS, "11", "Contact: title: String should have at most 255 characters (11)", FIXED),
    dead_letter(WS, "12", "Contact: warehouse error: StringDataRightTruncation (SQLSTATE 22001)", STILL_BAD),
    dead_letter(WS, "13", "Contact: record: Value error, an old bug (13)", OLDER),
    dead_letter(OTHER, "21", "Contact: record: Value error, an old bug (21)", hubspot_contact("21", "2025-01-01")),
    dead_letter(WS, "14", "Contact: record: Value error, an old bug (14)", hubspot_contact("14", "2025-01-01"), True),
]


@pytest.fixture
def letters(warehouse) -> list[int]:
    """The dead letters above (their ids, in order), and the newer version of contact 13 in the warehouse."""
    upsert_workspace(warehouse, WS, "Acme")
    upsert_workspace(warehouse, OTHER, "Globex")
    payload = hubspot_contact("13", "2025-02-01T00:00:00.000Z", firstname="New")
    newer = contact(HubSpotObject.model_validate(payload)).as_row()
    with warehouse.begin() as conn:
        upsert_rows(conn, schema.contacts, [{**newer, "workspace_id": WS, "source": "hubspot", "properties": payload}])
        inserted = insert(schema.sync_errors).returning(schema.sync_errors.c.id)
        return [conn.execute(inserted, row).scalar_one() for row in LETTERS]


def contact_rows() -> list[tuple]:
    return rows("SELECT source_id, first_name, title, phone FROM contacts ORDER BY source_id")


def letter_rows() -> list[tuple]:
    return rows("SELECT id, workspace_id, source_id, error, resolved_at IS NOT NULL FROM sync_errors ORDER BY id")


def expected_after_replay(ids: list[int]) -> list[tuple]:
    return [
        (ids[0], WS, "11", LETTERS[0]["error"], True),
        (ids[1], WS, "12", "Contact: phone: longer than 64 characters (12)", False),
        (ids[2], WS, "13", LETTERS[2]["error"], True),
        (ids[3], OTHER, "21", LETTERS[3]["error"], False),
        (ids[4], WS, "14", LETTERS[4]["error"], True),
    ]


def test_the_job_replays_through_todays_transform_and_reports_its_counts(letters, pg_url, instance):
    result = replay_dead_letters_job.execute_in_process(
        run_config={"ops": {"replay_dead_letters_op": {"config": {"workspace_id": WS}}}},
        resources={"warehouse": WarehouseResource(url=pg_url)},
        instance=instance,
    )
    assert result.success
    counts = {"replayed": 3, "resolved": 1, "still_failing": 1, "skipped_newer": 1}
    assert result.output_for_node("replay_dead_letters_op") == counts
    [output] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata == {"workspace_id": WS, **counts}

    # 11 now passes (its title cut to the column); 13 keeps the newer version the warehouse held.
    assert contact_rows() == [("11", None, LONG_TITLE[:255], None), ("13", "New", None, None)]
    assert letter_rows() == expected_after_replay(letters)
    [(properties,)] = rows("SELECT properties FROM contacts WHERE source_id = '11'")
    assert properties == FIXED


def test_a_replay_can_be_narrowed_to_error_ids_and_skips_resolved_and_foreign_ones(letters, pg_url, instance):
    config = {"workspace_id": WS, "connector": "hubspot", "entity": "contacts", "error_ids": letters[1:]}
    result = replay_dead_letters_job.execute_in_process(
        run_config={"ops": {"replay_dead_letters_op": {"config": config}}},
        resources={"warehouse": WarehouseResource(url=pg_url)},
        instance=instance,
    )
    assert result.output_for_node("replay_dead_letters_op") == {
        "replayed": 2,
        "resolved": 0,
        "still_failing": 1,
        "skipped_newer": 1,
    }
    assert contact_rows() == [("13", "New", None, None)]
    assert [r[4] for r in letter_rows()] == [False, False, True, False, True]


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, warehouse) -> TestClient:
    monkeypatch.setenv("SYNC_ADMIN_TOKEN", ADMIN)
    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_lists_a_workspaces_dead_letters_paged_and_filtered(letters, client, warehouse):
    token, _ = issue_token(warehouse, WS, "reader")
    first = client.get(f"/api/workspaces/{WS}/errors", params={"limit": 2}, headers=bearer(token))
    assert first.status_code == 200
    body = first.json()
    assert [e["sourceId"] for e in body["errors"]] == ["14", "13"]
    assert body["nextCursor"] == letters[2]
    assert body["errors"][1] == {
        "id": letters[2],
        "connector": "hubspot",
        "entity": "contacts",
        "sourceId": "13",
        "runId": "run-before",
        "error": LETTERS[2]["error"],
        "payload": OLDER,
        "createdAt": body["errors"][1]["createdAt"],
        "resolvedAt": None,
    }
    rest = client.get(f"/api/workspaces/{WS}/errors", params={"limit": 2, "cursor": letters[2]}, headers=bearer(token))
    assert ([e["sourceId"] for e in rest.json()["errors"]], rest.json()["nextCursor"]) == (["12", "11"], None)

    def source_ids(**params) -> list[str]:
        answer = client.get(f"/api/workspaces/{WS}/errors", params=params, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        return [e["sourceId"] for e in answer.json()["errors"]]

    assert source_ids(resolved="false") == ["13", "12", "11"]
    assert source_ids(resolved="true") == ["14"]
    assert source_ids(connector="hubspot", entity="contacts") == ["14", "13", "12", "11"]
    assert source_ids(entity="deals") == []
    assert source_ids(connector="gong") == []
    unknown = client.get(f"/api/workspaces/{WS}/errors", params={"connector": "nope"}, headers=bearer(token))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "invalid_request")


def test_the_api_replays_and_a_tenant_reaches_only_its_own_dead_letters(letters, client, warehouse):
    own, _ = issue_token(warehouse, WS, "acme")
    foreign, _ = issue_token(warehouse, OTHER, "globex")
    for method, path in (("GET", f"/api/workspaces/{WS}/errors"), ("POST", f"/api/workspaces/{WS}/errors/replay")):
        assert client.request(method, path).status_code == 401
        refused = client.request(method, path, headers=bearer(foreign))
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "not_found")
    untouched = [
        (i, r["workspace_id"], r["source_id"], r["error"], r["resolved_at"] is not None)
        for i, r in zip(letters, LETTERS, strict=True)
    ]
    assert letter_rows() == untouched

    replayed = client.post(
        f"/api/workspaces/{WS}/errors/replay", json={"errorIds": [letters[0], letters[3]]}, headers=bearer(own)
    )
    assert replayed.status_code == 200
    assert replayed.json() == {"workspaceId": WS, "replayed": 1, "resolved": 1, "stillFailing": 0, "skippedNewer": 0}
    everything = client.post(f"/api/workspaces/{WS}/errors/replay", headers=bearer(ADMIN))
    assert everything.json() == {"workspaceId": WS, "replayed": 2, "resolved": 0, "stillFailing": 1, "skippedNewer": 1}
    assert letter_rows() == expected_after_replay(letters)
    assert contact_rows() == [("11", None, LONG_TITLE[:255], None), ("13", "New", None, None)]
    # The other workspace's dead letter is its own to replay.
    theirs = client.post(
        f"/api/workspaces/{OTHER}/errors/replay", json={"connector": "hubspot"}, headers=bearer(foreign)
    )
    assert theirs.json() == {"workspaceId": OTHER, "replayed": 1, "resolved": 1, "stillFailing": 0, "skippedNewer": 0}
    for body in ({"connector": "nope"}, {"errorIds": [2**70]}, {"entity": "contacts\u0000"}):
        bad = client.post(f"/api/workspaces/{WS}/errors/replay", json=body, headers=bearer(own))
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request"), body
    no_id = client.get(f"/api/workspaces/{WS}/errors", params={"cursor": 2**70}, headers=bearer(own))
    assert (no_id.status_code, no_id.json()["error"]["code"]) == (400, "invalid_request")
