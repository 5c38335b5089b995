"""HubSpot: deals, contacts, companies (accounts) and tasks.

Both reads use the search endpoint, keyset-paged: full syncs by object id, incremental ones by the
last-modified property (``GTE`` the watermark, epoch ms, oldest first). HubSpot filters on that property
exactly, so no lookback is needed; the safety lag covers search's eventual consistency.

Deletions: archiving leaves the last-modified time alone and search never returns archived records, so
every sync also pages the whole archive (``archived=true``, with ``archivedAt``; the list has no filter on
it). Every archived record is kept, not only the recent ones: the archive is paged by offset, so a record
restored meanwhile can shift another past one pass, and only a later pass finds it. Archived rows the
warehouse already holds unchanged cost no writes. A merge makes the losing record vanish without being
archived: the survivor lists it in ``hs_merged_object_ids`` (and its own last-modified time moves), so
the loser is marked deleted and merged into the survivor. A restore moves the last-modified time, so
search finds it live.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from resources.hubspot import HubSpotClient, HubSpotObject, HubSpotResource, modified_property
from resources.models import Deletion, Page
from sync_assets.entities import AccountRow, ContactRow, DealRow, TaskRow, utc_timestamp
from sync_assets.recipe import Connector, Entity, Transform
from sync_assets.watermark import Cursor, FilterKind, ReadWindow

PROPERTIES = {
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "hubspot_owner_id"],
    "contacts": ["email", "firstname", "lastname", "phone", "company", "jobtitle"],
    "companies": ["name", "domain", "industry", "phone"],
    "tasks": ["hs_task_subject", "hs_task_status", "hs_task_priority", "hs_timestamp"],
}
MERGED_IDS = "hs_merged_object_ids"  # semicolon-separated ids merged into this record


def properties_of(object_type: str) -> list[str]:
    return PROPERTIES[object_type] + [modified_property(object_type), "createdate", MERGED_IDS]


def reader(object_type: str):
    properties = properties_of(object_type)

    def read(client: HubSpotClient, window: ReadWindow) -> Iterator[Page[HubSpotObject]]:
        if window.since is None:
            live = client.objects_by_id(object_type, properties)
        else:
            live = client.modified_since(object_type, window.since, properties)
        for page in live:
            yield Page(page.records, total=page.total, deletions=merged_away(page.records, object_type))
        yield from client.archived_objects(object_type, properties)

    return read


def confirmer(object_type: str):
    properties = properties_of(object_type)

    def confirm(client: HubSpotClient, ids: list[str]) -> Iterator[Page[HubSpotObject]]:
        found: list[HubSpotObject] = []
        gone: list[Deletion] = []
        for source_id in ids:
            record = client.object_by_id(object_type, source_id, properties)
            if record is None:
                gone.append(Deletion(source_id))
            elif record.id != source_id:  # merged away: HubSpot answers with the survivor
                gone.append(Deletion(source_id, merged_into=record.id))
            else:
                found.append(record)
        yield Page(found, deletions=gone)

    return confirm


def merged_away(records: list[HubSpotObject], object_type: str) -> list[Deletion]:
    """The records each survivor lists as merged into it, deleted as of the survivor's last change."""
    return [
        Deletion(loser, at=_instant(_modified(record, object_type)), merged_into=record.id)
        for record in records
        for loser in (record.properties.get(MERGED_IDS) or "").split(";")
        if loser and loser != record.id
    ]


def _instant(value: str | None) -> datetime | None:
    """A time HubSpot sent, or None if it is missing or malformed (the row model reports malformed ones)."""
    try:
        return utc_timestamp(value)
    except ValueError:
        return None


def cursor(object_type: str) -> Cursor:
    return Cursor(
        field=modified_property(object_type),
        filter=FilterKind.EXACT,
        safety_lag=timedelta(minutes=2),
        lag_reason="search is eventually consistent: a change can take seconds to minutes to be searchable",
    )


def _modified(record: HubSpotObject, object_type: str) -> str | None:
    return record.properties.get(modified_property(object_type))


def _common(record: HubSpotObject, object_type: str) -> dict[str, Any]:
    return {
        "source_id": record.id,
        "source_updated_at": _modified(record, object_type),
        "is_deleted": record.archived,
        "deleted_at": record.archived_at,
    }


def deal(record: HubSpotObject) -> DealRow:
    p = record.properties
    return DealRow(
        **_common(record, "deals"),
        name=p.get("dealname"),
        amount=p.get("amount"),
        stage=p.get("dealstage"),
        pipeline=p.get("pipeline"),
        close_date=p.get("closedate"),
        owner_id=p.get("hubspot_owner_id"),
    )


def contact(record: HubSpotObject) -> ContactRow:
    p = record.properties
    return ContactRow(
        **_common(record, "contacts"),
        email=p.get("email"),
        first_name=p.get("firstname"),
        last_name=p.get("lastname"),
        phone=p.get("phone"),
        company=p.get("company"),
        title=p.get("jobtitle"),
    )


def company(record: HubSpotObject) -> AccountRow:
    p = record.properties
    return AccountRow(
        **_common(record, "companies"),
        name=p.get("name"),
        domain=p.get("domain"),
        industry=p.get("industry"),
        phone=p.get("phone"),
    )


def task(record: HubSpotObject) -> TaskRow:
    p = record.properties
    return TaskRow(
        **_common(record, "tasks"),
        title=p.get("hs_task_subject"),
        status=p.get("hs_task_status"),
        priority=p.get("hs_task_priority"),
        due_date=p.get("hs_timestamp"),
    )


def entity(name: str, label: str, object_type: str, transform: Transform) -> Entity:
    return Entity(
        name=name,
        label=label,
        read=reader(object_type),
        transform=transform,
        cursor=cursor(object_type),
        confirm=confirmer(object_type),
        from_payload=HubSpotObject.model_validate,
    )


CONNECTOR = Connector(
    name="hubspot",
    title="HubSpot",
    resource=HubSpotResource(),
    entities=(
        entity("deals", "Deal", "deals", deal),
        entity("contacts", "Contact", "contacts", contact),
        entity("accounts", "Account", "companies", company),
        entity("tasks", "Task", "tasks", task),
    ),
)
