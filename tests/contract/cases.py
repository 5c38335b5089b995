"""What the connector contract needs to know of each connector's sandbox: its entities, a dataset, the
connection config that makes pages small, and the adversarial knobs that model its vendor's documented
behaviour. A new connector adds one Case here and gets the whole contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_assets import CONNECTORS_BY_NAME
from sync_assets.recipe import Connector


@dataclass(frozen=True)
class Knob:
    """A sandbox setting that makes the vendor less kind, plus the connection config it needs."""

    faults: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    settle_s: float = 0.0  # how long after the last change the vendor needs to show it everywhere


@dataclass(frozen=True)
class Case:
    name: str  # the connector's name, which is also the sandbox vendor's
    entities: dict[str, str]  # entity (asset) name -> the sandbox's entity name
    sizes: dict[str, int]  # the sandbox dataset
    small_pages: dict[str, Any]  # connection config giving pages of a few records
    throttle_status: int = 429  # how the vendor's "slow down" answer arrives
    auth_paths: tuple[str, ...] = ()  # token endpoints: requests that are not data requests
    # Mutations (besides plain edits and creates) that the racing writer mixes in: vendor behaviours
    # such as late-arriving records or client-set times. "pick": n edits n random records; "pick_hidden"
    # reveals one created with "hidden".
    extra_mutations: tuple[dict[str, Any], ...] = ()
    # Deletions, restores and merges the racing writer mixes in: each {"action", optional "entities"}.
    # HubSpot's purge (a GDPR delete) leaves no trace a sync can see until a full refresh: not mixed in.
    lifecycle: tuple[dict[str, Any], ...] = ()
    # Whether an incremental sync learns of deletions (Gong and Fireflies keep no feed: a full refresh does).
    deletion_feed: bool = True
    live_states: frozenset[str] = frozenset({"live"})  # truth states that are live rows
    # The deletion that leaves no trace an incremental read can see: only a full refresh's sweep finds it.
    vanish: str = "purge"
    # Data requests a full read makes before its first page of records is served (describe, COUNT(),
    # the boards list, the change log's position): a vendor outage after them fails the read part-way.
    requests_before_first_page: int = 0
    knobs: dict[str, Knob] = field(default_factory=dict)

    @property
    def connector(self) -> Connector:
        return CONNECTORS_BY_NAME[self.name]

    @property
    def oauth(self) -> bool:
        return bool(self.auth_paths)

    def is_data_request(self, path: str) -> bool:
        return not any(marker in path for marker in self.auth_paths)

    def is_live(self, truth: dict[str, Any]) -> bool:
        """Whether the sandbox's record should be a live row (a hidden Drive file is out of the user's view)."""
        return truth["state"] in self.live_states and not truth.get("hidden")


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            name="hubspot",
            entities={"deals": "deals", "contacts": "contacts", "accounts": "companies", "tasks": "tasks"},
            sizes={"deals": 90, "contacts": 60, "companies": 30, "tasks": 30},
            small_pages={"page_size": 20},
            auth_paths=("/oauth/",),
            lifecycle=(
                {"action": "delete"},
                {"action": "restore"},
                {"action": "merge", "entities": ["deals", "contacts", "companies"]},
            ),
            knobs={"search_index_lag": Knob(faults={"search_index_lag_ms": 1500}, settle_s=1.6)},
        ),
        Case(
            name="salesforce",
            entities={"deals": "Opportunity", "contacts": "Contact", "accounts": "Account", "tasks": "Task"},
            sizes={"Opportunity": 90, "Contact": 60, "Account": 30, "Task": 30},
            small_pages={"query_page_size": 20},
            throttle_status=403,  # REQUEST_LIMIT_EXCEEDED
            auth_paths=("/oauth2/",),
            requests_before_first_page=2,  # describe, COUNT()
            lifecycle=(
                {"action": "delete"},
                {"action": "restore"},
                {"action": "purge"},
                {"action": "merge", "entities": ["Account", "Contact"]},
            ),
            # An archived Task is not deleted (query just hides it). Archiving leaves SystemModstamp alone, so
            # its IsArchived flag is refreshed by a full refresh only: not in the racing mix
            # (test_deletions.py::test_an_archived_salesforce_task_stays_live).
            live_states=frozenset({"live", "archived"}),
            knobs={
                "commit_delay": Knob(faults={"commit_delay_ms": 1500}, settle_s=1.6),
                "short_bulk_results": Knob(faults={"bulk_short_results": 1}, config={"bulk_threshold": 10}),
                "query_locators": Knob(faults={"locator_ttl_s": 1, "max_open_locators": 2}),
            },
        ),
        Case(
            name="gong",
            entities={"calls": "calls"},
            sizes={"calls": 250},
            small_pages={},
            vanish="delete",  # Gong keeps no trace of a deleted call
            lifecycle=({"action": "delete"},),
            deletion_feed=False,
            extra_mutations=({"create": 1, "time_offset_s": -6 * 3600},),  # imported 6 h after it started
        ),
        Case(
            name="monday",
            entities={"tasks": "items"},
            sizes={"boards": 3, "items": 120},
            small_pages={"page_size": 15},
            requests_before_first_page=1,  # the boards list
            lifecycle=({"action": "archive"}, {"action": "delete"}, {"action": "restore"}, {"action": "purge"}),
        ),
        Case(
            name="fireflies",
            entities={"calls": "transcripts"},
            sizes={"transcripts": 140},
            small_pages={},
            throttle_status=200,  # a too_many_requests GraphQL error in a 200
            vanish="delete",  # nor Fireflies of a deleted transcript
            lifecycle=({"action": "delete"},),
            deletion_feed=False,
            extra_mutations=({"create": 1, "time_offset_s": -3 * 3600},),  # processed 3 h after the meeting
        ),
        Case(
            name="google_drive",
            entities={"documents": "files"},
            sizes={"files": 110},
            small_pages={"page_size": 20},
            throttle_status=403,  # userRateLimitExceeded
            auth_paths=("/token",),
            requests_before_first_page=1,  # the change log's position
            lifecycle=({"action": "trash"}, {"action": "restore"}, {"action": "hide"}, {"action": "purge"}),
            extra_mutations=(
                {"pick": 1, "modified_time": "2019-03-01T00:00:00.000Z"},  # set into the past by a client
                {"pick": 1, "modified_time": "2099-01-01T00:00:00.000Z"},  # and into the future
                {"create": 1, "hidden": True},  # a file the user cannot see yet...
                {"action": "reveal", "pick_hidden": 1},  # ...shared into view with its old modifiedTime
            ),
        ),
    )
}
