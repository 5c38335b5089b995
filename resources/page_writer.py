"""Writes one entity's pages into the warehouse: rows upserted, dead letters kept, deletions marked, and,
for a read that names every record, the rows it never named found for the sweep.

Each page commits in one transaction, so a crash leaves either the whole page or none of it. Deletions
are soft: a deleted row keeps its last known data, with ``is_deleted`` and ``deleted_at`` set.

A row the warehouse refuses (a value the row model let through but a column cannot hold) does not fail
its page: the page is written again with its rows upserted by halves under savepoints until each refused
row stands alone, and those rows are dead-lettered in the same transaction as the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, func, insert, literal_column, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from resources import schema
from resources.loader import upsert_rows
from resources.models import Deletion


@dataclass(frozen=True)
class PageCounts:
    written: int  # live rows inserted or changed
    deleted: int  # rows newly marked deleted (deleted records upserted, or deletions applied)
    unchanged: int  # rows read that matched what the warehouse held: not rewritten
    refused: list[dict[str, Any]] = field(default_factory=list)  # dead letters of rows the warehouse refused
    # Listed deletions dated before the version the warehouse holds, left live: restored since, or the
    # vendor's clocks disagree. Only the vendor can tell which (EntityRead asks it).
    doubted: list[str] = field(default_factory=list)


# Given a row the warehouse refused and why (``refusal_reason``), its dead-letter row.
RefusedLetter = Callable[[dict[str, Any], str], dict[str, Any]]
# What a row's own values can cause; a lost connection or a timeout is no reason to drop a row.
ROW_ERRORS = (DataError, IntegrityError)

# What each SQLSTATE a row's value can raise means, in words that quote no value.
_SQLSTATE_RULES = {
    "22001": "longer than the column allows",
    "22003": "outside the column's numeric range",
    "22007": "not a valid date or time",
    "22008": "a date or time out of range",
    "22021": "a character the warehouse cannot store",
    "22P02": "not valid for the column's type",
    "22P05": "a character the warehouse cannot store",
    "23502": "missing a required value",
    "23505": "the same key as another row",
    "23514": "fails a check constraint",
}
# Where COPY names the column it was reading (its context line goes on to quote the value: never kept).
_COPY_COLUMN = re.compile(r"\bcolumn (\w+)")


DEAD_LETTER_KEY = ("workspace_id", "connector", "entity", "source_id")


def write_dead_letters(conn: Connection, letters: Sequence[dict[str, Any]]) -> None:
    """Insert dead letters; a record that already has an open one gets it refreshed (its latest error, payload
    and run) instead of a second, so a page read twice (a retried step, a lookback window) counts once."""
    e = schema.sync_errors
    latest = {tuple(letter[k] for k in DEAD_LETTER_KEY): letter for letter in letters if letter["source_id"]}
    unnamed = [letter for letter in letters if not letter["source_id"]]
    if unnamed:
        conn.execute(insert(e), unnamed)
    if not latest:
        return
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(e).values(list(latest.values()))
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=list(DEAD_LETTER_KEY),
            index_where=text(schema.OPEN_DEAD_LETTER),
            set_={
                "error": statement.excluded.error,
                "payload": statement.excluded.payload,
                "run_id": statement.excluded.run_id,
            },
        )
    )


def refusal_reason(exc: DBAPIError, table: Table) -> str:
    """Why the warehouse refused a row, as far as the driver says: the column and the rule, never the
    driver's text (it quotes the statement and the row's data)."""
    diag = getattr(exc.orig, "diag", None)
    column = getattr(diag, "column_name", None)
    if column is None and getattr(diag, "context", None):
        found = _COPY_COLUMN.search(diag.context)
        column = found.group(1) if found else None
    column = column if column is not None and column in table.c else "record"
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:
        return f"{column}: refused by the warehouse ({type(exc.orig).__name__})"
    rule = _SQLSTATE_RULES.get(sqlstate, type(exc.orig).__name__)
    return f"{column}: refused by the warehouse: {rule} (SQLSTATE {sqlstate})"


class PageWriter:
    """One entity's writes for one workspace and source, on one connection."""

    def __init__(self, conn: Connection, table: str, workspace_id: str, source: str) -> None:
        self._conn = conn
        self._table = schema.ENTITY_TABLES[table]
        self._workspace_id, self._source = workspace_id, source
        self._seen: str | None = None  # the temporary table of source ids this read named

    def track_seen(self) -> None:
        """Remember every source id committed from now on, for ``unseen_live_ids``. A temporary table of
        this connection holds them, so memory stays flat however many records the read names."""
        self._seen = f"_seen_{self._table.name}"
        with self._conn.begin():
            self._conn.execute(
                text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self._seen} (source_id VARCHAR(255), by_record BOOLEAN)")
            )
            self._conn.execute(text(f"DELETE FROM {self._seen}"))

    def commit_page(
        self,
        rows: Sequence[dict[str, Any]],
        failures: Sequence[dict[str, Any]] = (),
        deletions: Sequence[Deletion] = (),
        present_ids: Sequence[str] = (),
        refused_letter: RefusedLetter | None = None,
    ) -> PageCounts:
        """Upsert a page's rows, dead-letter its bad records and mark its deletions, atomically. (The lease is
        renewed by the loop's heartbeat thread, not per page.) With ``refused_letter``, rows the warehouse
        refuses are dead-lettered (as it makes them) and the rest committed; without, the page fails."""
        now = datetime.now(UTC)
        try:
            with self._conn.begin():
                written, gone_written = self._upsert(rows, now)
                marked, doubted = self._finish(rows, failures, deletions, present_ids, now)
            return PageCounts(written, gone_written + marked, len(rows) - written - gone_written, doubted=doubted)
        except ROW_ERRORS as exc:
            if refused_letter is None or not rows:
                raise
            page_error = exc
        with self._conn.begin():  # the first attempt rolled back whole
            written, gone_written, refused = self.upsert_isolating(list(rows), now)
            if len(refused) == len(rows) > 1:
                # Every row refused is the warehouse's rule (a constraint, a changed column), not poison in
                # the records: the page fails as a whole and nothing is dead-lettered.
                raise page_error
            letters = [refused_letter(row, reason) for row, reason in refused]
            marked, doubted = self._finish(rows, [*failures, *letters], deletions, present_ids, now)
        unchanged = len(rows) - len(refused) - written - gone_written
        return PageCounts(written, gone_written + marked, unchanged, letters, doubted)

    def _upsert(self, rows: Sequence[dict[str, Any]], now: datetime) -> tuple[int, int]:
        """Upsert rows: (live rows written, deleted rows written)."""
        live = [r for r in rows if not r["is_deleted"]]
        dated = [r for r in rows if r["is_deleted"] and r["deleted_at"]]
        # Deleted without a date from the vendor (a file in the trash): when the platform first saw it.
        undated = [{**r, "deleted_at": now} for r in rows if r["is_deleted"] and not r["deleted_at"]]
        written = upsert_rows(self._conn, self._table, live) if live else 0
        gone_written = upsert_rows(self._conn, self._table, dated) if dated else 0
        if undated:
            gone_written += upsert_rows(self._conn, self._table, undated, keep_stored={"deleted_at"})
        return written, gone_written

    def upsert_isolating(
        self, rows: list[dict[str, Any]], now: datetime
    ) -> tuple[int, int, list[tuple[dict[str, Any], str]]]:
        """Upsert rows under a savepoint, by halves when refused, down to the single rows the warehouse
        refuses: (live rows written, deleted rows written, [(refused row, reason)]). Runs in the caller's
        transaction."""
        try:
            with self._conn.begin_nested():
                return (*self._upsert(rows, now), [])
        except ROW_ERRORS as exc:
            if len(rows) == 1:
                return 0, 0, [(rows[0], refusal_reason(exc, self._table))]
        half = len(rows) // 2
        first, second = self.upsert_isolating(rows[:half], now), self.upsert_isolating(rows[half:], now)
        return first[0] + second[0], first[1] + second[1], first[2] + second[2]

    def _finish(
        self,
        rows: Sequence[dict[str, Any]],
        failures: Sequence[dict[str, Any]],
        deletions: Sequence[Deletion],
        present_ids: Sequence[str],
        now: datetime,
    ) -> tuple[int, list[str]]:
        """The rest of a page, after its rows: dead letters, deletions and the ids it named; returns the rows
        newly marked deleted and the deletions in doubt."""
        if failures:
            write_dead_letters(self._conn, failures)
        marked, doubted = self._mark(deletions, now) if deletions else (0, [])
        if self._seen is not None:
            # A record that failed was named too: the sweep must not fetch it again (one dead letter each).
            named_by_record = [r["source_id"] for r in rows] + [f["source_id"] for f in failures if f["source_id"]]
            self._remember([(i, True) for i in named_by_record] + [(i, False) for i in present_ids])
        return marked, doubted

    def stored_newer(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """The source ids of ``rows`` the warehouse already holds in a newer version (a greater
        ``source_version``): an upsert would leave them alone."""
        t = self._table
        incoming = {r["source_id"]: r["source_version"] for r in rows if r["source_version"] is not None}
        if not incoming:
            return set()
        stored = self._conn.execute(
            select(t.c.source_id, t.c.source_version).where(
                *self._own_rows(), t.c.source_id.in_(list(incoming)), t.c.source_version.is_not(None)
            )
        )
        return {source_id for source_id, version in stored if version > incoming[source_id]}

    def sweep_candidates(self) -> list[str]:
        """What a read that named every record leaves in doubt: live rows it never named, deleted rows it
        named only by id (present again, e.g. on a restored board), and ids it named without a record that
        the warehouse does not hold (a record a paged read skipped)."""
        if self._seen is None:
            raise RuntimeError("sweep_candidates needs track_seen() before the read")
        t, seen = self._table, self._seen

        def named(by_record: bool | None) -> Any:
            query = select(literal_column("1")).select_from(text(seen))
            query = query.where(literal_column(f"{seen}.source_id") == t.c.source_id)
            return query if by_record is None else query.where(literal_column(f"{seen}.by_record").is_(by_record))

        unseen_live = and_(t.c.is_deleted.is_(False), ~named(None).exists())
        back_by_id = and_(t.c.is_deleted.is_(True), named(False).exists(), ~named(True).exists())
        in_doubt = select(t.c.source_id).where(*self._own_rows(), or_(unseen_live, back_by_id))
        unknown = text(
            f"SELECT DISTINCT s.source_id FROM {seen} s WHERE s.by_record = false"
            f" AND NOT EXISTS (SELECT 1 FROM {seen} r WHERE r.by_record = true AND r.source_id = s.source_id)"
            f" AND NOT EXISTS (SELECT 1 FROM {t.name} w WHERE w.workspace_id = :w AND w.source = :s"
            " AND w.source_id = s.source_id)"
        )
        with self._conn.begin():
            self._conn.execute(text(f"CREATE INDEX IF NOT EXISTS {seen}_ids ON {seen} (source_id)"))
            doubtful = list(self._conn.execute(in_doubt).scalars())
            params = {"w": self._workspace_id, "s": self._source}
            return doubtful + list(self._conn.execute(unknown, params).scalars())

    def _own_rows(self) -> tuple[Any, ...]:
        return (self._table.c.workspace_id == self._workspace_id, self._table.c.source == self._source)

    def _mark(self, deletions: Sequence[Deletion], now: datetime) -> tuple[int, list[str]]:
        """Mark live rows deleted: (rows marked, ids in doubt). A deletion dated before the stored version
        (a record deleted, then restored and read again) leaves the row alone and is returned in doubt."""
        t = self._table
        statement = (
            update(t)
            .where(
                *self._own_rows(),
                t.c.source_id == bindparam("b_id"),
                t.c.is_deleted.is_(False),
                or_(
                    bindparam("b_at", type_=t.c.deleted_at.type).is_(None),
                    t.c.source_updated_at.is_(None),
                    t.c.source_updated_at <= bindparam("b_at", type_=t.c.deleted_at.type),
                ),
            )
            .values(
                is_deleted=true(),
                deleted_at=func.coalesce(bindparam("b_at", type_=t.c.deleted_at.type), bindparam("b_now")),
                merged_into=bindparam("b_merged"),
                updated_at=func.now(),
            )
        )
        params = [{"b_id": d.source_id, "b_at": d.at, "b_now": now, "b_merged": d.merged_into} for d in deletions]
        marked = self._conn.execute(statement, params).rowcount
        self._learn_survivors([d for d in deletions if d.merged_into])
        dated = [d.source_id for d in deletions if d.at is not None]
        if not dated or marked == len(deletions):
            return marked, []
        still_live = select(t.c.source_id).where(*self._own_rows(), t.c.source_id.in_(dated), t.c.is_deleted.is_(False))
        return marked, list(self._conn.execute(still_live).scalars())

    def _learn_survivors(self, merges: Sequence[Deletion]) -> None:
        """A row already deleted without a survivor learns the one a merge names: its record went while the
        survivor could not be read (archived at that moment, say), and the survivor lists it later."""
        if not merges:
            return
        t = self._table
        statement = (
            update(t)
            .where(
                *self._own_rows(),
                t.c.source_id == bindparam("b_id"),
                t.c.is_deleted.is_(True),
                t.c.merged_into.is_(None),
            )
            .values(merged_into=bindparam("b_merged"), updated_at=func.now())
        )
        self._conn.execute(statement, [{"b_id": d.source_id, "b_merged": d.merged_into} for d in merges])

    def _remember(self, named: list[tuple[str, bool]]) -> None:
        """Record (source id, named by its record) pairs in the seen table."""
        if not named:
            return
        if self._conn.dialect.name == "postgresql":  # COPY: a full read of a million records names them all
            with (
                self._conn.connection.driver_connection.cursor() as cur,
                cur.copy(f"COPY {self._seen} (source_id, by_record) FROM STDIN") as copy,
            ):
                for pair in named:
                    copy.write_row(pair)
            return
        statement = text(f"INSERT INTO {self._seen} (source_id, by_record) VALUES (:id, :by_record)")
        self._conn.execute(statement, [{"id": i, "by_record": by_record} for i, by_record in named])
