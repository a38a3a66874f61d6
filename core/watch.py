"""``qwarden watch --headless``: what changed from one snapshot to the next, one line each.

A change is a scored finding that appeared, cleared or changed severity on a task, or a task
that changed lane (its effective state; ``None`` when the task appeared or went away). The
first snapshot is the baseline: its scored findings are listed once as ``present``, so a
watcher started after a fault still shows it. Informative findings (``unread_terminal``,
``stale_file_path``, ``escalated``) are counted in the tick line, not listed one by one.

Each change prints as one text line or (``--json``) one JSON object, and each tick (a full
poll) adds a summary line. The JSON objects are described by the pydantic models below
(``WatchEvent``); every string that came from the queue is cleaned (``core.textsafe``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from qwarden.core.model import Finding, Severity, Snapshot
from qwarden.core.report import EvidenceOut, _finding_dict, _status, exit_code
from qwarden.core.textsafe import clean_line
from qwarden.core.timefmt import iso

CHANGES = ("present", "appeared", "cleared", "severity")


@dataclass(frozen=True)
class Change:
    change: str  # "lane", or one of CHANGES for a finding
    task_id: str
    title: str  # cleaned
    lane: str | None  # the task's effective state now (None: the task is gone)
    previous: str | None = None  # the previous lane or severity
    finding: Finding | None = None  # for finding changes (the old one when cleared)

    @property
    def new_critical(self) -> bool:
        """A critical finding this watcher has not reported as critical before."""
        f = self.finding
        return (f is not None and f.severity is Severity.CRITICAL
                and self.change in ("present", "appeared", "severity"))


class ChangeTracker:
    """Compares each snapshot with the previous one. Consecutive snapshots say which tasks
    they changed (``Snapshot.changed``), so only those are compared; after a gap in the
    generations (a snapshot not seen) every task is."""

    def __init__(self) -> None:
        self.previous: Snapshot | None = None

    def update(self, snap: Snapshot) -> list[Change]:
        prev, self.previous = self.previous, snap
        if prev is None:
            return [Change("present", f.task_id, _title(snap, f.task_id),
                           _lane(snap, f.task_id), finding=f)
                    for f in snap.findings if f.scored]
        if snap.generation == prev.generation:
            return []
        ids: Iterable[str]
        if snap.generation == prev.generation + 1:
            ids = snap.changed
        else:
            ids = set(snap.tasks) | set(prev.tasks)
        out: list[Change] = []
        for tid in sorted(ids):
            out += _task_changes(prev, snap, tid)
        return out


def _task_changes(prev: Snapshot, snap: Snapshot, tid: str) -> list[Change]:
    old_lane, new_lane = _lane(prev, tid), _lane(snap, tid)
    old = {f.kind: f for f in prev.findings_for(tid) if f.scored}
    new = {f.kind: f for f in snap.findings_for(tid) if f.scored}
    if old_lane == new_lane and not old and not new:
        return []
    title = _title(snap, tid) or _title(prev, tid)
    out: list[Change] = []
    if old_lane != new_lane:
        out.append(Change("lane", tid, title, new_lane, previous=old_lane))
    for kind, f in new.items():
        was = old.get(kind)
        if was is None:
            out.append(Change("appeared", tid, title, new_lane, finding=f))
        elif was.severity is not f.severity:
            out.append(Change("severity", tid, title, new_lane, previous=was.severity.value,
                              finding=f))
    for kind, f in old.items():
        if kind not in new:
            out.append(Change("cleared", tid, title, new_lane, finding=f))
    return out


def _lane(snap: Snapshot, tid: str) -> str | None:
    v = snap.verdicts.get(tid)
    return v.effective_state if v is not None else None


def _title(snap: Snapshot, tid: str) -> str:
    t = snap.tasks.get(tid)
    return clean_line(t.title, 80) if t is not None else ""


# ------------------------------------------------------------------ the JSON lines

class FindingEvent(BaseModel):
    """A scored finding that is present at start, appeared, cleared or changed severity."""
    event: Literal["finding"]
    change: Literal["present", "appeared", "cleared", "severity"]
    at: str = Field(description="when the change was seen: UTC ISO 8601 with Z")
    task_id: str
    title: str
    lane: str | None = Field(description="the task's effective state now; null: task gone")
    kind: str
    severity: Literal["info", "warning", "critical"] = Field(
        description="now (for cleared: what it was)")
    previous_severity: Literal["info", "warning", "critical"] | None = Field(
        description="for change=severity: the severity before")
    scored: bool
    summary: str
    evidence: list[EvidenceOut]
    newer_side: Literal["db", "file"] | None
    recommended_action: str


class LaneEvent(BaseModel):
    """A task changed effective state (from/to null: it appeared or went away)."""
    event: Literal["lane"]
    at: str
    task_id: str
    title: str
    from_: str | None = Field(alias="from")
    to: str | None


class TickEvent(BaseModel):
    """One per tick (a full poll; tick 1 is the initial scan)."""
    event: Literal["tick"]
    at: str
    tick: int = Field(description="1 for the initial scan, then one per full poll")
    ticks: int | None = Field(description="--ticks: the watch stops after this tick")
    next_tick_at: str | None = Field(description="when the next full poll is due; null: last")
    generation: int
    tasks: int
    status: Literal["healthy", "warning", "critical"]
    exit_code: int
    findings_by_severity: dict[str, int]
    findings_by_kind: dict[str, int] = Field(description="scored findings only")
    problems: int = Field(description="paths that could not be read (listed on stderr)")

    model_config = {"populate_by_name": True}


class AutofixEvent(BaseModel):
    """The auto-fixer's pass of this tick (``--fix``)."""
    event: Literal["autofix"]
    at: str
    mode: str
    found: dict[str, int]
    fixed: list[dict[str, Any]]
    would_fix: list[dict[str, Any]]
    escalated: list[dict[str, Any]]
    skipped: list[dict[str, Any]]


WatchEvent = TypeAdapter(Annotated[FindingEvent | LaneEvent | TickEvent | AutofixEvent,
                                   Field(discriminator="event")])


def change_dict(ch: Change, at: datetime) -> dict[str, Any]:
    """The ``--json`` object of a change (also what ``--exec`` gets on stdin)."""
    if ch.finding is None:
        return {"event": "lane", "at": iso(at), "task_id": ch.task_id, "title": ch.title,
                "from": ch.previous, "to": ch.lane}
    body = _finding_dict(ch.finding)
    body.pop("task_id")
    return {"event": "finding", "change": ch.change, "at": iso(at), "task_id": ch.task_id,
            "title": ch.title, "lane": ch.lane, **body,
            "previous_severity": ch.previous if ch.change == "severity" else None}


def second(at: datetime) -> str:
    """The time field of a text line: UTC to the second."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def change_line(ch: Change, at: datetime) -> str:
    """``TIME CHANGE TASK-ID …``: the first three fields are always these."""
    head = f"{second(at)} {ch.change} TASK-{ch.task_id}"
    title = f' "{ch.title}"' if ch.title else ""
    if ch.finding is None:
        return f"{head} {ch.previous or '(new)'} -> {ch.lane or '(gone)'}{title}"
    f = ch.finding
    sev = f.severity.value if ch.change != "severity" else f"{ch.previous} -> {f.severity.value}"
    where = f" in {ch.lane}" if ch.lane else " (task gone)"
    text = "" if ch.change == "cleared" else f": {clean_line(f.summary, 300)}"
    return f"{head} {f.kind} {sev}{where}{title}{text}"


def tick_dict(snap: Snapshot, tick: int, ticks: int | None,
              next_at: datetime | None) -> dict[str, Any]:
    counts = snap.count_by_severity()
    code = exit_code(snap)
    return {"event": "tick", "at": iso(snap.as_of), "tick": tick, "ticks": ticks,
            "next_tick_at": iso(next_at) if next_at is not None else None,
            "generation": snap.generation, "tasks": len(snap.tasks), "status": _status(code),
            "exit_code": code,
            "findings_by_severity": {s.value: counts.get(s, 0)
                                     for s in (Severity.CRITICAL, Severity.WARNING,
                                               Severity.INFO)},
            "findings_by_kind": dict(sorted(Counter(f.kind for f in snap.findings
                                                    if f.scored).items())),
            "problems": len(snap.problems)}


def tick_line(snap: Snapshot, d: dict[str, Any]) -> str:
    """``TIME tick N/M gen=… tasks=… exit=… critical=… warning=… info=… KIND=n … next …``."""
    of = f"/{d['ticks']}" if d["ticks"] else ""
    sev = " ".join(f"{k}={n}" for k, n in d["findings_by_severity"].items())
    kinds = "".join(f" {k}={n}" for k, n in d["findings_by_kind"].items())
    problems = f" problems={d['problems']}" if d["problems"] else ""
    nxt = f" next tick {d['next_tick_at'][:19]}Z" if d["next_tick_at"] else " last tick"
    return (f"{second(snap.as_of)} tick {d['tick']}{of} gen={d['generation']} tasks={d['tasks']} "
            f"exit={d['exit_code']} {sev}{kinds}{problems}{nxt}")


def to_json_line(d: dict[str, Any]) -> str:
    return json.dumps(d, ensure_ascii=False, default=str)
