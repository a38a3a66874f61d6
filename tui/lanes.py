"""Lanes in attention order, kept up to date incrementally, and per-lane regex filters.

Pure data (no widgets): one snapshot in, ordered task ids out. A task's lane is its verdict's
effective state. Order: tasks with findings first (worst severity first), then priority
P0..P3, then age (the file settled longest ago first), then id.

Nothing is sorted up front, so the console's cost does not grow with the queue: a snapshot only
counts the lanes. A lane is ordered when it is opened, and then only as far as it is looked at:
its tasks are split by worst severity (cheap), the keys of the first group are computed and
heaped, and rows are popped off the heap into a sorted ``ready`` prefix as the list asks for
them (``LaneRows``), the rest in small idle steps (``advance``). A filter scans the ordered rows
the same way (``FilteredRows``): the first screenful of matches at once, the exact count after
the scan. A live update moves only the tasks the snapshot says changed, by bisection (or by
invalidating a heaped key), so a file move at 100,000 tasks costs microseconds.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left, insort
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import overload

from qwarden.core.model import Severity, Snapshot, Task
from qwarden.core.textsafe import clean_line

_PRIO = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
Key = tuple[int, int, float, str]
FULL_REBUILD_AT = 5000  # more changed tasks than this: start again from the counts
CHUNK = 2048  # rows ordered (or keys computed, or rows matched) per step
SYNC_SCAN = 4096  # rows a new filter scans at once before going on in idle steps
AHEAD = 128  # rows ordered past the one read (a screenful or two)
_NO_FINDINGS = 3  # the severity group (2 - worst rank) of tasks without findings
_SEVERITY_OF_GROUP = {0: Severity.CRITICAL, 1: Severity.WARNING, 2: Severity.INFO}
# "needs attention": every task whose worst finding is critical or warning, whatever its lane,
# ordered like a lane (ordered lazily the same way: only its first groups are ever looked at)
ATTENTION = "attention"


def task_priority(task: Task) -> str | None:
    rec = task.record
    if rec is not None and rec.priority:
        return rec.priority
    pf = task.primary_file
    if pf is not None:
        return pf.header.get("PRIORITY")
    return None


def task_mtime(task: Task) -> float:
    files = task.files
    if len(files) == 1:  # nearly always: skip the primary-file choice
        return files[0].mtime
    pf = task.primary_file
    return pf.mtime if pf is not None else 0.0


def worst_rank(snap: Snapshot, tid: str) -> int:
    worst = -1
    for f in snap.findings_for(tid):
        r = f.severity.rank
        if r > worst:
            worst = r
    return worst


def sort_key(snap: Snapshot, tid: str) -> Key:
    task = snap.tasks[tid]
    return (2 - worst_rank(snap, tid), _PRIO.get(task_priority(task) or "", 4),
            task_mtime(task), tid)


def lane_order(snap: Snapshot, counts: dict[str, int] | None = None) -> list[str]:
    """Lanes to show: the queue's own, then any other effective state that has tasks."""
    if counts is None:
        counts = snap.lane_counts()
    lanes = list(snap.lanes)
    seen = set(lanes)
    lanes += [ln for ln in counts if ln not in seen]
    return lanes


class _Lane:
    """One opened lane, ordered as far as it has been read.

    Its tasks are found group by group (``found``: groups below it are known), a group being
    the worst severity of a task's findings (0 critical .. 2 info, 3 none): groups 0-2 from the
    findings of that severity, group 3 from the lane's members without findings. A found group
    waits in ``unkeyed`` until its keys are computed (``staged`` so far), then is heaped; keys
    are popped off the heap into the sorted ``ready`` prefix while they are smaller than any
    task not yet keyed or found. Every key in ``heap``, ``staged`` and ``unkeyed`` is greater
    than every key in ``ready``. Heaped or staged keys of tasks changed since are skipped when
    popped (they are no longer in ``LaneIndex.keys``)."""

    __slots__ = ("found", "heap", "ready", "staged", "unkeyed", "with_findings")

    def __init__(self) -> None:
        self.ready: list[Key] = []
        self.heap: list[Key] = []
        self.staged: list[Key] = []
        self.unkeyed: dict[int, set[str]] = {}
        self.found = 0
        self.with_findings: set[str] = set()  # members found in groups 0-2

    @property
    def complete(self) -> bool:
        return self.found > _NO_FINDINGS and not (self.heap or self.unkeyed or self.staged)

    @property
    def floor(self) -> int:
        """Heaped keys of a group below this one can be popped."""
        return min(next(iter(self.unkeyed), 99), self.found)


class _LaneOf:
    """``tid -> lane`` read from the snapshot (no per-task dict to build)."""

    def __init__(self, index: LaneIndex) -> None:
        self._index = index

    def get(self, tid: str, default: str | None = None) -> str | None:
        snap = self._index.snapshot
        if snap is None or tid not in snap.tasks:
            return default
        v = snap.verdicts.get(tid)
        return default if v is None else v.effective_state

    def __getitem__(self, tid: str) -> str:
        lane = self.get(tid)
        if lane is None:
            raise KeyError(tid)
        return lane

    def __contains__(self, tid: object) -> bool:
        return isinstance(tid, str) and self.get(tid) is not None


class LaneIndex:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.lanes: list[str] = []
        self.counts: dict[str, int] = {}
        self.keys: dict[str, Key] = {}  # computed keys only (tasks looked at so far)
        self.lane_of = _LaneOf(self)
        self._lanes: dict[str, _Lane] = {}
        self._haystack: dict[str, str] = {}
        self._match: dict[tuple[str, str], dict[str, bool]] = {}
        # of the current snapshot, built when first needed
        # group -> ids with a finding of that severity (the snapshot's own sets)
        self._sev_tids: dict[int, AbstractSet[str]] = {}
        self._members: dict[str, list[str]] | None = None  # lane -> ids
        # lane -> [tasks whose worst finding is critical, ... is warning] (the tabs' colour
        # and counts), counted on a rebuild from the critical and warning sets only and then
        # kept up to date from the changed ids
        self.worst: dict[str, list[int]] = {}

    def update(self, snap: Snapshot, changed: set[str] | frozenset[str] | None) -> set[str]:
        """Take a new snapshot; ``changed`` is every task id changed since the last one taken
        (None: unknown, rebuild). Returns the lanes whose rows changed."""
        old = self.snapshot
        if old is None or changed is None or len(changed) > FULL_REBUILD_AT:
            self._rebuild(snap)
            return set(self.lanes)
        counts = snap.lane_counts()  # the engine keeps them: no pass over the tasks
        moves = [(tid, self._lane_in(old, tid), self._lane_in(snap, tid)) for tid in changed]
        lanes = lane_order(snap, counts)
        if lanes != self.lanes:
            self._rebuild(snap)
            return set(lanes)
        self.snapshot = snap
        self.counts = counts
        self._sev_tids = {}
        self._members = None
        touched: set[str] = set()
        for tid, old_lane, new_lane in moves:
            old_group = self._count_worst(old, tid, old_lane, -1)
            new_group = self._count_worst(snap, tid, new_lane, 1)
            self._haystack.pop(tid, None)
            for cache in self._match.values():
                cache.pop(tid, None)
            old_key = self.keys.pop(tid, None)
            # a task is in its own lane and, with a critical or warning, in the attention one
            out = [old_lane] if old_lane is not None else []
            into = [new_lane] if new_lane is not None else []
            if old_group < 2:
                out.append(ATTENTION)
            if new_group < 2:
                into.append(ATTENTION)
            key = sort_key(snap, tid) if into else None  # one key object for both lanes
            for lane in out:
                touched.add(lane)
                st = self._lanes.get(lane)
                if st is not None:
                    self._remove(st, tid, old_key)
            for lane in into:
                touched.add(lane)
                st = self._lanes.get(lane)
                if st is not None:
                    assert key is not None
                    self._insert(st, key)
        return touched

    def _count_worst(self, snap: Snapshot, tid: str, lane: str | None, step: int) -> int:
        """Count the task in (step 1) or out of (-1) its lane's worst counts; its worst group
        (0 critical, 1 warning; 2 or more: neither)."""
        if lane is None:
            return 99
        group = 2 - worst_rank(snap, tid)
        if group < 2:
            counts = self.worst.setdefault(lane, [0, 0])
            counts[group] += step
        return group

    def _count_all_worst(self, snap: Snapshot) -> None:
        self.worst = {}
        verdicts = snap.verdicts
        critical = snap.tasks_with(Severity.CRITICAL)
        for group, tids in ((0, critical), (1, snap.tasks_with(Severity.WARNING))):
            for tid in tids:
                if group == 1 and tid in critical:
                    continue
                v = verdicts.get(tid)
                if v is not None and tid in snap.tasks:
                    self.worst.setdefault(v.effective_state, [0, 0])[group] += 1

    def worst_of(self, lane: str) -> tuple[Severity | None, int]:
        """The lane's worst severity among critical and warning, and how many tasks have it
        as their worst."""
        crit, warn = self.worst.get(lane, (0, 0))
        if crit:
            return Severity.CRITICAL, crit
        if warn:
            return Severity.WARNING, warn
        return None, 0

    @staticmethod
    def _lane_in(snap: Snapshot, tid: str) -> str | None:
        v = snap.verdicts.get(tid)
        return v.effective_state if v is not None and tid in snap.tasks else None

    def _remove(self, st: _Lane, tid: str, old_key: Key | None) -> None:
        st.with_findings.discard(tid)
        if old_key is not None:
            ready = st.ready
            i = bisect_left(ready, old_key)
            if i < len(ready) and ready[i] is old_key:
                del ready[i]
            # else heaped or staged: now stale (no longer in ``keys``), skipped when popped
        for group in st.unkeyed.values():
            group.discard(tid)

    def _insert(self, st: _Lane, key: Key) -> None:
        if key[0] >= st.found:
            return  # its group is not found yet: it will be, from this snapshot
        tid = key[3]
        if key[0] < _NO_FINDINGS:
            st.with_findings.add(tid)
        self.keys[tid] = key
        if st.complete or (st.ready and key < st.ready[-1]):
            insort(st.ready, key)
        else:
            heappush(st.heap, key)

    def _rebuild(self, snap: Snapshot) -> None:
        """A snapshot with no usable change list: count the lanes, order nothing yet."""
        self.snapshot = snap
        self.counts = snap.lane_counts()
        self.lanes = lane_order(snap, self.counts)
        self.keys = {}
        self._lanes = {}
        self._haystack = {}
        self._match = {}
        self._sev_tids = {}
        self._members = None
        self._count_all_worst(snap)

    def count(self, lane: str) -> int:
        if lane == ATTENTION:
            return sum(c + w for c, w in self.worst.values())
        return self.counts.get(lane, 0)

    def in_lane(self, tid: str, lane: str) -> bool:
        if lane == ATTENTION:
            snap = self.snapshot
            return snap is not None and tid in snap.tasks and worst_rank(snap, tid) >= 1
        return self.lane_of.get(tid) == lane

    # ------------------------------------------------------------------ ordering
    def _open(self, lane: str) -> _Lane:
        st = self._lanes.get(lane)
        if st is None:
            st = self._lanes[lane] = _Lane()
        return st

    def _severity_tids(self, group: int) -> AbstractSet[str]:
        """Ids of tasks with a finding of the group's severity (any lane)."""
        tids = self._sev_tids.get(group)
        if tids is None:
            snap = self.snapshot
            assert snap is not None
            sev = _SEVERITY_OF_GROUP[group]
            tids = self._sev_tids[group] = snap.tasks_with(sev)
        return tids

    def members(self, lane: str) -> list[str]:
        """The lane's task ids, unordered (all lanes grouped in one pass, once a snapshot)."""
        if self._members is None:
            snap = self.snapshot
            assert snap is not None
            tasks = snap.tasks
            check = len(snap.verdicts) != len(tasks)
            acc: dict[str, list[str]] = {}
            for tid, v in snap.verdicts.items():
                if check and tid not in tasks:
                    continue
                ids = acc.get(v.effective_state)
                if ids is None:
                    ids = acc[v.effective_state] = []
                ids.append(tid)
            self._members = acc
        return self._members.get(lane, [])

    def _find(self, lane: str, st: _Lane) -> None:
        """Find the lane's next group of tasks."""
        group = st.found
        snap = self.snapshot
        assert snap is not None
        found: set[str]
        if lane == ATTENTION:  # critical, then warning, from any lane; nothing else
            found = set()
            if group < 2:
                tasks, seen = snap.tasks, st.with_findings
                found = {t for t in self._severity_tids(group) if t not in seen and t in tasks}
                seen |= found
        elif group < _NO_FINDINGS:
            verdicts, tasks, seen = snap.verdicts, snap.tasks, st.with_findings
            found = set()
            for tid in self._severity_tids(group):
                if tid in seen or tid not in tasks:
                    continue
                v = verdicts.get(tid)
                if v is not None and v.effective_state == lane:
                    found.add(tid)
            seen |= found
        else:
            found = set(self.members(lane))
            found -= st.with_findings
        st.found = group + 1
        if found:
            st.unkeyed[group] = found

    def _key_some(self, st: _Lane, limit: int) -> None:
        """Compute up to ``limit`` keys of the lowest unkeyed group; heap them when the group is
        done (only then can its smallest key be known)."""
        group_c = next(iter(st.unkeyed))
        group = st.unkeyed[group_c]
        snap = self.snapshot
        assert snap is not None
        tasks, keys, prio_of, staged = snap.tasks, self.keys, _PRIO.get, st.staged
        for _ in range(min(limit, len(group))):
            tid = group.pop()
            # a task is in two lanes when it needs attention: both share its one key (a second
            # key object would make the first lane take its own as stale)
            key = keys.get(tid)
            if key is None:
                task = tasks[tid]
                rec = task.record
                prio = rec.priority if rec is not None and rec.priority else task_priority(task)
                key = (group_c, prio_of(prio or "", 4), task_mtime(task), tid)
                keys[tid] = key
            staged.append(key)
        if not group:
            del st.unkeyed[group_c]
            if st.heap:
                for key in staged:
                    heappush(st.heap, key)
            else:
                heapify(staged)
                st.heap = staged
            st.staged = []

    def _pop_some(self, st: _Lane, limit: int) -> None:
        """Move up to ``limit`` heaped keys to ``ready``: those of groups below ``floor``."""
        heap, ready, keys = st.heap, st.ready, self.keys
        floor = st.floor
        if limit >= len(heap) and floor == 99:  # all of it, and nothing else left: sort once
            ready.extend(sorted(k for k in heap if keys.get(k[3]) is k))
            heap.clear()
            return
        for _ in range(limit):
            if not heap or heap[0][0] >= floor:
                return
            key = heappop(heap)
            if keys.get(key[3]) is key:
                ready.append(key)

    def _step(self, lane: str, st: _Lane, rows: int) -> None:
        """One bounded step of ordering: pop ready rows, compute keys of the lowest found
        group, or find the next group."""
        if st.heap and st.heap[0][0] < st.floor:
            self._pop_some(st, rows)
        elif st.unkeyed:
            self._key_some(st, CHUNK)
        elif st.found <= _NO_FINDINGS:
            self._find(lane, st)
        else:  # only stale keys left
            st.heap.clear()

    def _extend(self, lane: str, st: _Lane, upto: int) -> None:
        """Order at least ``upto`` rows (or all there are)."""
        while len(st.ready) < upto and not st.complete:
            self._step(lane, st, upto - len(st.ready))

    def warm(self, budget_s: float) -> bool:
        """Order the lanes, biggest first, for about ``budget_s`` seconds (idle time: a lane
        switched to later opens at once). True while some lane is not fully ordered."""
        end = time.perf_counter() + budget_s
        for lane in sorted(self.lanes, key=self.count, reverse=True):
            if not self.count(lane):
                continue
            rows = LaneRows(self, lane)
            while not rows.ordered():
                if time.perf_counter() >= end:
                    return True
                self._step(lane, rows._live(), CHUNK)
        return False

    def rows(self, lane: str, flt: LaneFilter | None = None) -> LaneRows:
        """The lane's task ids in attention order (lazy), filtered when ``flt`` is set."""
        if flt is None or not flt.text:
            return LaneRows(self, lane)
        return FilteredRows(self, lane, flt)

    def ids(self, lane: str) -> list[str]:
        """The lane's task ids in attention order, all of them."""
        st = self._open(lane)
        self._extend(lane, st, self.count(lane))
        return [k[3] for k in st.ready]

    def filtered(self, lane: str, flt: LaneFilter | None) -> list[str]:
        return list(self.rows(lane, flt))

    # ------------------------------------------------------------------ filters
    def haystack(self, tid: str) -> str:
        """What a filter matches against: what the row shows (id, priority, title, claimant,
        finding kinds), so `/P0` or `!P3` filter by priority."""
        h = self._haystack.get(tid)
        if h is None:
            snap = self.snapshot
            assert snap is not None
            task = snap.tasks[tid]
            v = snap.verdicts.get(tid)
            h = f"{tid} {task_priority(task) or '--'} {clean_line(task.title)}"
            if v is not None and v.claimed_by:
                h += " " + v.claimed_by
            fs = snap.findings_for(tid)
            if fs:
                h += " " + " ".join(f.kind for f in fs)
            self._haystack[tid] = h
        return h

    def match_cache(self, lane: str, flt: LaneFilter) -> dict[str, bool]:
        return self._match.setdefault((flt.pattern.pattern, lane), {})

    def matches(self, tid: str, flt: LaneFilter | None) -> bool:
        """Whether the task (in whatever lane) passes the filter."""
        if flt is None or not flt.text:
            return True
        return (flt.pattern.search(self.haystack(tid)) is not None) != flt.invert


class LaneRows(Sequence[str]):
    """A lane's task ids in attention order, ordered only as far as they are read."""

    def __init__(self, index: LaneIndex, lane: str) -> None:
        self._ix = index
        self.lane = lane

    def _live(self) -> _Lane:
        return self._ix._open(self.lane)  # (again, after the index started again)

    def __len__(self) -> int:
        return self._ix.count(self.lane)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        st = self._live()
        if i >= len(st.ready):
            self._ix._extend(self.lane, st, max(i + 1, len(st.ready) + AHEAD))
        return st.ready[i][3]

    def __iter__(self) -> Iterator[str]:
        st = self._live()
        self._ix._extend(self.lane, st, len(self))
        return iter([k[3] for k in st.ready])

    def __contains__(self, tid: object) -> bool:
        return isinstance(tid, str) and self._ix.in_lane(tid, self.lane)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, LaneRows)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def index(self, tid: str, start: int = 0, stop: int | None = None) -> int:
        if tid not in self:
            raise ValueError(tid)
        st = self._live()
        key = self._ix.keys.get(tid)
        if key is None or (st.ready and key > st.ready[-1]) or not st.ready:
            key = key or sort_key(self._ix.snapshot, tid)  # type: ignore[arg-type]
            while not st.complete and (not st.ready or st.ready[-1] < key):
                self._ix._step(self.lane, st, CHUNK)
        i = bisect_left(st.ready, key)
        if i < len(st.ready) and st.ready[i][3] == tid:
            return i
        raise ValueError(tid)  # pragma: no cover - the index and its counts disagree

    # incremental work, driven by the screen
    def ordered(self) -> bool:
        """Every row of the lane ordered."""
        st = self._live()
        return st.complete or len(st.ready) >= self._ix.count(self.lane)

    @property
    def complete(self) -> bool:
        return self.ordered()

    def ensure(self, i: int) -> None:
        """Make row ``i`` available (ordered) if there is one."""
        if 0 <= i < len(self):
            self[i]

    def finish(self) -> None:
        self._ix._extend(self.lane, self._live(), len(self))

    def advance(self, budget_s: float) -> None:
        """Order more rows for up to about ``budget_s`` seconds."""
        st = self._live()
        end = time.perf_counter() + budget_s
        while not self.ordered() and time.perf_counter() < end:
            self._ix._step(self.lane, st, CHUNK)


class FilteredRows(LaneRows):
    """The lane's rows that pass a filter, matched in attention order as far as they are read
    (``scan``); ``len`` is the number matched so far, exact once ``complete``."""

    def __init__(self, index: LaneIndex, lane: str, flt: LaneFilter) -> None:
        super().__init__(index, lane)
        self.flt = flt
        self.matched: list[str] = []
        self._pos: dict[str, int] = {}
        self.scanned = 0  # rows of the lane looked at
        self._cache = index.match_cache(lane, flt)

    def scan(self, rows: int, want: int | None = None) -> None:
        """Look at up to ``rows`` more rows of the lane; stop early once ``want`` rows matched."""
        index, st = self._ix, self._live()
        stop = min(index.count(self.lane), self.scanned + rows)
        cache, matched, pos = self._cache, self.matched, self._pos
        search, invert, hay = self.flt.pattern.search, self.flt.invert, index.haystack
        i = self.scanned
        while i < stop and (want is None or len(matched) < want):
            j = min(stop, i + 256)
            index._extend(self.lane, st, j)
            block = st.ready[i:j]
            if not block:  # pragma: no cover - the index and its counts disagree
                i = stop
                break
            for key in block:
                tid = key[3]
                i += 1
                m = cache.get(tid)
                if m is None:
                    m = cache[tid] = search(hay(tid)) is not None
                if m != invert:
                    pos[tid] = len(matched)
                    matched.append(tid)
                    if want is not None and len(matched) >= want:
                        break
        self.scanned = i

    def __len__(self) -> int:
        return len(self.matched)

    def __getitem__(self, i: int | slice) -> str | list[str]:  # type: ignore[override]
        if isinstance(i, slice):  # of what is matched so far, as ``len`` says
            return self.matched[i]
        if i < 0:
            self.finish()
            return self.matched[i]
        self.ensure(i)
        return self.matched[i]

    def __iter__(self) -> Iterator[str]:
        self.finish()
        return iter(list(self.matched))

    def __contains__(self, tid: object) -> bool:
        return (isinstance(tid, str) and self._ix.in_lane(tid, self.lane)
                and self._ix.matches(tid, self.flt))

    def index(self, tid: str, start: int = 0, stop: int | None = None) -> int:
        if tid not in self:
            raise ValueError(tid)
        while tid not in self._pos and not self.complete:
            self.scan(CHUNK)
        try:
            return self._pos[tid]
        except KeyError:  # pragma: no cover - the index and its counts disagree
            raise ValueError(tid) from None

    @property
    def complete(self) -> bool:
        return self.scanned >= self._ix.count(self.lane)

    def ensure(self, i: int) -> None:
        while len(self.matched) <= i and not self.complete:
            self.scan(CHUNK, want=i + 1)

    def finish(self) -> None:
        while not self.complete:
            self.scan(CHUNK * 8)

    def advance(self, budget_s: float) -> None:
        end = time.perf_counter() + budget_s
        while not self.complete and time.perf_counter() < end:
            self.scan(CHUNK // 4)


@dataclass(frozen=True)
class LaneFilter:
    text: str  # as typed, with the leading ! when inverted
    pattern: re.Pattern[str]
    invert: bool

    @classmethod
    def parse(cls, text: str) -> LaneFilter | None:
        """``re`` (case-insensitive unless it has capitals), ``!re`` inverted. Empty: no
        filter. Raises ``re.error`` for a bad pattern."""
        text = text.strip()
        invert = text.startswith("!")
        body = text[1:] if invert else text
        if not body:
            return None
        flags = 0 if any(c.isupper() for c in body) else re.IGNORECASE
        return cls(text=text, pattern=re.compile(body, flags), invert=invert)
