"""Google Drive v3 client: OAuth refresh at Google's token endpoint, then ``files.list`` filtered on
``modifiedTime`` (inclusive ``>=`` the watermark, oldest first) and ``trashed = false``.

Drive signals quota exhaustion with 403 ``userRateLimitExceeded`` / ``rateLimitExceeded`` as well as 429;
all three are throttling. ``dailyLimitExceeded`` and other 403s are final.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from resources.connections import Connection
from resources.http import RetryableError, VendorError
from resources.models import Page, VendorRecord
from resources.oauth import OAuthRefreshClient
from resources.vendor import VendorResource

DEFAULT_BASE_URL = "https://www.googleapis.com"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
FILES_PATH = "/drive/v3/files"
DEFAULT_PAGE_SIZE = 1000
THROTTLE_REASONS = {"userRateLimitExceeded", "rateLimitExceeded"}
FILE_FIELDS = "id,name,mimeType,modifiedTime,createdTime,trashed,parents,webViewLink,owners(emailAddress),size"
FIELDS_MASK = f"nextPageToken,incompleteSearch,files({FILE_FIELDS})"


class DriveFile(VendorRecord):
    name: str | None = None
    mimeType: str | None = None  # noqa: N815 - Drive's field names, kept for the raw payload
    modifiedTime: str | None = None  # noqa: N815
    webViewLink: str | None = None  # noqa: N815
    owners: list[dict[str, Any]] | None = None
    size: str | None = None
    trashed: bool | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GoogleDriveClient(OAuthRefreshClient):
    vendor = "Google Drive"
    default_expires_in_s = 3599

    def __init__(self, credentials: dict[str, Any], token_url: str, page_size: int, **kwargs: Any):
        super().__init__(credentials, **kwargs)
        self.token_endpoint = token_url
        self.page_size = min(max(page_size, 1), 1000)

    # --- errors ---------------------------------------------------------------------------------

    def classify(self, response: requests.Response) -> None:
        status = response.status_code
        if status == 403 and self._reason(response) in THROTTLE_REASONS:
            raise RetryableError("throttled", 403, self.error_detail(response), self._retry_after(response))
        super().classify(response)

    @staticmethod
    def _reason(response: requests.Response) -> str | None:
        try:
            error = response.json().get("error")
        except ValueError:
            return None
        if not isinstance(error, dict):
            return None
        details = error.get("errors") or [{}]
        return details[0].get("reason")

    def error_detail(self, response: requests.Response) -> str:
        where = f"{response.request.method} {self._path(response.url)}"
        try:
            error = response.json().get("error")
        except ValueError:
            return f"HTTP {response.status_code} on {where}: {response.text[:300]}"
        if isinstance(error, dict):  # the API's shape
            reason = self._reason(response) or ""
            return f"HTTP {response.status_code} {reason} on {where}: {error.get('message')}".replace("  ", " ")
        description = response.json().get("error_description", "")  # the token endpoint's shape
        return f"HTTP {response.status_code} {error} on {where}: {description}"

    def _path(self, url: str) -> str:
        bare = url.split("?")[0]
        return "token endpoint" if bare == self.token_endpoint else super()._path(bare)

    # --- reads ----------------------------------------------------------------------------------

    def files_modified_since(self, since: datetime | None) -> Iterator[Page[DriveFile]]:
        """Untrashed files modified at or after ``since`` (all when None), oldest first. ``>=`` keeps
        the watermark inclusive; the sync loop skips the boundary files it already committed."""
        q = "trashed = false"
        if since is not None:
            q = f"modifiedTime >= '{rfc3339(since)}' and {q}"
        params: dict[str, Any] = {
            "q": q,
            "pageSize": self.page_size,
            "orderBy": "modifiedTime",
            "fields": FIELDS_MASK,
            "supportsAllDrives": "true",
            "includeItemsFromAllDrives": "true",
        }
        while True:
            body = self.request("GET", FILES_PATH, params=params).json()
            yield Page([DriveFile.model_validate(f) for f in body.get("files", [])])
            token = body.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token


class GoogleDriveResource(VendorResource):
    """Google Drive client factory. Default limit: 12,000 requests / 60 s, Drive's published per-user
    and per-project query quota (vendor-apis.md §6.4). It is keyed by the OAuth client, i.e. the Google
    Cloud project, because the project quota is shared by every workspace that authorised that client.
    ``config.token_url`` overrides Google's token endpoint, ``config.page_size`` the page size (1000)."""

    default_rate_limit: ClassVar[tuple[int, float]] = (12_000, 60.0)

    def client_for(self, connection: Connection, log: Any = None) -> GoogleDriveClient:
        creds = connection.credentials
        if not (creds.get("access_token") or creds.get("refresh_token")):
            raise VendorError("Google Drive", "credentials need an OAuth refresh_token (or an access_token)")
        project = creds.get("client_id") or creds.get("access_token") or ""
        return GoogleDriveClient(
            credentials=creds,
            token_url=str(connection.config.get("token_url") or DEFAULT_TOKEN_URL),
            page_size=int(connection.config.get("page_size") or DEFAULT_PAGE_SIZE),
            base_url=self.base_url(connection, DEFAULT_BASE_URL),
            limiter=self.limiter("google_drive", project, connection),
            retry=self.retry_settings(connection),
            log=log,
        )
