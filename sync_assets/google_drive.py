"""Google Drive: files as documents.

Incremental syncs list files with ``modifiedTime >= '<watermark>' and trashed = false``, oldest first.
Drive's ``>`` is exclusive; ``>=`` matches the inclusive watermark and the sync loop skips the boundary
files already committed, so two files modified in the same millisecond are never split across syncs.
Files trashed after they were synced keep their row (trashing is not a modification Drive reports here).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from resources.google_drive import DriveFile, GoogleDriveClient, GoogleDriveResource
from resources.models import Page
from sync_assets.entities import DocumentRow
from sync_assets.recipe import Connector, Entity


def files(client: GoogleDriveClient, since: datetime | None) -> Iterator[Page[DriveFile]]:
    return client.files_modified_since(since)


def document(record: DriveFile) -> DocumentRow:
    owner = (record.owners or [{}])[0]
    return DocumentRow(
        source_id=record.id,
        source_updated_at=record.modifiedTime,
        title=record.name,
        mime_type=record.mimeType,
        url=record.webViewLink,
        owner_email=owner.get("emailAddress"),
        size_bytes=record.size,
        modified_at=record.modifiedTime,
        trashed=record.trashed,
    )


CONNECTOR = Connector(
    name="google_drive",
    title="Google Drive",
    resource=GoogleDriveResource(),
    entities=(Entity("documents", "Document", files, document),),
)
