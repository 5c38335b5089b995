"""Control-API mutations: the body of ``POST /_sandbox/{vendor}/mutate`` parsed once for every vendor, and
the ``mutate_after_requests`` triggers that apply such a body after the N-th successful data request.

Body: ``{"entity", "count", "ids", "create", "action", "into", "modified_time", "time_offset_s", "hidden",
"system"}``; every field but ``entity`` is optional. Which actions and options a vendor/entity accepts is
the vendor module's business (``Mutation.check``); anything else is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .core import InvalidRequest

if TYPE_CHECKING:
    from .core import Vendor

ACTIONS = ("edit", "delete", "archive", "restore", "merge", "purge", "trash", "reveal", "hide")
BODY_KEYS = frozenset(
    {"entity", "count", "ids", "create", "action", "into", "modified_time", "time_offset_s", "hidden", "system"}
)
NEEDS_IDS = frozenset({"restore", "merge", "reveal"})  # acting on "the N oldest" makes no sense for these


@dataclass
class Mutation:
    entity: str
    count: int = 0
    ids: list[str] | None = None
    create: int = 0
    action: str = "edit"
    into: str | None = None  # merge: the surviving record
    modified_time_ms: int | None = None  # Drive: a client-set modifiedTime
    time_offset_s: float | None = None  # Gong/Fireflies create: start/meeting time = now + offset
    hidden: bool = False  # Drive create: files the user cannot see yet (see action "reveal")
    system: str | None = None  # Gong create: the recording system (decides scheduled vs started filtering)

    @classmethod
    def parse(cls, body: Any) -> Mutation:
        if not isinstance(body, dict):
            raise InvalidRequest("a mutation must be a JSON object")
        unknown = set(body) - BODY_KEYS
        if unknown:
            raise InvalidRequest(f"unknown mutate fields {sorted(unknown)} (known: {sorted(BODY_KEYS)})")
        ids = body.get("ids")
        if ids is not None and not isinstance(ids, list):
            raise InvalidRequest("ids must be a list")
        action = str(body.get("action") or "edit")
        if action not in ACTIONS:
            raise InvalidRequest(f"unknown action {action!r} (one of {list(ACTIONS)})")
        m = cls(
            entity=str(body.get("entity", "")),
            count=int(body.get("count") or 0),
            ids=None if ids is None else [str(x) for x in ids],
            create=int(body.get("create") or 0),
            action=action,
            into=None if body.get("into") is None else str(body["into"]),
            modified_time_ms=_instant_ms(body.get("modified_time")),
            time_offset_s=None if body.get("time_offset_s") is None else float(body["time_offset_s"]),
            hidden=bool(body.get("hidden", False)),
            system=None if body.get("system") is None else str(body["system"]),
        )
        if m.count < 0 or m.create < 0:
            raise InvalidRequest("count and create must not be negative")
        if m.create and action != "edit":
            raise InvalidRequest(f"create is only valid with action 'edit', not {action!r}")
        if action in NEEDS_IDS and not m.ids:
            raise InvalidRequest(f"action {action!r} needs ids")
        if (action == "merge") != (m.into is not None):
            raise InvalidRequest("into (the surviving id) goes with action 'merge', and merge needs it")
        if m.time_offset_s is not None and not m.create:
            raise InvalidRequest("time_offset_s applies to created records: give create > 0")
        if (m.hidden or m.system is not None) and not m.create:
            raise InvalidRequest("hidden and system apply to created records: give create > 0")
        return m

    def check(
        self, vendor: str, entity: str, actions: set[str] | frozenset[str], options: frozenset[str] = frozenset()
    ):
        """400 unless this vendor/entity supports the action and every option given."""
        if self.action not in actions:
            supported = ", ".join(a for a in ACTIONS if a in actions)
            raise InvalidRequest(
                f"{vendor}: action {self.action!r} is not supported for {entity} (supported: {supported})"
            )
        given = {
            "modified_time": self.modified_time_ms is not None,
            "time_offset_s": self.time_offset_s is not None,
            "hidden": self.hidden,
            "system": self.system is not None,
        }
        for option, present in given.items():
            if present and option not in options:
                raise InvalidRequest(f"{vendor}: {option} is not supported for {entity} with action {self.action!r}")


def _instant_ms(value: Any) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"modified_time must be ISO-8601, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def apply(vendor: Vendor, body: Any) -> dict[str, Any]:
    """What POST /_sandbox/{vendor}/mutate does with `body`."""
    return vendor.apply(Mutation.parse(body))


def validate_triggers(raw: Any) -> list[dict[str, Any]]:
    """The ``mutate_after_requests`` fault value, checked; each mutation body must parse."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("mutate_after_requests must be a list of {after, mutation, path_contains}")
    out = []
    for t in raw:
        if not isinstance(t, dict) or set(t) - {"after", "mutation", "path_contains"}:
            raise InvalidRequest(f"a trigger is {{after, mutation, path_contains}}, got {t!r}")
        after = t.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 1:
            raise InvalidRequest(f"trigger 'after' must be an integer >= 1, got {after!r}")
        Mutation.parse(t.get("mutation"))
        path = t.get("path_contains")
        if path is not None and not isinstance(path, str):
            raise InvalidRequest("path_contains must be a string")
        out.append({"after": after, "mutation": t["mutation"], "path_contains": path})
    return out


def count_served(vendor: Vendor, path: str) -> None:
    """One more successful data request was served: fire every trigger whose count it completes."""
    vendor.faults.served += 1
    for trigger in vendor.faults.mutate_after_requests:
        if trigger["fired"] or (trigger["path_contains"] and trigger["path_contains"] not in path):
            continue
        trigger["served"] += 1
        if trigger["served"] >= trigger["after"]:
            trigger["fired"] = True
            try:
                trigger["result"] = apply(vendor, trigger["mutation"])
            except Exception as exc:  # noqa: BLE001 - shown in GET /faults; the response in flight must not fail
                trigger["error"] = f"{type(exc).__name__}: {exc}"
