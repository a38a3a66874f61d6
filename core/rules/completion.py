"""Completions without evidence of work ("tests pass", said the agent)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qwarden.core.model import Action, Finding, Severity, Side
from qwarden.core.rules.base import Judged, RuleContext, ev, finding
from qwarden.core.semantics import Semantics


def passing_checks(results: Mapping[str, Any], sem: Semantics) -> list[str]:
    """The checks whose status says they passed, by the format's one definition of "a
    passing check" (``Semantics.check_passed``), for this rule and the accept guard alike."""
    return [k for k, v in results.items()
            if isinstance(v, Mapping) and sem.check_passed(str(v.get("status", "")))]


def _file_commits(j: Judged, sem: Semantics) -> int | None:
    for e in reversed(j.task.trail):
        if e.kind in sem.submit_events:
            v = e.get("COMMITS_COUNT")
            try:
                return int(v) if v is not None else None
            except ValueError:
                return None
    return None


def unverified_completion(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    state = j.verdict.effective_state
    sem = ctx.semantics
    if state not in sem.submitted_states:
        return ()
    rec = j.task.record
    commits = rec.commits_count if rec is not None else None
    if commits is None:
        commits = _file_commits(j, sem)
    if commits is None or commits > 0:
        return ()
    checks = rec.check_results if rec is not None else {}
    if passing_checks(checks, sem):
        return ()
    evidence = [ev("commits_count", commits, rec.submitted_at if rec else None, Side.DB),
                ev("passing checks", "none" if not checks else
                   ", ".join(f"{k}={v.get('status')}" for k, v in checks.items()))]
    return (finding("unverified_completion", j, Severity.WARNING,
                    f"{state} with no evidence of work (0 commits, no passing check): "
                    "look before accepting", evidence, Action.REVIEW),)
