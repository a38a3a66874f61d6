"""The header: root, lane counts, findings by severity, poll clock, paused/read-only, errors."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Protocol

from rich.text import Text
from textual.widget import Widget

from qwarden.core.model import Severity, Snapshot
from qwarden.core.textsafe import clean_line
from qwarden.core.timefmt import age_text, iso


class EngineLike(Protocol):
    last_poll_at: datetime | None
    next_poll_at: datetime | None
    last_error: str | None
    paused: bool
    live: bool

    def clock(self) -> datetime: ...

    def scan_progress(self) -> str: ...


class HeaderBar(Widget):
    COMPONENT_CLASSES = {
        "header-bar--title", "header-bar--flag", "header-bar--error", "header-bar--critical",
        "header-bar--warning", "header-bar--info", "header-bar--muted", "header-bar--ok",
    }

    def __init__(self, engine: EngineLike, root_label: str, read_only: bool,
                 *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.engine = engine
        self.root_label = root_label
        self.read_only = read_only
        self.snapshot: Snapshot | None = None
        self.lane_counts: list[tuple[str, int]] = []
        self.error: str | None = None  # the app's own (e.g. a failed start)
        self.autofix: str | None = None  # the auto-fixer's mode, or "paused"
        self._by_sev: tuple[Snapshot | None, Counter[Severity]] = (None, Counter())

    def severity_counts(self, snap: Snapshot) -> Counter[Severity]:
        """Findings by severity, counted once per snapshot (the clock redraws every second)."""
        seen, counts = self._by_sev
        if seen is not snap:
            # the engine's running counts (one pass over the findings only without them)
            counts = Counter({sev: n for sev, n in snap.count_by_severity().items() if n})
            self._by_sev = (snap, counts)
        return counts

    def show(self, snap: Snapshot | None, lane_counts: list[tuple[str, int]]) -> None:
        self.snapshot = snap
        self.lane_counts = lane_counts
        self.refresh()

    def _st(self, name: str):  # type: ignore[no-untyped-def]
        return self.get_component_rich_style(f"header-bar--{name}", partial=True)

    def clock_text(self) -> str:
        eng = self.engine
        now = eng.clock()
        if not eng.live:
            return f"as of {iso(now)} (frozen)"
        parts = []
        if eng.last_poll_at is not None:
            parts.append(f"last poll {age_text((now - eng.last_poll_at).total_seconds())} ago")
        else:
            parts.append("first scan…")
        if eng.paused:
            parts.append("updates paused")
        elif eng.next_poll_at is not None:
            left = (eng.next_poll_at - now).total_seconds()
            parts.append(f"next in {age_text(left)}" if left > 0 else "polling…")
        return " · ".join(parts)

    def render(self) -> Text:
        width = max(20, self.size.width - 2)
        snap = self.snapshot
        # line 1: name, root, flags
        line1 = Text(no_wrap=True, overflow="ellipsis")
        line1.append("qwarden ", self._st("title"))
        if snap is not None:  # which format the queue was read as
            line1.append(f"{snap.source_format} ", self._st("muted"))
        flags = Text()
        if self.engine.paused:
            flags.append(" PAUSED ", self._st("flag"))
            flags.append(" ")
        if not self.engine.live:
            # --as-of: what is shown is the past; an action is planned and checked against the
            # queue as it is now (tui/intervene.py), never from these verdicts
            flags.append(" HISTORICAL: actions checked live ", self._st("flag"))
            flags.append(" ")
        if self.read_only:
            flags.append(" READ-ONLY ", self._st("flag"))
            flags.append(" ")
        if self.autofix:
            flags.append(f" AUTOFIX {self.autofix} ", self._st("flag"))
            flags.append(" ")
        room = width - len(line1) - len(flags) - 1
        root = clean_line(self.root_label, 1000)
        if len(root) > room > 1:
            root = "…" + root[-(room - 1):]
        line1.append(root)
        pad = width - len(line1) - len(flags)
        if pad > 0:
            line1.append(" " * pad)
        line1.append_text(flags)
        # line 2: lane counts
        line2 = Text(no_wrap=True, overflow="ellipsis")
        if snap is None:
            line2.append("scanning…", self._st("muted"))
            progress = self.engine.scan_progress()
            if progress:
                line2.append(f" {progress}", self._st("muted"))
        else:
            # findings about the queue itself and its agents first: they sit in no lane
            for f in snap.subject_findings:
                line2.append(clean_line(f.task_id, 40), self._st("title"))
                line2.append(f" {f.kind}", self._st(f.severity.value))
                line2.append("  ")
            if snap.subject_findings:
                line2.append("│ ", self._st("muted"))
            # the lanes with tasks (the tabs below list every lane)
            for i, (lane, n) in enumerate((ln, n) for ln, n in self.lane_counts if n):
                if i:
                    line2.append("  ")
                line2.append(lane)
                line2.append(f" {n}", self._st("title"))
        # line 3: findings by severity, poll clock, error
        line3 = Text(no_wrap=True, overflow="ellipsis")
        if snap is not None:
            by_sev = self.severity_counts(snap)
            if not by_sev:
                line3.append("no findings", self._st("ok"))
            for sev, label in ((Severity.CRITICAL, "critical"), (Severity.WARNING, "warning"),
                               (Severity.INFO, "info")):
                n = by_sev.get(sev, 0)
                if n:
                    line3.append(f"{label} {n}", self._st(label))
                    line3.append("  ")
            line3.append(f"· {len(snap.tasks)} tasks · ", self._st("muted"))
        err = self.error or self.engine.last_error
        if err:  # first, so it is never cut off at 80 columns
            line3 = Text(no_wrap=True, overflow="ellipsis")
            if snap is not None:
                # the last good snapshot stays on screen; say it is not the queue as it is now
                line3.append(f"STALE (as of {snap.as_of:%H:%M:%S}) ", self._st("error"))
            line3.append("ERROR ", self._st("error"))
            line3.append(clean_line(err, 300), self._st("error"))
            line3.append("  · ", self._st("muted"))
        line3.append(self.clock_text(), self._st("muted"))
        for line in (line1, line2, line3):
            line.truncate(width, overflow="ellipsis")
        return Text("\n", no_wrap=True, end="").join([line1, line2, line3])
