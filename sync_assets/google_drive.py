"""Google Drive: files as documents.

Drive's ``modifiedTime`` is set by clients (it can lie in the past or the future), and a file moved or
shared into the user's view keeps its old one, so no filter on it can find every change. Incremental
syncs read the Changes API instead: every change since a page token, with the token to resume from as
the cursor. A full sync takes the change log's position first, then lists every file; changes made
while it lists are read again next time.

Deletions: a trashed file is a deleted row (``trashed`` set too; restoring it from the trash is an
ordinary change); a file deleted for good, or out of the user's reach, is a change with ``removed: true``.
"""

from __future__ import annotations

from collections.abc import Iterator

from resources.google_drive import DriveFile, GoogleDriveClient, GoogleDriveResource
from resources.models import Deletion, Page
from sync_assets.entities import DocumentRow
from sync_assets.recipe import Connector, Entity
from sync_assets.watermark import Cursor, FilterKind, ReadWindow

LISTINGS = 3  # listings tried before giving up on one that no file left while it ran


def read_files(client: GoogleDriveClient, window: ReadWindow) -> Iterator[Page[DriveFile]]:
    """Changes since the stored page token; or, without one, every file.

    A full read takes the change log's position first, so whatever changes while it lists is read next
    time. The listing pages a live order: a file that leaves it while it runs (deleted for good, out of
    reach) shifts the next one past the reader, and no change would bring that one back. So when the
    change log shows a removal during the listing, the files are listed again. A listing that never
    settles, or that Drive calls incomplete, names no resume token (the next sync lists everything
    again) and says it did not name every file (nothing is swept)."""
    if window.resume_token is not None:
        yield from client.changes(window.resume_token)
        return
    resume_from = client.start_page_token()
    complete: bool | None = None
    for attempt in range(1, LISTINGS + 1):
        checkpoint = resume_from if attempt == 1 else client.start_page_token()
        held: Page[DriveFile] | None = None
        for page in client.files():
            complete = False if page.enumerates_all is False else complete
            if not page.records:
                continue
            if held is not None:
                yield held
            held = page
        settled = not client.removed_since(checkpoint)
        if settled or attempt == LISTINGS:
            complete = complete if settled else False
            last = held.records if held else []
            yield Page(last, resume_token=None if complete is False else resume_from, enumerates_all=complete)
            return
        if held is not None:
            yield held
        client.log.warning(f"[Google Drive Client] files left the listing while it ran (try {attempt}); listing again")


def confirm_files(client: GoogleDriveClient, ids: list[str]) -> Iterator[Page[DriveFile]]:
    found = {i: client.file(i) for i in ids}
    yield Page(
        [f for f in found.values() if f is not None], deletions=[Deletion(i) for i, f in found.items() if f is None]
    )


def document(record: DriveFile) -> DocumentRow:
    owner = (record.owners or [{}])[0]
    return DocumentRow(
        source_id=record.id,
        source_updated_at=record.modifiedTime,
        source_version=int(record.version) if record.version else None,
        title=record.name,
        mime_type=record.mimeType,
        url=record.webViewLink,
        owner_email=owner.get("emailAddress"),
        size_bytes=record.size,
        modified_at=record.modifiedTime,
        trashed=record.trashed,
        is_deleted=bool(record.trashed),
    )


CONNECTOR = Connector(
    name="google_drive",
    title="Google Drive",
    resource=GoogleDriveResource(),
    # Drive's quota is the OAuth client's Cloud project's, shared by every workspace that authorised it.
    pool="google_drive",
    entities=(
        Entity(
            name="documents",
            label="Document",
            read=read_files,
            transform=document,
            confirm=confirm_files,
            from_payload=DriveFile.model_validate,
            cursor=Cursor(
                field="changes page token",
                filter=FilterKind.CHANGE_LOG,
                lag_reason="none: the change log has no time bound to hold back",
            ),
        ),
    ),
)
