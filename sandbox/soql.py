"""The SOQL the Salesforce simulator serves, parsed into store selections.

Grammar: ``SELECT <fields> | COUNT() FROM <object> [WHERE <condition>] [ORDER BY <order>] [LIMIT n]`` where a
condition combines comparisons with AND, OR and parentheses. A comparison is ``<datetime field> <op>
<datetime literal>`` (SystemModstamp, LastModifiedDate; the literal unquoted, fractional seconds allowed:
``2024-01-01T00:00:00.123Z``), ``Id <op> '<id>'`` (ids compare as strings, as Salesforce's do) or
``Id IN ('<id>', ...)``.
``ORDER BY`` is ``SystemModstamp|LastModifiedDate [ASC|DESC] [, Id ...same direction]`` or ``Id [ASC|DESC]``.
The keyset form a sync sends is therefore served exactly:
``WHERE (SystemModstamp > t OR (SystemModstamp = t AND Id > 'x')) AND SystemModstamp <= u
ORDER BY SystemModstamp ASC, Id ASC LIMIT n``.
Keywords, object and field names are case-insensitive, as in SOQL; fields come back under their API names.
Anything else is a 400 ``MALFORMED_QUERY`` whose message starts with "sandbox:" when SOQL itself would allow it.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .store import INF, Group, Ranges, ranges_and

DATETIME_FIELDS = frozenset({"SystemModstamp", "LastModifiedDate"})  # both follow the record's modified time
MAX_GROUPS = 64  # OR-groups after distributing AND over OR
ID_SPACE = 10**10  # ids carry a 10-digit index
_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<num>\d+(?![\w:-]))"
    r"|(?P<op>>=|<=|!=|<>|=|>|<)"
    r"|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][\w.]*)"
    r"|(?P<other>\S+?)(?=[\s(),]|$)"
    r")"
)
_COMMON_TYPES = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}


class SoqlError(Exception):
    """A SOQL the org rejects: HTTP 400 with Salesforce's error code."""

    def __init__(self, code: str, message: str):
        self.code, self.message = code, message
        super().__init__(message)


@dataclass(frozen=True)
class SObject:
    name: str
    key_prefix: str
    fields: Callable[[int, int, int, int], dict[str, Any]]  # (hash, index, version, created_ms) -> values
    types: tuple[tuple[str, str], ...]  # the generated fields and their describe types
    mergeable: bool = False  # has MasterRecordId (Account, Contact)
    archivable: bool = False  # has IsArchived (Task)

    @property
    def field_types(self) -> dict[str, str]:
        out = {**_COMMON_TYPES, **dict(self.types)}
        if self.mergeable:
            out["MasterRecordId"] = "reference"
        if self.archivable:
            out["IsArchived"] = "boolean"
        return out

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self.field_types)

    def record_id(self, i: int) -> str:
        """18 characters like a real id: key prefix, pod, a zero-padded index and a fixed suffix."""
        return f"{self.key_prefix}RO{i:010d}AAA"


@dataclass(frozen=True)
class Soql:
    sobject: SObject
    fields: list[str]  # empty for COUNT()
    groups: list[Group]
    order_by: str  # "modified" or "index"
    descending: bool
    limit: int | None

    @property
    def is_count(self) -> bool:
        return not self.fields


def malformed(message: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", message)


def literal_ms(field_name: str, kind: str, value: str) -> int:
    if kind == "str":
        raise malformed(
            f"value of filter criterion for field '{field_name}' must be of type dateTime "
            "and should not be enclosed in quotes"
        )
    if kind != "dt":
        raise malformed(f"line 1:0 no viable alternative at character '{value[:20]}'")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(moment.astimezone(UTC).timestamp() * 1000)


def _compare(op: str, below: int, through: int) -> Ranges:
    """Integer ranges for `x op v` where [below, through) are the x equal to v (empty if none)."""
    return {
        ">=": [(below, INF)],
        ">": [(through, INF)],
        "<": [(-INF, below)],
        "<=": [(-INF, through)],
        "=": [(below, through)] if below < through else [],
        "!=": [(-INF, below), (through, INF)],
    }[op]


class _Parser:
    def __init__(self, text: str, sobjects: dict[str, SObject]):
        self.tokens = _tokens(text)
        self.pos = 0
        self.sobjects = sobjects
        self.canonical: dict[str, str] = {}  # lower-case field name -> API name, once FROM is known

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise malformed("unexpected end of query")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        """Consume the keywords if they come next (case-insensitive)."""
        n = len(words)
        upcoming = self.tokens[self.pos : self.pos + n]
        if len(upcoming) == n and all(
            k == "word" and v.upper() == w for (k, v), w in zip(upcoming, words, strict=True)
        ):
            self.pos += n
            return True
        return False

    def punct(self, char: str) -> bool:
        if self.peek() == ("punct", char):
            self.pos += 1
            return True
        return False

    def parse(self) -> Soql:
        if not self.keyword("SELECT"):
            raise malformed("unexpected token: query must be SELECT <fields> FROM <object> ...")
        raw_fields = self.field_list()
        if not self.keyword("FROM"):
            raise malformed("unexpected token: query must be SELECT <fields> FROM <object> ...")
        kind, name = self.take()
        by_lower = {k.lower(): v for k, v in self.sobjects.items()}
        sobject = by_lower.get(name.lower()) if kind == "word" else None
        if sobject is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{name}' is not supported. If you are "
                "attempting to use a custom object, be sure to append the '__c' after the entity name.",
            )
        self.canonical = {f.lower(): f for f in sobject.field_names}
        is_count = raw_fields == ["COUNT()"]
        for field in [] if is_count else raw_fields:
            if field.lower() not in self.canonical:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"No such column '{field}' on entity '{sobject.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the custom field "
                    "name. Please reference your WSDL or the describe call for the appropriate names.",
                )
        groups = [Group()]
        if self.keyword("WHERE"):
            groups = self.disjunction(sobject)
        order_by, descending = "index", False
        if self.keyword("ORDER", "BY"):
            if is_count:
                raise malformed("ORDER BY is not allowed with COUNT()")
            order_by, descending = self.order()
        limit = None
        if self.keyword("LIMIT"):
            kind, value = self.take()
            if kind != "num":
                raise malformed(f"LIMIT needs a number, got {value!r}")
            limit = int(value)
        if self.peek() is not None:
            raise malformed(f"unexpected token: '{self.peek()[1]}'")  # type: ignore[index]
        fields = [] if is_count else [self.canonical[f.lower()] for f in raw_fields]  # answered in API case
        return Soql(sobject, fields, groups, order_by, descending, limit)

    def field_list(self) -> list[str]:
        fields = []
        while True:
            kind, value = self.take()
            if kind != "word":
                raise malformed(f"unexpected token: '{value}'")
            if value.upper() == "COUNT" and self.punct("("):
                if not self.punct(")"):
                    raise malformed("sandbox: only COUNT() is served")
                value = "COUNT()"
            fields.append(value)
            if not self.punct(","):
                return fields

    def disjunction(self, sobject: SObject) -> list[Group]:
        groups = self.conjunction(sobject)
        while self.keyword("OR"):
            groups = groups + self.conjunction(sobject)
            if len(groups) > MAX_GROUPS:
                raise malformed(f"sandbox: WHERE expands to more than {MAX_GROUPS} OR-groups")
        return groups

    def conjunction(self, sobject: SObject) -> list[Group]:
        groups = self.factor(sobject)
        while self.keyword("AND"):
            right = self.factor(sobject)
            groups = [Group(ms=ranges_and(a.ms, b.ms), idx=ranges_and(a.idx, b.idx)) for a in groups for b in right]
            if len(groups) > MAX_GROUPS:
                raise malformed(f"sandbox: WHERE expands to more than {MAX_GROUPS} OR-groups")
        return groups

    def factor(self, sobject: SObject) -> list[Group]:
        if self.punct("("):
            groups = self.disjunction(sobject)
            if not self.punct(")"):
                raise malformed("unexpected token: missing ')'")
            return groups
        kind, field = self.take()
        if kind == "word" and self.canonical.get(field.lower()) == "Id" and self.keyword("IN"):
            return [Group(idx=self.id_list(sobject))]
        op_kind, op = self.take()
        if kind != "word" or op_kind != "op":
            raise malformed(f"unexpected token: '{field}'")
        field = self.canonical.get(field.lower(), field)
        op = "!=" if op == "<>" else op
        value_kind, value = self.take()
        if field in DATETIME_FIELDS:
            ms = literal_ms(field, value_kind, value)
            return [Group(ms=_compare(op, ms, ms + 1))]
        if field == "Id":
            if value_kind != "str" or not value.startswith("'"):
                raise malformed(f"invalid ID field: {value}")
            literal = value[1:-1]
            record_id = sobject.record_id
            below = bisect_left(range(ID_SPACE), literal, key=record_id)
            through = bisect_right(range(ID_SPACE), literal, key=record_id)
            return [Group(idx=_compare(op, below, through))]
        raise malformed(
            f"sandbox: WHERE compares {sorted(DATETIME_FIELDS)} with datetime literals and Id with quoted ids "
            f"(AND, OR, parentheses), got {field} {op} {value}"
        )

    def id_list(self, sobject: SObject) -> Ranges:
        """``Id IN ('a', 'b', ...)``: the indices of the listed ids (unknown ones match nothing)."""
        if not self.punct("("):
            raise malformed("unexpected token: IN needs a parenthesised list")
        indices: list[int] = []
        while True:
            kind, value = self.take()
            if kind != "str" or not value.startswith("'"):
                raise malformed(f"invalid ID field: {value}")
            literal = value[1:-1]
            found = bisect_left(range(ID_SPACE), literal, key=sobject.record_id)
            if found < ID_SPACE and sobject.record_id(found) == literal:
                indices.append(found)
            if not self.punct(","):
                break
        if not self.punct(")"):
            raise malformed("unexpected token: missing ')'")
        return [(i, i + 1) for i in sorted(set(indices))]

    def order(self) -> tuple[str, bool]:
        keys: list[tuple[str, bool]] = []
        while True:
            kind, field = self.take()
            if kind != "word":
                raise malformed(f"unexpected token: '{field}'")
            field = self.canonical.get(field.lower(), field)
            descending = False
            if self.keyword("DESC"):
                descending = True
            else:
                self.keyword("ASC")
            if not self.keyword("NULLS", "FIRST"):
                self.keyword("NULLS", "LAST")
            keys.append((field, descending))
            if not self.punct(","):
                break
        names = [f for f, _ in keys]
        same_direction = len({d for _, d in keys}) == 1
        if names[0] in DATETIME_FIELDS and names[1:] in ([], ["Id"]) and same_direction:
            return "modified", keys[0][1]
        if names == ["Id"]:
            return "index", keys[0][1]
        raise malformed(
            "sandbox: ORDER BY supports SystemModstamp (or LastModifiedDate) [ASC|DESC] optionally followed by "
            f"Id in the same direction, or Id alone; got {', '.join(names)}"
        )


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, (text or "").rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise malformed(f"line 1:{pos} no viable alternative at character '{text[pos]}'")
        pos = m.end()
        kind = m.lastgroup or "other"
        out.append((kind, m.group(kind)))
    return out


def parse(text: str, sobjects: dict[str, SObject]) -> Soql:
    return _Parser(text, sobjects).parse()
