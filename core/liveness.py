"""Effective state and liveness of one task: what is really going on, and is anyone on it.

Pure functions over model objects. Two questions per claim, kept apart on purpose (pg-boss's two
clocks): is the worker alive (signals), and has the claim been ended by a later trail event
whatever the DB says. When evidence is missing the answer is ``unknown``, never ``dead``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import datetime

import msgspec

from qwarden.core.config import Thresholds
from qwarden.core.model import (
    Action,
    Agent,
    Evidence,
    Liveness,
    Record,
    Side,
    Signal,
    Task,
    TrailEvent,
    Verdict,
)
from qwarden.core.semantics import Semantics
from qwarden.core.timefmt import age_text


class JudgeContext(Record, frozen=True, gc=True):
    """What a verdict or rule may look at besides the task itself."""

    as_of: datetime
    thresholds: Thresholds
    live: bool  # judging the live machine: pid checks allowed
    semantics: Semantics  # what the format's states and events mean
    agents: Mapping[str, Agent]
    agents_naming: Mapping[str, tuple[str, ...]]  # task id -> agents that say they work on it
    has_db: bool = True  # False in Octopoid's file-only mode: no row is expected
    reviews: Mapping[str, datetime] = msgspec.field(default_factory=dict)  # task -> last reviewed

    def age(self, t: datetime | None) -> float | None:
        return None if t is None else (self.as_of - t).total_seconds()


def last_state_event(trail: tuple[TrailEvent, ...], sem: Semantics,
                     since: datetime | None = None) -> TrailEvent | None:
    """The newest trail event that changes state (at or after ``since`` when given)."""
    states = sem.event_states
    for ev in reversed(trail):
        if ev.kind not in states:
            continue
        if since is not None and ev.at is not None and ev.at < since:
            return None
        return ev
    return None


def last_claim_event(trail: tuple[TrailEvent, ...], sem: Semantics) -> TrailEvent | None:
    for ev in reversed(trail):
        if ev.kind in sem.claim_events:
            return ev
    return None


def file_time(task: Task) -> datetime | None:
    """When the file side last changed: its newest trail event (the trail says who moved
    last), else nothing (mtime is a weaker clue, used only for the settle check)."""
    newest: datetime | None = None
    for ev in task.trail:
        if ev.at is not None and (newest is None or ev.at > newest):
            newest = ev.at
    return newest


class StateJudgement(Record, frozen=True):
    state: str
    effectively_claimed: bool
    claimant: str | None
    claimed_at: datetime | None
    newer_side: Side | None  # set when the two sides disagree
    mismatch: bool  # the primary file is not where the DB queue says


@functools.lru_cache(maxsize=256)
def _idle_reason(state: str) -> str:
    return f"not claimed ({state})"


@functools.lru_cache(maxsize=256)
def _settled_state(queue: str) -> StateJudgement:
    """The common case (unclaimed, file where the DB says) shares one immutable judgement
    per queue instead of one object per task."""
    return StateJudgement(queue, False, None, None, None, False)


def effective_state(task: Task, sem: Semantics) -> StateJudgement:
    rec = task.record
    pf = task.primary_file
    real = pf if pf is not None and pf.parseable else None
    if rec is None:
        return StateJudgement(sem.file_state(pf.queue) if pf else sem.initial_state, False,
                              None, None, None, False)
    if real is None or not sem.files_carry_state:
        return StateJudgement(rec.queue, rec.queue in sem.claimed_states, rec.claimed_by,
                              rec.claimed_at, None, False)
    trail = real.trail
    mismatch = real.queue not in sem.expected_places(rec.queue)
    if rec.queue in sem.claimed_states:
        claim_ev = last_claim_event(trail, sem)
        claimant = rec.claimed_by or (claim_ev.actor if claim_ev else None)
        claimed_at = rec.claimed_at or (claim_ev.at if claim_ev else None)
        ev = last_state_event(trail, sem, since=claimed_at)
        if ev is not None and ev.kind not in sem.claim_events:
            # A later FAILED_AT / NEEDS_CONTINUATION_AT / SUBMITTED_AT ... ended the claim,
            # whatever the DB still says.
            return StateJudgement(sem.event_states[ev.kind], False, claimant, claimed_at,
                                  Side.FILE, mismatch)
        if not mismatch:
            return StateJudgement(rec.queue, True, claimant, claimed_at, None, False)
        newer = _newer_side(task)
        if newer is Side.FILE:
            return StateJudgement(sem.file_state(real.queue), False, claimant, claimed_at,
                                  newer, True)
        return StateJudgement(rec.queue, True, claimant, claimed_at, newer, True)
    if not mismatch:
        return _settled_state(rec.queue)
    if sem.file_decides:
        return StateJudgement(sem.file_state(real.queue), False, None, None, Side.FILE, True)
    newer = _newer_side(task)
    state = sem.file_state(real.queue) if newer is Side.FILE else rec.queue
    return StateJudgement(state, False, None, None, newer, True)


def mismatch_settled(task: Task, ctx: JudgeContext) -> bool:
    """A misplaced file is reported only once settled: mtime and last trail event both older
    than the grace (an agent mid-move must not be "fixed" under its feet)."""
    pf = task.primary_file
    if pf is None:
        return True
    grace = ctx.thresholds.mismatch_grace_s
    if ctx.as_of.timestamp() - pf.mtime <= grace:
        return False
    last = pf.last_event
    return not (last is not None and last.at is not None
                and (ctx.as_of - last.at).total_seconds() <= grace)


def _stamp_span(t: datetime) -> float:
    """How long the true moment behind a stamp may lie after it: a second for a stamp written
    to the second (SQLite's CURRENT_TIMESTAMP truncates), a microsecond otherwise."""
    return 1.0 if t.microsecond == 0 else 1e-6


def _newer_side(task: Task) -> Side | None:
    """Which side changed last, or None when the stamps cannot tell: a difference smaller
    than the coarser stamp's precision is no evidence of order (0.35 s between a microsecond
    CREATED and a second-precision created_at once decided a fix's direction)."""
    rec = task.record
    db_t = rec.newest_change if rec is not None else None
    f_t = file_time(task)
    if f_t is None and task.primary_file is not None:
        from qwarden.core.timefmt import from_epoch
        f_t = from_epoch(task.primary_file.mtime)
    if db_t is None:
        return Side.FILE
    if f_t is None:
        return Side.DB
    gap = (f_t - db_t).total_seconds()
    if gap >= _stamp_span(db_t):
        return Side.FILE
    if -gap >= _stamp_span(f_t):
        return Side.DB
    return None


def _ev(fact: str, value: str, at: datetime | None = None, side: Side | None = None) -> Evidence:
    return Evidence(fact=fact, value=value, at=at, side=side)


LivenessResult = tuple[Liveness, bool, str, tuple[Evidence, ...], str | None]


def judge_liveness(task: Task, sj: StateJudgement, ctx: JudgeContext) -> LivenessResult:
    """Liveness, split_brain_live, reason, evidence, and the claim problem if any
    ('zombie' | 'stale' | 'split_brain_live' | 'split_brain_stale' | None)."""
    return _liveness(task, sj, ctx)[0]


def _liveness(task: Task, sj: StateJudgement, ctx: JudgeContext
              ) -> tuple[LivenessResult, str | None]:
    """``judge_liveness`` and, for a split brain, the agent found at work."""
    if sj.effectively_claimed:
        # Another agent at work on a task the DB gives to someone else is split brain too,
        # whatever the claimant is doing: releasing a "zombie" claim would pull the task
        # from under the agent that really works on it.
        return _rival_at_work(task, sj.claimant, ctx) or (_judge_claim(task, sj, ctx), None)
    # Not claimed per the DB: does some agent still work on it? (split brain)
    for name, agent, sig, age in _agents_at_work(task, ctx):
        if not _file_still_claimed_by(task, name, ctx.semantics):
            continue  # the agent itself ended its claim (submitted, failed...): just lag
        rec = task.record
        db_says = (f"queue={rec.queue}, claimed_by={rec.claimed_by or '-'}" if rec
                   else "no DB row")
        return _split_brain(name, agent, sig, age, ctx,
                            _ev("DB", db_says, rec.updated_at if rec else None, Side.DB),
                            "the DB released the claim")
    return (Liveness.IDLE, False, _idle_reason(sj.state), (), None), None


def _fresh_signal(agent: Agent, task_id: str, as_of: datetime, zombie_after_s: float,
                  live: bool) -> tuple[Signal | None, float] | None:
    """Whether an agent that names the task may be at work on it: its process not known to be
    gone and its newest signal younger than the zombie threshold. Returns that signal and its
    age ((None, 0) when it shows none yet), or None when it is not at work."""
    if agent.running is False or (live and agent.pid_alive is False):
        return None  # a dead agent's leftover record of a claim
    sig = agent.newest_signal(task_id)
    if sig is None:
        return None, 0.0
    age = (as_of - sig.at).total_seconds()
    return (sig, age) if age <= zombie_after_s else None


def _agents_at_work(task: Task, ctx: JudgeContext, exclude: str | None = None
                    ) -> Iterator[tuple[str, Agent, Signal, float]]:
    """Agents (but ``exclude``) that say they work on the task, are running (their pid alive,
    on the live machine) and have a signal younger than the zombie threshold."""
    for name in ctx.agents_naming.get(task.task_id, ()):
        if name == exclude:
            continue
        agent = ctx.agents[name]
        fresh = _fresh_signal(agent, task.task_id, ctx.as_of, ctx.thresholds.zombie_after_s,
                              ctx.live)
        if fresh is not None and fresh[0] is not None:
            yield name, agent, fresh[0], fresh[1]


def agents_at_work_on(task_id: str, agents: Mapping[str, Agent], as_of: datetime,
                      thresholds: Thresholds, live: bool) -> list[str]:
    """Agents that may still be working on the task, each with why: as ``_agents_at_work``,
    and also one that says it is running but has shown no signal yet. The guard of every
    write."""
    out = []
    for name, agent in agents.items():
        if agent.current_task_id != task_id:
            continue
        fresh = _fresh_signal(agent, task_id, as_of, thresholds.zombie_after_s, live)
        if fresh is None:
            continue
        sig, age = fresh
        if sig is None:
            if agent.running:
                out.append(f"{name} says it is running on it (no signal yet)")
            continue
        out.append(f"{name} names it in {agent.current_task_source or 'its state'}, "
                   f"{sig.name} {age_text(age)} ago")
    return out


def _split_brain(name: str, agent: Agent, sig: Signal, age: float, ctx: JudgeContext,
                 db_ev: Evidence, db_says: str) -> tuple[LivenessResult, str]:
    ev = (
        db_ev,
        _ev(f"agent {name} says it works on it", f"via {agent.current_task_source}", None,
            Side.AGENT),
        _ev("newest signal", sig.name, sig.at, Side.AGENT),
    )
    if age <= ctx.thresholds.stale_after_s:
        return (Liveness.LIVE, True, f"{name} still working (signal {age_text(age)} ago) "
                f"though {db_says}", ev, "split_brain_live"), name
    return (Liveness.AT_RISK, False, f"{name} names it but its newest signal is "
            f"{age_text(age)} old ({db_says})", ev, "split_brain_stale"), name


def _rival_at_work(task: Task, claimant: str | None, ctx: JudgeContext
                   ) -> tuple[LivenessResult, str] | None:
    """An agent other than the DB's claimant at work on the task (the freshest one)."""
    rivals = list(_agents_at_work(task, ctx, exclude=claimant))
    if not rivals:
        return None
    name, agent, sig, age = min(rivals, key=lambda r: r[3])
    rec = task.record
    return _split_brain(
        name, agent, sig, age, ctx,
        _ev("DB", f"queue={rec.queue if rec else '-'}, claimed_by={claimant or '-'}",
            rec.claimed_at if rec else None, Side.DB),
        f"the DB says {claimant or 'nobody'} claimed it")


def _file_still_claimed_by(task: Task, agent: str, sem: Semantics) -> bool:
    """Whether, as far as the trail shows, ``agent``'s own claim was never ended by itself.

    A claim ends with the first state event after it (submitted, failed...). But once another
    agent claimed the task after ``agent`` did (a DB-only reset handed it on), the events that
    follow are the other agent's: they end *its* claim, not the one ``agent`` still works on."""
    trail = task.trail
    own = None  # index of the agent's newest claim start
    for i in range(len(trail) - 1, -1, -1):
        ev = trail[i]
        if ev.kind in sem.claim_events and (ev.actor or agent) == agent:
            own = i
            break
    if own is None:  # the trail shows no claim of its own: only no trail at all agrees
        return last_state_event(trail, sem) is None
    for ev in trail[own + 1:]:
        if ev.kind not in sem.event_states:
            continue
        if ev.kind in sem.claim_events:
            return True  # someone else claimed it after the agent: nothing the agent ended
        return False  # the agent's claim was ended (it submitted, failed...): just lag
    return True  # nothing after its claim contradicts the agent


def _judge_claim(task: Task, sj: StateJudgement, ctx: JudgeContext
                 ) -> tuple[Liveness, bool, str, tuple[Evidence, ...], str | None]:
    th = ctx.thresholds
    tid = task.task_id
    claimant = sj.claimant
    claim_age = ctx.age(sj.claimed_at)
    claim_ev = _ev("claimed", f"by {claimant or '?'}", sj.claimed_at, Side.DB)
    agent = ctx.agents.get(claimant) if claimant else None
    if agent is None or not agent.has_state:
        none = (claim_ev, _ev("agent state", f"none for {claimant or 'unknown agent'}"))
        if claim_age is not None and claim_age > th.zombie_after_s:
            return (Liveness.DEAD, False, f"no state for {claimant}; claim "
                    f"{age_text(claim_age)} old", none, "zombie")
        return Liveness.UNKNOWN, False, "no agent state yet", none, None

    sig = agent.newest_signal(tid)
    sig_age = ctx.age(sig.at) if sig else None
    evs: list[Evidence] = [claim_ev]
    if sig is not None:
        evs.append(_ev("newest signal", sig.name, sig.at, Side.AGENT))
    evs.append(_ev("agent running", str(agent.running).lower(), None, Side.AGENT))
    old_enough = claim_age is None or claim_age > th.finished_grace_s

    pid_dead = ctx.live and agent.pid is not None and agent.pid_alive is False
    if pid_dead:
        evs.append(_ev("pid", f"{agent.pid} not alive", ctx.as_of, Side.AGENT))
    if agent.running is False or pid_dead:
        fin = agent.last_finished
        if (pid_dead or agent.last_exit_code not in (None, 0)) and sig is not None \
                and (fin is None or sig.at < fin):
            # A dead pid, or a crash reap (non-zero exit): the stamp is when the scheduler
            # noticed, not when the agent died. It died after its last sign of life.
            fin = sig.at
            evs.append(_ev("agent died after", sig.name, fin, Side.AGENT))
        elif fin is not None:
            evs.append(_ev("agent finished", "last_finished", fin, Side.AGENT))
        fin_age = ctx.age(fin)
        finished_long_ago = fin_age is None or fin_age > th.finished_grace_s
        quiet = sig_age is None or sig_age > th.finished_grace_s
        if old_enough and finished_long_ago and quiet:
            why = f"pid {agent.pid} gone" if pid_dead else "agent not running"
            return Liveness.DEAD, False, f"{why}; claim by {claimant} abandoned", tuple(evs), \
                "zombie"
        return Liveness.UNKNOWN, False, "agent not running yet/just finished", tuple(evs), None

    other = agent.current_task_id
    if other and other != tid:
        evs.append(_ev("agent works on", other, None, Side.AGENT))
        if claim_age is not None and claim_age > th.zombie_after_s:
            return (Liveness.DEAD, False, f"{claimant} moved on to {other}; claim "
                    f"{age_text(claim_age)} old", tuple(evs), "zombie")
        return Liveness.AT_RISK, False, f"{claimant} says it works on {other}", tuple(evs), None

    if sig_age is None:
        if claim_age is not None and claim_age > th.zombie_after_s:
            return (Liveness.DEAD, False, f"no signal from {claimant}; claim "
                    f"{age_text(claim_age)} old", tuple(evs), "zombie")
        return Liveness.UNKNOWN, False, f"no signal from {claimant} yet", tuple(evs), None
    if sig_age > th.zombie_after_s:
        return (Liveness.DEAD, False, f"{claimant} silent for {age_text(sig_age)}", tuple(evs),
                "zombie")
    if sig_age > th.stale_after_s:
        return (Liveness.AT_RISK, False, f"{claimant} quiet for {age_text(sig_age)}", tuple(evs),
                "stale")
    return Liveness.LIVE, False, f"{claimant} active {age_text(sig_age)} ago", tuple(evs), None


def make_verdict(task: Task, ctx: JudgeContext) -> tuple[Verdict, StateJudgement, str | None]:
    sj = effective_state(task, ctx.semantics)
    (liveness, sbl, reason, evidence, problem), at_work = _liveness(task, sj, ctx)
    claimed_by = sj.claimant if sj.effectively_claimed else None
    if at_work is not None:  # a split brain: the agent at work, not the DB's claimant
        claimed_by = at_work
    return verdict(sj.state, liveness, sbl, Action.NONE, claimed_by, reason, evidence), sj, \
        problem


# Most verdicts are alike ("not claimed (done)", idle, nothing to show): one object each,
# not 100,000 equal ones. Only those without evidence, which is what makes one unique. Keyed
# by a plain tuple of the fields, looked up before any Verdict is built (a Verdict as the key
# ran the dataclass's Python-level __hash__ and __eq__ for every task).
_VERDICTS: dict[tuple[object, ...], Verdict] = {}


def verdict(state: str, liveness: Liveness, split_brain_live: bool, action: Action,
            claimed_by: str | None, reason: str, evidence: tuple[Evidence, ...] = ()
            ) -> Verdict:
    """A Verdict, shared with every equal one when it has no evidence."""
    if evidence:
        return Verdict(state, liveness, split_brain_live, action, claimed_by, reason, evidence)
    key = (state, liveness, split_brain_live, action, claimed_by, reason)
    got = _VERDICTS.get(key)
    if got is None:
        if len(_VERDICTS) >= 4096:  # bounded, whatever the reasons and claimants are
            _VERDICTS.clear()
        got = _VERDICTS[key] = Verdict(state, liveness, split_brain_live, action, claimed_by,
                                       reason)
    return got
