"""Lanes in attention order, kept up to date incrementally, and per-lane regex filters.

Pure data (no widgets): one snapshot in, ordered task ids out. A task's lane is its verdict's
effective state. Order: tasks with findings first (worst severity first), then priority
P0..P3, then age (the file settled longest ago first), then id. A live update re-sorts only the
tasks the snapshot says changed, by bisection, so a file move at 100,000 tasks costs microseconds.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from dataclasses import dataclass

from core.model import Snapshot, Task
from core.textsafe import clean_line

_PRIO = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
Key = tuple[int, int, float, str]
FULL_REBUILD_AT = 5000  # more changed tasks than this: a full re-sort is cheaper


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


def worst_ranks(snap: Snapshot) -> dict[str, int]:
    """Worst finding severity rank per task (only tasks with findings)."""
    worst: dict[str, int] = {}
    for f in snap.findings:
        r = f.severity.rank
        if worst.get(f.task_id, -1) < r:
            worst[f.task_id] = r
    return worst


def sort_key(snap: Snapshot, tid: str) -> Key:
    worst = -1
    for f in snap.findings_for(tid):
        if f.severity.rank > worst:
            worst = f.severity.rank
    task = snap.tasks[tid]
    return (2 - worst, _PRIO.get(task_priority(task) or "", 4), task_mtime(task), tid)


def lane_order(snap: Snapshot) -> list[str]:
    """Lanes to show: the queue's own, then any other effective state that has tasks."""
    lanes = list(snap.lanes)
    seen = set(lanes)
    for v in snap.verdicts.values():
        if v.effective_state not in seen:
            seen.add(v.effective_state)
            lanes.append(v.effective_state)
    return lanes


class LaneIndex:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.lanes: list[str] = []
        self.keys: dict[str, Key] = {}
        self.lane_of: dict[str, str] = {}
        self.sorted: dict[str, list[Key]] = {}
        self._ids: dict[str, list[str]] = {}
        self._haystack: dict[str, str] = {}
        self._match: dict[tuple[str, str], dict[str, bool]] = {}

    def update(self, snap: Snapshot, changed: set[str] | frozenset[str] | None) -> set[str]:
        """Take a new snapshot; ``changed`` is every task id changed since the last one taken
        (None: unknown, rebuild). Returns the lanes whose rows changed."""
        lanes = lane_order(snap)
        if (self.snapshot is None or changed is None or len(changed) > FULL_REBUILD_AT
                or lanes != self.lanes):
            self._rebuild(snap, lanes)
            return set(lanes)
        self.snapshot = snap
        touched: set[str] = set()
        for tid in changed:
            self._haystack.pop(tid, None)
            for cache in self._match.values():
                cache.pop(tid, None)
            old_key = self.keys.get(tid)
            old_lane = self.lane_of.get(tid)
            v = snap.verdicts.get(tid)
            if v is None or tid not in snap.tasks:
                new_key, new_lane = None, None
            else:
                new_key, new_lane = sort_key(snap, tid), v.effective_state
            if old_key == new_key and old_lane == new_lane:
                if new_lane is not None:
                    touched.add(new_lane)  # same place, new content
                continue
            if old_key is not None and old_lane is not None:
                lst = self.sorted[old_lane]
                i = bisect_left(lst, old_key)
                if i < len(lst) and lst[i] == old_key:
                    del lst[i]
                touched.add(old_lane)
                del self.keys[tid]
                del self.lane_of[tid]
            if new_key is not None and new_lane is not None:
                insort(self.sorted.setdefault(new_lane, []), new_key)
                self.keys[tid] = new_key
                self.lane_of[tid] = new_lane
                touched.add(new_lane)
        for lane in touched:
            self._ids.pop(lane, None)
        return touched

    def _rebuild(self, snap: Snapshot, lanes: list[str]) -> None:
        """Everything at once (first paint, polls): the same order as ``sort_key``, built in
        one pass with the severities indexed first."""
        self.snapshot = snap
        self.lanes = lanes
        worst = worst_ranks(snap)
        tasks = snap.tasks
        keys: dict[str, Key] = {}
        lane_of: dict[str, str] = {}
        acc: dict[str, list[Key]] = {lane: [] for lane in lanes}
        prio_of = _PRIO.get
        for tid, v in snap.verdicts.items():
            task = tasks.get(tid)
            if task is None:
                continue
            rec = task.record
            prio = rec.priority if rec is not None and rec.priority else task_priority(task)
            key = (2 - worst.get(tid, -1), prio_of(prio or "", 4), task_mtime(task), tid)
            keys[tid] = key
            lane_of[tid] = v.effective_state
            acc[v.effective_state].append(key)
        self.keys = keys
        self.lane_of = lane_of
        for lst in acc.values():
            lst.sort()
        self.sorted = acc
        self._ids = {}
        self._haystack = {}
        self._match = {}

    def count(self, lane: str) -> int:
        return len(self.sorted.get(lane, ()))

    def ids(self, lane: str) -> list[str]:
        """The lane's task ids in attention order."""
        ids = self._ids.get(lane)
        if ids is None:
            ids = [k[3] for k in self.sorted.get(lane, ())]
            self._ids[lane] = ids
        return ids

    # ------------------------------------------------------------------ filters
    def haystack(self, tid: str) -> str:
        """What a filter matches against: id, title, claimant, finding kinds."""
        h = self._haystack.get(tid)
        if h is None:
            snap = self.snapshot
            assert snap is not None
            task = snap.tasks[tid]
            v = snap.verdicts.get(tid)
            h = f"{tid} {clean_line(task.title)}"
            if v is not None and v.claimed_by:
                h += " " + v.claimed_by
            fs = snap.findings_for(tid)
            if fs:
                h += " " + " ".join(f.kind for f in fs)
            self._haystack[tid] = h
        return h

    def filtered(self, lane: str, flt: LaneFilter | None) -> list[str]:
        ids = self.ids(lane)
        if flt is None or not flt.text:
            return ids
        cache = self._match.setdefault((flt.pattern.pattern, lane), {})
        search = flt.pattern.search
        hay = self.haystack
        out = []
        for tid in ids:
            m = cache.get(tid)
            if m is None:
                m = cache[tid] = search(hay(tid)) is not None
            if m != flt.invert:
                out.append(tid)
        return out


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
