"""Rows marked for a group action. ``*`` marks every row of a lane that passes its filter as
one rule (lane, filter), not 100,000 ids: marking costs the same at any queue size, and a row
asks ``tid in marks`` when it is drawn. Single marks (space, ``v``) are ids; unmarking a row a
rule covers records an exception."""

from __future__ import annotations

from collections.abc import Iterator

from qwarden.tui.lanes import LaneFilter, LaneIndex


class Marks:
    def __init__(self, index: LaneIndex) -> None:
        self._index = index
        self.ids: set[str] = set()
        self.rules: list[tuple[str, LaneFilter | None]] = []
        self.unmarked: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.ids or self.rules)

    def _ruled(self, tid: str) -> bool:
        ix = self._index
        return any(ix.in_lane(tid, ln) and ix.matches(tid, flt) for ln, flt in self.rules)

    def __contains__(self, tid: object) -> bool:
        if not isinstance(tid, str):
            return False
        if tid in self.ids:
            return True
        return bool(self.rules) and tid not in self.unmarked and self._ruled(tid)

    def toggle(self, tid: str) -> bool:
        """Mark or unmark one row; True when it is marked after."""
        if tid in self:
            self.ids.discard(tid)
            if self._ruled(tid):
                self.unmarked.add(tid)
            return False
        self.unmarked.discard(tid)
        if not self._ruled(tid):
            self.ids.add(tid)
        return True

    def mark(self, tids: list[str]) -> None:
        for tid in tids:
            if tid not in self:
                self.toggle(tid)

    def mark_all(self, lane: str, flt: LaneFilter | None) -> None:
        if (lane, flt) not in self.rules:
            self.rules.append((lane, flt))
        self.unmarked = {t for t in self.unmarked
                         if not (self._index.in_lane(t, lane) and self._index.matches(t, flt))}

    def clear(self) -> None:
        self.ids.clear()
        self.rules.clear()
        self.unmarked.clear()

    def count(self) -> int:
        """How many rows are marked (a rule counts its lane's rows as far as they are
        known: exact once a filter's scan is complete)."""
        n = len(self.ids)
        for lane, flt in self.rules:
            rows = self._index.rows(lane, flt)
            if flt is not None:
                rows.finish()
            n += len(rows)
        return n - len(self.unmarked)

    def _iter_rule(self, lane: str, flt: LaneFilter | None) -> Iterator[str]:
        for tid in self._index.rows(lane, flt):
            if tid not in self.unmarked:
                yield tid

    def resolve(self) -> list[str]:
        """Every marked task id, in attention order per rule, then the single marks."""
        out: list[str] = []
        seen: set[str] = set()
        for lane, flt in self.rules:
            for tid in self._iter_rule(lane, flt):
                if tid not in seen:
                    seen.add(tid)
                    out.append(tid)
        out += sorted(t for t in self.ids if t not in seen)
        return out
