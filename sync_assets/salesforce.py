"""Salesforce: Opportunity (deals), Contact (contacts), Account (accounts) and Task (tasks).

Every read filters on ``SystemModstamp >= <watermark>`` (an unquoted SOQL datetime literal) and asks
``COUNT()`` first: above the bulk threshold (10,000 by default) it runs as a Bulk API 2.0 job, else as
keyset-paged REST queries (see resources/salesforce.py). ``SystemModstamp`` also moves on system-driven
changes, so no lookback is needed; the safety lag covers rows that commit after the read began with a
stamp from before it.

Deletions: every read is a ``queryAll``, selecting ``IsDeleted`` (deleting moves ``SystemModstamp``, so a
deleted row comes back with the changes) and, where ``describe`` lists them, ``MasterRecordId`` (the
survivor of a merge: Account, Contact) and ``IsArchived`` (Tasks that ``query`` would hide: archived, not
deleted). Hard deletes leave no row, so an incremental read also asks ``sobjects/{type}/deleted`` for its
window; when Salesforce no longer covers it (about 15 days, less after the recycle bin is emptied) the
entity is read in full and the rows it no longer has are swept.

Unmapped on purpose: Salesforce has no deal pipeline (record types vary per org) and a contact's company
is a relation (``AccountId``); both stay in ``properties``. Every Task lands in ``tasks``, calls included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from resources.models import Deletion, Page
from resources.salesforce import MODIFIED_FIELD, SalesforceClient, SalesforceRecord, SalesforceResource
from sync_assets.entities import AccountRow, ContactRow, DealRow, TaskRow
from sync_assets.recipe import Connector, Entity, Transform
from sync_assets.watermark import Cursor, FilterKind, ReadWindow

# The SOQL field list of each object: the one place that says what is read.
FIELDS: dict[str, list[str]] = {
    "Opportunity": ["Id", "Name", "Amount", "StageName", "Type", "CloseDate", "OwnerId", "AccountId"],
    "Contact": ["Id", "FirstName", "LastName", "Email", "Phone", "Title", "AccountId"],
    "Account": ["Id", "Name", "Website", "Industry", "Phone"],
    "Task": ["Id", "Subject", "Status", "Priority", "ActivityDate", "TaskSubtype", "OwnerId"],
}
COMMON_FIELDS = ["CreatedDate", MODIFIED_FIELD, "IsDeleted"]
LIFECYCLE_FIELDS = ["MasterRecordId", "IsArchived"]  # selected where the object has them


CURSOR = Cursor(
    field=MODIFIED_FIELD,
    filter=FilterKind.EXACT,
    safety_lag=timedelta(minutes=10),
    lag_reason="SystemModstamp is set when a transaction starts; its rows become visible at commit, "
    "up to the 10-minute request limit later",
)


def field_names(client: SalesforceClient, sobject: str) -> list[str]:
    present = client.fields_of(sobject)
    return FIELDS[sobject] + COMMON_FIELDS + [f for f in LIFECYCLE_FIELDS if f in present]


def reader(sobject: str):
    def read(client: SalesforceClient, window: ReadWindow) -> Iterator[Page[SalesforceRecord]]:
        yield from client.modified_since(sobject, field_names(client, sobject), window.since)
        if window.deleted_since is not None:
            yield Page(deletions=client.deleted_between(sobject, window.deleted_since, client.clock.now_at_latest()))

    return read


def confirmer(sobject: str):
    def confirm(client: SalesforceClient, ids: list[str]) -> Iterator[Page[SalesforceRecord]]:
        found = client.records_by_id(sobject, field_names(client, sobject), ids)
        known = {r.source_id for r in found}
        yield Page(found, deletions=[Deletion(i) for i in ids if i not in known])  # no row: hard-deleted

    return confirm


def _fields(record: SalesforceRecord) -> dict[str, Any]:
    if record.defect:
        raise ValueError(record.defect)
    return record.fields


def _common(f: dict[str, Any]) -> dict[str, Any]:
    """Id, SystemModstamp and the row's lifecycle (REST sends booleans, Bulk CSV "true"/"false")."""
    deleted = str(f.get("IsDeleted")).lower() == "true"
    return {
        "source_id": f["Id"],
        "source_updated_at": f[MODIFIED_FIELD],
        "is_deleted": deleted,
        "deleted_at": f[MODIFIED_FIELD] if deleted else None,
        "merged_into": f.get("MasterRecordId") if deleted else None,
    }


def _domain(website: str | None) -> str | None:
    if not website:
        return None
    host = website.split("://", 1)[-1].split("/", 1)[0].lower()
    return host.removeprefix("www.") or None


def deal(record: SalesforceRecord) -> DealRow:
    f = _fields(record)
    return DealRow(
        **_common(f),
        name=f.get("Name"),
        amount=f.get("Amount"),
        stage=f.get("StageName"),
        close_date=f.get("CloseDate"),
        owner_id=f.get("OwnerId"),
    )


def contact(record: SalesforceRecord) -> ContactRow:
    f = _fields(record)
    return ContactRow(
        **_common(f),
        email=f.get("Email"),
        first_name=f.get("FirstName"),
        last_name=f.get("LastName"),
        phone=f.get("Phone"),
        title=f.get("Title"),
    )


def account(record: SalesforceRecord) -> AccountRow:
    f = _fields(record)
    return AccountRow(
        **_common(f),
        name=f.get("Name"),
        domain=_domain(f.get("Website")),
        industry=f.get("Industry"),
        phone=f.get("Phone"),
    )


def task(record: SalesforceRecord) -> TaskRow:
    f = _fields(record)
    return TaskRow(
        **_common(f),
        title=f.get("Subject"),
        status=f.get("Status"),
        priority=f.get("Priority"),
        due_date=f.get("ActivityDate"),
    )


def entity(name: str, label: str, sobject: str, transform: Transform) -> Entity:
    return Entity(
        name=name,
        label=label,
        read=reader(sobject),
        transform=transform,
        cursor=CURSOR,
        confirm=confirmer(sobject),
        from_payload=lambda fields: SalesforceRecord(sobject, fields),
    )


CONNECTOR = Connector(
    name="salesforce",
    title="Salesforce",
    resource=SalesforceResource(),
    entities=(
        entity("deals", "Deal", "Opportunity", deal),
        entity("contacts", "Contact", "Contact", contact),
        entity("accounts", "Account", "Account", account),
        entity("tasks", "Task", "Task", task),
    ),
)
