"""The task API format's finding rules: small pure functions of one judged task, the judge's
context and a ``TableView`` (the facts of every row the source read). Every finding's evidence
names the columns and values it stands on.

Liveness itself is the core's (``core.liveness``): the source gives each assignee its claim's
signs of life (the claim, and a heartbeat sent after it), and the verdict's claim problem
(``zombie``, ``stale``) is what these rules report, with the row's own columns as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from qwarden.core.formats.taskapi.parse import RowFacts
from qwarden.core.model import Action, Evidence, Finding, Liveness, Severity, Side
from qwarden.core.model import parse_check_results as check_results_of
from qwarden.core.rules.base import Judged, RuleContext, ev, finding
from qwarden.core.rules.completion import passing_checks
from qwarden.core.timefmt import age_text


@dataclass(frozen=True)
class TableView:
    """What the rules may look at besides the judged tasks: every row's facts, and the
    blocked tasks grouped by the exception line their blocked_reason ends in."""

    facts: Mapping[str, RowFacts]
    failure_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    has_check_results: bool = False  # the table has a check_results column


def failure_groups(facts: Iterable[RowFacts]) -> dict[str, tuple[str, ...]]:
    """signature -> the blocked tasks whose reason ends in that exception line (sorted)."""
    acc: dict[str, list[str]] = {}
    for f in facts:
        if f.status == "blocked" and f.failure_signature:
            acc.setdefault(f.failure_signature, []).append(f.task_id)
    return {sig: tuple(sorted(ids)) for sig, ids in acc.items()}


def _claim_evidence(f: RowFacts) -> list[Evidence]:
    """The columns a claim's liveness stands on: status, the assignee, the claim note (or
    updated_at when there is none), last_heartbeat and whether it counts."""
    out = [ev("status", f.status, f.updated_at, Side.DB),
           ev("assigned_agent", f.agent or "NULL", None, Side.DB)]
    if f.claim_note is not None:
        out.append(ev("status_notes", f.claim_note, f.claim_at, Side.DB))
    else:
        out.append(ev("status_notes", f"no 'Claimed by {f.agent or '?'} at' line: updated_at "
                      "taken as the claim time", f.updated_at, Side.DB))
    if f.heartbeat is None:
        out.append(ev("last_heartbeat", "NULL (never sent; the API's own /stale never "
                      "reports such a claim)", None, Side.DB))
    elif f.heartbeat_after_claim is None:
        out.append(ev("last_heartbeat", f"{f.heartbeat_text} (before this claim: not a sign "
                      "of life for it)", f.heartbeat, Side.DB))
    else:
        out.append(ev("last_heartbeat", f.heartbeat_text or "", f.heartbeat, Side.DB))
    return out


def _silence(f: RowFacts, as_of: datetime) -> tuple[datetime | None, float | None]:
    sig = f.heartbeat_after_claim or f.claim_time
    return sig, None if sig is None else (as_of - sig).total_seconds()


def zombie_claim(j: Judged, ctx: RuleContext, view: TableView) -> Iterator[Finding]:
    f = view.facts.get(j.task.task_id)
    if j.claim_problem != "zombie" or f is None:
        return
    sig, silent = _silence(f, ctx.as_of)
    limit = ctx.thresholds.zombie_after_s
    evs = _claim_evidence(f)
    evs.append(ev("silent for", f"{age_text(silent or 0)} (> {age_text(limit)})", sig))
    yield finding("zombie_claim", j, Severity.CRITICAL,
                  f"claimed by {f.agent or 'nobody'}, no sign of life for "
                  f"{age_text(silent or 0)}: nobody works on it", evs, Action.RELEASE_CLAIM,
                  scored=True)


def stale_heartbeat(j: Judged, ctx: RuleContext, view: TableView) -> Iterator[Finding]:
    f = view.facts.get(j.task.task_id)
    if j.claim_problem != "stale" or f is None:
        return
    sig, silent = _silence(f, ctx.as_of)
    evs = _claim_evidence(f)
    evs.append(ev("silent for", f"{age_text(silent or 0)} (> "
                  f"{age_text(ctx.thresholds.stale_after_s)}, zombie after "
                  f"{age_text(ctx.thresholds.zombie_after_s)})", sig))
    yield finding("stale_heartbeat", j, Severity.WARNING,
                  f"{f.agent or 'the assignee'} quiet for {age_text(silent or 0)}: at risk",
                  evs, Action.REVIEW, scored=True)


def _stuck_reason(dep: str, ctx: RuleContext, view: TableView, own: str) -> str | None:
    """Why a dependency will not finish on its own, or None."""
    if dep == own:
        return "the task itself"
    other = ctx.judged.get(dep)
    if other is None:
        return "no such task"
    state = other.verdict.effective_state
    if state in ctx.semantics.stuck:
        f = view.facts.get(dep)
        why = (f.blocked_reason or "").strip().splitlines() if f else []
        return f"{state}" + (f": {why[-1][:160]}" if why else "")
    if other.verdict.liveness is Liveness.DEAD:
        return f"{state}, zombie claim ({other.verdict.reason})"
    return None


def blocked_by_stuck(j: Judged, ctx: RuleContext, view: TableView) -> Iterator[Finding]:
    sem = ctx.semantics
    state = j.verdict.effective_state
    deps = j.task.record.blocked_by if j.task.record is not None else ()
    if not deps or state in sem.terminal or state in sem.stuck:
        return
    own = j.task.task_id
    stuck = [(d, why) for d in deps if (why := _stuck_reason(d, ctx, view, own)) is not None]
    if not stuck:
        return
    f = view.facts.get(own)
    evs = [ev("dependencies", f.dependencies if f else ",".join(deps), None, Side.DB)]
    evs += [ev(f"dependency {d}", why, None, Side.DB) for d, why in stuck]
    yield finding("blocked_by_stuck", j, Severity.WARNING,
                  f"waits on {len(stuck)} task(s) that will not finish on their own "
                  f"({', '.join(d for d, _ in stuck[:5])}): /ready never offers it",
                  evs, Action.REVIEW, scored=True)


def unverified_completion(j: Judged, ctx: RuleContext, view: TableView) -> Iterator[Finding]:
    """In review with no passing check: what passes is the semantics' one definition
    (``Semantics.check_passed``) over a verifier's ``check_results``; a worker's note
    ("tests pass") is its own word, not a verification."""
    sem = ctx.semantics
    if j.verdict.effective_state not in sem.submitted_states:
        return
    f = view.facts.get(j.task.task_id)
    if f is None:
        return
    checks = check_results_of(f.check_results)
    if passing_checks(checks, sem):
        return
    if not view.has_check_results:
        shown = "no such column (no verifier records a check)"
    elif not checks:
        shown = "NULL" if f.check_results is None else f"{f.check_results[:160]} (no checks)"
    else:
        shown = ", ".join(f"{k}={v.get('status')}" for k, v in checks.items())[:200]
    evs = [ev("status", f.status, f.updated_at, Side.DB),
           ev("check_results", shown, None, Side.DB),
           ev("status_notes (last line)", f.last_note or "NULL", None, Side.DB),
           ev("worktree", f.worktree or "NULL", None, Side.DB)]
    yield finding("unverified_completion", j, Severity.WARNING,
                  f"{f.status} with no passing verification: look before accepting",
                  evs, Action.REVIEW, scored=True)


def recycling_task(j: Judged, ctx: RuleContext, view: TableView) -> Iterator[Finding]:
    """Finished work sent back: unclaim resets done to pending but keeps ``completed``, and
    a claim overwrites the notes, so ``completed = 1`` is the trace that survives."""
    f = view.facts.get(j.task.task_id)
    if f is None or f.completed is not True or f.status not in ("pending", "in_progress"):
        return
    evs = [ev("completed", "1", None, Side.DB),
           ev("status", f.status, f.updated_at, Side.DB),
           ev("status_notes (last line)", f.last_note or "NULL", None, Side.DB)]
    yield finding("recycling_task", j, Severity.WARNING,
                  f"finished once (completed = 1) and back in {f.status}: recycled work",
                  evs, Action.REVIEW, scored=True)


def repeated_failure(j: Judged, ctx: RuleContext, view: TableView) -> Iterator[Finding]:
    f = view.facts.get(j.task.task_id)
    if f is None or f.status != "blocked" or not f.failure_signature:
        return
    members = view.failure_groups.get(f.failure_signature, ())
    if len(members) < ctx.thresholds.repeated_failure_min:
        return
    shown = ", ".join(members[:8]) + (f" (+{len(members) - 8})" if len(members) > 8 else "")
    evs = [ev("status", "blocked", f.updated_at, Side.DB),
           ev("blocked_reason (last line)", f.failure_signature, None, Side.DB),
           ev("tasks", shown)]
    yield finding("repeated_failure", j, Severity.CRITICAL,
                  f"{len(members)} blocked tasks end in one error: {f.failure_signature}",
                  evs, Action.ESCALATE, scored=True)


Rule = Callable[[Judged, RuleContext, TableView], Iterable[Finding]]
TASK_RULES: tuple[tuple[str, Rule], ...] = (
    ("zombie_claim", zombie_claim),
    ("stale_heartbeat", stale_heartbeat),
    ("repeated_failure", repeated_failure),
    ("blocked_by_stuck", blocked_by_stuck),
    ("unverified_completion", unverified_completion),
    ("recycling_task", recycling_task),
)


_CLAIM_RULES = (zombie_claim, stale_heartbeat)
# The rules that can fire in a status (each still guards for itself): at 100,000 rows a
# call of every rule on every row was a fifth of the judging.
_BY_STATUS: dict[str, tuple[Rule, ...]] = {
    "pending": (blocked_by_stuck, recycling_task),
    "in_progress": (blocked_by_stuck, recycling_task),
    "blocked": (repeated_failure,),
    "in_review": (blocked_by_stuck, unverified_completion),
    "done": (),
}
_ALL = tuple(rule for _, rule in TASK_RULES if rule not in _CLAIM_RULES)


def task_findings(j: Judged, ctx: RuleContext, view: TableView) -> list[Finding]:
    """Every rule's findings about one task."""
    rules = _BY_STATUS.get(j.verdict.effective_state, _ALL)
    if j.claim_problem is not None:
        rules = _CLAIM_RULES + rules
    return [f for rule in rules for f in rule(j, ctx, view)]
