"""resources.loader.upsert_rows against a real PostgreSQL and a SQLite file.

PostgreSQL: a throwaway database ``loader_test_<random>`` on $LOADER_TEST_PG_ADMIN_URL (default: trust
auth on 127.0.0.1), dropped afterwards. The tests fail if that server cannot be reached.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from resources import loader, schema
from resources.loader import dedupe_rows, upsert_rows

PG_ADMIN_URL = os.environ.get("LOADER_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

deals = schema.deals
WS = "ws_loader"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.orig}")
    name = f"loader_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["postgresql", "postgresql-text-copy", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """Each test runs on Postgres (binary COPY where the batch allows it), on Postgres with text COPY
    forced, and on SQLite."""
    if request.param.startswith("postgresql"):
        eng = sa.create_engine(request.getfixturevalue("pg_url"))
        if request.param == "postgresql-text-copy":
            monkeypatch.setattr(loader, "_binary_copy_types", lambda *args: None)
    else:
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    schema.metadata.drop_all(eng)
    schema.metadata.create_all(eng)
    yield eng
    schema.metadata.drop_all(eng)
    eng.dispose()


# --- helpers --------------------------------------------------------------------------------------


def deal(source_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "workspace_id": WS,
        "source": "hubspot",
        "source_id": source_id,
        "name": f"Deal {source_id}",
        "amount": Decimal("100.00"),
        "stage": "qualified",
        "close_date": T0 + timedelta(days=30),
        "properties": {"id": source_id},
        "source_updated_at": T0,
    }
    row.update(values)
    return row


def upsert(engine: sa.Engine, rows: list[dict[str, Any]], table: sa.Table = deals) -> int:
    with engine.begin() as conn:
        return upsert_rows(conn, table, rows)


def fetch(engine: sa.Engine, table: sa.Table = deals) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        return {r.source_id: r for r in conn.execute(sa.select(table).order_by(table.c.id))}


def count(engine: sa.Engine, table: sa.Table = deals) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive UTC (the loader normalises to UTC on the way in); Postgres aware.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def tick(engine: sa.Engine) -> None:
    # SQLite's now() has millisecond resolution; Postgres' is per transaction, and tests use new ones.
    if engine.dialect.name == "sqlite":
        time.sleep(0.01)


# --- upsert semantics ----------------------------------------------------------------------------


def test_insert_then_reupsert_updates_in_place(engine: sa.Engine) -> None:
    assert upsert(engine, [deal("D1"), deal("D2")]) == 2
    before = fetch(engine)
    tick(engine)

    changed = deal(
        "D1",
        name="Renamed",
        amount=Decimal("250.50"),
        stage="won",
        properties={"id": "D1", "v": 2},
        source_updated_at=T0 + timedelta(hours=1),
    )
    assert upsert(engine, [changed]) == 1

    after = fetch(engine)
    assert count(engine) == 2
    d1 = after["D1"]
    assert (d1.name, d1.amount, d1.stage) == ("Renamed", Decimal("250.50"), "won")
    assert d1.properties == {"id": "D1", "v": 2}
    assert as_utc(d1.source_updated_at) == T0 + timedelta(hours=1)
    assert d1.id == before["D1"].id
    assert d1.created_at == before["D1"].created_at
    assert d1.updated_at > before["D1"].updated_at
    # The row that was not in the second batch is untouched.
    assert after["D2"] == before["D2"]


def test_resync_of_identical_rows_writes_nothing_and_counts_nothing(engine: sa.Engine) -> None:
    upsert(engine, [deal("D1"), deal("D2")])
    first = fetch(engine)
    tick(engine)
    assert upsert(engine, [deal("D1"), deal("D2", name="Renamed")]) == 1
    second = fetch(engine)
    assert second["D1"] == first["D1"]  # updated_at too: the row was not rewritten
    assert second["D2"].name == "Renamed" and second["D2"].updated_at > first["D2"].updated_at


def test_an_older_version_never_replaces_a_newer_row(engine: sa.Engine) -> None:
    newer = deal("D1", name="v2", source_updated_at=T0 + timedelta(hours=1), source_version=2)
    assert upsert(engine, [newer]) == 1
    stale = deal("D1", name="v1", source_updated_at=T0, source_version=1)
    assert upsert(engine, [stale]) == 0
    assert fetch(engine)["D1"].name == "v2"


def test_a_second_edit_with_the_same_version_is_still_written(engine: sa.Engine) -> None:
    """Salesforce's SystemModstamp has whole seconds: two edits in one second carry one version."""
    assert upsert(engine, [deal("D1", name="first edit", source_version=5)]) == 1
    assert upsert(engine, [deal("D1", name="second edit", source_version=5)]) == 1
    assert upsert(engine, [deal("D1", name="second edit", source_version=5)]) == 0
    assert fetch(engine)["D1"].name == "second edit"


def test_rows_without_a_version_are_compared_by_content_alone(engine: sa.Engine) -> None:
    assert upsert(engine, [deal("D1", source_version=9)]) == 1
    assert upsert(engine, [deal("D1", name="unversioned write", source_version=None)]) == 1
    assert upsert(engine, [deal("D1", name="versioned again", source_version=1)]) == 1
    assert fetch(engine)["D1"].name == "versioned again"


def test_seeded_row_is_updated_not_duplicated(engine: sa.Engine) -> None:
    """A row inserted by plain SQL is updated in place by the next sync."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO deals (workspace_id, source, source_id, name) "
                "VALUES (:ws, 'test', 'DEAL_001', 'Test Deal')"
            ),
            {"ws": WS},
        )
    seeded = fetch(engine)["DEAL_001"]
    tick(engine)

    row = deal("DEAL_001", source="test", name="Test Deal (synced)", amount=Decimal("42.00"))
    assert upsert(engine, [row]) == 1

    rows = fetch(engine)
    assert list(rows) == ["DEAL_001"]
    synced = rows["DEAL_001"]
    assert (synced.name, synced.amount) == ("Test Deal (synced)", Decimal("42.00"))
    assert synced.properties == {"id": "DEAL_001"}
    assert (synced.id, synced.created_at) == (seeded.id, seeded.created_at)
    assert synced.updated_at > seeded.updated_at


def test_only_provided_columns_are_overwritten(engine: sa.Engine) -> None:
    upsert(engine, [deal("D1", pipeline="enterprise", owner_id="u1")])
    partial = {"workspace_id": WS, "source": "hubspot", "source_id": "D1", "amount": 7}
    partial["source_updated_at"] = None
    assert upsert(engine, [partial]) == 1
    d1 = fetch(engine)["D1"]
    assert d1.amount == Decimal("7.00")
    assert d1.source_updated_at is None
    assert (d1.name, d1.pipeline, d1.owner_id, d1.properties) == ("Deal D1", "enterprise", "u1", {"id": "D1"})


def test_key_columns_only(engine: sa.Engine) -> None:
    keys = {"workspace_id": WS, "source": "hubspot", "source_id": "K1"}
    assert upsert(engine, [keys]) == 1
    assert upsert(engine, [keys]) == 1  # nothing to compare: the row is touched (updated_at)
    assert count(engine) == 1


def test_same_source_id_in_other_workspace_or_source_is_a_different_row(engine: sa.Engine) -> None:
    rows = [deal("X"), deal("X", workspace_id="ws_other"), deal("X", source="salesforce")]
    assert upsert(engine, rows) == 3
    assert count(engine) == 3


# --- de-duplication ------------------------------------------------------------------------------


def test_in_batch_duplicates_keep_newest_then_latest(engine: sa.Engine) -> None:
    t1, t2 = T0, T0 + timedelta(minutes=5)
    batch = [
        deal("NEWER_FIRST", name="newest", source_updated_at=t2),
        deal("NEWER_FIRST", name="older", source_updated_at=t1),
        deal("NEWER_LAST", name="older", source_updated_at=t1),
        deal("NEWER_LAST", name="newest", source_updated_at=t2),
        deal("TIE", name="first", source_updated_at=t1),
        deal("TIE", name="second", source_updated_at=t1),
        deal("TIE", name="third", source_updated_at=t1),
        deal("NONE", name="first", source_updated_at=None),
        deal("NONE", name="second", source_updated_at=None),
        deal("UNIQUE", name="only"),
    ]
    assert upsert(engine, batch) == 5
    names = {sid: r.name for sid, r in fetch(engine).items()}
    assert names == {
        "NEWER_FIRST": "newest",
        "NEWER_LAST": "newest",
        "TIE": "third",
        "NONE": "second",
        "UNIQUE": "only",
    }
    assert as_utc(fetch(engine)["NEWER_FIRST"].source_updated_at) == t2


def test_dedupe_rows_rules() -> None:
    t1, t2 = T0, T0 + timedelta(seconds=1)
    rows = [
        deal("A", name="a-new", source_updated_at=t2),
        deal("B", name="b1"),
        deal("A", name="a-old", source_updated_at=t1),
        deal("C", name="c-dated", source_updated_at=t2),
        deal("C", name="c-undated", source_updated_at=None),  # no timestamp to compare: later wins
        deal("B", name="b2"),
        deal("A", name="a-new-tie", source_updated_at=t2),
    ]
    kept = dedupe_rows(rows)
    kept_names = [(r["source_id"], r["name"]) for r in kept]
    assert kept_names == [("A", "a-new-tie"), ("B", "b2"), ("C", "c-undated")]


# --- values ---------------------------------------------------------------------------------------

AWKWARD_PROPERTIES: dict[str, Any] = {
    "quotes": "She said \"hi\" and 'bye'",
    "backslashes": "C:\\path\\to\\file \\N \\\\N \\t \\x00",
    "copy_null_marker": "\\N",
    "whitespace": "tab\there\nnewline\r\ncrlf\vvt\ffeed",
    "control": "bell\x07 esc\x1b us\x1f del\x7f",
    "unicode": "Zoë – 日本語 – עברית – 🚀👩‍💻 – e\u0301",
    "empty": "",
    "nested": {
        "list": [1, "two", None, True, False, {"deep": ["x", {"y": "z\t"}]}],
        "empty": {},
        "none": None,
    },
    "numbers": {"int": 42, "neg": -7, "big": 12345678901234567890, "float": 0.1, "exp": 1.5e-10, "zero": 0},
    "bools": [True, False],
    'key with "quote" and \\ backslash\t': "k",
    "ünïcödé-kéy": "v",
    "null": None,
}


def test_json_and_text_with_awkward_characters_round_trip(engine: sa.Engine) -> None:
    awkward_text = "Tab\there, newline\nthere, CR\r, backslash \\ and \\N, quote ' \" 🚀"
    rows = [
        deal("J1", name=awkward_text, stage="\\N", properties=AWKWARD_PROPERTIES),
        deal("J2", name="", properties={}),
        deal("J3", properties=[1, {"a": "b"}]),  # JSON column values need not be objects
        deal("J4", properties="a plain JSON string \\ \t"),
    ]
    assert upsert(engine, rows) == 4
    got = fetch(engine)
    assert got["J1"].properties == AWKWARD_PROPERTIES
    assert (got["J1"].name, got["J1"].stage) == (awkward_text, "\\N")
    assert (got["J2"].name, got["J2"].properties) == ("", {})
    assert got["J3"].properties == [1, {"a": "b"}]
    assert got["J4"].properties == "a plain JSON string \\ \t"

    # And again through the update path.
    assert upsert(engine, [deal("J2", name=awkward_text, properties=AWKWARD_PROPERTIES)]) == 1
    got = fetch(engine)["J2"]
    assert (got.name, got.properties) == (awkward_text, AWKWARD_PROPERTIES)


def test_json_the_fast_encoder_refuses_goes_through_the_standard_one(engine: sa.Engine) -> None:
    # orjson stops at 64-bit integers; a vendor may send bigger ones (ids, counters).
    properties = {"huge": 2**70, "negative": -(2**65), "nested": [{"n": 2**64}], "text": "é 🚀"}
    rows = [deal("B1", properties=properties), deal("B2", properties={"small": 1})]
    assert upsert(engine, rows) == 2
    got = fetch(engine)
    assert got["B1"].properties == properties
    assert got["B2"].properties == {"small": 1}


def test_none_values_are_sql_null(engine: sa.Engine) -> None:
    nulls = dict.fromkeys(["name", "amount", "stage", "close_date", "properties", "source_updated_at"])
    row = deal("N1", **nulls)
    assert upsert(engine, [row]) == 1
    got = fetch(engine)["N1"]
    assert (got.name, got.amount, got.stage, got.close_date, got.properties, got.source_updated_at) == (
        None,
        None,
        None,
        None,
        None,
        None,
    )
    with engine.connect() as conn:
        # SQL NULL, not the JSON literal null.
        assert conn.execute(sa.text("SELECT count(*) FROM deals WHERE properties IS NULL")).scalar_one() == 1

    # None also overwrites a value on update.
    upsert(engine, [deal("N2")])
    upsert(engine, [deal("N2", name=None, properties=None)])
    got = fetch(engine)["N2"]
    assert (got.name, got.properties) == (None, None)


def test_numeric_and_datetime_inputs(engine: sa.Engine) -> None:
    plus2 = timezone(timedelta(hours=2))
    minus5 = timezone(timedelta(hours=-5))
    rows = [
        deal("DEC", amount=Decimal("1234567.89")),
        deal("FLT", amount=99.5),
        deal("INT", amount=3),
        deal(
            "TZ",
            close_date=datetime(2024, 6, 30, 23, 30, tzinfo=minus5),
            source_updated_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=plus2),
        ),
    ]
    upsert(engine, rows)
    got = fetch(engine)
    amounts = [got[k].amount for k in ("DEC", "FLT", "INT")]
    assert amounts == [Decimal("1234567.89"), Decimal("99.50"), Decimal("3.00")]
    assert as_utc(got["TZ"].close_date) == datetime(2024, 7, 1, 4, 30, tzinfo=UTC)
    assert as_utc(got["TZ"].source_updated_at) == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_other_entity_table_with_two_json_columns(engine: sa.Engine) -> None:
    calls = schema.calls
    row = {
        "workspace_id": WS,
        "source": "gong",
        "source_id": "C1",
        "title": "Discovery",
        "started_at": T0,
        "duration_seconds": 1800,
        "direction": "outbound",
        "url": None,
        "participants": [{"email": "a@example.com", "name": "Å\tB"}],
        "properties": {"raw": True},
        "source_updated_at": T0,
    }
    assert upsert(engine, [row], calls) == 1
    got = fetch(engine, calls)["C1"]
    assert got.participants == row["participants"]
    assert (got.properties, got.duration_seconds) == ({"raw": True}, 1800)


def test_large_batch_and_sqlite_chunking(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Force many small SQLite chunks (9 columns per row -> 2 rows per statement).
    monkeypatch.setattr("resources.loader._sqlite_max_variables", lambda conn: 20)
    rows = [deal(f"L{i:05d}", amount=Decimal(i)) for i in range(3001)]
    assert upsert(engine, rows) == 3001
    assert count(engine) == 3001
    rows[1234]["name"] = "changed"
    assert upsert(engine, rows) == 1  # the one row that changed, found across chunks
    got = fetch(engine)
    assert count(engine) == 3001
    assert got["L01234"].name == "changed"
    assert got["L03000"].amount == Decimal("3000.00")


# --- transactions ---------------------------------------------------------------------------------


def test_transaction_stays_open_and_usable_then_rollback_leaves_nothing(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        trans = conn.begin()
        assert upsert_rows(conn, deals, [deal("T1"), deal("T2")]) == 2
        # The caller goes on in the same transaction: dead letters, sync_log, another page.
        conn.execute(
            sa.insert(schema.sync_errors).values(
                workspace_id=WS,
                connector="hubspot",
                entity="deals",
                error="Deal: bad (T9)",
                payload={"id": "T9"},
            )
        )
        conn.execute(sa.insert(schema.sync_log).values(workspace_id=WS, connector_type="hubspot"))
        assert upsert_rows(conn, deals, [deal("T2", name="second page"), deal("T3")]) == 2
        assert conn.execute(sa.select(sa.func.count()).select_from(deals)).scalar_one() == 3
        t2_name = sa.select(deals.c.name).where(deals.c.source_id == "T2")
        assert conn.execute(t2_name).scalar_one() == "second page"
        assert trans.is_active
        trans.rollback()
    for table in (deals, schema.sync_errors, schema.sync_log):
        assert count(engine, table) == 0


def test_commit_is_the_callers(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        upsert_rows(conn, deals, [deal("C1")])  # autobegins; nothing commits it
        assert conn.in_transaction()
    assert count(engine) == 0
    with engine.connect() as conn:
        upsert_rows(conn, deals, [deal("C1")])
        conn.commit()
        # Next transaction on the same connection: staging was emptied by the commit.
        upsert_rows(conn, deals, [deal("C2")])
        conn.commit()
    assert sorted(fetch(engine)) == ["C1", "C2"]


@pytest.mark.parametrize(
    ("bad", "dialects"),
    [
        ({"workspace_id": None}, {"postgresql", "sqlite"}),  # NOT NULL, raised by the INSERT
        # Fails inside COPY itself (stage is VARCHAR(255); SQLite does not enforce lengths).
        ({"stage": "x" * 300}, {"postgresql"}),
    ],
)
def test_failed_batch_raises_sqlalchemy_error_and_connection_recovers(
    engine: sa.Engine, bad: dict[str, Any], dialects: set[str]
) -> None:
    if engine.dialect.name not in dialects:
        # SQLite does not enforce VARCHAR lengths: the same batch is simply stored.
        with engine.begin() as conn:
            assert upsert_rows(conn, deals, [deal("OK"), deal("BAD", **bad)]) == 2
        assert sorted(fetch(engine)) == ["BAD", "OK"]
        return
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError), conn.begin():
            upsert_rows(conn, deals, [deal("OK"), deal("BAD", **bad)])
        with conn.begin():
            assert upsert_rows(conn, deals, [deal("GOOD")]) == 1
    assert sorted(fetch(engine)) == ["GOOD"]


def test_failed_batch_in_a_savepoint_keeps_the_transaction(engine: sa.Engine) -> None:
    """The sync loop may isolate a failing page in a savepoint, then retry it without the bad record."""
    good, bad = deal("SP1"), deal("SP2", workspace_id=None)
    with engine.connect() as conn, conn.begin():
        upsert_rows(conn, deals, [deal("SP0")])
        with pytest.raises(sa.exc.DBAPIError), conn.begin_nested():
            upsert_rows(conn, deals, [good, bad])
        assert upsert_rows(conn, deals, [good]) == 1
    assert sorted(fetch(engine)) == ["SP0", "SP1"]


# --- input validation and dispatch ---------------------------------------------------------------


def test_empty_batch_touches_nothing() -> None:
    assert upsert_rows(SimpleNamespace(), deals, []) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"workspace_id": WS, "source": "hubspot"}, "lack key column"),
        ({**deal("V"), "nope": 1}, "unknown column"),
        ({**deal("V"), "updated_at": T0}, "set by the database"),
        ({**deal("V"), "id": 5}, "set by the database"),
    ],
)
def test_invalid_rows_are_rejected(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        upsert_rows(SimpleNamespace(dialect=SimpleNamespace(name="postgresql")), deals, [row])  # type: ignore[arg-type]


def test_unsupported_dialect_is_named() -> None:
    conn = SimpleNamespace(dialect=SimpleNamespace(name="mssql"))
    with pytest.raises(NotImplementedError, match="'mssql'"):
        upsert_rows(conn, deals, [deal("X")])  # type: ignore[arg-type]


def test_postgres_needs_psycopg3(pg_url: str) -> None:
    eng = sa.create_engine(sa.make_url(pg_url).set(drivername="postgresql+psycopg2"))
    try:
        with eng.connect() as conn, pytest.raises(NotImplementedError, match="psycopg2"):
            upsert_rows(conn, deals, [deal("X")])
    finally:
        eng.dispose()


def test_autocommit_connection_is_refused_on_postgres(pg_url: str) -> None:
    # In autocommit, ON COMMIT DELETE ROWS would empty staging before the INSERT: refuse, loudly.
    eng = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        schema.metadata.create_all(eng, tables=[deals])
        with eng.connect() as conn, pytest.raises(ValueError, match="autocommit"):
            upsert_rows(conn, deals, [deal("X")])
    finally:
        schema.metadata.drop_all(eng, tables=[deals])
        eng.dispose()


# --- binary vs text COPY --------------------------------------------------------------------------


def _copy_types(rows: list[dict[str, Any]], table: sa.Table = deals) -> list[str] | None:
    from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

    columns = list(rows[0])
    tuples = [tuple(r[c] for c in columns) for r in rows]
    return loader._binary_copy_types(table, columns, tuples, psycopg_dialect())


def test_binary_copy_only_when_every_value_has_a_safe_type() -> None:
    assert _copy_types([deal("A"), deal("B", amount=5, name=None, properties="s")]) == [
        "text",
        "text",
        "text",
        "text",
        "numeric",
        "text",
        "timestamptz",
        "jsonb",
        "timestamptz",
    ]
    naive = datetime(2024, 1, 1)
    for unsafe in (
        {"amount": 1.5},  # psycopg's binary numeric dumper refuses floats
        {"amount": True},
        {"name": 42},  # text COPY lets the server turn it into '42'
        {"close_date": naive},  # binary timestamptz cannot take naive datetimes
        {"close_date": naive.date()},
    ):
        assert _copy_types([deal("A"), deal("B", **unsafe)]) is None, unsafe

    def call(duration: Any, size: Any) -> dict[str, Any]:
        return {
            "workspace_id": WS,
            "source": "gong",
            "source_id": "C",
            "duration_seconds": duration,
            "size_bytes": size,
        }

    calls_like = sa.Table(
        "calls_like",
        sa.MetaData(),
        *(sa.Column(c, sa.String) for c in loader.KEY_COLUMNS),
        sa.Column("duration_seconds", sa.Integer),
        sa.Column("size_bytes", sa.BigInteger),
    )
    assert _copy_types([call(10, 2**40), call(None, None)], calls_like) == ["text"] * 3 + ["int4", "int8"]
    # Out of range for int4: binary would silently truncate, so text COPY (and a server error) instead.
    assert _copy_types([call(2**31, 1)], calls_like) is None
    assert _copy_types([call(10, 2**63)], calls_like) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Text COPY: the server parses '99.5' and '123'.
        ({"amount": 99.5, "name": 123}, {"amount": Decimal("99.50"), "name": "123"}),
        # Naive: read in the session time zone (UTC here).
        (
            {"close_date": datetime(2024, 6, 1, 12, 0)},
            {"close_date": datetime(2024, 6, 1, 12, 0, tzinfo=UTC)},
        ),
    ],
)
def test_values_outside_the_binary_types_load_through_text_copy(
    pg_url: str, values: dict[str, Any], expected: dict[str, Any]
) -> None:
    eng = sa.create_engine(pg_url, connect_args={"options": "-c timezone=UTC"})
    try:
        schema.metadata.create_all(eng, tables=[deals])
        upsert(eng, [deal("A"), deal("B", **values)])
        got = fetch(eng)["B"]
        assert {column: getattr(got, column) for column in expected} == expected
    finally:
        schema.metadata.drop_all(eng, tables=[deals])
        eng.dispose()


def test_a_resync_rewrites_rows_on_their_own_pages_without_growing_table_or_indexes(pg_url: str) -> None:
    """Entity tables keep half of each page free (fill factor 50): a re-sync that changes every row
    updates each one on its own page (HOT), so neither the table nor its indexes grow."""
    eng = sa.create_engine(pg_url)
    schema.metadata.drop_all(eng)
    schema.metadata.create_all(eng)
    sizes = sa.text(
        "SELECT pg_relation_size('deals'), pg_relation_size('pk_deals'), "
        "pg_relation_size('uq_deals_workspace_id_source_source_id')"
    )
    try:
        ids = [f"d{i:05d}" for i in range(5000)]
        upsert(eng, [deal(i, properties={"id": i, "note": "n" * 200}) for i in ids])
        with eng.connect() as conn:
            before = conn.execute(sizes).one()
        # Same widths, new values: stage, amount, properties and source_updated_at all change.
        upsert(
            eng,
            [
                deal(
                    i,
                    stage="proposal!",
                    amount=Decimal("200.00"),
                    properties={"id": i, "note": "m" * 200},
                    source_updated_at=T0 + timedelta(hours=1),
                )
                for i in ids
            ],
        )
        with eng.connect() as conn:
            after = conn.execute(sizes).one()
            changed = conn.execute(sa.select(sa.func.count()).where(deals.c.stage == "proposal!")).scalar_one()
    finally:
        schema.metadata.drop_all(eng)
        eng.dispose()
    assert changed == 5000
    assert after == before


def test_keep_stored_columns_keep_a_value_already_there(engine: sa.Engine) -> None:
    first, later = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    row = deal("D1", is_deleted=True, deleted_at=first)
    assert upsert_rows_kept(engine, [row]) == 1
    assert upsert_rows_kept(engine, [{**row, "deleted_at": later}]) == 0  # nothing else changed: not rewritten
    assert upsert_rows_kept(engine, [{**row, "deleted_at": later, "name": "renamed"}]) == 1
    stored = fetch(engine)["D1"]
    assert (as_utc(stored.deleted_at), stored.name) == (first, "renamed")


def upsert_rows_kept(engine: sa.Engine, rows: list[dict[str, Any]]) -> int:
    with engine.begin() as conn:
        return upsert_rows(conn, deals, rows, keep_stored={"deleted_at"})
