"""An entity collection generated on demand, with a small overlay of edits, that answers
"records matching these modified-time / id ranges, ordered, paged" without visiting every record.

Record i (0 <= i < size) is the i-th generated record; its base modified time grows strictly with i.
Mutated or created records live in an overlay ordered by their new (later) modified time, so the
modified-time order is: untouched base records by index, then overlay records by (time, index).
Per query the work is O(log N) bisects + O(overlay) + O(page), never O(N), unless a filter needs
a per-record predicate (then it scans the candidate ranges).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import Any

INF = 1 << 62
BATCH = 64  # from this many records on, overlay lists are rebuilt by one merge rather than edited in place
Ranges = list[tuple[int, int]]  # sorted, disjoint, half-open [lo, hi) integer ranges
ALL: Ranges = [(-INF, INF)]


def ranges_and(a: Ranges, b: Ranges) -> Ranges:
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def ranges_or(parts: Iterable[Ranges]) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(r for part in parts for r in part):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def ranges_not(a: Ranges) -> Ranges:
    out: Ranges = []
    cur = -INF
    for lo, hi in a:
        if lo > cur:
            out.append((cur, lo))
        cur = max(cur, hi)
    if cur < INF:
        out.append((cur, INF))
    return out


def in_ranges(r: Ranges, x: int) -> bool:
    k = bisect_right(r, (x, INF)) - 1
    return k >= 0 and r[k][0] <= x < r[k][1]


def numeric_ranges(
    op: str, value: float | None, high: float | None = None, values: list[float] | None = None
) -> Ranges:
    """The integer set a numeric filter admits. Values are pre-parsed by the vendor module."""

    def eq(v: float) -> Ranges:
        return [(int(v), int(v) + 1)] if v == int(v) else []

    if op == "HAS_PROPERTY":
        return list(ALL)
    if op == "NOT_HAS_PROPERTY":
        return []
    if op in ("IN", "NOT_IN"):
        admitted = ranges_or(eq(v) for v in values or [])
        return admitted if op == "IN" else ranges_not(admitted)
    assert value is not None
    if op == "EQ":
        return eq(value)
    if op == "NEQ":
        return ranges_not(eq(value))
    if op == "GT":
        return [(math.floor(value) + 1, INF)]
    if op == "GTE":
        return [(math.ceil(value), INF)]
    if op == "LT":
        return [(-INF, math.ceil(value))]
    if op == "LTE":
        return [(-INF, math.floor(value) + 1)]
    if op == "BETWEEN":
        assert high is not None
        lo, hi = math.ceil(value), math.floor(high) + 1
        return [(lo, hi)] if lo < hi else []
    raise ValueError(op)


LIVE = "live"


@dataclass(slots=True)
class Override:
    """A record's state once it differs from the generated one: its time, content and lifecycle."""

    modified_ms: int
    version: int  # content edits (drives the " (rev N)" suffix); 0 for a record created by mutate
    created_ms: int | None = None  # set only for created records (generated ones derive it)
    rev: int = 0  # every change, content or lifecycle: render-cache key, Drive's `version`
    state: str = LIVE  # live | deleted | archived | trashed | merged | purged (vendor modules decide)
    state_ms: int | None = None  # when the record entered `state` (archivedAt, deletedDate)
    merged_into: int | None = None
    attrs: dict[str, Any] | None = None  # vendor-specific extras

    def clone(self) -> Override:
        attrs = dict(self.attrs) if self.attrs else None
        return Override(
            self.modified_ms,
            self.version,
            self.created_ms,
            self.rev,
            self.state,
            self.state_ms,
            self.merged_into,
            attrs,
        )


@dataclass
class Group:
    """One AND-group of constraints; a query is an OR of groups."""

    ms: Ranges = field(default_factory=lambda: list(ALL))
    idx: Ranges = field(default_factory=lambda: list(ALL))
    residual: Callable[[int], bool] | None = None  # per-record check for anything not range-shaped


class IndexSet:
    """Indices in `ranges` minus the mutated base indices (`holes`), with rank/select in O(log)."""

    def __init__(self, ranges: Ranges, holes: list[int], hole_set: set[int]):
        self.ranges, self._holes, self._hole_set = ranges, holes, hole_set
        self._starts = [lo for lo, _ in ranges]
        self._prefix = [0]
        for lo, hi in ranges:
            self._prefix.append(self._prefix[-1] + self._count(lo, hi))

    def _count(self, lo: int, hi: int) -> int:
        return (hi - lo) - (bisect_left(self._holes, hi) - bisect_left(self._holes, lo))

    def __len__(self) -> int:
        return self._prefix[-1]

    def count_below(self, x: int) -> int:
        k = bisect_left(self._starts, x)
        if k == 0:
            return 0
        lo, hi = self.ranges[k - 1]
        return self._prefix[k - 1] + self._count(lo, min(hi, x))

    def kth(self, k: int) -> int:
        """The k-th (0-based) index in ascending order."""
        r = bisect_right(self._prefix, k) - 1
        want = k - self._prefix[r]
        lo, hi = self.ranges[r]
        a, b = lo, hi - 1
        while a < b:  # smallest x with count(lo, x + 1) > want
            mid = (a + b) // 2
            if self._count(lo, mid + 1) > want:
                b = mid
            else:
                a = mid + 1
        return a

    def iter_up(self, x: int) -> Iterator[int]:
        holes = self._hole_set
        for lo, hi in self.ranges[max(bisect_right(self._starts, x) - 1, 0) :]:
            for i in range(max(lo, x), hi):
                if i not in holes:
                    yield i

    def iter_down(self, below: int) -> Iterator[int]:
        holes = self._hole_set
        for lo, hi in reversed(self.ranges[: bisect_left(self._starts, below)]):
            for i in range(min(hi, below) - 1, lo - 1, -1):
                if i not in holes:
                    yield i


class Selection:
    """The records a query matches: base indices (implicit) plus overlay records as sorted (time, index)."""

    def __init__(self, base: IndexSet, moved: list[tuple[int, int]], n_total: int, base_ms: Callable[[int], int]):
        self.base, self.moved, self._n_total, self._base_ms = base, moved, n_total, base_ms
        self.total = len(base) + len(moved)

    @cached_property
    def moved_by_idx(self) -> list[int]:
        return sorted(i for _, i in self.moved)

    def _nth_by_index(self, rank: int) -> int:
        a, b = 0, self._n_total - 1
        while a < b:  # smallest x with (#selected indices <= x) > rank
            mid = (a + b) // 2
            if self.base.count_below(mid + 1) + bisect_right(self.moved_by_idx, mid) > rank:
                b = mid
            else:
                a = mid + 1
        return a

    def _split(self, k: int) -> int:
        """How many overlay records are among the first k records in (time, index) order: O(log^2 N)."""
        base, moved, bm = self.base, self.moved, self._base_ms
        lo, hi = max(0, k - len(base)), min(k, len(moved))
        while lo < hi:  # smallest j whose base predecessor (the (k-j)-th base record) sorts before moved[j]
            j = (lo + hi) // 2
            i = base.kth(k - j - 1)
            if (bm(i), i) > moved[j]:
                lo = j + 1
            else:
                hi = j
        return lo

    def _keyed(self, indices: Iterable[int]) -> Iterator[tuple[int, int]]:
        bm = self._base_ms
        return ((bm(i), i) for i in indices)

    def page(self, by: str, descending: bool, offset: int, limit: int) -> list[int]:
        """Indices at [offset, offset+limit) ordered by 'modified' (ties by index) or 'index'."""
        if offset >= self.total or limit <= 0:
            return []
        base, moved = self.base, self.moved
        it: Iterable[int]
        if by == "modified" and not moved:
            it = (
                base.iter_up(base.kth(offset))
                if not descending
                else base.iter_down(base.kth(self.total - 1 - offset) + 1)
            )
        elif by == "modified" and not descending:
            j = self._split(offset)
            b = offset - j
            base_part = self._keyed(base.iter_up(base.kth(b))) if b < len(base) else iter(())
            it = (i for _, i in heapq.merge(base_part, islice(moved, j, None)))
        elif by == "modified":
            p = self.total - offset  # the page starts at the p-th record in ascending order
            j = self._split(p)
            b = p - j
            base_part = self._keyed(base.iter_down(base.kth(b - 1) + 1)) if b > 0 else iter(())
            it = (i for _, i in heapq.merge(base_part, reversed(moved[:j]), reverse=True))
        elif not descending:
            x = self._nth_by_index(offset)
            it = heapq.merge(base.iter_up(x), self.moved_by_idx[bisect_left(self.moved_by_idx, x) :])
        else:
            x = self._nth_by_index(self.total - 1 - offset)
            tail = reversed(self.moved_by_idx[: bisect_right(self.moved_by_idx, x)])
            it = heapq.merge(base.iter_down(x + 1), tail, reverse=True)
        return list(islice(it, limit))


class EntityStore:
    """Generated records 0..n_base-1 plus an overlay of changed and created ones.

    Base records are always live and sit at their generated time. Any record that changed (an edit, a
    lifecycle state, a time set by hand) lives in the overlay, which may hold any time, earlier or later
    than the base ones. `select(..., keep=...)` filters the overlay only, so excluding deleted or archived
    records costs O(overlay), never O(N).
    """

    def __init__(self, size: int, base_ms: Callable[[int], int]):
        self.n_base = self.n_total = size
        self._base_ms = base_ms
        self.overrides: dict[int, Override] = {}
        self._holes: list[int] = []  # sorted base indices that moved to the overlay
        self._hole_set: set[int] = set()
        self._moved: list[tuple[int, int]] = []  # overlay as sorted (modified_ms, index)
        self.nonlive: set[int] = set()  # overlay indices whose state is not LIVE
        self.last_ms = base_ms(size - 1) if size else 0

    def copy(self) -> EntityStore:
        """An independent snapshot (O(overlay)); the generated base is shared."""
        c = EntityStore.__new__(EntityStore)
        c.n_base, c.n_total, c._base_ms, c.last_ms = self.n_base, self.n_total, self._base_ms, self.last_ms
        c.overrides = {i: o.clone() for i, o in self.overrides.items()}
        c._holes, c._hole_set = list(self._holes), set(self._hole_set)
        c._moved, c.nonlive = list(self._moved), set(self.nonlive)
        return c

    def base_ms(self, i: int) -> int:
        return self._base_ms(i)

    def modified_ms(self, i: int) -> int:
        o = self.overrides.get(i)
        return o.modified_ms if o else self._base_ms(i)

    def state(self, i: int) -> str:
        o = self.overrides.get(i)
        return o.state if o else LIVE

    def is_live(self, i: int) -> bool:
        return i not in self.nonlive

    def exists(self, i: int) -> bool:
        return 0 <= i < self.n_total and (i < self.n_base or i in self.overrides)

    def next_ms(self, now_ms: int) -> int:
        """A mutation time strictly after every earlier one (mutations in one ms still sort in order)."""
        t = max(now_ms, self.last_ms + 1)
        self.last_ms = t
        return t

    def _place(self, i: int, ms: int) -> None:
        pair = (ms, i)
        if not self._moved or self._moved[-1] < pair:
            self._moved.append(pair)
        else:
            insort(self._moved, pair)

    def _unplace(self, i: int, ms: int) -> None:
        del self._moved[bisect_left(self._moved, (ms, i))]

    def touch(self, i: int) -> Override:
        """Record i's overlay entry; a base record enters the overlay unchanged (same time, version 0)."""
        o = self.overrides.get(i)
        if o is None:
            o = self.overrides[i] = Override(self._base_ms(i), 0)
            insort(self._holes, i)
            self._hole_set.add(i)
            self._place(i, o.modified_ms)
        return o

    def set_time(self, i: int, ms: int) -> Override:
        """Move record i to `ms` (any time, earlier or later); counts as a change (rev)."""
        o = self.touch(i)
        if o.modified_ms != ms:
            self._unplace(i, o.modified_ms)
            o.modified_ms = ms
            self._place(i, ms)
        o.rev += 1
        return o

    def set_state(
        self, i: int, state: str, at_ms: int | None = None, merged_into: int | None = None, keep_since: bool = False
    ) -> Override:
        """Enter a lifecycle state without touching the record's time; `keep_since` keeps state_ms. The
        moment is never before the last mutation time handed out: a burst of mutations in one ms runs those
        times ahead of the clock (next_ms), and a vendor dates a deletion after the edit it follows."""
        o = self.touch(i)
        if not (keep_since and o.state_ms is not None):
            o.state_ms = None if state == LIVE or at_ms is None else max(at_ms, self.last_ms)
        o.state, o.merged_into = state, merged_into
        o.rev += 1
        if state == LIVE:
            self.nonlive.discard(i)
        else:
            self.nonlive.add(i)
        return o

    def bump(self, indices: Iterable[int], create: int, now_ms: int) -> tuple[int, list[int]]:
        """Mark records modified (and append `create` new ones) at one ms strictly after all prior times."""
        t = self.next_ms(now_ms)
        picks = sorted(set(indices))
        stale: list[tuple[int, int]] = []
        fresh: list[int] = []
        for i in picks:
            o = self.overrides.get(i)
            if o is not None:
                stale.append((o.modified_ms, i))
                o.modified_ms, o.version, o.rev = t, o.version + 1, o.rev + 1
            else:
                self.overrides[i] = Override(t, 1, rev=1)
                fresh.append(i)
        self._remove_pairs(stale)
        self._add_holes(fresh)
        self._add_pairs([(t, i) for i in picks])
        return t, self.create(create, t)

    # Batch edits of the sorted lists: one merge instead of many O(overlay) inserts.
    def _remove_pairs(self, pairs: list[tuple[int, int]]) -> None:
        if len(pairs) < BATCH:
            for p in pairs:
                del self._moved[bisect_left(self._moved, p)]
        else:
            drop = set(pairs)
            self._moved = [p for p in self._moved if p not in drop]

    def _add_holes(self, indices: list[int]) -> None:
        """`indices`: sorted base indices not yet in the overlay."""
        if len(indices) < BATCH:
            for i in indices:
                insort(self._holes, i)
        else:
            self._holes = list(heapq.merge(self._holes, indices))
        self._hole_set.update(indices)

    def _add_pairs(self, pairs: list[tuple[int, int]]) -> None:
        """`pairs`: sorted (time, index) pairs not yet in the overlay."""
        if not pairs:
            return
        if not self._moved or self._moved[-1] < pairs[0]:
            self._moved.extend(pairs)
        elif len(pairs) < BATCH:
            for p in pairs:
                insort(self._moved, p)
        else:
            self._moved = list(heapq.merge(self._moved, pairs))

    def create(self, n: int, at_ms: int) -> list[int]:
        """Append `n` new records at `at_ms` (any time: a late import can be older than existing ones)."""
        created = list(range(self.n_total, self.n_total + n))
        for i in created:
            self.overrides[i] = Override(at_ms, 0, created_ms=at_ms)
            self._place(i, at_ms)
        self.n_total += n
        return created

    def put(self, i: int, o: Override) -> None:
        """Make record i exactly `o` (a snapshot taken from another store with the same base)."""
        self.put_many([(i, o)])

    def put_many(self, items: list[tuple[int, Override]]) -> None:
        """`put` for distinct indices at once."""
        stale: list[tuple[int, int]] = []
        fresh: list[int] = []
        for i, o in items:
            old = self.overrides.get(i)
            if old is not None:
                stale.append((old.modified_ms, i))
            elif i < self.n_base:
                fresh.append(i)
            self.overrides[i] = o
            if o.state == LIVE:
                self.nonlive.discard(i)
            else:
                self.nonlive.add(i)
            self.n_total = max(self.n_total, i + 1)
        self._remove_pairs(stale)
        self._add_holes(sorted(fresh))
        self._add_pairs(sorted((o.modified_ms, i) for i, o in items))

    def select(self, groups: list[Group], keep: Callable[[int], bool] | None = None, base: bool = True) -> Selection:
        """Records matching any group. `keep` filters overlay records only (base records are generated, hence
        live); `base=False` leaves the generated records out altogether (e.g. "archived records only")."""
        parts: list[Ranges] = []
        moved_parts: list[list[tuple[int, int]]] = []
        for g in groups or [Group()]:
            if base:
                lo_hi = [(self._first_base_at_or_after(lo), self._first_base_at_or_after(hi)) for lo, hi in g.ms]
                base_r = ranges_and(ranges_or([lo_hi]), ranges_and(g.idx, [(0, self.n_base)]))
                if g.residual is not None:
                    candidates = IndexSet(base_r, self._holes, self._hole_set).iter_up(-INF)
                    base_r = _coalesce(i for i in candidates if g.residual(i))
                parts.append(base_r)
            hits: list[tuple[int, int]] = []
            for lo, hi in g.ms:  # the overlay is sorted by time, so each time range is one slice
                hits += self._moved[bisect_left(self._moved, (lo, -INF)) : bisect_left(self._moved, (hi, -INF))]
            if g.idx != ALL:
                hits = [p for p in hits if in_ranges(g.idx, p[1])]
            if g.residual is not None:
                hits = [p for p in hits if g.residual(p[1])]
            if keep is not None:
                hits = [p for p in hits if keep(p[1])]
            moved_parts.append(hits)
        # One group's slices are already in time order; an OR of groups needs a de-duplicating merge.
        merged = moved_parts[0] if len(moved_parts) == 1 else sorted(set().union(*moved_parts))
        base_set = IndexSet(ranges_or(parts), self._holes, self._hole_set)
        return Selection(base_set, merged, self.n_total, self._base_ms)

    def _first_base_at_or_after(self, ms: int) -> int:
        return bisect_left(range(self.n_base), ms, key=self._base_ms)


class Lagged:
    """What a lagging reader sees of a live store: HubSpot's search index, Salesforce's committed rows.

    Each change is published with the moment it becomes visible; until then the reader keeps the record's
    previous version (a created record is absent). While nothing is pending the reader simply reads the
    live store, so with the lag off this costs nothing; the first change made with the lag on takes a copy
    of the overlay (O(overlay)) that the reader uses until every pending change is visible again.
    Protocol: `prepare(lagging)` before changing the live store, `publish(...)` after.
    """

    def __init__(self, live: EntityStore):
        self.live = live
        self._view: EntityStore | None = None  # None: the reader sees the live store
        self._pending: list[tuple[int, int, int, Override]] = []  # heap of (visible_at_ms, seq, index, version)
        self._seq = 0

    def prepare(self, lagging: bool) -> None:
        """Call before changing the live store: with the lag on, readers keep the versions from before."""
        if lagging and self._view is None:
            self._view = self.live.copy()

    def publish(self, indices: Iterable[int], visible_at_ms: int, lagging: bool) -> None:
        if self._view is None:
            return  # readers read the live store: the change is visible already
        snapshots = [(i, self.live.overrides[i].clone()) for i in dict.fromkeys(indices)]
        if not lagging:
            self.current(visible_at_ms, lagging=False)  # anything still pending first, in order
            if self._view is not None:
                self._view.put_many(snapshots)
            return
        for i, snapshot in snapshots:
            self._seq += 1
            heapq.heappush(self._pending, (visible_at_ms, self._seq, i, snapshot))

    def current(self, now_ms: int, lagging: bool) -> EntityStore:
        """The reader's store at `now_ms`; with lag off everything still pending becomes visible."""
        view, pending = self._view, self._pending
        if view is None:
            return self.live
        while pending and (not lagging or pending[0][0] <= now_ms):
            _, _, i, snapshot = heapq.heappop(pending)
            seen = view.overrides.get(i)
            if seen is None or seen.rev <= snapshot.rev:  # a newer version already visible wins
                view.put(i, snapshot.clone())
        if not pending:  # every change is visible: the view equals the live store again
            self._view = None
            return self.live
        return view

    @property
    def pending(self) -> int:
        return len(self._pending)


def _coalesce(indices: Iterable[int]) -> Ranges:
    out: Ranges = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out
