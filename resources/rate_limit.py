"""A per-credential rate limiter that holds across threads, runs and processes.

Each call reserves the next free slot of its credential in one atomic statement and sleeps until
then (GCRA / virtual-scheduling leaky bucket). Calls are therefore evenly spaced at
``interval = per_seconds / requests`` and the limit holds in every sliding window, whatever number of
processes share the credential, because the slot pointer lives in the shared database row.

pyrate-limiter was the design's first choice; its SQL buckets count and then insert in separate
statements without a lock (two processes can both pass the same window) and waiters poll, so it
cannot give the even, cross-process spacing this needs. See the README's decisions section.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

# Headroom so scheduling jitter (a late wake-up followed by a punctual one) never shows the vendor a burst.
SPACING_MARGIN = 1.03


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float

    @property
    def interval_s(self) -> float:
        return self.per_seconds / self.requests * SPACING_MARGIN

    @classmethod
    def parse(cls, value: object, default: RateLimit | None) -> RateLimit | None:
        """Read a connection's ``config.rate_limit``: ``{"requests": N, "per_seconds": S}``, or
        ``false``/``null`` to switch limiting off (benchmarks, vendors with generous limits)."""
        if value is None:
            return default
        if value is False or value == "off":
            return None
        if isinstance(value, dict):
            requests, per_seconds = int(value["requests"]), float(value["per_seconds"])
            if requests <= 0 or per_seconds <= 0:
                raise ValueError("rate_limit.requests and rate_limit.per_seconds must be positive")
            return cls(requests, per_seconds)
        raise ValueError(f"rate_limit must be an object or false, not {value!r}")


def credential_key(vendor: str, identity: str) -> str:
    """A stable, non-reversible key for a credential: the raw secret never reaches the store."""
    return f"{vendor}:{hashlib.sha256(identity.encode()).hexdigest()[:40]}"


# Slots are absolute instants (epoch s). Postgres reports its own clock alongside, so a caller can
# place the slot on its clock; SQLite is local and uses the caller's clock.
_PG_RESERVE = text(
    """
    INSERT INTO rate_limit_slots AS s (key, next_free_at)
    VALUES (:key, extract(epoch FROM clock_timestamp()) + :interval)
    ON CONFLICT (key) DO UPDATE
        SET next_free_at = GREATEST(s.next_free_at, extract(epoch FROM clock_timestamp())) + :interval
    RETURNING next_free_at - :interval, extract(epoch FROM clock_timestamp())
    """
)

_SQLITE_RESERVE = text(
    """
    INSERT INTO rate_limit_slots AS s (key, next_free_at) VALUES (:key, :now + :interval)
    ON CONFLICT (key) DO UPDATE SET next_free_at = max(s.next_free_at, :now) + :interval
    RETURNING next_free_at - :interval, :now
    """
)

CLOCK_SAMPLES = 16


class DatabaseClock:
    """How far the database's clock is ahead of this process's, estimated NTP-style: each reservation
    brackets the database's reading between our send and receive times, and the recent sample with
    the shortest round trip bounds the error best (half that round trip).

    Sleeping until the slot on our clock, rather than for a wait the database computed, keeps commit
    and network latency (tens of ms on a busy server) out of the spacing between calls."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=CLOCK_SAMPLES)

    def observe(self, sent: float, received: float, db_now: float) -> None:
        self._samples.append((received - sent, db_now - (sent + received) / 2))

    @property
    def offset_s(self) -> float:
        return min(self._samples)[1] if self._samples else 0.0


@dataclass(frozen=True)
class Reservation:
    slot_at: float  # epoch seconds (the store's clock) at which this call may start
    wait_s: float  # how long the caller must sleep for it


class SlotStore:
    """Where slot pointers live: the shared database, or process memory when there is none."""

    def __init__(self, engine: Engine | None) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._local: dict[str, float] = {}
        self._clock = DatabaseClock()

    def reserve(self, key: str, interval_s: float) -> Reservation:
        """Reserve the credential's next slot, atomically."""
        if self._engine is None:
            with self._lock:
                now = time.time()
                slot = max(self._local.get(key, 0.0), now)
                self._local[key] = slot + interval_s
                return Reservation(slot, slot - now)
        params = {"key": key, "interval": interval_s}
        if self._engine.dialect.name != "postgresql":
            with self._engine.begin() as conn:
                slot, now = conn.execute(_SQLITE_RESERVE, {**params, "now": time.time()}).one()
            return Reservation(float(slot), float(slot) - float(now))
        with self._engine.begin() as conn:
            sent = time.time()
            slot, db_now = conn.execute(_PG_RESERVE, params).one()
            received = time.time()
        with self._lock:
            self._clock.observe(sent, received, float(db_now))
            offset = self._clock.offset_s
        return Reservation(float(slot), float(slot) - offset - time.time())


class CredentialLimiter:
    """Spaces the calls of one credential; ``acquire()`` blocks until this call's slot."""

    def __init__(
        self,
        store: SlotStore,
        key: str,
        limit: RateLimit | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store, self._key, self._limit, self._sleep = store, key, limit, sleep

    @property
    def limit(self) -> RateLimit | None:
        return self._limit

    def acquire(self) -> float:
        if self._limit is None:
            return 0.0
        wait = self._store.reserve(self._key, self._limit.interval_s).wait_s
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)
