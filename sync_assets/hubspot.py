"""HubSpot: deals, contacts, companies (accounts) and tasks.

Full syncs page the list endpoint; incremental ones search on the last-modified property
(``GTE`` the watermark, epoch ms, oldest first). HubSpot filters by modification time exactly, so
no lookback is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from resources.hubspot import HubSpotClient, HubSpotObject, HubSpotResource, modified_property
from resources.models import Page
from sync_assets.entities import AccountRow, ContactRow, DealRow, TaskRow
from sync_assets.recipe import Connector, Entity

PROPERTIES = {
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "hubspot_owner_id"],
    "contacts": ["email", "firstname", "lastname", "phone", "company", "jobtitle"],
    "companies": ["name", "domain", "industry", "phone"],
    "tasks": ["hs_task_subject", "hs_task_status", "hs_task_priority", "hs_timestamp"],
}


def pages_of(object_type: str):
    properties = PROPERTIES[object_type] + [modified_property(object_type), "createdate"]

    def fetch(client: HubSpotClient, since: datetime | None) -> Iterator[Page[HubSpotObject]]:
        if since is None:
            return client.list_objects(object_type, properties)
        return client.search_modified_since(object_type, since, properties)

    return fetch


def _modified(record: HubSpotObject, object_type: str) -> str | None:
    return record.properties.get(modified_property(object_type))


def deal(record: HubSpotObject) -> DealRow:
    p = record.properties
    return DealRow(
        source_id=record.id,
        source_updated_at=_modified(record, "deals"),
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
        source_id=record.id,
        source_updated_at=_modified(record, "contacts"),
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
        source_id=record.id,
        source_updated_at=_modified(record, "companies"),
        name=p.get("name"),
        domain=p.get("domain"),
        industry=p.get("industry"),
        phone=p.get("phone"),
    )


def task(record: HubSpotObject) -> TaskRow:
    p = record.properties
    return TaskRow(
        source_id=record.id,
        source_updated_at=_modified(record, "tasks"),
        title=p.get("hs_task_subject"),
        status=p.get("hs_task_status"),
        priority=p.get("hs_task_priority"),
        due_date=p.get("hs_timestamp"),
    )


CONNECTOR = Connector(
    name="hubspot",
    title="HubSpot",
    resource=HubSpotResource(),
    entities=(
        Entity("deals", "Deal", pages_of("deals"), deal),
        Entity("contacts", "Contact", pages_of("contacts"), contact),
        Entity("accounts", "Account", pages_of("companies"), company),
        Entity("tasks", "Task", pages_of("tasks"), task),
    ),
)
