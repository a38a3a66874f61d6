"""Informative, unscored kinds: worth seeing, never standing in for the scored ones."""

from __future__ import annotations

from collections.abc import Iterable

from core.model import Action, Finding, Severity, Side
from core.rules.base import Judged, RuleContext, ev, finding


def escalated(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    if j.verdict.effective_state != "escalated":
        return ()
    rec = j.task.record
    return (finding("escalated", j, Severity.INFO, "waiting for a human decision",
                    [ev("DB queue", rec.queue if rec else "-", rec.updated_at if rec else None,
                        Side.DB)], Action.REVIEW),)
