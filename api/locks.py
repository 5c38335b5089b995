"""A per-workspace critical section around check-and-launch, so N parallel triggers give one run.

On Postgres it is a transaction-scoped advisory lock, which holds across API processes; on SQLite
(the embedded demo, one API process) a process-local lock."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

_local_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def lock_key(workspace_id: str) -> int:
    """A stable signed 64-bit key; the prefix keeps it apart from other advisory locks."""
    digest = hashlib.blake2b(f"sales-sync:sync:{workspace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def workspace_lock(conn: Connection, workspace_id: str) -> Iterator[None]:
    """Held until the end of ``conn``'s transaction (Postgres) or of the block (SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(workspace_id)})
        yield
        return
    with _registry_lock:
        lock = _local_locks.setdefault(workspace_id, threading.Lock())
    with lock:
        yield
