"""Errors and retries: old errors left behind, tasks that keep bouncing, failures that share one
cause."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from qwarden.core.model import Action, Finding, Severity, Side
from qwarden.core.rules.base import Judged, RuleContext, ev, finding


def stale_error(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    pf = j.task.primary_file
    if pf is None or not pf.parseable or not pf.errors:
        return ()
    live_errors = [e for e in pf.errors if not e.in_history]
    if not live_errors:
        return ()
    sem = ctx.semantics
    last_fail = last_retry = None
    for i, e in enumerate(pf.trail):
        if e.kind in sem.failure_events:
            last_fail = i
        elif e.kind in sem.retry_events:
            last_retry = i
    retried = last_retry is not None and (last_fail is None or last_retry > last_fail)
    if not retried and j.verdict.effective_state not in sem.runnable:
        return ()
    err = live_errors[-1]
    first = next((ln for ln in err.text.splitlines() if ln.strip()), "")
    evidence = [ev("FAILED_AT", "still in the file", err.failed_at, Side.FILE),
                ev("error", first[:200])]
    if retried and last_retry is not None:
        evidence.append(ev("RETRIED_AT", "after the failure", pf.trail[last_retry].at, Side.FILE))
    evidence.append(ev("effective state", j.verdict.effective_state))
    return (finding("stale_error", j, Severity.WARNING,
                    "retried, but the old error is still in the task file", evidence,
                    Action.CLEAR_ERROR),)


def recycling_task(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    recycle = ctx.semantics.recycle_events
    if j.verdict.effective_state in ctx.semantics.done_states:
        return ()
    rec = j.task.record
    db_count = ((rec.attempt_count or 0) + (rec.rejection_count or 0)) if rec else 0
    trail = j.task.trail
    if not trail and db_count < ctx.thresholds.recycling_min:
        return ()
    trail_count = sum(1 for e in trail if e.kind in recycle)
    n = max(trail_count, db_count)
    if n < ctx.thresholds.recycling_min:
        return ()
    kinds: dict[str, int] = {}
    for e in j.task.trail:
        if e.kind in recycle:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    evidence = [ev(f"{k} in trail", c, None, Side.FILE) for k, c in sorted(kinds.items())]
    if rec is not None:
        evidence.append(ev("DB attempt_count + rejection_count", db_count, None, Side.DB))
    return (finding("recycling_task", j, Severity.WARNING,
                    f"went back to waiting {n} times: split it or escalate", evidence,
                    Action.SPLIT),)


_EXC_LINE = re.compile(r"^\s*[\w.]*(Error|Exception|Fault|Failure|Interrupt|Exit)\b.*", re.I)
_MASKS = (
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<addr>"),
    (re.compile(r"\b[0-9a-f]{8,}\b", re.I), "<id>"),
    (re.compile(r"(['\"]).*?\1"), "<str>"),
    (re.compile(r"\b\d+\b"), "<n>"),
    (re.compile(r"\s+"), " "),
)


@functools.lru_cache(maxsize=65536)
def error_signature(text: str) -> str | None:
    """The last exception line with numbers, ids and quoted values masked."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    pick = next((ln for ln in reversed(lines) if _EXC_LINE.match(ln)), lines[-1])
    for rx, rep in _MASKS:
        pick = rx.sub(rep, pick)
    return pick.strip()[:300] or None


def exception_signature(text: str) -> str | None:
    """The masked signature of the exception line ``text`` ends in, or None when its last
    line is no exception ("Need design decision": a reason, not a failure to group)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not _EXC_LINE.match(lines[-1]):
        return None
    return error_signature(lines[-1])


def _failure_text(j: Judged) -> str | None:
    pf = j.task.primary_file
    if pf is not None and pf.parseable:
        live = [e for e in pf.errors if not e.in_history]
        if live:
            return live[-1].text
    return None


def repeated_failure(ctx: RuleContext, judged: Iterable[Judged]) -> Iterable[Finding]:
    groups: dict[str, list[Judged]] = {}
    for j in judged:
        if j.verdict.effective_state not in ctx.semantics.failed_states:
            continue
        text = _failure_text(j)
        sig = error_signature(text) if text else None
        if sig:
            groups.setdefault(sig, []).append(j)
    out: list[Finding] = []
    for sig, members in groups.items():
        if len(members) < ctx.thresholds.repeated_failure_min:
            continue
        ids = sorted(m.task.task_id for m in members)
        shown = ", ".join(ids[:8]) + (f" (+{len(ids) - 8})" if len(ids) > 8 else "")
        for m in members:
            out.append(finding("repeated_failure", m, Severity.CRITICAL,
                               f"{len(members)} failed tasks share one error: {sig}", [
                                   ev("signature", sig),
                                   ev("tasks", shown),
                                   ev("FAILED_AT", "this task",
                                      m.task.primary_file.errors[-1].failed_at
                                      if m.task.primary_file and m.task.primary_file.errors
                                      else None, Side.FILE)],
                               Action.ESCALATE))
    return out
