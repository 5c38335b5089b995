"""One value the warehouse cannot hold fails its record, never its batch (issue 20, item 1): the row models
clean, truncate or refuse by the columns' limits, and a row the database still refuses is found by halves
and dead-lettered. Real Postgres; the HubSpot sandbox over HTTP serving the values a real HubSpot returns."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dagster import AssetKey
from sqlalchemy.exc import DataError

from definitions import connector_assets
from resources.warehouse import WarehouseResource, dead_letter_row
from sync_assets.entities import ContactRow, DealRow
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

HUBSPOT = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
WS = "acme"
LONG_PHONE = "5" * 65
HUGE_AMOUNT = "1" + "0" * 20
LONG_TITLE = "Vice President of " + "Very " * 60 + "Important Things"


@pytest.fixture(autouse=True)
def no_platform_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_RATE_LIMITS", json.dumps({"hubspot": False, "hubspot:search": False}))


def contact_id(i: int) -> str:
    return str(10_000_000 + i)


def deal_id(i: int) -> str:
    return str(30_000_000 + i)


def test_poisoned_values_fail_their_records_only_and_never_reach_the_sync_log(warehouse, instance, sandbox):
    sandbox.reset(sizes={"hubspot": {"deals": 10, "contacts": 10, "companies": 1, "tasks": 1}}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"])
    poison = {
        contact_id(2): {"phone": LONG_PHONE},
        contact_id(4): {"firstname": "An\u0000ne", "company": "\u0000"},
        contact_id(6): {"jobtitle": LONG_TITLE},
        deal_id(3): {"amount": HUGE_AMOUNT, "dealname": "Big\u0000 deal"},
    }
    sandbox.faults("hubspot", poison_records=poison)
    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals", "hubspot/contacts"]).success

    phone_error = f"Contact: phone: longer than 64 characters ({contact_id(2)})"
    amount_error = f"Deal: amount: more than 18 digits before the decimal point ({deal_id(3)})"
    assert rows("SELECT source_id FROM contacts ORDER BY source_id") == [(contact_id(i),) for i in range(10) if i != 2]
    assert rows("SELECT source_id FROM deals ORDER BY source_id") == [(deal_id(i),) for i in range(10) if i != 3]
    # NULs are removed from the columns and the stored payload; a long title is cut, whole in the payload.
    [(first_name, company, properties)] = rows(
        "SELECT first_name, company, properties FROM contacts WHERE source_id = :id", id=contact_id(4)
    )
    assert (first_name, company, properties["properties"]["firstname"]) == ("Anne", None, "Anne")
    [(title, properties)] = rows("SELECT title, properties FROM contacts WHERE source_id = :id", id=contact_id(6))
    assert (title, properties["properties"]["jobtitle"]) == (LONG_TITLE[:255], LONG_TITLE)

    dead = rows("SELECT entity, source_id, error, payload FROM sync_errors ORDER BY entity")
    assert [(e, s, m) for e, s, m, _ in dead] == [
        ("contacts", contact_id(2), phone_error),
        ("deals", deal_id(3), amount_error),
    ]
    # The payload is kept for a replay, NULs removed.
    assert dead[0][3]["properties"]["phone"] == LONG_PHONE
    assert (dead[1][3]["properties"]["amount"], dead[1][3]["properties"]["dealname"]) == (HUGE_AMOUNT, "Big deal")

    [log] = rows("SELECT status, records_failed, errors, error FROM sync_log")
    assert log == ("completed_with_errors", 2, [amount_error, phone_error], None)
    for value in (LONG_PHONE, HUGE_AMOUNT):
        assert value not in json.dumps(log)
    assert latest_metadata(instance, "hubspot/contacts", WS)["records_failed"] == 1

    # The next (incremental) sync starts after them: each stays one dead letter.
    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals", "hubspot/contacts"]).success
    assert rows("SELECT count(*) FROM sync_errors") == [(2,)]


def entity_row(model, source_id: str, **values) -> dict:
    """A row as the loop hands it to the page writer, with values set past the row model (as a column
    narrowed after the model was written would see them)."""
    row = model(source_id=source_id, source_updated_at=datetime(2025, 1, 1, tzinfo=UTC)).as_row()
    properties = values.pop("properties", {"id": source_id})
    return {**row, **values, "workspace_id": WS, "source": "hubspot", "properties": properties}


def letter(entity: str, label: str):
    def make(row: dict, reason: str) -> dict:
        message = f"{label}: {reason} ({row['source_id']})"
        return dead_letter_row(WS, "hubspot", entity, "run-1", row["source_id"], message, row["properties"])

    return make


def test_a_page_the_database_refuses_is_bisected_to_its_refused_rows(warehouse, pg_url):
    contacts = [entity_row(ContactRow, str(i)) for i in range(8)]
    contacts[1]["phone"] = LONG_PHONE
    contacts[5]["email"] = "a\x00b@example.com"
    contacts[6]["properties"] = {"id": "6", "note": "x\x00y"}
    deals = [entity_row(DealRow, "d1", amount=5), entity_row(DealRow, "d2", amount=10**19)]
    warehouse_resource = WarehouseResource(url=pg_url)
    with warehouse_resource.page_writer("contacts", WS, "hubspot") as writer:
        counts = writer.commit_page(contacts, refused_letter=letter("contacts", "Contact"))
    with warehouse_resource.page_writer("deals", WS, "hubspot") as writer:
        deal_counts = writer.commit_page(deals, refused_letter=letter("deals", "Deal"))

    assert (counts.written, counts.unchanged, len(counts.refused)) == (5, 0, 3)
    assert (deal_counts.written, len(deal_counts.refused)) == (1, 1)
    assert rows("SELECT source_id FROM contacts ORDER BY source_id") == [("0",), ("2",), ("3",), ("4",), ("7",)]
    assert rows("SELECT source_id, amount FROM deals") == [("d1", 5)]
    assert rows("SELECT entity, source_id, error, payload FROM sync_errors ORDER BY id") == [
        (
            "contacts",
            "1",
            "Contact: phone: refused by the warehouse: longer than the column allows (SQLSTATE 22001) (1)",
            {"id": "1"},
        ),
        (
            "contacts",
            "5",
            "Contact: email: refused by the warehouse: a character the warehouse cannot store (SQLSTATE 22021) (5)",
            {"id": "5"},
        ),
        (
            "contacts",
            "6",
            "Contact: properties: refused by the warehouse: a character the warehouse cannot store"
            " (SQLSTATE 22P05) (6)",
            {"id": "6", "note": "xy"},
        ),
        (
            "deals",
            "d2",
            "Deal: amount: refused by the warehouse: outside the column's numeric range (SQLSTATE 22003) (d2)",
            {"id": "d2"},
        ),
    ]


def test_without_a_dead_letter_maker_a_refused_page_fails_whole(warehouse, pg_url):

    contacts = [entity_row(ContactRow, "1"), entity_row(ContactRow, "2", phone=LONG_PHONE)]
    with WarehouseResource(url=pg_url).page_writer("contacts", WS, "hubspot") as writer, pytest.raises(DataError):
        writer.commit_page(contacts)
    assert rows("SELECT count(*) FROM contacts") == [(0,)]
