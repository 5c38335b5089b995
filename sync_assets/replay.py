"""Replay of dead letters: the stored payloads of a workspace's unresolved sync_errors run through the
current transform (a fixed transform, a widened column), and those that now pass are upserted.

A record that passes is written unless the warehouse holds a newer version of it (a later sync stored
it): either way its dead letter is resolved, since the warehouse now holds the record or a newer one. A
record that fails again stays unresolved, with the new error. Used by the ``replay_dead_letters`` job
(definitions.py) and ``POST /api/workspaces/{id}/errors/replay``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update

from resources import schema
from resources.limits import without_nul
from resources.page_writer import PageWriter
from sync_assets import CONNECTORS_BY_NAME
from sync_assets.entity_read import describe_error
from sync_assets.recipe import Entity

REPLAY_BATCH = 500  # dead letters per transaction


@dataclass
class ReplayCounts:
    replayed: int = 0  # dead letters run through the current transform
    resolved: int = 0  # passed and upserted (or already held as is): resolved
    still_failing: int = 0  # failed again: unresolved, with the new error
    skipped_newer: int = 0  # passed, but the warehouse holds a newer version: resolved, not written

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def replay_dead_letters(
    engine: Engine,
    workspace_id: str,
    *,
    connector: str | None = None,
    entity: str | None = None,
    error_ids: Sequence[int] | None = None,
) -> ReplayCounts:
    """Replay the workspace's unresolved dead letters, optionally of one connector, one entity, or the
    ``error_ids`` given (ids of other workspaces or already resolved are left out)."""
    e = schema.sync_errors
    query = select(e.c.id, e.c.connector, e.c.entity, e.c.source_id, e.c.payload).where(
        e.c.workspace_id == workspace_id, e.c.resolved_at.is_(None)
    )
    if connector is not None:
        query = query.where(e.c.connector == connector)
    if entity is not None:
        query = query.where(e.c.entity == entity)
    if error_ids is not None:
        query = query.where(e.c.id.in_(list(error_ids)))
    counts, after = ReplayCounts(), 0
    with engine.connect() as conn:
        while True:
            with conn.begin():
                batch = conn.execute(query.where(e.c.id > after).order_by(e.c.id).limit(REPLAY_BATCH)).all()
                if not batch:
                    return counts
                after = batch[-1].id
                for (source, entity_name), letters in groupby(
                    sorted(batch, key=lambda r: (r.connector, r.entity, r.id)), key=lambda r: (r.connector, r.entity)
                ):
                    _replay(conn, workspace_id, source, entity_name, list(letters), counts)


def _recipe(connector: str, entity: str) -> Entity | None:
    found = CONNECTORS_BY_NAME.get(connector)
    return next((e for e in found.entities if e.name == entity), None) if found else None


def _replay(
    conn: Connection, workspace_id: str, source: str, entity_name: str, letters: list[Any], counts: ReplayCounts
) -> None:
    """Replay one entity's dead letters in the caller's transaction."""
    recipe = _recipe(source, entity_name)
    failed: dict[int, str] = {}
    rows: dict[int, dict[str, Any]] = {}
    for letter in letters:
        if recipe is None:
            failed[letter.id] = f"{source} {entity_name}: no longer synced; nothing can replay it"
            continue
        try:
            row = recipe.transform(recipe.from_payload(letter.payload)).as_row()
        except Exception as exc:  # failing again is an outcome, as in a sync
            failed[letter.id] = f"{recipe.label}: {describe_error(exc)} ({letter.source_id})"
            continue
        rows[letter.id] = {
            **row,
            "workspace_id": workspace_id,
            "source": source,
            "properties": without_nul(letter.payload),
        }
    newer: set[str] = set()
    if rows:
        writer = PageWriter(conn, entity_name, workspace_id, source)
        newer = writer.stored_newer(list(rows.values()))
        _, _, refused = writer.upsert_isolating(
            [r for r in rows.values() if r["source_id"] not in newer], datetime.now(UTC)
        )
        refused_ids = {row["source_id"]: reason for row, reason in refused}
        for letter_id, row in list(rows.items()):
            if row["source_id"] in refused_ids:
                failed[letter_id] = f"{recipe.label}: {refused_ids[row['source_id']]} ({row['source_id']})"
                del rows[letter_id]
    e = schema.sync_errors
    if rows:
        conn.execute(update(e).where(e.c.id.in_(list(rows))).values(resolved_at=datetime.now(UTC)))
    if failed:
        conn.execute(
            update(e).where(e.c.id == bindparam("b_id")).values(error=bindparam("b_error")),
            [{"b_id": letter_id, "b_error": message} for letter_id, message in failed.items()],
        )
    skipped = sum(1 for r in rows.values() if r["source_id"] in newer)
    counts.replayed += len(letters)
    counts.resolved += len(rows) - skipped
    counts.skipped_newer += skipped
    counts.still_failing += len(failed)
