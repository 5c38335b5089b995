"""Reconciliation, the test of correctness: while a writer edits and creates records at the vendor, a full
sync and then an incremental sync run; after one quiescent incremental sync the warehouse equals the
vendor, record by record (id, last-modified value and the whole record), read back through the vendor's
API. Each connector runs it plainly, with edits landing between its pages, and under each adversarial
knob that models its vendor's documented behaviour (tests/contract/cases.py)."""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync_assets import CONNECTORS
from sync_assets.watermark import FilterKind
from tests.conftest import register
from tests.contract.cases import CASES, Case, Knob
from tests.contract.conftest import Connected

PLAIN, EDITS_DURING_PAGING = "plain", "edits_during_paging"


def edits_during_paging(case: Case) -> Knob:
    """Records changed after each of the first three data pages: two edits (a record read early moves to
    the end of a modified-time order, and a live offset would shift an unread one past the reader), and,
    where records arrive late with old times (Gong, Fireflies), a late one lands inside the read."""
    entities = list(case.entities.values())
    change = (
        {"create": 1, "time_offset_s": -3600} if case.extra_mutations and case.name != "google_drive" else {"count": 2}
    )
    triggers = [{"after": n, "mutation": {"entity": entities[n % len(entities)], **change}} for n in (1, 2, 3)]
    return Knob(faults={"mutate_after_requests": triggers})


def knob_of(case: Case, name: str) -> Knob:
    if name == PLAIN:
        return Knob()
    if name == EDITS_DURING_PAGING:
        return edits_during_paging(case)
    return case.knobs[name]


SCENARIOS = [(c.name, knob) for c in CONNECTORS for knob in (PLAIN, EDITS_DURING_PAGING, *CASES[c.name].knobs)]


def editable(c: Connected, vendor_entity: str) -> list[str]:
    """The records whose edits an incremental read can see. Where the vendor filters on a time that an
    edit does not move (Gong, Fireflies: the call's time), that is only the records inside the lookback
    of now (the writer's new calls move the watermark to now); older edits wait for a full refresh, as
    the connector documents. The writer adds what it creates."""
    records = [r for r in c.sandbox.truth(c.case.name, vendor_entity) if r["state"] == "live" and not r.get("hidden")]
    cursor = c.case.connector.entities[0].cursor
    if cursor.filter is not FilterKind.WINDOW:
        return [r["id"] for r in records]
    horizon = datetime.now(UTC) - cursor.lookback + timedelta(hours=1)  # an hour's margin for the watermark
    return [r["id"] for r in records if datetime.fromisoformat(r["modified"]) >= horizon]


class RacingWriter(threading.Thread):
    """Edits, creates, deletes, restores and merges records at the vendor at random moments while syncs
    run (seeded). It keeps track of which ids each action may take: live ones for edits and deletions,
    deleted ones for restores, hidden Drive files for reveals."""

    def __init__(self, connected: Connected, seed: int) -> None:
        super().__init__(name="racing-writer", daemon=True)
        self.c, self.rng = connected, random.Random(seed)
        self.ids = {v: editable(connected, v) for v in connected.case.entities.values()}
        self.gone: dict[str, list[str]] = {v: [] for v in self.ids}  # restorable
        self.hidden: dict[str, list[str]] = {v: [] for v in self.ids}
        self.stop = threading.Event()
        self.applied = 0
        self.failure: BaseException | None = None

    def mutation(self, entity: str) -> dict[str, Any] | None:
        roll = self.rng.random()
        if roll < 0.2 or not self.ids[entity]:
            return {"create": 1}
        lifecycle = [t for t in self.c.case.lifecycle if entity in t.get("entities", [entity])]
        if lifecycle and roll < 0.45:
            return self.lifecycle(entity, dict(self.rng.choice(lifecycle)))
        if self.c.case.extra_mutations and roll < 0.6:
            return self.picked(entity, dict(self.rng.choice(self.c.case.extra_mutations)))
        return {"ids": self.rng.sample(self.ids[entity], k=min(3, len(self.ids[entity])))}

    def picked(self, entity: str, template: dict[str, Any]) -> dict[str, Any] | None:
        if template.pop("pick", 0):
            template["ids"] = [self.rng.choice(self.ids[entity])]
        if template.pop("pick_hidden", 0):
            if not self.hidden[entity]:
                return None
            template["ids"] = [self.hidden[entity].pop(self.rng.randrange(len(self.hidden[entity])))]
            self.ids[entity].extend(template["ids"])
        return template

    def lifecycle(self, entity: str, template: dict[str, Any]) -> dict[str, Any] | None:
        template.pop("entities", None)
        action = template["action"]
        if action == "restore":
            if not self.gone[entity]:
                return None
            restored = self.gone[entity].pop(self.rng.randrange(len(self.gone[entity])))
            self.ids[entity].append(restored)
            return {**template, "ids": [restored]}
        if len(self.ids[entity]) < 2:
            return None
        target = self.ids[entity].pop(self.rng.randrange(len(self.ids[entity])))
        if action == "merge":
            return {**template, "ids": [target], "into": self.rng.choice(self.ids[entity])}
        if action in ("delete", "archive", "trash"):
            self.gone[entity].append(target)
        elif action == "hide":
            self.hidden[entity].append(target)
        return {**template, "ids": [target]}

    def run(self) -> None:
        try:
            while not self.stop.wait(self.rng.uniform(0.02, 0.12)):
                entity = self.rng.choice(list(self.ids))
                body = self.mutation(entity)
                if body is None:
                    continue
                result = self.c.sandbox.mutate(self.c.case.name, entity, **body)
                created = result.get("created_ids") or []
                (self.hidden if body.get("hidden") else self.ids)[entity].extend(created)
                self.applied += 1
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.failure = exc

    def __enter__(self) -> RacingWriter:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(timeout=30)


def first_difference(stored: dict[str, tuple], at_vendor: dict[str, tuple], stale: list[str]) -> str:
    if not stale:
        return ""
    (ours_at, ours), (theirs_at, theirs) = stored[stale[0]], at_vendor[stale[0]]
    fields = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    return f"{stale[0]}: stored {ours_at} vs vendor {theirs_at}; fields differing: {fields}"


def assert_reconciled(c: Connected, seed: int, deletions_known: bool = True) -> None:
    """Live rows equal the vendor's live records (read back through its API), and the rows of records
    the vendor deleted, archived, trashed, merged away or lost from view are exactly the deleted rows.
    Without ``deletions_known`` (a vendor with no deletion feed, before a full refresh) rows of deleted
    records may still be live; everything else must hold."""
    stored, at_vendor, lifecycle = c.warehouse_rows(), c.vendor_rows(), c.warehouse_lifecycle()
    for entity, vendor_entity in c.case.entities.items():
        truth = {r["id"]: r for r in c.sandbox.truth(c.case.name, vendor_entity)}
        live = {i for i, r in truth.items() if c.case.is_live(r)}
        kept = {i for i in stored[entity] if not lifecycle[entity][i][0]}
        missing, extra = sorted(live - kept), sorted(kept - live) if deletions_known else []
        stale = sorted(i for i in live & kept if stored[entity][i] != at_vendor[entity].get(i))
        detail = first_difference(stored[entity], at_vendor[entity], stale)
        assert (missing, stale, extra) == ([], [], []), f"{entity} (seed {seed}): {detail}"
        unknown = sorted(set(stored[entity]) - set(truth))
        assert unknown == [], f"{entity}: rows of records the vendor never had"
        wrong_survivor = sorted(
            i
            for i, (deleted, merged_into) in lifecycle[entity].items()
            if deleted and truth[i]["merged_into"] and merged_into != truth[i]["merged_into"]
        )
        # (loser, the survivor stored, the vendor's survivor, that survivor's own record at the vendor)
        found = [
            (i, lifecycle[entity][i][1], truth[i]["merged_into"], truth[truth[i]["merged_into"]])
            for i in wrong_survivor
        ]
        assert wrong_survivor == [], f"{entity} (seed {seed}): merged rows name another survivor: {found}"


def race_then_reconcile(c: Connected, knob: Knob, seed: int, warehouse, sandbox) -> None:
    if knob.config:
        register(
            warehouse,
            c.instance,
            sandbox,
            c.workspace,
            [c.case.name],
            **c.case.small_pages,
            **knob.config,
        )
    if knob.faults:
        sandbox.faults(c.case.name, **knob.faults)
    with RacingWriter(c, seed) as writer:
        c.sync()  # the full sync; under some knobs a read fails on purpose, which must lose nothing either
        c.sync()
    assert writer.failure is None, writer.failure
    assert writer.applied > 0, "the writer never raced the syncs"
    sandbox.clear_faults(c.case.name)
    time.sleep(knob.settle_s)
    quiescent = c.sync()
    assert quiescent.success
    assert_reconciled(c, seed, deletions_known=c.case.deletion_feed)
    if not c.case.deletion_feed:
        assert c.sync(tags={"full_refresh": "true"}).success
        assert_reconciled(c, seed)


@pytest.mark.parametrize(("case", "knob"), SCENARIOS, indirect=["case"], ids=[f"{c}-{k}" for c, k in SCENARIOS])
def test_the_warehouse_equals_the_vendor_after_syncs_race_with_edits(connected: Connected, knob, warehouse, sandbox):
    race_then_reconcile(connected, knob_of(connected.case, knob), seed=17, warehouse=warehouse, sandbox=sandbox)


RANDOM_BUDGET_S = float(os.environ.get("RECONCILE_RANDOM_BUDGET_S", "45"))


def test_the_warehouse_equals_the_vendor_with_a_random_seed_and_knob(warehouse, instance, sandbox, unlimited):
    """Random connectors, knobs and seeds until the time budget is spent; the seed is in every failure."""
    seed = int(os.environ.get("RECONCILE_SEED", time.time_ns() % 1_000_000))
    rng, deadline, rounds = random.Random(seed), time.monotonic() + RANDOM_BUDGET_S, 0
    while time.monotonic() < deadline or rounds == 0:
        name, knob = rng.choice(SCENARIOS)
        case = CASES[name]
        sandbox.reset(seed=rng.randrange(1000), sizes={case.name: case.sizes}, enforce_limits=False)
        workspace = f"random-{rounds}"
        register(warehouse, instance, sandbox, workspace, [case.name], **case.small_pages)
        c = Connected(case, instance, sandbox, workspace)
        try:
            race_then_reconcile(
                c, knob_of(case, knob), seed=rng.randrange(1 << 30), warehouse=warehouse, sandbox=sandbox
            )
        except AssertionError as exc:  # name what reproduces the round, not only the writer's seed
            raise AssertionError(f"RECONCILE_SEED={seed}, round {rounds} ({name}, {knob}): {exc}") from None
        rounds += 1
