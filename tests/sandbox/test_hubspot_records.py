"""In-process checks of the HubSpot record generator (no HTTP)."""

from __future__ import annotations

import json

from sandbox.hubspot import OBJECTS, HubSpot


def test_hand_rolled_json_equals_json_dumps() -> None:
    v = HubSpot()
    v.reset_state(11, {"deals": 300, "contacts": 300, "companies": 300, "tasks": 300}, True)
    for name, spec in OBJECTS.items():
        v.mutate(name, 20, None, 5)
        v.mutate(name, 0, [str(spec.id_base + 3), str(spec.id_base + 301)], 0)
        v.faults.merge({"bad_records": [str(spec.id_base + 7)]})
        for wanted in (None, frozenset({"createdate", "nosuch"}), frozenset(spec.prop_names())):
            for i in range(305):
                for _ in range(2):  # second pass comes from the cache
                    assert json.loads(v.record_json(spec, i, wanted)) == v.record(spec, i, wanted), (name, i)
        bad = v.record(spec, 7)
        assert bad["properties"][spec.modified_prop] == "not-a-date" and bad["updatedAt"] != "not-a-date"
        v.faults.merge({"bad_records": []})
        assert json.loads(v.record_json(spec, 7))["properties"][spec.modified_prop] == bad["updatedAt"]


def test_million_record_dataset_is_lazy_and_searchable() -> None:
    v = HubSpot()
    v.reset_state(1, {"deals": 1_000_000}, True)
    spec, store = OBJECTS["deals"], v.stores["deals"]
    last = v.record(spec, 999_999)
    assert last["id"] == "30999999"
    assert store.modified_ms(999_999) > store.modified_ms(999_998)
    mutated = v.mutate("deals", 0, ["30500000", "30000001"], 0)
    assert mutated["ids"] == ["30500000", "30000001"]
    newest = store.select([]).page("modified", True, 0, 3)
    # One mutation batch ties on time; ties go by id (descending order is the exact reverse).
    assert newest == [500_000, 1, 999_999]
    assert store.select([]).page("modified", False, 999_997, 5) == [999_999, 1, 500_000]


def test_hand_rolled_json_covers_archived_and_merged_records() -> None:
    from sandbox.mutation import Mutation

    v = HubSpot()
    v.reset_state(3, {"deals": 20}, True)
    spec = OBJECTS["deals"]
    v.apply(Mutation("deals", action="archive", ids=[str(spec.id_base + 4)]))
    v.apply(Mutation("deals", action="merge", ids=[str(spec.id_base + 6)], into=str(spec.id_base + 7)))
    wanted = frozenset({"dealname", "hs_merged_object_ids"})
    for props in (None, wanted):
        for i in range(20):
            for _ in range(2):
                assert json.loads(v.record_json(spec, i, props)) == v.record(spec, i, props), i
    archived = v.record(spec, 4)
    assert archived["archived"] is True and archived["archivedAt"].endswith("Z")
    assert v.record(spec, 7, wanted)["properties"]["hs_merged_object_ids"] == str(spec.id_base + 6)
