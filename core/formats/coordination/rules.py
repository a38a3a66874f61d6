"""The coordination format's finding rules: pure functions over one read of the files.

Each rule takes a ``CoordView`` (the source's parsed state, the time it is judged at and the
thresholds) and yields findings whose ``task_id`` is the subject: a task id, ``queue`` (the
queue file itself) or ``agent:NAME`` (a worker). Evidence names the file (and the comms-log
line) each fact came from.

A worker is alive by its newest sign of life: heartbeat, ``last_task_claimed`` or a comms
line; dead past ``[coordination] dead_after_s`` (120 s, the design's rule), at risk past
``stale_after_s`` (60 s). A worker absent from worker-status.json, or marked ``inactive``,
holds no live claim.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from qwarden.core.config import Config, CoordinationOptions, Thresholds
from qwarden.core.formats.coordination import layout
from qwarden.core.formats.coordination.kinds import COORD_SCORED
from qwarden.core.formats.coordination.parse import stamp
from qwarden.core.formats.coordination.source import (
    CoordState,
    context_files,
    holders,
    instruction_rel,
    meta,
    worker_caps,
)
from qwarden.core.model import Action, Agent, Evidence, Finding, Severity, Side, Signal
from qwarden.core.rules.errors import error_signature
from qwarden.core.timefmt import age_text


@dataclass
class CoordView:
    as_of: datetime
    state: CoordState
    opts: CoordinationOptions = field(default_factory=CoordinationOptions)
    thresholds: Thresholds = field(default_factory=Thresholds)
    _held: dict[str, list[str]] | None = None
    _health: dict[str | None, tuple[str, str, list[Evidence]]] = field(default_factory=dict)
    _caps: dict[str, frozenset[str]] = field(default_factory=dict)
    _lost: tuple[dict[str, Finding], list[Finding]] | None = None
    _repeated: dict[str, Finding] | None = None
    _per_task: dict[str, list[Finding]] | None = None

    def health(self, name: str | None) -> tuple[str, str, list[Evidence]]:
        got = self._health.get(name)
        if got is None:
            got = self._health[name] = worker_health(self, name)
        return got

    @property
    def lost(self) -> tuple[dict[str, Finding], list[Finding]]:
        if self._lost is None:
            self._lost = _lost_claims(self)
        return self._lost

    @property
    def per_task(self) -> dict[str, list[Finding]]:
        if self._per_task is None:
            self._per_task = _all_task_findings(self)
        return self._per_task

    @property
    def repeated(self) -> dict[str, Finding]:
        if self._repeated is None:
            self._repeated = _repeated_failures(self)
        return self._repeated

    def caps(self, name: str) -> frozenset[str]:
        got = self._caps.get(name)
        if got is None:
            got = self._caps[name] = frozenset(worker_caps(self.state, name))
        return got

    @property
    def held(self) -> dict[str, list[str]]:
        if self._held is None:
            self._held = holders(self.state.tasks)
        return self._held

    def age(self, t: datetime | None) -> float | None:
        return None if t is None else (self.as_of - t).total_seconds()


def _ev(fact: str, value: object, at: datetime | None = None, side: Side | None = None
        ) -> Evidence:
    return Evidence(fact=fact, value=str(value), at=at, side=side)


def _finding(kind: str, subject: str, severity: Severity, summary: str,
             evidence: Iterable[Evidence], action: Action) -> Finding:
    return Finding(kind=kind, task_id=subject, severity=severity, summary=summary,
                   evidence=tuple(evidence), recommended_action=action,
                   scored=kind in COORD_SCORED)


def newest_signal(agent: Agent, as_of: datetime) -> Signal | None:
    """The freshest sign of life not in the future of the judging time (a clock that lies
    proves nothing)."""
    best = None
    for s in agent.signals:
        if (s.at - as_of).total_seconds() > 60:
            continue
        if best is None or s.at > best.at:
            best = s
    return best


def worker_health(view: CoordView, name: str | None) -> tuple[str, str, list[Evidence]]:
    """('live' | 'stale' | 'dead', why, evidence) for the worker named."""
    if not name:
        return "dead", "nobody claimed it", [_ev("claimed_by", "null", None, Side.DB)]
    agent = view.state.agents.get(name)
    if agent is None:
        return "dead", f"{name} is absent from worker-status.json", [
            _ev("worker-status.json", f"no entry for {name}", None, Side.AGENT)]
    hb = next((s for s in agent.signals if s.name == "heartbeat"), None)
    evs = [_ev("last_heartbeat", "none" if hb is None else "worker-status.json",
               hb.at if hb else None, Side.AGENT)]
    if agent.status_text and agent.status_text != "active":
        evs.append(_ev("status", agent.status_text, None, Side.AGENT))
        return "dead", f"{name} is {agent.status_text}", evs
    sig = newest_signal(agent, view.as_of)
    if sig is None:
        return "dead", f"{name} shows no sign of life", evs
    if hb is None or sig is not hb:
        evs.append(_ev("newest sign of life", sig.name, sig.at, Side.AGENT))
    age = view.age(sig.at) or 0.0
    if age > view.opts.dead_after_s:
        return "dead", (f"{name} silent for {age_text(age)} (> {age_text(view.opts.dead_after_s)})"
                        ), evs
    if age > view.opts.stale_after_s:
        return "stale", f"{name} quiet for {age_text(age)}", evs
    return "live", f"{name} active {age_text(age)} ago", evs


# ---------------------------------------------------------------------------- the rules
#
# Each kind is a function of (view, task id) for the per-task kinds, or of the view for the
# queue and the workers. What needs the whole state (who holds what, which failures share an
# error) is computed once per view. zombie_claim, stale_heartbeat, recycling_task,
# blocked_by_stuck and a missing instruction file are the generic rules' (core.rules), over
# this format's Semantics and clock.


def _lost_claims(view: CoordView) -> tuple[dict[str, Finding], list[Finding]]:
    """A live worker that believes it holds a task it does not: its newest claim line names a
    task now claimed by another worker (last writer won), or its status file says it claimed
    after its last completion while no in-progress task names it. (task findings by id,
    worker findings)"""
    st = view.state
    held = view.held
    by_task: dict[str, Finding] = {}
    by_agent: list[Finding] = []
    for name, agent in st.agents.items():
        if held.get(name):
            continue
        if view.health(name)[0] != "live":
            continue
        done = agent.last_finished
        reported = False
        claim_lines = [ln for ln in st.comms_by_agent.get(name, ())
                       if ln.claims and ln.ids and ln.at is not None]
        if claim_lines:
            ln = max(claim_lines, key=lambda c: (c.at, c.lineno))  # type: ignore[arg-type,return-value]
            assert ln.at is not None
            if done is None or ln.at > done:
                for tid in ln.ids:
                    task = st.tasks.get(tid)
                    rec = task.record if task else None
                    if rec is None or not rec.claimed_by or rec.claimed_by == name \
                            or tid in by_task:
                        continue
                    reported = True
                    by_task[tid] = _finding(
                        "lost_claim", tid, Severity.CRITICAL,
                        f"{name} announced a claim of it and holds nothing; task-queue.json "
                        f"says {rec.claimed_by} (last writer won)", [
                            _ev(f"{layout.COMMS} line {ln.lineno}",
                                f"{name}: {ln.message[:120]}", ln.at, Side.AGENT),
                            _ev("task-queue.json claimed_by", rec.claimed_by, rec.claimed_at,
                                Side.DB),
                            _ev(f"{name} holds", "no in-progress task", None, Side.DB)],
                        Action.REVIEW)
        if reported:
            continue
        claimed = agent.last_started
        if claimed is not None and (done is None or claimed > done):
            by_agent.append(_finding(
                "lost_claim", f"agent:{name}", Severity.WARNING,
                f"{name} claimed a task at {claimed.isoformat(timespec='seconds')} after its "
                "last completion, and no in-progress task names it", [
                    _ev("worker-status.json last_task_claimed", name, claimed, Side.AGENT),
                    _ev("worker-status.json last_task_completed",
                        "null" if done is None else name, done, Side.AGENT),
                    _ev("task-queue.json", f"no in_progress task claimed_by {name}", None,
                        Side.DB)], Action.REVIEW))
    return by_task, by_agent


def capability_mismatch(view: CoordView, tid: str) -> Iterator[Finding]:
    st = view.state
    rec = st.tasks[tid].record
    if rec is None or rec.queue != "in_progress" or not rec.claimed_by:
        return
    if rec.claimed_by not in st.agents:
        return  # no capabilities known: zombie_claim's business
    need = meta(st.entries[tid]).get("required_skills")
    if not isinstance(need, list) or not need:
        return
    caps = view.caps(rec.claimed_by)
    lacking = [str(s) for s in need if str(s) not in caps]
    if not lacking:
        return
    need_set = set(map(str, need))
    able = [w for w in st.agents if need_set <= view.caps(w) and view.health(w)[0] == "live"]
    yield _finding(
        "capability_mismatch", tid, Severity.WARNING,
        f"{rec.claimed_by} lacks {', '.join(lacking)}"
        + (f"; {able[0]} has every skill (reassign)" if able else "; no live worker has "
           "every skill"), [
            _ev("metadata.required_skills", ", ".join(map(str, need)), None, Side.DB),
            _ev(f"{rec.claimed_by} capabilities", ", ".join(sorted(caps)) or "none", None,
                Side.AGENT),
            _ev("able live workers", ", ".join(able[:5]) or "none")], Action.REVIEW)


def corrupt_queue(view: CoordView) -> Iterator[Finding]:
    """The queue file as a whole: JSON that does not parse, or invalid entries."""
    st = view.state
    q = st.queue
    if st.queue_error is not None:
        err = st.queue_error
        evs = [_ev(f"{layout.QUEUE} line {err.line} column {err.column}", err.message),
               _ev("shown", "the last good read" if st.queue_stale
                   else f"{len(q.entries)} entries salvaged")]
        yield _finding("corrupt_queue_file", "queue", Severity.CRITICAL,
                       f"{layout.QUEUE} is not valid JSON (line {err.line}, column "
                       f"{err.column}): {err.message}", evs, Action.REVIEW)
    elif q.invalid:
        evs = [_ev(f"entry #{bad.index}", f"{bad.reason}: {bad.snippet}")
               for bad in q.invalid[:20]]
        if len(q.invalid) > 20:
            evs.append(_ev("more invalid entries", len(q.invalid) - 20))
        yield _finding("corrupt_queue_file", "queue", Severity.CRITICAL,
                       f"{len(q.invalid)} invalid entries in {layout.QUEUE} (no id, no status, "
                       "or not an object): qwarden repair keeps every valid one",
                       evs, Action.REVIEW)


def duplicate_id(view: CoordView, tid: str) -> Iterator[Finding]:
    idx = view.state.queue.duplicates.get(tid)
    if idx:
        yield _finding("corrupt_queue_file", tid, Severity.WARNING,
                       f"id {tid} appears {len(idx)} times in {layout.QUEUE} (entries "
                       f"{', '.join(f'#{i}' for i in idx)}); the first is shown",
                       [_ev(f"entry #{i}", "same id") for i in idx], Action.REVIEW)


def missing_context(view: CoordView, tid: str) -> Iterator[Finding]:
    """The instruction file or a context file does not exist (a context-free worker cannot
    run the task). Finished tasks are not read again: not reported."""
    st = view.state
    e = st.entries[tid]
    rec = st.tasks[tid].record
    if rec is not None and rec.queue in ("completed", "cancelled"):
        return
    rel = instruction_rel(e)
    missing = [] if rel in st.existing else [("instruction_file", rel)]
    missing += [("context_files", c) for c in context_files(e) if c not in st.existing]
    if missing:
        yield _finding("missing_instructions", tid, Severity.CRITICAL,
                       f"{len(missing)} file(s) a context-free worker needs do not exist: "
                       + ", ".join(p for _, p in missing),
                       [_ev(f"task-queue.json {k}", f"{p} (missing)", None, Side.FILE)
                        for k, p in missing], Action.REVIEW)


_BAD_RESULT = frozenset({"error", "failed", "failure", "fail"})


def unverified_completion(view: CoordView, tid: str) -> Iterator[Finding]:
    st = view.state
    if st.tasks[tid].record.queue != "completed":  # type: ignore[union-attr]
        return
    raw = st.entries[tid].raw
    result = raw.get("result")
    err = raw.get("error")
    why = None
    if result is None or result == {} or result == "":
        why = "no result"
    elif isinstance(result, dict) and (
            str(result.get("status", "")).lower() in _BAD_RESULT
            or result.get("tests_passed") is False or result.get("error")):
        why = "its result reports an error"
    elif err not in (None, ""):
        why = "an error beside the completion"
    if why is None:
        return
    at = stamp(raw.get("completed_at"))
    evs = [_ev("task-queue.json status", "completed", at, Side.DB),
           _ev("result", "null" if result is None else str(result)[:160], None, Side.DB)]
    if err not in (None, ""):
        evs.append(_ev("error", str(err)[:160], None, Side.DB))
    yield _finding("unverified_completion", tid, Severity.WARNING,
                   f"completed with {why}: look before trusting it", evs, Action.REVIEW)


def _repeated_failures(view: CoordView) -> dict[str, Finding]:
    st = view.state
    groups: dict[str, list[str]] = {}
    for tid, e in st.entries.items():
        if st.tasks[tid].record.queue != "failed":  # type: ignore[union-attr]
            continue
        err = e.raw.get("error")
        if not isinstance(err, str) or not err.strip():
            continue
        sig = error_signature(err)
        if sig:
            groups.setdefault(sig, []).append(tid)
    out: dict[str, Finding] = {}
    for sig, members in groups.items():
        if len(members) < view.thresholds.repeated_failure_min:
            continue
        shown = ", ".join(members[:8]) + (f" (+{len(members) - 8})" if len(members) > 8 else "")
        for tid in members:
            out[tid] = _finding("repeated_failure", tid, Severity.CRITICAL,
                                f"{len(members)} failed tasks share one error: {sig}",
                                [_ev("signature", sig), _ev("tasks", shown),
                                 _ev("completed_at", "this task",
                                     stamp(st.entries[tid].raw.get("completed_at")), Side.DB)],
                                Action.ESCALATE)
    return out


PER_TASK: tuple[Callable[[CoordView, str], Iterable[Finding]], ...] = (
    capability_mismatch, duplicate_id, missing_context, unverified_completion)


def _all_task_findings(view: CoordView) -> dict[str, list[Finding]]:
    """Every task's own findings, in one pass (the judge then asks per task: a lookup). Each
    rule is called only where its guard can pass, read here once per entry."""
    st = view.state
    existing = st.existing
    out: dict[str, list[Finding]] = {}
    dups = st.queue.duplicates
    for tid, e in st.entries.items():
        raw = e.raw
        status = st.tasks[tid].record.queue  # type: ignore[union-attr]
        fs: list[Finding] = []
        if status == "in_progress":
            m = raw.get("metadata")
            if isinstance(m, dict) and m.get("required_skills"):
                fs.extend(capability_mismatch(view, tid))
        elif status == "completed":
            fs.extend(unverified_completion(view, tid))
        if status not in ("completed", "cancelled") and (
                instruction_rel(e) not in existing or raw.get("context_files")):
            fs.extend(missing_context(view, tid))
        if tid in dups:
            fs.extend(duplicate_id(view, tid))
        if fs:
            out[tid] = fs
    for tid, f in view.lost[0].items():
        out.setdefault(tid, []).append(f)
    for tid, f in view.repeated.items():
        out.setdefault(tid, []).append(f)
    return out


def task_findings(view: CoordView, tid: str) -> list[Finding]:
    """This format's own findings about one task."""
    return view.per_task.get(tid, [])


def subject_findings(view: CoordView) -> list[Finding]:
    """About the queue file and the workers."""
    return [*corrupt_queue(view), *view.lost[1]]


def derived(view: CoordView) -> dict[str, tuple[str, ...]]:
    """The tasks whose findings depend on other tasks or workers (lost claims, failure
    groups): a source's delta re-judges those whose entry here changed."""
    out: dict[str, tuple[str, ...]] = {}
    for tid, f in view.lost[0].items():
        out[tid] = (f.summary,)
    for tid, f in view.repeated.items():
        out[tid] = (*out.get(tid, ()), f.summary)
    return out


def view_of(state: CoordState, as_of: datetime, config: Config | None = None) -> CoordView:
    config = config or Config()
    return CoordView(as_of=as_of, state=state, opts=config.coordination,
                     thresholds=config.thresholds)
