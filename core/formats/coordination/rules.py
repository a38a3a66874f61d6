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

from core.config import Config, CoordinationOptions, Thresholds
from core.formats.coordination import layout
from core.formats.coordination.kinds import COORD_SCORED
from core.formats.coordination.parse import stamp
from core.formats.coordination.source import (
    CoordState,
    context_files,
    depends_on,
    holders,
    instruction_rel,
    meta,
    worker_caps,
)
from core.model import Action, Agent, Evidence, Finding, Severity, Side, Signal
from core.rules.errors import error_signature
from core.timefmt import age_text


@dataclass
class CoordView:
    as_of: datetime
    state: CoordState
    opts: CoordinationOptions = field(default_factory=CoordinationOptions)
    thresholds: Thresholds = field(default_factory=Thresholds)
    _held: dict[str, list[str]] | None = None
    _health: dict[str | None, tuple[str, str, list[Evidence]]] = field(default_factory=dict)
    _caps: dict[str, frozenset[str]] = field(default_factory=dict)

    def health(self, name: str | None) -> tuple[str, str, list[Evidence]]:
        got = self._health.get(name)
        if got is None:
            got = self._health[name] = worker_health(self, name)
        return got

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


def _claim_ev(view: CoordView, tid: str) -> Evidence:
    rec = view.state.tasks[tid].record
    assert rec is not None
    field_name = "claimed_at" if "claimed_at" in view.state.entries[tid].raw and \
        view.state.entries[tid].raw.get("claimed_at") is not None else "started_at"
    return _ev(f"task-queue.json status=in_progress, {field_name}", f"by {rec.claimed_by or '-'}",
               rec.claimed_at, Side.DB)


# ---------------------------------------------------------------------------- the rules

def claims(view: CoordView) -> Iterator[Finding]:
    """zombie_claim and stale_heartbeat: in-progress tasks whose worker is dead or going."""
    grace = view.opts.dead_after_s
    for tid, task in view.state.tasks.items():
        rec = task.record
        if rec is None or rec.queue != "in_progress":
            continue
        health, why, evs = view.health(rec.claimed_by)
        claim = _claim_ev(view, tid)
        if health == "dead":
            if not rec.claimed_by:  # an in-progress entry nobody claimed: only once it is old
                age = view.age(rec.claimed_at)
                if age is not None and age <= grace:
                    continue
            yield _finding("zombie_claim", tid, Severity.CRITICAL,
                           f"in progress but nobody works on it: {why}", [claim, *evs],
                           Action.RELEASE_CLAIM)
        elif health == "stale":
            yield _finding("stale_heartbeat", tid, Severity.WARNING,
                           f"claim at risk: {why}", [claim, *evs], Action.REVIEW)


def lost_claims(view: CoordView) -> Iterator[Finding]:
    """A live worker that believes it holds a task it does not: its newest claim line names a
    task now claimed by another worker (last writer won), or its status file says it claimed
    after its last completion while no in-progress task names it."""
    st = view.state
    held = view.held
    reported: set[str] = set()
    for name, agent in st.agents.items():
        if held.get(name):
            continue
        health, _, _ = view.health(name)
        if health != "live":
            continue
        done = agent.last_finished
        claim_lines = [ln for ln in st.comms_by_agent.get(name, ())
                       if ln.claims and ln.ids and ln.at is not None]
        if claim_lines:
            ln = max(claim_lines, key=lambda c: (c.at, c.lineno))  # type: ignore[arg-type,return-value]
            assert ln.at is not None
            if done is None or ln.at > done:
                for tid in ln.ids:
                    task = st.tasks.get(tid)
                    rec = task.record if task else None
                    if rec is None or not rec.claimed_by or rec.claimed_by == name:
                        continue
                    reported.add(name)
                    yield _finding(
                        "lost_claim", tid, Severity.CRITICAL,
                        f"{name} announced a claim of it and holds nothing; task-queue.json "
                        f"says {rec.claimed_by} (last writer won)", [
                            _ev(f"{layout.COMMS} line {ln.lineno}", f"{name}: {ln.message[:120]}",
                                ln.at, Side.AGENT),
                            _ev("task-queue.json claimed_by", rec.claimed_by, rec.claimed_at,
                                Side.DB),
                            _ev(f"{name} holds", "no in-progress task", None, Side.DB)],
                        Action.REVIEW)
        if name in reported:
            continue
        claimed = agent.last_started
        if claimed is not None and (done is None or claimed > done):
            yield _finding(
                "lost_claim", f"agent:{name}", Severity.WARNING,
                f"{name} claimed a task at {claimed.isoformat(timespec='seconds')} after its "
                "last completion, and no in-progress task names it", [
                    _ev("worker-status.json last_task_claimed", name, claimed, Side.AGENT),
                    _ev("worker-status.json last_task_completed",
                        "null" if done is None else name, done, Side.AGENT),
                    _ev("task-queue.json", f"no in_progress task claimed_by {name}", None,
                        Side.DB)], Action.REVIEW)


def capability_mismatch(view: CoordView) -> Iterator[Finding]:
    st = view.state
    for tid, task in st.tasks.items():
        rec = task.record
        if rec is None or rec.queue != "in_progress" or not rec.claimed_by:
            continue
        if rec.claimed_by not in st.agents:
            continue  # no capabilities known: zombie_claim's business
        need = meta(st.entries[tid]).get("required_skills")
        if not isinstance(need, list) or not need:
            continue
        caps = view.caps(rec.claimed_by)
        lacking = [str(s) for s in need if str(s) not in caps]
        if not lacking:
            continue
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
        evs = [_ev(f"entry #{bad.index}", f"{bad.reason}: {bad.snippet}") for bad in q.invalid[:20]]
        if len(q.invalid) > 20:
            evs.append(_ev("more invalid entries", len(q.invalid) - 20))
        yield _finding("corrupt_queue_file", "queue", Severity.CRITICAL,
                       f"{len(q.invalid)} invalid entries in {layout.QUEUE} (no id, no status, "
                       "or not an object): qwarden repair keeps every valid one",
                       evs, Action.REVIEW)
    for tid, idx in q.duplicates.items():
        yield _finding("corrupt_queue_file", tid, Severity.WARNING,
                       f"id {tid} appears {len(idx)} times in {layout.QUEUE} (entries "
                       f"{', '.join(f'#{i}' for i in idx)}); the first is shown",
                       [_ev(f"entry #{i}", "same id") for i in idx], Action.REVIEW)


def missing_instructions(view: CoordView) -> Iterator[Finding]:
    st = view.state
    for tid, e in st.entries.items():
        rec = st.tasks[tid].record
        if rec is not None and rec.queue in ("completed", "cancelled"):
            continue  # nobody will read them again
        rel = instruction_rel(e)
        missing = [] if rel in st.existing else [("instruction_file", rel)]
        missing += [("context_files", c) for c in context_files(e) if c not in st.existing]
        if not missing:
            continue
        yield _finding("missing_instructions", tid, Severity.CRITICAL,
                       f"{len(missing)} file(s) a context-free worker needs do not exist: "
                       + ", ".join(p for _, p in missing),
                       [_ev(f"task-queue.json {k}", f"{p} (missing)", None, Side.FILE)
                        for k, p in missing], Action.REVIEW)


_BAD_RESULT = frozenset({"error", "failed", "failure", "fail"})


def unverified_completion(view: CoordView) -> Iterator[Finding]:
    st = view.state
    for tid, e in st.entries.items():
        if st.tasks[tid].record.queue != "completed":  # type: ignore[union-attr]
            continue
        raw = e.raw
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
            continue
        at = stamp(raw.get("completed_at"))
        evs = [_ev("task-queue.json status", "completed", at, Side.DB),
               _ev("result", "null" if result is None else str(result)[:160], None, Side.DB)]
        if err not in (None, ""):
            evs.append(_ev("error", str(err)[:160], None, Side.DB))
        yield _finding("unverified_completion", tid, Severity.WARNING,
                       f"completed with {why}: look before trusting it", evs, Action.REVIEW)


def repeated_failure(view: CoordView) -> Iterator[Finding]:
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
    for sig, members in groups.items():
        if len(members) < view.thresholds.repeated_failure_min:
            continue
        shown = ", ".join(members[:8]) + (f" (+{len(members) - 8})" if len(members) > 8 else "")
        for tid in members:
            yield _finding("repeated_failure", tid, Severity.CRITICAL,
                           f"{len(members)} failed tasks share one error: {sig}",
                           [_ev("signature", sig), _ev("tasks", shown),
                            _ev("completed_at", "this task",
                                stamp(st.entries[tid].raw.get("completed_at")), Side.DB)],
                           Action.ESCALATE)


def recycling(view: CoordView) -> Iterator[Finding]:
    st = view.state
    low = view.thresholds.recycling_min
    for tid, e in st.entries.items():
        rec = st.tasks[tid].record
        if rec is None or rec.queue == "completed":
            continue
        m = meta(e)
        counts = {k: m[k] for k in ("retry_count", "reset_count", "attempts")
                  if isinstance(m.get(k), int) and not isinstance(m.get(k), bool)}
        resets = [ln for ln in st.comms_by_task.get(tid, ())
                  if _RESET_WORDS(ln.message)]
        n = max([*counts.values(), len(resets)], default=0)
        if n < low:
            continue
        evs = [_ev(f"metadata.{k}", v, None, Side.DB) for k, v in counts.items()]
        if resets:
            evs.append(_ev(f"{layout.COMMS} resets", f"{len(resets)} (last line "
                           f"{resets[-1].lineno})", resets[-1].at, Side.AGENT))
        yield _finding("recycling_task", tid, Severity.WARNING,
                       f"went back to pending {n} times: split it or escalate", evs,
                       Action.SPLIT)


def _reset_words(msg: str) -> bool:
    m = msg.lower()
    return ("to pending" in m or "requeue" in m or "re-queue" in m or "released" in m) \
        and ("reset" in m or "requeue" in m or "re-queue" in m or "released" in m)


_RESET_WORDS: Callable[[str], bool] = _reset_words
STUCK = frozenset({"failed", "cancelled"})


def blocked_by_stuck(view: CoordView) -> Iterator[Finding]:
    st = view.state
    zombies: set[str] | None = None
    for tid, e in st.entries.items():
        rec = st.tasks[tid].record
        if rec is None or rec.queue not in ("pending", "in_progress"):
            continue
        deps = depends_on(e)
        if not deps:
            continue
        if zombies is None:
            zombies = {f.task_id for f in claims(view) if f.kind == "zombie_claim"}
        stuck = []
        for d in deps:
            other = st.tasks.get(d)
            if other is None:
                stuck.append(_ev(f"dependency {d}", "missing from task-queue.json"))
            elif other.record is not None and other.record.queue in STUCK:
                stuck.append(_ev(f"dependency {d}", other.record.queue, None, Side.DB))
            elif d in zombies:
                stuck.append(_ev(f"dependency {d}", "zombie claim"))
        if stuck:
            yield _finding("blocked_by_stuck", tid, Severity.WARNING,
                           f"depends on {len(stuck)} task(s) that will not finish on their own",
                           stuck, Action.REVIEW)


ALL_RULES: tuple[tuple[str, Callable[[CoordView], Iterable[Finding]]], ...] = (
    ("claims", claims),
    ("lost_claim", lost_claims),
    ("capability_mismatch", capability_mismatch),
    ("corrupt_queue_file", corrupt_queue),
    ("missing_instructions", missing_instructions),
    ("unverified_completion", unverified_completion),
    ("repeated_failure", repeated_failure),
    ("recycling_task", recycling),
    ("blocked_by_stuck", blocked_by_stuck),
)


def judge_view(view: CoordView) -> list[Finding]:
    out: list[Finding] = []
    for _, rule in ALL_RULES:
        out.extend(rule(view))
    return out


def view_of(state: CoordState, as_of: datetime, config: Config | None = None) -> CoordView:
    config = config or Config()
    return CoordView(as_of=as_of, state=state, opts=config.coordination,
                     thresholds=config.thresholds)
