"""Google Drive: the Changes API, client-set modifiedTime, reveal/hide, trash, shared drives and corpora,
over HTTP (see conftest.py for the sandbox process)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

FILE_FIELDS = "files(id,modifiedTime,trashed,version,driveId,owners(emailAddress))"
CHANGE_FIELDS = (
    "nextPageToken,newStartPageToken,changes(changeType,fileId,removed,time,file(id,modifiedTime,trashed,version))"
)
ALL = {"includeItemsFromAllDrives": "true", "supportsAllDrives": "true"}


class Drive:
    def __init__(self, url: str):
        self.url, self.base = url, f"{url}/google_drive"
        creds = requests.get(f"{url}/_sandbox/connections").json()["google_drive"]["credentials"]
        token = requests.post(f"{self.base}/token", data={"grant_type": "refresh_token", **creds}).json()
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.base}/drive/v3{path}", params=params, headers=self.headers)

    def files(self, **params: Any) -> list[dict[str, Any]]:
        out, token = [], None
        while True:
            r = self.get(
                "/files",
                pageSize=100,
                fields=f"nextPageToken,incompleteSearch,{FILE_FIELDS}",
                **params,
                **({"pageToken": token} if token else {}),
            )
            assert r.status_code == 200, r.text
            out += r.json()["files"]
            token = r.json().get("nextPageToken")
            if not token:
                return out

    def start_token(self) -> str:
        body = self.get("/changes/startPageToken").json()
        assert set(body) == {"kind", "startPageToken"} and body["kind"] == "drive#startPageToken"
        return body["startPageToken"]

    def changes(self, token: str, **params: Any) -> tuple[list[dict[str, Any]], str]:
        """All changes from `token` on, and the newStartPageToken of the last page."""
        out = []
        while True:
            query = {"pageToken": token, "fields": CHANGE_FIELDS, "includeRemoved": "true", **ALL, **params}
            r = self.get("/changes", **query)
            assert r.status_code == 200, r.text
            body = r.json()
            out += body["changes"]
            if "newStartPageToken" in body:
                assert "nextPageToken" not in body
                return out, body["newStartPageToken"]
            token = body["nextPageToken"]

    def mutate(self, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{self.url}/_sandbox/google_drive/mutate", json={"entity": "files", **body})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def drive(sandbox_url: str) -> Drive:
    body = {"seed": 1, "sizes": {"google_drive": {"files": 120, "drives": 3}}}
    requests.post(f"{sandbox_url}/_sandbox/reset", json=body).raise_for_status()
    return Drive(sandbox_url)


def file_id(drive: Drive, i: int) -> str:
    return drive.files()[0]["id"][:-7] + f"{i:07d}"


def test_changes_feed_reports_each_mutation_with_the_current_file(drive):
    start = drive.start_token()
    assert drive.changes(start) == ([], start)
    f1, f2 = file_id(drive, 1), file_id(drive, 2)
    before = {f["id"]: f for f in drive.files()}
    edited = drive.mutate({"ids": [f1]})
    drive.mutate({"action": "trash", "ids": [f2]})
    changes, new_start = drive.changes(start, pageSize=1)
    assert new_start != start and [c["fileId"] for c in changes] == [f1, f2]
    assert all(c["changeType"] == "file" and c["removed"] is False for c in changes)
    assert changes[0]["file"]["modifiedTime"] == edited["modified_at"]
    assert changes[0]["time"] == edited["changed_at"]
    assert int(changes[0]["file"]["version"]) > int(before[f1]["version"])
    assert changes[1]["file"]["trashed"] is True and before[f2]["trashed"] is False
    assert changes[1]["file"]["modifiedTime"] == before[f2]["modifiedTime"]  # trashing keeps modifiedTime
    assert drive.changes(new_start) == ([], new_start)

    drive.mutate({"ids": [f2]})  # a later change: earlier entries now show the file's current state
    changes, _ = drive.changes(start)
    assert len(changes) == 3 and changes[1]["file"] == changes[2]["file"]


def test_change_tokens_are_validated_and_do_not_survive_a_reset(drive, sandbox_url):
    start = drive.start_token()
    missing = drive.get("/changes")
    assert missing.status_code == 400 and missing.json()["error"]["errors"][0]["reason"] == "required"
    bogus = drive.get("/changes", pageToken="not-a-token")
    assert bogus.status_code == 400
    assert bogus.json() == {
        "error": {
            "code": 400,
            "message": "Invalid Value",
            "errors": [
                {
                    "message": "Invalid Value",
                    "domain": "global",
                    "reason": "invalid",
                    "locationType": "parameter",
                    "location": "pageToken",
                }
            ],
        }
    }
    requests.post(f"{sandbox_url}/_sandbox/reset", json={"seed": 1}).raise_for_status()
    after_reset = Drive(sandbox_url)
    assert after_reset.get("/changes", pageToken=start).status_code == 400
    assert after_reset.get("/changes", pageToken=after_reset.start_token()).status_code == 200


def test_client_set_modified_time_in_the_past_escapes_a_modified_time_watermark(drive):
    watermark = max(f["modifiedTime"] for f in drive.files())
    start = drive.start_token()
    f5 = file_id(drive, 5)
    result = drive.mutate({"ids": [f5], "modified_time": "2024-03-01T12:00:00.000Z"})
    assert result["modified_at"] == "2024-03-01T12:00:00.000Z"
    assert drive.files(q=f"modifiedTime > '{watermark}'") == []
    ordered = drive.files(orderBy="modifiedTime")
    assert ordered[0]["id"] == f5 and ordered[0]["modifiedTime"] == "2024-03-01T12:00:00.000Z"
    (change,) = drive.changes(start)[0]
    assert change["fileId"] == f5 and change["file"]["modifiedTime"] == "2024-03-01T12:00:00.000Z"
    future = drive.mutate({"ids": [file_id(drive, 6)], "modified_time": "2031-01-01T00:00:00Z"})
    assert drive.files(orderBy="modifiedTime desc")[0]["modifiedTime"] == future["modified_at"]


def test_revealed_file_appears_with_its_old_modified_time(drive):
    watermark = max(f["modifiedTime"] for f in drive.files())
    start = drive.start_token()
    created = drive.mutate({"create": 1, "hidden": True, "modified_time": "2024-12-01T03:04:05.000Z"})
    (new_id,) = created["created_ids"]
    assert new_id not in {f["id"] for f in drive.files()}
    assert drive.changes(start)[0] == [
        {"changeType": "file", "fileId": new_id, "removed": True, "time": created["changed_at"]}
    ]
    revealed = drive.mutate({"action": "reveal", "ids": [new_id]})
    assert revealed["modified_at"] is None
    listed = {f["id"]: f for f in drive.files()}
    assert listed[new_id]["modifiedTime"] == "2024-12-01T03:04:05.000Z"
    assert new_id not in {f["id"] for f in drive.files(q=f"modifiedTime > '{watermark}'")}
    changes, _ = drive.changes(start)
    assert [(c["fileId"], c["removed"]) for c in changes] == [(new_id, False), (new_id, False)]
    assert changes[-1]["file"]["modifiedTime"] == "2024-12-01T03:04:05.000Z"


def test_hidden_and_purged_files_are_removed_changes_without_a_file(drive):
    start = drive.start_token()
    f7, f8 = file_id(drive, 7), file_id(drive, 8)
    drive.mutate({"action": "hide", "ids": [f7]})
    drive.mutate({"action": "purge", "ids": [f8]})
    listed = {f["id"] for f in drive.files()}
    assert f7 not in listed and f8 not in listed
    changes, _ = drive.changes(start)
    assert [(c["fileId"], c["removed"], "file" in c) for c in changes] == [(f7, True, False), (f8, True, False)]
    assert drive.changes(start, includeRemoved="false")[0] == []
    truth = {
        r["id"]: r for r in requests.get(f"{drive.url}/_sandbox/google_drive/truth?entity=files").json()["records"]
    }
    assert (truth[f7]["state"], truth[f7]["hidden"]) == ("live", True)
    assert truth[f8]["state"] == "purged" and truth[file_id(drive, 9)]["state"] == "trashed"


def test_trash_and_restore_keep_modified_time(drive):
    f3 = file_id(drive, 3)
    before = {f["id"]: f for f in drive.files()}[f3]
    drive.mutate({"action": "trash", "ids": [f3]})
    assert f3 not in {f["id"] for f in drive.files(q="trashed = false")}
    trashed = {f["id"]: f for f in drive.files()}[f3]
    assert trashed["trashed"] is True and trashed["modifiedTime"] == before["modifiedTime"]
    drive.mutate({"action": "restore", "ids": [f3]})
    assert f3 in {f["id"] for f in drive.files(q="trashed = false")}
    again = requests.post(
        f"{drive.url}/_sandbox/google_drive/mutate", json={"entity": "files", "action": "restore", "ids": [f3]}
    )
    assert again.status_code == 400


def test_corpora_scope_shared_drives(drive):
    everything = drive.files()
    assert len(everything) == 120
    shared = [f for f in everything if "driveId" in f]
    mine = [f for f in everything if "driveId" not in f]
    assert shared and mine and all("owners" not in f for f in shared) and all(f["owners"] for f in mine)
    assert [f["id"] for f in drive.files(corpora="user")] == [f["id"] for f in mine]
    assert len(drive.files(corpora="allDrives", **ALL)) == 120
    drives = drive.get("/drives", pageSize=2).json()
    assert [set(d) for d in drives["drives"]] == [{"kind", "id", "name"}] * 2
    rest = drive.get("/drives", pageSize=2, pageToken=drives["nextPageToken"]).json()
    drive_ids = [d["id"] for d in drives["drives"] + rest["drives"]]
    assert len(drive_ids) == 3 and "nextPageToken" not in rest
    per_drive = {d: drive.files(corpora="drive", driveId=d, **ALL) for d in drive_ids}
    assert sorted(f["id"] for files in per_drive.values() for f in files) == sorted(f["id"] for f in shared)
    assert all(f["driveId"] == d for d, files in per_drive.items() for f in files)


def test_incomplete_search_leaves_out_shared_drives(drive):
    requests.post(f"{drive.url}/_sandbox/google_drive/faults", json={"incomplete_search": True}).raise_for_status()
    r = drive.get("/files", corpora="allDrives", pageSize=1000, fields=f"incompleteSearch,{FILE_FIELDS}", **ALL)
    assert r.json()["incompleteSearch"] is True
    assert all("driveId" not in f for f in r.json()["files"]) and r.json()["files"]
    d = drive.get("/drives").json()["drives"][0]["id"]
    complete = drive.get(
        "/files", corpora="drive", driveId=d, pageSize=1000, fields="incompleteSearch,files(id)", **ALL
    )
    assert complete.json()["incompleteSearch"] is False and complete.json()["files"]
    assert drive.get("/files", pageSize=1000, fields="incompleteSearch").json() == {"incompleteSearch": False}


def test_corpora_errors(drive):
    no_drive = drive.get("/files", corpora="drive", **ALL)
    assert no_drive.status_code == 400
    assert no_drive.json()["error"]["message"] == (
        "The driveId parameter must be specified if and only if corpora is set to drive."
    )
    no_flag = drive.get("/files", corpora="allDrives")
    assert no_flag.status_code == 403
    unknown = drive.get("/files", corpora="drive", driveId="0Anope", **ALL)
    assert unknown.status_code == 404 and unknown.json()["error"]["errors"][0]["reason"] == "notFound"
    assert drive.get("/files", corpora="everything").status_code == 400


def test_shared_drive_changes_need_include_items_from_all_drives(drive):
    start = drive.start_token()
    shared = next(f["id"] for f in drive.files() if "driveId" in f)
    drive.mutate({"ids": [shared]})
    assert [c["fileId"] for c in drive.changes(start)[0]] == [shared]
    narrow = drive.get("/changes", pageToken=start, fields="changes(fileId),newStartPageToken").json()
    assert narrow["changes"] == []


def test_a_page_token_belongs_to_its_corpus(drive):
    first = drive.get("/files", pageSize=10, corpora="user", fields="nextPageToken,files(id)").json()
    reused = drive.get("/files", pageSize=10, corpora="allDrives", pageToken=first["nextPageToken"], **ALL)
    assert reused.status_code == 400 and reused.json()["error"]["errors"][0]["location"] == "pageToken"
    same = drive.get("/files", pageSize=10, corpora="user", pageToken=first["nextPageToken"])
    assert same.status_code == 200
