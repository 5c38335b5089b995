"""Deterministic data-generation helpers shared by the vendor simulators.

Records are generated on the fly from (seed, entity, index), so values must come from a cheap pure
function of those inputs rather than a stateful RNG.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

_MASK = (1 << 64) - 1

# 2025-01-01T00:00:00Z: the origin of every generated timeline (in the past, so mutations sort after).
ORIGIN_MS = 1_735_689_600_000
DAY_MS = 86_400_000


def mix(*parts: int) -> int:
    """splitmix64 folded over the parts: a fast, well-spread 64-bit hash of small integers."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & _MASK)) & _MASK
        h = (h + 0x9E3779B97F4A7C15) & _MASK
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
        h ^= h >> 31
    return h


def mix1(state: int, i: int) -> int:
    """One more splitmix64 round: mix1(mix(a, b), i) is the per-record hash, with mix(a, b) precomputed."""
    h = ((state ^ i) + 0x9E3779B97F4A7C15) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def name_code(name: str) -> int:
    """Stable integer for a string (Python's hash() is salted per process, so it cannot be used)."""
    h = 1469598103934665603
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) & _MASK
    return h


def pick(h: int, options: Sequence[str], shift: int = 0) -> str:
    return options[(h >> shift) % len(options)]


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")


_TIME_OF_DAY = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400)]
_MILLIS = [f"{m:03d}Z" for m in range(1000)]


def iso_ms(ms: int) -> str:
    """Epoch ms -> '2025-01-01T00:00:00.000Z'. Table-driven: it runs several times per record served."""
    day, rem = divmod(ms, DAY_MS)
    secs, milli = divmod(rem, 1000)
    return _day_prefix(day) + _TIME_OF_DAY[secs] + _MILLIS[milli]


_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")


def parse_time_ms(value: object) -> float | None:
    """A filter value as epoch ms: accepts epoch-ms numbers/strings and ISO-8601; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _NUMERIC.match(text):
        return float(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000


def parse_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMERIC.match(value.strip()):
        return float(value)
    return None


FIRST_NAMES = (
    "Ava",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Isla",
    "Jon",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Yara",
    "Zane",
)
LAST_NAMES = (
    "Anders",
    "Brooks",
    "Chen",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ivanov",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Weber",
)
COMPANY_WORDS = (
    "Acme",
    "Apex",
    "Beacon",
    "Cobalt",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Ion",
    "Juniper",
    "Keystone",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orbit",
    "Pioneer",
    "Quartz",
    "Summit",
    "Vertex",
)
COMPANY_SUFFIXES = ("Labs", "Systems", "Group", "Industries", "Analytics", "Logistics", "Health", "Capital")
PRODUCTS = ("Platform", "Renewal", "Expansion", "Pilot", "Enterprise", "Support", "Onboarding", "Upgrade")


def account_number(credential: str, digits: int = 9) -> int:
    """A stable, made-up vendor account number for a credential: one tenant's portal, org or account."""
    return name_code(f"account:{credential}") % 10**digits
