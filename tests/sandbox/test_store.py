"""EntityStore's range/rank arithmetic checked against a brute-force model on random queries."""

from __future__ import annotations

import random

from sandbox.store import ALL, EntityStore, Group, numeric_ranges, ranges_and


def _brute(store: EntityStore, groups: list[tuple[list, list, set | None]], by: str, desc: bool) -> list[int]:
    def ok(i: int) -> bool:
        ms = store.modified_ms(i)
        return any(
            any(lo <= ms < hi for lo, hi in g_ms)
            and any(lo <= i < hi for lo, hi in g_idx)
            and (keep is None or i in keep)
            for g_ms, g_idx, keep in groups
        )

    hits = [i for i in range(store.n_total) if ok(i)]
    key = (lambda i: (store.modified_ms(i), i)) if by == "modified" else (lambda i: i)
    return sorted(hits, key=key, reverse=desc)


def test_select_matches_brute_force() -> None:
    rng = random.Random(7)
    for trial in range(60):
        n = rng.randint(0, 60)
        store = EntityStore(n, lambda i: 1_000_000 + i * 1000 + (i * 37) % 1000)
        t = 2_000_000
        for _ in range(rng.randint(0, 5)):  # several mutation rounds, some re-mutating, some creating
            picks = rng.sample(range(store.n_total), min(store.n_total, rng.randint(0, 6)))
            t += rng.choice([0, 0, 5])  # same-ms rounds must still sort strictly later
            store.bump(picks, rng.randint(0, 2), t)
        groups, model = [], []
        for _ in range(rng.randint(1, 3)):
            g = Group()
            for _ in range(rng.randint(0, 3)):
                op = rng.choice(["GT", "GTE", "LT", "LTE", "EQ", "NEQ", "BETWEEN", "IN", "HAS_PROPERTY"])
                if rng.random() < 0.5:
                    v = store.modified_ms(rng.randrange(store.n_total)) if store.n_total else 0
                    r = numeric_ranges(op, v, v + rng.randint(0, 5000), [v, v + 1000])
                    g.ms = ranges_and(g.ms, r)
                else:
                    v = rng.randint(-2, n + 3)
                    g.idx = ranges_and(g.idx, numeric_ranges(op, v, v + rng.randint(0, 9), [v, v + 2]))
            keep = None
            if rng.random() < 0.3:
                keep = {i for i in range(store.n_total) if i % 3}
                g.residual = keep.__contains__
            groups.append(g)
            model.append((g.ms, g.idx, keep))
        sel = store.select(groups)
        for by in ("modified", "index"):
            for desc in (False, True):
                expected = _brute(store, model, by, desc)
                assert sel.total == len(expected), trial
                for offset in range(0, len(expected) + 2, 3):
                    limit = rng.randint(1, 7)
                    assert sel.page(by, desc, offset, limit) == expected[offset : offset + limit], (trial, by, desc)


def test_mutation_times_strictly_increase_within_same_ms() -> None:
    store = EntityStore(10, lambda i: i)
    t1, _ = store.bump([3], 0, 5_000)
    t2, created = store.bump([4], 2, 5_000)
    assert (t1, t2, created) == (5_000, 5_001, [10, 11])
    assert (
        store.select([Group(ms=list(ALL))]).page("modified", False, 8, 10) == [0, 1, 2, 5, 6, 7, 8, 9, 3, 4, 10, 11][8:]
    )
