"""What the warehouse's columns accept, read off their declared types (resources/schema.py), so a vendor
value that does not fit is caught before the database refuses the whole batch it came in.

Vendors accept more than the warehouse holds: text longer than a VARCHAR, amounts past NUMERIC(20, 2),
and NUL characters, which Postgres refuses anywhere in text and in JSONB.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Column, Float, Integer, Numeric, SmallInteger, String

NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"


@dataclass(frozen=True)
class ColumnLimit:
    """The limit one column sets: ``max_length`` characters, or values strictly within ``bound`` either
    side of zero (``rule`` names it in a dead letter's message)."""

    max_length: int | None = None
    bound: int | Decimal | None = None
    rule: str = ""


def column_limit(column: Column) -> ColumnLimit | None:
    """The limit of ``column``'s type, or None when any value of the row model's type fits."""
    kind = column.type
    if isinstance(kind, String) and kind.length is not None:
        return ColumnLimit(max_length=kind.length, rule=f"longer than {kind.length} characters")
    if isinstance(kind, Numeric) and not isinstance(kind, Float) and kind.precision is not None:
        scale = kind.scale or 0
        whole = kind.precision - scale
        # Postgres rounds to the scale first: a value that rounds up to 10^whole overflows too.
        bound = Decimal(10) ** whole - Decimal(5) / Decimal(10) ** (scale + 1)
        return ColumnLimit(bound=bound, rule=f"more than {whole} digits before the decimal point")
    if isinstance(kind, Integer):
        bits = 64 if isinstance(kind, BigInteger) else 16 if isinstance(kind, SmallInteger) else 32
        return ColumnLimit(bound=2 ** (bits - 1), rule=f"outside the {bits}-bit integer range")
    return None


def fits_bound(value: int | Decimal, limit: ColumnLimit) -> bool:
    """Whether a number is within the column's range (an integer column holds -2^(n-1) too)."""
    assert limit.bound is not None
    if isinstance(value, int):
        return -limit.bound <= value < limit.bound
    return value.is_finite() and -limit.bound < value < limit.bound


def is_json(column: Column) -> bool:
    return isinstance(column.type, JSON)


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters removed from every string in it, keys included, however deep; the
    value itself when it holds none (checked on its JSON encoding, in C, before walking anything)."""
    try:
        if _ESCAPED_NUL not in orjson.dumps(value, default=str):
            return value
    except TypeError:  # beyond orjson (an integer over 64 bits): walk it
        pass
    return _strip(value)


def _strip(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {_strip(k): _strip(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value
