"""The Drive v3 Changes API for the Google Drive simulator (a mixin of ``google_drive.GoogleDrive``), and the
wire helpers both modules share (Google's error body, the ``fields`` partial-response mask).

``GET /drive/v3/changes/startPageToken`` -> ``{"kind": "drive#startPageToken", "startPageToken"}``;
``GET /drive/v3/changes?pageToken=&pageSize=(1..1000, default 100)&includeRemoved=&includeItemsFromAllDrives=
&supportsAllDrives=&driveId=&fields=`` -> ``{"kind": "drive#changeList", "changes": [{"kind": "drive#change",
"changeType": "file", "time", "removed", "fileId", "file"}], "nextPageToken" | "newStartPageToken"}``
(https://developers.google.com/drive/api/guides/manage-changes).

Every mutation of a file appends one change at the vendor time; none are collapsed (Drive may collapse
successive changes of a file into its latest: clients must accept either). A change reports the file's
CURRENT state when changes.list is called, as Drive does: ``removed: true`` without ``file`` once the file
is permanently deleted or out of the user's reach (hide), else the file as files.list renders it (the
``fields`` mask applies, e.g. ``changes(fileId,removed,time,file(id,modifiedTime,version))``). Shared-drive
files' changes are listed only with ``includeItemsFromAllDrives=true``; ``driveId`` narrows the feed to one
shared drive. Page tokens are opaque strings (numeric, like Drive's); a token from before a reset, or one
that does not exist yet, is 400 invalid.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import json_response, parsed

if TYPE_CHECKING:
    from .store import EntityStore

DEFAULT_CHANGE_FIELDS = (
    "kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,file(kind,id,name,mimeType))"
)
MAX_PAGE_SIZE = 1000
TOKEN_SPAN = 10**9  # a token is epoch * TOKEN_SPAN + position + 1
_EPOCHS = itertools.count(1)  # one per reset, process-wide: tokens never survive a reset


def error(status: int, message: str, reason: str, domain: str = "global", **where: str) -> Response:
    if "location" in where:
        where = {"locationType": "parameter", **where}
    detail = {"message": message, "domain": domain, "reason": reason, **where}
    return json_response({"error": {"code": status, "message": message, "errors": [detail]}}, status)


def invalid(location: str, message: str = "Invalid Value") -> Response:
    return error(400, message, "invalid", locationType="parameter", location=location)


def parse_fields(text: str) -> dict[str, Any] | None:
    """``a,b,files(id,owners(emailAddress))`` -> {"a": None, "b": None, "files": {...}}; None if malformed."""
    out: dict[str, Any] = {}
    stack = [out]
    name = ""
    for ch in text.replace(" ", "") + ",":
        if ch.isalnum() or ch in "_*":
            name += ch
        elif ch == "(" and name:
            stack[-1][name] = child = {}
            stack.append(child)
            name = ""
        elif ch in ",)":
            if name:
                stack[-1][name] = None
                name = ""
            if ch == ")":
                if len(stack) == 1:
                    return None
                stack.pop()
        else:
            return None
    return out if len(stack) == 1 else None


def apply_mask(value: Any, mask: dict[str, Any] | None) -> Any:
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [apply_mask(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: apply_mask(v, mask[k]) for k, v in value.items() if k in mask}
    return value


class ChangeFeed:
    """The change log of one Drive dataset and the two Changes API routes."""

    store: EntityStore
    n_drives: int

    if TYPE_CHECKING:  # supplied by the vendor class

        def file(self, i: int) -> dict[str, Any]: ...
        def file_id(self, i: int) -> str: ...
        def visible(self, i: int) -> bool: ...
        def drive_of(self, i: int) -> int | None: ...
        def _drive_index(self, drive_id: str) -> int | None: ...

    def reset_changes(self) -> None:
        self._epoch = next(_EPOCHS)
        self._log: list[tuple[int, int]] = []  # (vendor ms, file index), in order

    def record_changes(self, indices: Iterable[int], at_ms: int) -> None:
        self._log.extend((at_ms, i) for i in indices)

    def _change_token(self, position: int) -> str:
        return str(self._epoch * TOKEN_SPAN + position + 1)

    def _change_position(self, token: str) -> int | None:
        if not token.isdigit():
            return None
        epoch, rest = divmod(int(token), TOKEN_SPAN)
        return rest - 1 if epoch == self._epoch and 1 <= rest <= len(self._log) + 1 else None

    def change_routes(self, r: APIRouter) -> None:
        r.add_api_route("/drive/v3/changes/startPageToken", self._start_page_token, methods=["GET"])
        r.add_api_route("/drive/v3/changes", self._changes, methods=["GET"])

    async def _start_page_token(self, request: Request) -> Response:
        return json_response({"kind": "drive#startPageToken", "startPageToken": self._change_token(len(self._log))})

    async def _changes(self, request: Request) -> Response:
        query = {k: (v[-1] if isinstance(v, list) else v) for k, v in parsed(request).query.items()}
        if "pageToken" not in query:
            return error(
                400, "Required parameter: pageToken", "required", locationType="parameter", location="pageToken"
            )
        position = self._change_position(query["pageToken"])
        if position is None:
            return invalid("pageToken")
        try:
            page_size = int(query.get("pageSize", 100))
        except ValueError:
            return invalid("pageSize")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return invalid("pageSize", f"Invalid value '{page_size}'. Values must be within the range: [1, 1000]")
        mask = parse_fields(query.get("fields") or DEFAULT_CHANGE_FIELDS)
        if mask is None:
            return invalid("fields")
        all_drives = query.get("includeItemsFromAllDrives", "false").lower() == "true"
        include_removed = query.get("includeRemoved", "true").lower() != "false"
        only_drive: int | None = None
        if "driveId" in query:
            only_drive = self._drive_index(query["driveId"])
            if only_drive is None:
                return error(
                    404,
                    f"Shared drive not found: {query['driveId']}",
                    "notFound",
                    locationType="parameter",
                    location="driveId",
                )
        entries = self._log[position : position + page_size]
        changes = []
        for at_ms, i in entries:
            drive = self.drive_of(i)
            if (only_drive is not None and drive != only_drive) or (drive is not None and not all_drives):
                continue
            removed = not self.visible(i)
            if removed and not include_removed:
                continue
            change: dict[str, Any] = {
                "kind": "drive#change",
                "changeType": "file",
                "time": gen.iso_ms(at_ms),
                "removed": removed,
                "fileId": self.file_id(i),
            }
            if not removed:
                change["file"] = self.file(i)
            changes.append(change)
        body: dict[str, Any] = {"kind": "drive#changeList", "changes": changes}
        following = position + len(entries)
        if following < len(self._log):
            body["nextPageToken"] = self._change_token(following)
        else:
            body["newStartPageToken"] = self._change_token(len(self._log))
        return json_response(apply_mask(body, mask))
