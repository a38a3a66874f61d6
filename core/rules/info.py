"""Informative, unscored kinds: worth seeing, never standing in for the scored ones."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from qwarden.core.model import Action, Finding, Severity, Side
from qwarden.core.rules.base import Judged, RuleContext, ev, finding


def escalated(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    if j.verdict.effective_state not in ctx.semantics.escalated_states:
        return ()
    rec = j.task.record
    return (finding("escalated", j, Severity.INFO, "waiting for a human decision",
                    [ev("DB queue", rec.queue if rec else "-", rec.updated_at if rec else None,
                        Side.DB)], Action.REVIEW),)


def unread_terminal(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    """A task that finished (done/failed/escalated/rejected) within the window and that no
    supervisor has reviewed since (accept, retry, cancel or mark-read clear it)."""
    window = ctx.thresholds.unread_window_s
    if not window or j.verdict.effective_state not in ctx.semantics.unread:
        return ()
    rec = j.task.record
    # updated_at moves when a task finishes; one parse instead of four per finished task
    finished = (rec.updated_at or rec.newest_change) if rec is not None else None
    pf = j.task.primary_file
    last = pf.last_event if pf is not None else None
    if last is not None and last.at is not None and (finished is None or last.at > finished):
        finished = last.at
    if finished is None or (ctx.as_of - finished).total_seconds() > window:
        return ()
    seen = ctx.judge.reviews.get(j.task.task_id)
    if seen is not None and seen >= finished:
        return ()
    state = j.verdict.effective_state
    return (finding("unread_terminal", j, Severity.INFO, _unread_summary(state),
                    [ev("finished", state, finished, Side.DB),
                     _NEVER_REVIEWED if seen is None
                     else ev("last reviewed", "before it finished", seen)], Action.REVIEW),)


# Shared, immutable: tens of thousands of unread tasks need no copy each of these.
@functools.lru_cache(maxsize=64)
def _unread_summary(state: str) -> str:
    return f"{state}, not reviewed yet"



_NEVER_REVIEWED = ev("last reviewed", "never")
