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
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine, text

# Headroom so scheduling jitter (a late wake-up followed by a punctual one) never shows the vendor a burst.
SPACING_MARGIN = 1.03
# The longest acquire() waits for a slot unless told otherwise (the platform's setting: settings.py).
DEFAULT_MAX_WAIT_S = 120.0


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float

    @property
    def interval_s(self) -> float:
        return self.per_seconds / self.requests * SPACING_MARGIN

    @classmethod
    def parse(cls, value: object, default: RateLimit | None) -> RateLimit | None:
        """Read a limit setting: ``{"requests": N, "per_seconds": S}``, or ``false`` for none. ``None``
        (not set) is ``default``. An operator's ``false`` switches a vendor's platform limit off; a
        connection's ``false`` only means it adds no tighter limit of its own."""
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


CONNECTION_KEY_PREFIX = "connection:"


def connection_key(workspace_id: str, connector: str, scope: str = "") -> str:
    """The key of one connection's own limit: only that connection's calls reserve its slots. With an
    empty ``connector``, the prefix of every connection key of the workspace."""
    return f"{CONNECTION_KEY_PREFIX}{workspace_id}:{connector}" + (f":{scope}" if scope else "")


def webhook_test_key(workspace_id: str) -> str:
    """The key limiting a workspace's test webhooks (the API's POST …/webhook/test)."""
    return f"webhook-test:{workspace_id}"


# Slots are absolute instants (epoch s). Postgres reports its own clock alongside, so a caller can
# place the slot on its clock; SQLite is local and uses the caller's clock.
_PG_RESERVE = text(
    """
    INSERT INTO rate_limit_slots AS s (key, next_free_at)
    VALUES (:key, extract(epoch FROM clock_timestamp()) + :interval)
    ON CONFLICT (key) DO UPDATE
        SET next_free_at = GREATEST(s.next_free_at, extract(epoch FROM clock_timestamp())) + :interval
        WHERE s.next_free_at - extract(epoch FROM clock_timestamp()) <= :max_wait
    RETURNING next_free_at - :interval, extract(epoch FROM clock_timestamp())
    """
)

_SQLITE_RESERVE = text(
    """
    INSERT INTO rate_limit_slots AS s (key, next_free_at) VALUES (:key, :now + :interval)
    ON CONFLICT (key) DO UPDATE SET next_free_at = max(s.next_free_at, :now) + :interval
        WHERE s.next_free_at - :now <= :max_wait
    RETURNING next_free_at - :interval
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

    def reserve(self, key: str, interval_s: float, max_wait_s: float = math.inf) -> Reservation | None:
        """Reserve the credential's next slot, atomically; None (and nothing reserved) when that slot is
        more than ``max_wait_s`` away, so a caller that gives up does not push the slot further out."""
        if self._engine is None:
            with self._lock:
                now = time.time()
                slot = max(self._local.get(key, 0.0), now)
                if slot - now > max_wait_s:
                    return None
                self._local[key] = slot + interval_s
                return Reservation(slot, slot - now)
        # The databases compare against a number: an uncapped wait is the largest double.
        params = {"key": key, "interval": interval_s, "max_wait": min(max_wait_s, sys.float_info.max)}
        if self._engine.dialect.name != "postgresql":
            with self._engine.begin() as conn:
                found = conn.execute(_SQLITE_RESERVE, {**params, "now": time.time()}).scalar()
            return None if found is None else Reservation(float(found), float(found) - time.time())
        with self._engine.begin() as conn:
            sent = time.time()
            row = conn.execute(_PG_RESERVE, params).first()
            received = time.time()
        if row is None:
            return None
        slot, db_now = float(row[0]), float(row[1])
        with self._lock:
            self._clock.observe(sent, received, db_now)
            local_slot = slot - self._clock.offset_s
        # This reservation alone places the slot between these bounds; a stale estimate (the clock
        # stepped) never moves it outside them.
        local_slot = min(max(local_slot, sent + slot - db_now), received + slot - db_now)
        return Reservation(slot, local_slot - time.time())


class RateLimitBacklog(RuntimeError):
    """The next free slot is further ahead than a call may wait: the call fails now (a later sync
    retries) instead of holding a worker for hours or days."""


class Limiter(Protocol):
    def acquire(self) -> float: ...


class CredentialLimiter:
    """Spaces the calls of one key; ``acquire()`` blocks until this call's slot, for at most
    ``max_wait_s`` (beyond it, RateLimitBacklog at once). ``label`` names the key in that error."""

    def __init__(
        self,
        store: SlotStore,
        key: str,
        limit: RateLimit | None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        label: str = "this credential",
    ) -> None:
        self._store, self._key, self._limit, self._sleep = store, key, limit, sleep
        self._max_wait_s, self._label = max_wait_s, label

    @property
    def limit(self) -> RateLimit | None:
        return self._limit

    def acquire(self) -> float:
        if self._limit is None:
            return 0.0
        reservation = self._store.reserve(self._key, self._limit.interval_s, self._max_wait_s)
        if reservation is None:
            raise RateLimitBacklog(
                f"the rate limit of {self._label} ({self._limit.requests} per {self._limit.per_seconds:g} s) is "
                f"booked more than {self._max_wait_s:g} s ahead; the call was not made, a later sync retries"
            )
        if reservation.wait_s > 0:
            self._sleep(reservation.wait_s)
        return max(reservation.wait_s, 0.0)


class LimiterChain:
    """A call passes each limiter in turn: a connection's own, tighter limit first, then the shared
    limit of its credential, so waiting for the first never wastes a slot of the second."""

    def __init__(self, *limiters: Limiter) -> None:
        self.limiters = limiters

    def acquire(self) -> float:
        return sum(limiter.acquire() for limiter in self.limiters)
