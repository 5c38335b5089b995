"""The credential limiter spaces calls evenly across processes sharing the Postgres slot store."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from resources.db import get_engine
from resources.rate_limit import CredentialLimiter, RateLimit, SlotStore, credential_key

INTERVAL_S = 0.1


def _reserve_many(url: str, key: str, count: int, queue) -> None:
    """Reserve and wait like ``CredentialLimiter.acquire``, recording the slot each call was given."""
    store = SlotStore(get_engine(url))
    slots = []
    for _ in range(count):
        reservation = store.reserve(key, INTERVAL_S)
        slots.append(reservation.slot_at)
        time.sleep(max(reservation.wait_s, 0))
    queue.put(slots)


def test_three_processes_sharing_a_credential_get_distinct_evenly_spaced_slots(pg_url, warehouse):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    key = credential_key("gong", "shared-access-key")
    workers = [context.Process(target=_reserve_many, args=(pg_url, key, 15, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    slots = sorted(s for _ in workers for s in queue.get(timeout=60))
    for worker in workers:
        worker.join(10)
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert len(slots) == 45
    # One atomic statement per call: no slot is handed out twice and none is closer than the interval.
    # (A gap can be longer when every process was late to ask: the pointer then restarts at "now".)
    # (1e-3: slots are epoch seconds in double precision, about 1e-7 s of rounding per addition.)
    assert min(gaps) >= INTERVAL_S - 1e-3
    assert slots[-1] - slots[0] >= 44 * INTERVAL_S - 1e-3


def test_slots_are_reserved_back_to_back_and_waits_count_down_to_them(pg_url, warehouse):
    store = SlotStore(get_engine(pg_url))
    reservations = [store.reserve("k", 1.0) for _ in range(4)]
    assert reservations[0].wait_s <= 0.05
    for previous, current in zip(reservations, reservations[1:], strict=False):
        assert current.slot_at - previous.slot_at == pytest.approx(1.0, abs=1e-3)
        assert current.wait_s > previous.wait_s


def test_memory_store_and_disabled_limits():
    store = SlotStore(None)
    first, second = store.reserve("k", 0.2), store.reserve("k", 0.2)
    assert first.wait_s <= 0.001
    assert second.slot_at - first.slot_at == pytest.approx(0.2)
    assert CredentialLimiter(store, "k", None).acquire() == 0.0


def test_rate_limit_config_parsing():
    default = RateLimit(100, 60)
    assert RateLimit.parse(None, default) == default
    assert RateLimit.parse(False, default) is None
    assert RateLimit.parse({"requests": 10, "per_seconds": 1}, default) == RateLimit(10, 1)
    with pytest.raises(ValueError, match="positive"):
        RateLimit.parse({"requests": 0, "per_seconds": 1}, default)
    with pytest.raises(ValueError, match="must be an object or false"):
        RateLimit.parse("fast", default)
