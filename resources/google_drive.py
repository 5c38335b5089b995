"""Google Drive v3 client: OAuth refresh at Google's token endpoint; full reads with ``files.list``,
incremental ones from the Changes API (``changes.list`` from a saved page token).

Drive signals quota exhaustion with 403 ``userRateLimitExceeded`` / ``rateLimitExceeded`` as well as 429;
all three are throttling. ``dailyLimitExceeded`` and other 403s are final.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any, ClassVar

import requests

from resources.connections import Connection
from resources.http import ErrorRule, Outcome, VendorError, VendorFault, json_body
from resources.models import Deletion, Page, VendorRecord
from resources.oauth import OAuthRefreshClient
from resources.paging import cursor_pages
from resources.vendor import VendorResource

FILES_PATH = "/drive/v3/files"
CHANGES_PATH = "/drive/v3/changes"
DRIVES_PATH = "/drive/v3/drives"
DEFAULT_PAGE_SIZE = 1000
THROTTLE_REASONS = {"userRateLimitExceeded", "rateLimitExceeded"}
FILE_FIELDS = (
    "id,name,mimeType,modifiedTime,createdTime,trashed,parents,webViewLink,owners(emailAddress),size,version,driveId"
)
FILES_MASK = f"nextPageToken,incompleteSearch,files({FILE_FIELDS})"
CHANGES_MASK = f"nextPageToken,newStartPageToken,changes(changeType,time,removed,fileId,file({FILE_FIELDS}))"
ALL_DRIVES = {"supportsAllDrives": "true", "includeItemsFromAllDrives": "true"}


class DriveFile(VendorRecord):
    name: str | None = None
    mimeType: str | None = None  # noqa: N815 - Drive's field names, kept for the raw payload
    modifiedTime: str | None = None  # noqa: N815
    webViewLink: str | None = None  # noqa: N815
    owners: list[dict[str, Any]] | None = None
    size: str | None = None
    trashed: bool | None = None
    version: str | None = None  # Drive's own version number of the file: it only grows

    @property
    def payload(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class GoogleDriveClient(OAuthRefreshClient):
    vendor = "Google Drive"
    default_expires_in_s = 3599
    error_rules = tuple(ErrorRule(Outcome.THROTTLED, (403,), code=reason) for reason in THROTTLE_REASONS)

    def __init__(self, token_url: str, page_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.token_endpoint = token_url
        self.page_size = min(max(page_size, 1), 1000)

    def extract_error(self, response: requests.Response) -> VendorFault | None:
        """The API's ``{"error": {"message", "errors": [{"reason"}]}}``, or the token endpoint's OAuth error."""
        body = json_body(response)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return self.oauth_error(response)
        reason = ((error.get("errors") or [{}])[0] or {}).get("reason")
        return VendorFault(reason, str(error.get("message", "")))

    def _path(self, url: str) -> str:
        bare = url.split("?")[0]
        return "token endpoint" if bare == self.token_endpoint else super()._path(bare)

    def account_identity(self) -> str | None:
        """The Drive user the token reads as (``about.user.permissionId``)."""
        body = self.request_json("GET", "/drive/v3/about", params={"fields": "user(permissionId)"})
        return f"user {body['user']['permissionId']}"

    # --- reads ----------------------------------------------------------------------------------

    def start_page_token(self) -> str:
        """The change log's current position: changes after this instant are listed from it."""
        body = self.request_json("GET", f"{CHANGES_PATH}/startPageToken", params={"supportsAllDrives": "true"})
        return str(body["startPageToken"])

    def files(self) -> Iterator[Page[DriveFile]]:
        """Every file the user can see, trashed ones included (a full read). No ``orderBy``: the default
        order does not move a file when it is edited, so an edit never shifts another past the reader.

        ``corpora=allDrives`` may answer ``incompleteSearch: true`` (Drive gave up on some shared drives):
        then the read is narrowed to My Drive and each shared drive in turn, whose answers are complete.
        A corpus that is still incomplete makes the last page say the read did not name every file."""
        complete = yield from self._list({"corpora": "allDrives"})
        if not complete:
            self.log.warning(f"[{self.vendor} Client] incomplete search over all drives; listing them one by one")
            complete = yield from self._list({"corpora": "user"})
            for drive_id in self.shared_drive_ids():
                complete = (yield from self._list({"corpora": "drive", "driveId": drive_id})) and complete
        yield Page(enumerates_all=None if complete else False)

    def _list(self, corpus: dict[str, str]) -> Generator[Page[DriveFile], None, bool]:
        """One corpus, page by page; returns whether Drive said its answer was complete."""
        params = {"pageSize": self.page_size, "fields": FILES_MASK, **corpus, **ALL_DRIVES}
        complete = True
        for body in self._pages(FILES_PATH, params):
            complete = complete and not body.get("incompleteSearch", False)
            yield Page([DriveFile.model_validate(f) for f in body.get("files", [])])
        return complete

    def shared_drive_ids(self) -> Iterator[str]:
        for body in self._pages(DRIVES_PATH, {"pageSize": 100}):
            yield from (str(d["id"]) for d in body.get("drives", []))

    def removed_since(self, page_token: str) -> bool:
        """Whether the change log shows a file removed from the user's view since ``page_token``."""
        fields = "nextPageToken,newStartPageToken,changes(removed)"
        return any(c.get("removed") for body in self._changes(page_token, fields) for c in body.get("changes", []))

    def file(self, file_id: str) -> DriveFile | None:
        """One file the user can see (trashed too); None when it is deleted for good or out of reach."""
        params = {"fields": FILE_FIELDS, "supportsAllDrives": "true"}
        try:
            return self.request_json("GET", f"{FILES_PATH}/{file_id}", params=params, model=DriveFile)
        except VendorError as exc:
            if exc.status == 404:
                return None
            raise

    def changes(self, page_token: str) -> Iterator[Page[DriveFile]]:
        """Files changed since ``page_token`` (a removal, ``removed: true``, means deleted for good or out of
        the user's reach), with the token to resume from on the last page."""
        for body in self._changes(page_token, CHANGES_MASK):
            changes = body.get("changes", [])
            files = [DriveFile.model_validate(c["file"]) for c in changes if c.get("file") and not c.get("removed")]
            removed = [Deletion(str(c["fileId"]), at=_instant(c.get("time"))) for c in changes if c.get("removed")]
            yield Page(files, deletions=removed, resume_token=body.get("newStartPageToken"))

    def _changes(self, page_token: str, fields: str) -> Iterator[dict[str, Any]]:
        params = {"pageSize": self.page_size, "includeRemoved": "true", "fields": fields, **ALL_DRIVES}
        return self._pages(CHANGES_PATH, params, page_token)

    def _pages(self, path: str, params: dict[str, Any], first_token: str | None = None) -> Iterator[dict[str, Any]]:
        """A ``pageToken``-paged listing (the changes list starts from a token of its own)."""

        def fetch(token: str | None) -> dict[str, Any]:
            token = token or first_token
            return self.request_json("GET", path, params={**params, **({"pageToken": token} if token else {})})

        return cursor_pages(fetch, lambda body: body.get("nextPageToken"))


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class GoogleDriveResource(VendorResource):
    """Google Drive client factory. Default limit: 12,000 requests / 60 s, Drive's published per-user
    and per-project query quota. It is keyed by the OAuth client, i.e. the Google Cloud project, because
    the project quota is shared by every workspace that authorised that client. ``config.page_size``
    overrides the page size (1000); the endpoints are platform settings."""

    client_class = GoogleDriveClient
    credential_sets = (("access_token",), ("refresh_token",))
    credentials_hint = "an OAuth refresh_token (or an access_token)"
    quota_identity = (("client_id",), ("access_token",))
    default_rate_limit: ClassVar[tuple[int, float]] = (12_000, 60.0)

    def client_options(self, connection: Connection, identity: str) -> dict[str, Any]:
        return {
            "token_url": str(self.endpoints(connection).token_url),
            "page_size": int(connection.config.get("page_size") or DEFAULT_PAGE_SIZE),
        }
