"""The SOQL parser against a brute-force evaluation of the same conditions (in-process, no HTTP)."""

from __future__ import annotations

import random

import pytest

from sandbox import gen
from sandbox.salesforce import SOBJECTS, Salesforce, parse_soql
from sandbox.soql import SoqlError


def _iso(ms: int) -> str:
    return gen.iso_ms(ms)


def test_keyset_conditions_select_exactly_what_they_say() -> None:
    sf = Salesforce()
    sf.reset_state(5, {"Opportunity": 60}, True)
    spec, store = SOBJECTS["Opportunity"], sf.stores["Opportunity"]
    sf.mutate("Opportunity", 0, [spec.record_id(i) for i in (3, 9, 20)], 2)  # three rows tie on one time
    rng = random.Random(3)
    rows = [(store.modified_ms(i), spec.record_id(i), i) for i in range(store.n_total)]
    for _ in range(200):
        t_ms, rid, _ = rng.choice(rows)
        hi_ms = rng.choice(rows)[0]
        soql = (
            f"SELECT Id FROM Opportunity WHERE (SystemModstamp > {_iso(t_ms)} OR (SystemModstamp = {_iso(t_ms)} "
            f"AND Id > '{rid}')) AND SystemModstamp <= {_iso(hi_ms)} ORDER BY SystemModstamp ASC, Id ASC LIMIT 7"
        )
        parsed = parse_soql(soql)
        selection = store.select(parsed.groups)
        got = selection.page(parsed.order_by, parsed.descending, 0, parsed.limit or 100)
        expected = sorted((ms, r, i) for ms, r, i in rows if (ms > t_ms or (ms == t_ms and r > rid)) and ms <= hi_ms)[
            :7
        ]
        assert got == [i for _, _, i in expected], soql


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Opportunity WHERE Name = 'x'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE Id > 006RO0000000001AAA", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE (SystemModstamp > 2025-01-01T00:00:00Z", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity LIMIT x", "MALFORMED_QUERY"),
        ("SELECT COUNT() FROM Opportunity ORDER BY Id", "MALFORMED_QUERY"),
        ("SELECT Id, IsArchived FROM Opportunity", "INVALID_FIELD"),
        ("DELETE FROM Opportunity", "MALFORMED_QUERY"),
    ],
)
def test_unsupported_soql_is_rejected(soql: str, code: str) -> None:
    with pytest.raises(SoqlError) as caught:
        parse_soql(soql)
    assert caught.value.code == code


def test_fields_per_object() -> None:
    assert "MasterRecordId" in SOBJECTS["Account"].field_names
    assert "MasterRecordId" in SOBJECTS["Contact"].field_names
    assert "MasterRecordId" not in SOBJECTS["Opportunity"].field_names
    assert "IsArchived" in SOBJECTS["Task"].field_names and "IsDeleted" in SOBJECTS["Task"].field_names
    assert parse_soql("select id from Task where lastmodifieddate >= 2025-01-01T00:00:00.5Z") is not None


def test_id_in_selects_the_listed_records_and_ignores_unknown_ids() -> None:
    account = SOBJECTS["Account"]
    soql = parse_soql(f"SELECT Id FROM Account WHERE Id IN ('{account.record_id(7)}', '{account.record_id(3)}', 'x')")
    assert [g.idx for g in soql.groups] == [[(3, 4), (7, 8)]]
    with pytest.raises(SoqlError, match="missing"):
        parse_soql(f"SELECT Id FROM Account WHERE Id IN ('{account.record_id(3)}'")
