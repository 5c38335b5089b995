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


def test_overlay_at_any_time_with_states_and_keep_matches_brute_force() -> None:
    """Records placed earlier than the base (late imports, client-set times), lifecycle states filtered by
    `keep`, and overlay-only selections page exactly like a brute-force sort."""
    rng = random.Random(11)
    for trial in range(80):
        n = rng.randint(0, 50)
        store = EntityStore(n, lambda i: 1_000_000 + i * 1000 + (i * 37) % 1000)
        for _ in range(rng.randint(0, 8)):
            kind = rng.random()
            if store.n_total and kind < 0.3:
                store.set_time(rng.randrange(store.n_total), rng.randint(900_000, 1_100_000))
            elif store.n_total and kind < 0.5:
                store.set_state(rng.randrange(store.n_total), rng.choice(["archived", "deleted", "live"]), 5)
            elif kind < 0.7:
                store.create(rng.randint(1, 2), rng.randint(900_000, 2_000_000))
            else:
                picks = rng.sample(range(store.n_total), min(store.n_total, rng.randint(0, 4)))
                store.bump(picks, rng.randint(0, 1), 1_500_000)
        lo = rng.randint(900_000, 1_060_000)
        g = Group(ms=[(lo, lo + rng.randint(0, 200_000))])
        dead = store.nonlive.__contains__
        for keep, base in ((None, True), (store.is_live, True), (dead, False)):
            sel = store.select([g], keep=keep, base=base)
            hits = [
                i
                for i in range(store.n_total)
                if store.exists(i)
                and g.ms[0][0] <= store.modified_ms(i) < g.ms[0][1]
                and (base or i in store.overrides)
                and (keep is None or i not in store.overrides or keep(i))
            ]
            assert sel.total == len(hits), trial
            times = {i: store.modified_ms(i) for i in hits}
            for by, key in (("modified", lambda i, t=times: (t[i], i)), ("index", lambda i: i)):
                for desc in (False, True):
                    expected = sorted(hits, key=key, reverse=desc)
                    for offset in range(0, len(expected) + 1):
                        got = sel.page(by, desc, offset, 4)
                        assert got == expected[offset : offset + 4], (trial, by, desc, offset)


def test_lagged_view_shows_the_previous_version_until_visible() -> None:
    from sandbox.store import Lagged

    store = EntityStore(5, lambda i: 1000 * (i + 1))
    lag = Lagged(store)
    assert lag.current(0, lagging=True) is store  # nothing pending: the reader reads the live store
    lag.prepare(lagging=True)
    t, _ = store.bump([1], 0, 10_000)
    lag.publish([1], t + 500, lagging=True)
    lag.prepare(lagging=True)
    _, created = store.bump([], 1, 10_000)
    lag.publish(created, t + 600, lagging=True)
    view = lag.current(t + 499, lagging=True)
    assert view.modified_ms(1) == 2000 and view.n_total == 5
    assert view.select([]).page("modified", False, 0, 10) == [0, 1, 2, 3, 4]
    view = lag.current(t + 500, lagging=True)
    assert view.select([]).page("modified", False, 0, 10) == [0, 2, 3, 4, 1]
    assert lag.current(t + 500, lagging=False).select([]).page("modified", False, 0, 10) == [0, 2, 3, 4, 1, 5]
    assert lag.current(t + 500, lagging=True) is store and lag.pending == 0


def test_a_record_leaves_no_earlier_than_its_last_edit_when_edits_ran_ahead_of_the_clock() -> None:
    store = EntityStore(3, lambda i: 1_000_000 + i)
    now = 2_000_000
    edited, _ = store.bump([0], 0, now)
    later, _ = store.bump([1], 0, now)  # the same ms: its time runs one ahead of the clock
    assert (edited, later) == (now, now + 1)
    # Deleted "now" by the clock: its deletedDate/archivedAt still follows its own edit.
    assert store.set_state(1, "purged", now).state_ms == now + 1
    assert store.set_state(2, "deleted", now + 5).state_ms == now + 5
    assert store.set_state(2, "live", now + 6).state_ms is None
