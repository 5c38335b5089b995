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
from itertools import chain, islice

INF = 1 << 62
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


@dataclass(slots=True)
class Override:
    modified_ms: int
    version: int  # how many times mutated; 0 for a record created by mutate
    created_ms: int | None = None  # set only for created records (generated ones derive it)


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
    def __init__(self, base: IndexSet, moved_by_time: list[int], n_total: int):
        self.base, self.moved_by_time, self._n_total = base, moved_by_time, n_total
        self.total = len(base) + len(moved_by_time)

    @cached_property
    def moved_by_idx(self) -> list[int]:
        return sorted(self.moved_by_time)

    def _nth_by_index(self, rank: int) -> int:
        a, b = 0, self._n_total - 1
        while a < b:  # smallest x with (#selected indices <= x) > rank
            mid = (a + b) // 2
            if self.base.count_below(mid + 1) + bisect_right(self.moved_by_idx, mid) > rank:
                b = mid
            else:
                a = mid + 1
        return a

    def page(self, by: str, descending: bool, offset: int, limit: int) -> list[int]:
        """Indices at [offset, offset+limit) ordered by 'modified' (ties by index) or 'index'."""
        if offset >= self.total or limit <= 0:
            return []
        base, moved = self.base, self.moved_by_time
        it: Iterable[int]
        if by == "modified" and not descending and offset < len(base):
            it = chain(base.iter_up(base.kth(offset)), moved)
        elif by == "modified" and not descending:
            it = moved[offset - len(base) :]
        elif by == "modified" and offset < len(moved):
            it = chain(reversed(moved[: len(moved) - offset]), base.iter_down(INF))
        elif by == "modified":
            it = base.iter_down(base.kth(len(base) - 1 - (offset - len(moved))) + 1)
        elif not descending:
            x = self._nth_by_index(offset)
            it = heapq.merge(base.iter_up(x), self.moved_by_idx[bisect_left(self.moved_by_idx, x) :])
        else:
            x = self._nth_by_index(self.total - 1 - offset)
            tail = reversed(self.moved_by_idx[: bisect_right(self.moved_by_idx, x)])
            it = heapq.merge(base.iter_down(x + 1), tail, reverse=True)
        return list(islice(it, limit))


class EntityStore:
    def __init__(self, size: int, base_ms: Callable[[int], int]):
        self.n_base = self.n_total = size
        self._base_ms = base_ms
        self.overrides: dict[int, Override] = {}
        self._holes: list[int] = []  # sorted base indices that moved to the overlay
        self._hole_set: set[int] = set()
        self._moved: list[tuple[int, int]] = []  # overlay as sorted (modified_ms, index)
        self.last_ms = base_ms(size - 1) if size else 0

    def modified_ms(self, i: int) -> int:
        o = self.overrides.get(i)
        return o.modified_ms if o else self._base_ms(i)

    def _first_base_at_or_after(self, ms: int) -> int:
        return bisect_left(range(self.n_base), ms, key=self._base_ms)

    def bump(self, indices: Iterable[int], create: int, now_ms: int) -> tuple[int, list[int]]:
        """Mark records modified (and append `create` new ones) at one ms strictly after all prior times."""
        t = max(now_ms, self.last_ms + 1)
        self.last_ms = t
        for i in sorted(set(indices)):
            o = self.overrides.get(i)
            if o is not None:
                del self._moved[bisect_left(self._moved, (o.modified_ms, i))]
                o.modified_ms, o.version = t, o.version + 1
            else:
                self.overrides[i] = Override(t, 1)
                insort(self._holes, i)
                self._hole_set.add(i)
            self._moved.append((t, i))  # t exceeds every earlier time, so appending keeps order
        created = list(range(self.n_total, self.n_total + create))
        for i in created:
            self.overrides[i] = Override(t, 0, created_ms=t)
            self._moved.append((t, i))
        self.n_total += create
        return t, created

    def select(self, groups: list[Group]) -> Selection:
        parts: list[Ranges] = []
        moved_parts: list[list[tuple[int, int]]] = []
        for g in groups or [Group()]:
            base = ranges_or([(self._first_base_at_or_after(lo), self._first_base_at_or_after(hi))] for lo, hi in g.ms)
            base = ranges_and(base, ranges_and(g.idx, [(0, self.n_base)]))
            if g.residual is not None:
                base = _coalesce(i for i in IndexSet(base, self._holes, self._hole_set).iter_up(-INF) if g.residual(i))
            parts.append(base)
            hits: list[tuple[int, int]] = []
            for lo, hi in g.ms:  # the overlay is sorted by time, so each time range is one slice
                hits += self._moved[bisect_left(self._moved, (lo, -INF)) : bisect_left(self._moved, (hi, -INF))]
            if g.idx != ALL:
                hits = [p for p in hits if in_ranges(g.idx, p[1])]
            if g.residual is not None:
                hits = [p for p in hits if g.residual(p[1])]
            moved_parts.append(hits)
        # One group's slices are already in time order; an OR of groups needs a de-duplicating merge.
        merged = moved_parts[0] if len(moved_parts) == 1 else sorted(set().union(*moved_parts))
        base_set = IndexSet(ranges_or(parts), self._holes, self._hole_set)
        return Selection(base_set, [i for _, i in merged], self.n_total)


def _coalesce(indices: Iterable[int]) -> Ranges:
    out: Ranges = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out
