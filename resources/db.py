"""Engines for the warehouse database, one per URL per process."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, create_engine, event

from resources.settings import normalize_postgres_url

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _tune_sqlite(dbapi_connection, _record) -> None:
    # Connector steps write in parallel in the embedded demo: WAL lets readers and one writer
    # coexist, and the busy timeout queues writers instead of raising "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def get_engine(url: str) -> Engine:
    url = normalize_postgres_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 60})
                event.listen(engine, "connect", _tune_sqlite)
            else:
                # A warehouse that drops packets fails a connect in 10 s instead of the OS's minutes, so an
                # outage reaches the step's retry schedule (sync_assets/factory.py) on time.
                engine = create_engine(
                    url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 10}
                )
            _engines[url] = engine
        return engine


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
