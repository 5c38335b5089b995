"""Bulk, idempotent upserts of entity rows into the warehouse.

One public entry point, :func:`upsert_rows`, with a bulk path per dialect:

* PostgreSQL (psycopg 3): COPY the page into a per-connection temporary staging table, then a single
  ``INSERT … SELECT … ON CONFLICT (workspace_id, source, source_id) DO UPDATE``.
* SQLite: ``INSERT … ON CONFLICT DO UPDATE`` through SQLAlchemy Core, executemany in chunks.

The caller owns the transaction: nothing here commits, and the connection stays usable afterwards.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from operator import attrgetter, is_not, itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from psycopg.types.json import set_json_dumps
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

__all__ = ["KEY_COLUMNS", "dedupe_rows", "upsert_rows"]

KEY_COLUMNS: tuple[str, ...] = ("workspace_id", "source", "source_id")
# Key of the per-DBAPI-connection record of the transaction that last filled each staging table.
_STAGING_STATE = "upsert_rows.staging"
# Columns the database owns: a caller may never set them.
_RESERVED_COLUMNS = frozenset({"id", "created_at", "updated_at"})
_key_of = itemgetter(*KEY_COLUMNS)


def upsert_rows(
    conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], keep_stored: Collection[str] = ()
) -> int:
    """Upsert ``rows`` into ``table`` on ``(workspace_id, source, source_id)``; return the rows written
    (inserted, or updated because they changed).

    Every row must carry the same keys: the three key columns plus any of the table's other columns
    except ``id``/``created_at``/``updated_at``. New keys are inserted. An existing row is rewritten
    only when a provided column differs from what is stored, and never by an older version: when both
    sides carry a ``source_version``, the incoming one must be at least the stored one. A rewrite
    overwrites every provided non-key column and sets ``updated_at`` to the database's ``now()``
    (``id`` and ``created_at`` are kept). An unchanged or older row is left alone and not counted, so
    re-reading a window costs no writes. The batch is de-duplicated first (see :func:`dedupe_rows`).
    Columns in ``keep_stored`` keep a stored value that is not NULL (the first known value stays: a
    deletion time the platform stamped when the vendor gave none).

    Runs inside the caller's transaction and never commits.
    """
    if not rows:
        return 0
    columns = _validate_columns(table, rows[0])
    unique = dedupe_rows(rows)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _upsert_postgres(conn, table, columns, unique, frozenset(keep_stored))
    if dialect == "sqlite":
        return _upsert_sqlite(conn, table, columns, unique, frozenset(keep_stored))
    raise NotImplementedError(
        f"upsert_rows has no bulk path for the {dialect!r} dialect (supported: postgresql, sqlite)"
    )


def dedupe_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Keep one row per key: the greatest ``source_version`` (else ``source_updated_at``), else the later
    one in the list.

    "Else" covers ties and any comparison involving ``None``: without two versions to compare,
    arrival order is the best evidence of recency. First-seen key order is preserved.
    """
    keys = list(map(_key_of, rows))
    if len(set(keys)) == len(keys):  # the usual case, checked at C speed
        return list(rows)
    best: dict[tuple[Any, Any, Any], Mapping[str, Any]] = {}
    for key, row in zip(keys, rows, strict=True):
        kept = best.get(key)
        if kept is not None:
            new, old = _recency(row), _recency(kept)
            if new is not None and old is not None and new < old:
                continue
        best[key] = row
    return list(best.values())


def _recency(row: Mapping[str, Any]) -> Any:
    version = row.get("source_version")
    return version if version is not None else row.get("source_updated_at")


def _validate_columns(table: sa.Table, first_row: Mapping[str, Any]) -> list[str]:
    columns = list(first_row.keys())
    missing = [k for k in KEY_COLUMNS if k not in first_row]
    if missing:
        raise ValueError(f"{table.name}: rows lack key column(s) {missing}")
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name}: unknown column(s) {unknown}")
    reserved = sorted(_RESERVED_COLUMNS.intersection(columns))
    if reserved:
        raise ValueError(f"{table.name}: column(s) {reserved} are set by the database, not the caller")
    return columns


# --- PostgreSQL -----------------------------------------------------------------------------------


def _upsert_postgres(
    conn: sa.Connection,
    table: sa.Table,
    columns: list[str],
    rows: Sequence[Mapping[str, Any]],
    keep_stored: frozenset[str],
) -> int:
    if conn.dialect.driver != "psycopg":
        raise NotImplementedError(
            "upsert_rows streams COPY through psycopg 3 on PostgreSQL (a postgresql+psycopg:// URL), "
            f"not the {conn.dialect.driver!r} driver"
        )
    driver = conn.connection.driver_connection
    if driver.autocommit:
        # Each statement would commit alone, and ON COMMIT DELETE ROWS would empty the staging table
        # between the COPY and the INSERT: the upsert would silently write nothing.
        raise ValueError("upsert_rows needs a transaction; the connection is in autocommit mode")
    quote = conn.dialect.identifier_preparer.quote
    target = conn.dialect.identifier_preparer.format_table(table)
    staging = quote(_staging_name(table, columns))
    col_list = ", ".join(quote(c) for c in columns)

    # Begin SQLAlchemy's transaction if the caller has not, so the raw statements below never run in a
    # transaction SQLAlchemy does not know about (it would never commit them).
    transaction = conn.get_transaction() or conn.begin()
    # The staging table lives as long as the DBAPI connection (with the target's column types and no
    # constraints or indexes; its creation is undone if the first transaction rolls back, hence IF NOT
    # EXISTS every time) and is emptied at every commit. TRUNCATE covers a second call in the same
    # transaction and, unlike DELETE, does not let the table grow call after call.
    last_used = conn.connection.info.setdefault(_STAGING_STATE, {})
    with driver.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
            f"SELECT {col_list} FROM {target} WITH NO DATA"
        )
        if last_used.get(staging) is transaction:
            cur.execute(f"TRUNCATE {staging}")
    last_used[staging] = transaction

    # One C-level pass turns the rows into tuples in column order; both COPY formats write those.
    tuples = list(map(itemgetter(*columns), rows))  # >= 3 columns, so always tuples
    binary_types = _binary_copy_types(table, columns, tuples, conn.dialect)
    copy_sql = f"COPY {staging} ({col_list}) FROM STDIN" + (" (FORMAT BINARY)" if binary_types else "")
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cur:
            if binary_types:
                _copy_binary(cur, copy_sql, binary_types, tuples)
            else:
                json_idx = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.JSON)]
                _copy_text(cur, copy_sql, json_idx, tuples)
    except dbapi_error as exc:
        # Raise what SQLAlchemy would have raised, so callers catch one family of database errors.
        raise sa.exc.DBAPIError.instance(copy_sql, None, exc, dbapi_error, dialect=conn.dialect) from exc

    values = [c for c in columns if c not in KEY_COLUMNS]

    def new_value(c: str) -> str:
        return f"COALESCE(t.{quote(c)}, EXCLUDED.{quote(c)})" if c in keep_stored else f"EXCLUDED.{quote(c)}"

    updates = [f"{quote(c)} = {new_value(c)}" for c in values]
    updates.append(f"{quote('updated_at')} = now()")
    key_list = ", ".join(quote(c) for c in KEY_COLUMNS)
    upsert_sql = (
        f"INSERT INTO {target} AS t ({col_list}) SELECT {col_list} FROM {staging} "
        f"ON CONFLICT ({key_list}) DO UPDATE SET {', '.join(updates)}"
    )
    if values:
        stored = ", ".join(f"t.{quote(c)}" for c in values)
        incoming = ", ".join(new_value(c) for c in values)
        # ROW() keeps a single column a row value too.
        upsert_sql += f" WHERE ROW({stored}) IS DISTINCT FROM ROW({incoming})"
        if "source_version" in values:
            upsert_sql += (
                " AND (EXCLUDED.source_version IS NULL OR t.source_version IS NULL"
                " OR EXCLUDED.source_version >= t.source_version)"
            )
    try:
        with driver.cursor() as cur:
            cur.execute(upsert_sql)
            return max(cur.rowcount, 0)
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(upsert_sql, None, exc, dbapi_error, dialect=conn.dialect) from exc


def _copy_binary(cur: Any, copy_sql: str, types: list[str], tuples: list[tuple[Any, ...]]) -> None:
    # Values go straight to psycopg's C dumpers, chosen by column type; JSON through our encoder.
    set_json_dumps(_encode_json, context=cur)
    with cur.copy(copy_sql) as copy:
        copy.set_types(types)
        write_row = copy.write_row
        for values in tuples:
            write_row(values)


def _copy_text(cur: Any, copy_sql: str, json_idx: list[int], tuples: list[tuple[Any, ...]]) -> None:
    # Values are dumped by their Python type and parsed by the server as the column's type, so any
    # value the column's input function accepts works (a float amount, an int in a text column).
    # JSON columns are encoded here, so any JSON value (object, array, scalar) goes in as its text.
    with cur.copy(copy_sql) as copy:
        write_row = copy.write_row
        if not json_idx:
            for values in tuples:
                write_row(values)
            return
        for values in tuples:
            row = list(values)
            for i in json_idx:
                if row[i] is not None:
                    row[i] = _encode_json(row[i]).decode()
            write_row(row)


_INT_LIMITS = {"int2": 2**15, "int4": 2**31, "int8": 2**63}


def _binary_copy_types(
    table: sa.Table, columns: Sequence[str], tuples: list[tuple[Any, ...]], dialect: sa.Dialect
) -> list[str] | None:
    """The psycopg type names for a binary COPY of ``tuples``, or None if text COPY must be used.

    Binary COPY is faster end to end (measured in bench/README.md), but psycopg dumps each value by the
    declared column type: a value of another Python type fails (a float amount, a naive datetime)
    or, for an int out of range, is silently truncated. So binary is only used when every value in
    the batch has an exact, safe type; checking is a few C-level passes over the batch.
    """
    not_none = partial(is_not, None)
    types: list[str] = []
    for column, values in zip(columns, zip(*tuples, strict=True), strict=True):
        col_type = table.c[column].type.dialect_impl(dialect)
        if isinstance(col_type, sa.JSON):  # JSONB or JSON: psycopg encodes any value
            types.append("jsonb" if isinstance(col_type, JSONB) else "json")
            continue
        if isinstance(col_type, sa.Boolean):
            name, allowed = "bool", {bool}
        elif isinstance(col_type, sa.Integer):
            name, allowed = _int_type_name(col_type), {int}
        elif isinstance(col_type, sa.Numeric) and not isinstance(col_type, sa.Float):
            name, allowed = "numeric", {Decimal, int}
        elif isinstance(col_type, sa.DateTime) and col_type.timezone:
            name, allowed = "timestamptz", {datetime}
        elif isinstance(col_type, sa.String) and not isinstance(col_type, sa.Enum):
            name, allowed = "text", {str}
        else:
            return None
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if not kinds <= allowed:
            return None
        if name in _INT_LIMITS and kinds:
            present = list(filter(not_none, values))
            if min(present) < -_INT_LIMITS[name] or max(present) >= _INT_LIMITS[name]:
                return None
        if name == "timestamptz" and None in set(map(attrgetter("tzinfo"), filter(not_none, values))):
            return None  # naive datetimes: text COPY lets the server apply the session time zone
        types.append(name)
    return types


def _int_type_name(col_type: sa.Integer) -> str:
    if isinstance(col_type, sa.BigInteger):
        return "int8"
    return "int2" if isinstance(col_type, sa.SmallInteger) else "int4"


def _staging_name(table: sa.Table, columns: Sequence[str]) -> str:
    # One staging table per (target, column set, column types): callers may send different subsets of
    # columns, and a pooled connection must not reuse a staging table from before a type migration.
    signature = ",".join(f"{c} {table.c[c].type}" for c in columns)
    digest = hashlib.blake2s(signature.encode(), digest_size=4).hexdigest()
    return f"_stage_{table.name[:40]}_{digest}"


# One encoder for every call: json.dumps builds a new JSONEncoder per call when given options.
_stdlib_encode_json = json.JSONEncoder(ensure_ascii=False, check_circular=False, allow_nan=False).encode


def _encode_json(value: Any) -> bytes:
    """orjson (about ten times the stdlib on vendor payloads); the stdlib for what orjson refuses, such as
    integers beyond 64 bits."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _stdlib_encode_json(value).encode()


# --- SQLite ---------------------------------------------------------------------------------------

# SQLite's compiled-in default before 3.32; newer builds allow 32766. Used only if the driver cannot say.
_SQLITE_DEFAULT_MAX_VARIABLES = 999


def _upsert_sqlite(
    conn: sa.Connection,
    table: sa.Table,
    columns: list[str],
    rows: Sequence[Mapping[str, Any]],
    keep_stored: frozenset[str],
) -> int:
    stmt = sqlite_insert(table)
    values = [c for c in columns if c not in KEY_COLUMNS]
    updates: dict[str, Any] = {
        c: sa.func.coalesce(table.c[c], stmt.excluded[c]) if c in keep_stored else stmt.excluded[c] for c in values
    }
    # Millisecond UTC text, the format SQLAlchemy's SQLite DateTime reads back; CURRENT_TIMESTAMP would
    # only have second resolution.
    updates["updated_at"] = sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")
    changed = None
    if values:
        changed = sa.or_(*(table.c[c].is_not(updates[c]) for c in values))
        if "source_version" in values:
            version, incoming = table.c.source_version, stmt.excluded.source_version
            changed = sa.and_(changed, sa.or_(incoming.is_(None), version.is_(None), incoming >= version))
    stmt = stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=updates, where=changed)

    convert = _sqlite_converters(table, columns)
    # executemany binds one row at a time, but SQLAlchemy may fold the rows of a chunk into one
    # multi-row VALUES statement: size chunks so even that stays under the variable limit.
    chunk = max(1, _sqlite_max_variables(conn) // len(columns))
    written = 0
    for start in range(0, len(rows), chunk):
        params = [{c: convert[c](row[c]) for c in columns} for row in rows[start : start + chunk]]
        written += conn.execute(stmt, params).rowcount
    return written


def _sqlite_converters(table: sa.Table, columns: Sequence[str]) -> dict[str, Callable[[Any], Any]]:
    converters: dict[str, Callable[[Any], Any]] = {}
    for c in columns:
        col_type = table.c[c].type
        if isinstance(col_type, sa.JSON):
            converters[c] = _sqlite_json
        elif isinstance(col_type, sa.DateTime):
            converters[c] = _sqlite_datetime
        else:
            converters[c] = _identity
    return converters


def _identity(value: Any) -> Any:
    return value


def _sqlite_json(value: Any) -> Any:
    # SQL NULL for None, as on Postgres; SQLAlchemy's JSON type would otherwise store JSON 'null'.
    return sa.null() if value is None else value


def _sqlite_datetime(value: Any) -> Any:
    # SQLite stores datetimes as text without an offset: normalise to UTC so values compare and sort.
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _sqlite_max_variables(conn: sa.Connection) -> int:
    driver = conn.connection.driver_connection
    getlimit = getattr(driver, "getlimit", None)
    if getlimit is None:
        return _SQLITE_DEFAULT_MAX_VARIABLES
    return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
