"""RALF's finding rules: pure functions over one judged view of the state (no file reads).

Each rule takes a ``RalfView`` (the tasks, agents and facts of one snapshot, and the time it
is judged at) and yields findings whose ``task_id`` is the subject: a task id, ``queue`` (the
queue itself) or ``agent:NAME`` (a loop). Every finding's evidence names its file and line.

A signal or event whose time lies more than ``FUTURE_SKEW_S`` after the judging time is no
evidence of anything (the executor's clock, or its writer, lied): it is reported
(``future_timestamp``) and otherwise ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qwarden.core.formats.ralf.kinds import DONE_STATUSES, RALF_SCORED
from qwarden.core.model import (
    Action,
    Agent,
    Evidence,
    Fact,
    Finding,
    Severity,
    Side,
    Task,
    TrailEvent,
)
from qwarden.core.timefmt import age_text, iso

FUTURE_SKEW_S = 60.0
DEFAULT_TIMEOUT_S = 120.0


@dataclass
class RalfView:
    as_of: datetime
    tasks: Mapping[str, Task]
    agents: Mapping[str, Agent]
    facts: tuple[Fact, ...]
    by_subject: dict[str, list[Fact]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_subject:
            for f in self.facts:
                self.by_subject.setdefault(f.subject, []).append(f)

    def fact(self, subject: str, name: str) -> Fact | None:
        for f in self.by_subject.get(subject, ()):
            if f.name == name:
                return f
        return None

    def future(self, at: datetime | None) -> bool:
        return at is not None and (at - self.as_of).total_seconds() > FUTURE_SKEW_S


def _ev(fact: str, value: object, at: datetime | None = None, side: Side | None = None
        ) -> Evidence:
    return Evidence(fact=fact, value=str(value), at=at, side=side)


def _finding(kind: str, subject: str, severity: Severity, summary: str,
             evidence: Iterable[Evidence], action: Action, newer: Side | None = None
             ) -> Finding:
    return Finding(kind=kind, task_id=subject, severity=severity, summary=summary,
                   evidence=tuple(evidence), recommended_action=action, newer_side=newer,
                   scored=kind in RALF_SCORED)


# -- what a task's sides say -----------------------------------------------------------------

@dataclass(frozen=True)
class _TaskEvent:
    kind: str  # upper-case
    at: datetime | None
    where: str
    run: str | None
    seq: int


def task_events(view: RalfView, t: Task) -> list[_TaskEvent]:
    """The task's events oldest first: from its file's trail, or (no file) from the facts."""
    pf = t.primary_file
    out: list[_TaskEvent] = []
    if pf is not None and pf.trail:
        for e in pf.trail:
            out.append(_TaskEvent(e.kind, e.at, e.get("where") or "", e.get("run_number"),
                                  _int(e.get("seq"))))
        return out
    if t.record is not None:
        for f in view.by_subject.get(t.task_id, ()):
            if f.name.startswith("event:"):
                run = f.value.split(" run ", 1)[1] if " run " in f.value else None
                out.append(_TaskEvent(f.name[6:].upper(), f.at, f.where, run, len(out)))
    return out


def _int(s: str | None) -> int:
    try:
        return int(s or 0)
    except ValueError:
        return 0


def _event_ev(e: _TaskEvent, label: str) -> Evidence:
    run = f"run {e.run}, " if e.run else ""
    return _ev(label, f"{run}{e.where}", e.at, Side.FILE)


@dataclass(frozen=True)
class Done:
    """Whether a task is finished, and what proves it."""

    by_dir: str | None  # the completed/ file's path
    by_event: _TaskEvent | None  # the trustworthy completed event (the newest state event)
    future_event: _TaskEvent | None  # a completed event from the future (ignored)
    any_event: bool  # a completed event of any time

    @property
    def done(self) -> bool:
        return self.by_dir is not None or self.by_event is not None


def done_of(view: RalfView, t: Task, events: list[_TaskEvent] | None = None) -> Done:
    evs = task_events(view, t) if events is None else events
    by_dir = next((f.relpath for f in t.files if f.queue == "completed"), None)
    last_state = None
    future = None
    any_completed = False
    for e in evs:
        if e.kind == "COMPLETED":
            any_completed = True
        if e.kind not in ("STARTED", "COMPLETED", "FAILED", "BLOCKED"):
            continue
        if view.future(e.at):
            if e.kind == "COMPLETED":
                future = e
            continue
        last_state = e
    by_event = last_state if last_state is not None and last_state.kind == "COMPLETED" \
        else None
    return Done(by_dir, by_event, future, any_completed)


def _entry_where(view: RalfView, tid: str) -> str:
    """``…/queue.yaml:2, status at line 25``: where the entry and its status are."""
    f = view.fact(tid, "queue_entry")
    where = f.where if f is not None else "queue.yaml"
    st = view.fact(tid, "queue_status")
    return f"{where}, status at line {st.where.rsplit(':', 1)[1]}" if st is not None else where


# -- task rules ------------------------------------------------------------------------------

def queue_stale_entry(view: RalfView) -> Iterator[Finding]:
    """A queue entry still pending/in_progress for a task completed by directory or event."""
    for tid, t in view.tasks.items():
        rec = t.record
        if rec is None or rec.queue in DONE_STATUSES:
            continue
        d = done_of(view, t)
        if not d.done:
            continue
        evidence = [_ev("queue entry", f"{rec.queue} ({_entry_where(view, tid)})", None,
                        Side.DB)]
        proof = []
        if d.by_dir:
            evidence.append(_ev("task file", f"{d.by_dir} (in completed/)", None, Side.FILE))
            proof.append("its file is in completed/")
        if d.by_event is not None:
            evidence.append(_event_ev(d.by_event, "completed event"))
            proof.append(f"completed in run {d.by_event.run}" if d.by_event.run
                         else "a completed event")
        if d.future_event is not None and d.by_event is None:
            evidence.append(_event_ev(d.future_event, "completed event in the future "
                                                      "(not counted)"))
        yield _finding("queue_stale_entry", tid, Severity.WARNING,
                       f"queue.yaml still says {rec.queue}, but {' and '.join(proof)}",
                       evidence, Action.SYNC_DB, Side.FILE)


def missing_from_queue(view: RalfView) -> Iterator[Finding]:
    """A task file in active/ that the queue does not list (and that is not done)."""
    for tid, t in view.tasks.items():
        if t.record is not None or not t.files:
            continue
        active = [f for f in t.files if f.queue == "active"]
        if not active or len(active) != len(t.files):
            continue
        if done_of(view, t).done:
            continue
        f = active[0]
        yield _finding("missing_from_queue", tid, Severity.WARNING,
                       f"{f.relpath} is in active/ but queue.yaml does not list it",
                       [_ev("task file", f"{f.relpath} (in active/)", None, Side.FILE),
                        _ev("queue entry", "none in queue.yaml", None, Side.DB)],
                       Action.REGISTER, Side.FILE)


def queue_orphan_entry(view: RalfView) -> Iterator[Finding]:
    """A queue entry with no task file anywhere and no event."""
    for tid, t in view.tasks.items():
        if t.record is None or t.files:
            continue
        if task_events(view, t):
            continue
        yield _finding("queue_orphan_entry", tid, Severity.WARNING,
                       "queue.yaml lists it, but there is no task file and no event for it",
                       [_ev("queue entry", f"{t.record.queue} ({_entry_where(view, tid)})",
                            None, Side.DB),
                        _ev("task file", "none in tasks/active or tasks/completed", None,
                            Side.FILE),
                        _ev("events", "none in events.yaml")], Action.REVIEW, Side.DB)


def completed_without_event(view: RalfView) -> Iterator[Finding]:
    """Informative: a file in completed/ with no completed event (events.yaml lost it)."""
    for tid, t in view.tasks.items():
        f = next((f for f in t.files if f.queue == "completed"), None)
        if f is None:
            continue
        trail: tuple[TrailEvent, ...] = f.trail
        if any(e.kind == "COMPLETED" for e in trail):
            continue
        if t.record is not None and any(e.kind == "COMPLETED" for e in task_events(view, t)):
            continue
        yield _finding("completed_without_event", tid, Severity.INFO,
                       f"{f.relpath} is in completed/ but events.yaml has no completed event "
                       "for it (the directory is the record)",
                       [_ev("task file", f"{f.relpath} (in completed/)", None, Side.FILE),
                        _ev("completed event", "none in events.yaml")], Action.NONE)


# -- subject rules: the queue itself, the loops ----------------------------------------------

def live_depth(view: RalfView) -> int:
    """Queue entries still to do: not completed by status, directory or event."""
    n = 0
    for t in view.tasks.values():
        rec = t.record
        if rec is None or rec.queue in DONE_STATUSES:
            continue
        if not done_of(view, t).done:
            n += 1
    return n


def stale_queue_metadata(view: RalfView) -> Iterator[Finding]:
    evidence: list[Evidence] = []
    what = []
    lc = view.fact("queue", "last_completed")
    latest = view.fact("queue", "latest_completion")
    if lc is not None and latest is not None and lc.value.strip() != latest.value:
        evidence.append(_ev("metadata.last_completed", f"{lc.value} ({lc.where})", None,
                            Side.DB))
        evidence.append(_ev("latest completion (by run number, then event order)",
                            f"{latest.value} ({latest.where})", latest.at, Side.FILE))
        what.append(f"last_completed names {lc.value}, the latest completion is "
                    f"{latest.value}")
    cd = view.fact("queue", "current_depth")
    if cd is not None:
        live = live_depth(view)
        try:
            stated: int | None = int(cd.value.strip())
        except ValueError:
            stated = None
        if stated != live:
            evidence.append(_ev("metadata.current_depth", f"{cd.value} ({cd.where})", None,
                                Side.DB))
            evidence.append(_ev("entries still to do", str(live), None, Side.FILE))
            what.append(f"current_depth says {cd.value}, {live} entries are still to do")
    if what:
        yield _finding("stale_queue_metadata", "queue", Severity.WARNING,
                       "queue metadata is stale: " + "; ".join(what), evidence,
                       Action.SYNC_DB, Side.FILE)


def _timeout(view: RalfView) -> tuple[float, str]:
    f = view.fact("queue", "heartbeat_timeout_s")
    if f is not None:
        try:
            return float(f.value), f.where
        except ValueError:
            pass
    return DEFAULT_TIMEOUT_S, "RALF default"


def _loops(view: RalfView) -> Iterator[Agent]:
    for a in view.agents.values():
        if a.has_state:  # a loop heartbeat.yaml knows (an event-only name is no loop)
            yield a


def stale_heartbeat(view: RalfView) -> Iterator[Finding]:
    timeout, twhere = _timeout(view)
    for a in _loops(view):
        trusted = [s for s in a.signals if not view.future(s.at)]
        newest = max(trusted, key=lambda s: s.at, default=None)
        age = None if newest is None else (view.as_of - newest.at).total_seconds()
        if age is not None and age <= timeout:
            continue
        evidence = [_ev("timeout", f"{timeout:g} s ({twhere})")]
        hb = view.fact(f"agent:{a.name}", "heartbeat")
        if hb is not None:
            note = " (in the future: not counted)" if view.future(hb.at) else ""
            evidence.append(_ev("heartbeat last_seen", f"{hb.value} ({hb.where}){note}",
                                hb.at, Side.AGENT))
        if newest is None:
            evidence.append(_ev("newest trustworthy signal", "none"))
            summary = f"{a.name} loop shows no trustworthy sign of life"
        else:
            evidence.append(_ev("newest trustworthy signal", newest.name, newest.at,
                                Side.AGENT))
            evidence.append(_ev("age", f"{age_text(age or 0)} (over {timeout:g} s)"))
            summary = (f"{a.name} loop silent for {age_text(age or 0)} (RALF's timeout is "
                       f"{timeout:g} s)")
        yield _finding("stale_heartbeat", f"agent:{a.name}", Severity.WARNING, summary,
                       evidence, Action.REVIEW, Side.AGENT)


def future_timestamp(view: RalfView) -> Iterator[Finding]:
    for a in view.agents.values():
        fut = [s for s in a.signals if view.future(s.at)]
        if not fut:
            continue
        fut.sort(key=lambda s: s.at, reverse=True)
        evidence = [_ev("signal in the future", s.name, s.at, Side.AGENT) for s in fut[:5]]
        if len(fut) > 5:
            evidence.append(_ev("more in the future", str(len(fut) - 5)))
        evidence.append(_ev("judged at", iso(view.as_of) or ""))
        ahead = (fut[0].at - view.as_of).total_seconds()
        yield _finding("future_timestamp", f"agent:{a.name}", Severity.INFO,
                       f"{a.name}: {len(fut)} signal(s) from the future (up to "
                       f"{age_text(ahead)} ahead): not taken as signs of life",
                       evidence, Action.NONE)


def corrupt_queue_file(view: RalfView) -> Iterator[Finding]:
    for f in view.by_subject.get("queue", ()):
        if not f.name.startswith("corrupt:"):
            continue
        name = f.name[len("corrupt:"):]
        sev = Severity.CRITICAL if name == "queue.yaml" else Severity.WARNING
        how = ("read by a line scan instead" if name == "events.yaml"
               else "its contents are ignored")
        yield _finding("corrupt_queue_file", "queue", sev,
                       f"{name} does not parse ({f.value}); {how}",
                       [_ev("file", f.where), _ev("error", f.value)], Action.REVIEW)


Rule = Callable[[RalfView], Iterable[Finding]]

TASK_LEVEL: tuple[tuple[str, Rule], ...] = (
    ("queue_stale_entry", queue_stale_entry),
    ("missing_from_queue", missing_from_queue),
    ("queue_orphan_entry", queue_orphan_entry),
    ("completed_without_event", completed_without_event),
)
SUBJECT_LEVEL: tuple[tuple[str, Rule], ...] = (
    ("corrupt_queue_file", corrupt_queue_file),
    ("stale_queue_metadata", stale_queue_metadata),
    ("stale_heartbeat", stale_heartbeat),
    ("future_timestamp", future_timestamp),
)
ALL_RULES = TASK_LEVEL + SUBJECT_LEVEL


class _JudgedTasks(Mapping[str, Task]):
    """The judge's tasks as a plain id -> Task mapping (no copy)."""

    def __init__(self, judged: Mapping[str, Any]) -> None:
        self._judged = judged

    def __getitem__(self, key: str) -> Task:
        return self._judged[key].task

    def __iter__(self) -> Iterator[str]:
        return iter(self._judged)

    def __len__(self) -> int:
        return len(self._judged)


def judge_snapshot(rctx: Any, facts: tuple[Fact, ...]) -> list[Finding]:
    """Every RALF rule over one judgement's tasks, agents and facts: the subject rule the
    core's judge runs (``Semantics.subject_rules``)."""
    return judge_view(RalfView(as_of=rctx.as_of, tasks=_JudgedTasks(rctx.judged),
                               agents=rctx.judge.agents, facts=facts))


SUBJECT_RULES = (("ralf", judge_snapshot),)  # handed to the core through Semantics


def judge_view(view: RalfView) -> list[Finding]:
    out: list[Finding] = []
    for _, rule in ALL_RULES:
        out.extend(rule(view))
    return out


def view_at(as_of: datetime, tasks: Mapping[str, Task], agents: Mapping[str, Agent],
            facts: tuple[Fact, ...]) -> RalfView:
    return RalfView(as_of=as_of, tasks=tasks, agents=agents, facts=facts)


