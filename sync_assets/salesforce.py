"""Salesforce: Opportunity (deals), Contact (contacts), Account (accounts) and Task (tasks).

Every read filters on ``SystemModstamp >= <watermark>`` (an unquoted SOQL datetime literal) and asks
``COUNT()`` first: above the bulk threshold (10,000 by default) it runs as a Bulk API 2.0 job, else
as a REST query (see resources/salesforce.py). ``SystemModstamp`` also moves on system-driven changes,
so it never misses an edit; no lookback is needed.

Unmapped on purpose: Salesforce has no deal pipeline (record types vary per org) and a contact's company
is a relation (``AccountId``); both stay in ``properties``. Every Task lands in ``tasks``, calls included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from resources.models import Page
from resources.salesforce import MODIFIED_FIELD, SalesforceClient, SalesforceRecord, SalesforceResource
from sync_assets.entities import AccountRow, ContactRow, DealRow, TaskRow
from sync_assets.recipe import Connector, Entity

# The SOQL field list of each object: the one place that says what is read.
FIELDS: dict[str, list[str]] = {
    "Opportunity": ["Id", "Name", "Amount", "StageName", "Type", "CloseDate", "OwnerId", "AccountId"],
    "Contact": ["Id", "FirstName", "LastName", "Email", "Phone", "Title", "AccountId"],
    "Account": ["Id", "Name", "Website", "Industry", "Phone"],
    "Task": ["Id", "Subject", "Status", "Priority", "ActivityDate", "TaskSubtype", "OwnerId"],
}
COMMON_FIELDS = ["CreatedDate", MODIFIED_FIELD]


def pages_of(sobject: str):
    field_names = FIELDS[sobject] + COMMON_FIELDS

    def fetch(client: SalesforceClient, since: datetime | None) -> Iterator[Page[SalesforceRecord]]:
        return client.modified_since(sobject, field_names, since)

    return fetch


def _fields(record: SalesforceRecord) -> dict[str, Any]:
    if record.defect:
        raise ValueError(record.defect)
    return record.fields


def _domain(website: str | None) -> str | None:
    if not website:
        return None
    host = website.split("://", 1)[-1].split("/", 1)[0].lower()
    return host.removeprefix("www.") or None


def deal(record: SalesforceRecord) -> DealRow:
    f = _fields(record)
    return DealRow(
        source_id=f["Id"],
        source_updated_at=f[MODIFIED_FIELD],
        name=f.get("Name"),
        amount=f.get("Amount"),
        stage=f.get("StageName"),
        close_date=f.get("CloseDate"),
        owner_id=f.get("OwnerId"),
    )


def contact(record: SalesforceRecord) -> ContactRow:
    f = _fields(record)
    return ContactRow(
        source_id=f["Id"],
        source_updated_at=f[MODIFIED_FIELD],
        email=f.get("Email"),
        first_name=f.get("FirstName"),
        last_name=f.get("LastName"),
        phone=f.get("Phone"),
        title=f.get("Title"),
    )


def account(record: SalesforceRecord) -> AccountRow:
    f = _fields(record)
    return AccountRow(
        source_id=f["Id"],
        source_updated_at=f[MODIFIED_FIELD],
        name=f.get("Name"),
        domain=_domain(f.get("Website")),
        industry=f.get("Industry"),
        phone=f.get("Phone"),
    )


def task(record: SalesforceRecord) -> TaskRow:
    f = _fields(record)
    return TaskRow(
        source_id=f["Id"],
        source_updated_at=f[MODIFIED_FIELD],
        title=f.get("Subject"),
        status=f.get("Status"),
        priority=f.get("Priority"),
        due_date=f.get("ActivityDate"),
    )


CONNECTOR = Connector(
    name="salesforce",
    title="Salesforce",
    resource=SalesforceResource(),
    entities=(
        Entity("deals", "Deal", pages_of("Opportunity"), deal),
        Entity("contacts", "Contact", pages_of("Contact"), contact),
        Entity("accounts", "Account", pages_of("Account"), account),
        Entity("tasks", "Task", pages_of("Task"), task),
    ),
)
