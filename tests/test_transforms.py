"""Each connector's transform on records recorded from its vendor's wire format (tests/fixtures/<connector>/
<entity>.json, as the sandbox serves them), against the rows they must become (<entity>.rows.json). Nothing
runs but the transforms: no database, no sandbox. A golden file changes only with a transform, on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from resources.fireflies import FirefliesTranscript
from resources.gong import GongCall
from resources.google_drive import DriveFile
from resources.hubspot import HubSpotObject
from resources.monday import MondayItem
from resources.salesforce import SalesforceRecord
from sync_assets import CONNECTORS

FIXTURES = Path(__file__).parent / "fixtures"
# How each vendor's client turns a record on the wire into what the transform takes.
RECORD: dict[str, Callable[[dict[str, Any]], Any]] = {
    "hubspot": HubSpotObject.model_validate,
    "salesforce": lambda fields: SalesforceRecord("", fields),
    "gong": GongCall.model_validate,
    "monday": MondayItem.model_validate,
    "fireflies": FirefliesTranscript.model_validate,
    "google_drive": DriveFile.model_validate,
}
CASES = [(c, e) for c in CONNECTORS for e in c.entities]


def as_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def rows_of(connector: Any, entity: Any) -> list[dict[str, Any]]:
    recorded = json.loads((FIXTURES / connector.name / f"{entity.name}.json").read_text())
    return [{k: as_json(v) for k, v in entity.transform(RECORD[connector.name](r)).as_row().items()} for r in recorded]


@pytest.mark.parametrize(("connector", "entity"), CASES, ids=[f"{c.name}/{e.name}" for c, e in CASES])
def test_recorded_vendor_records_become_the_expected_rows(connector, entity):
    expected = json.loads((FIXTURES / connector.name / f"{entity.name}.rows.json").read_text())
    assert rows_of(connector, entity) == expected


def test_every_connector_entity_has_recorded_records():
    recorded = {(p.parent.name, p.stem) for p in FIXTURES.glob("*/*.json") if not p.name.endswith(".rows.json")}
    assert {(c.name, e.name) for c, e in CASES} == recorded
