"""What every finding rule sees, and the helpers they share.

A rule is a small pure function. Task rules take one judged task and the context; group rules
(findings that need several tasks at once, e.g. repeated_failure) take the context and the judged
tasks. Rules never read files or the DB: only the snapshot's data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from qwarden.core.liveness import JudgeContext, StateJudgement
from qwarden.core.model import (
    Action,
    Evidence,
    Fact,
    Finding,
    Record,
    Severity,
    Side,
    Task,
    Verdict,
)
from qwarden.core.semantics import Semantics


class Judged(Record, frozen=True):
    """Phase one of judging a task: its verdict, before any rule ran."""

    task: Task
    verdict: Verdict
    state: StateJudgement
    claim_problem: str | None  # zombie | stale | split_brain_live | split_brain_stale | None


class RuleContext(Record, frozen=True, gc=True):
    judge: JudgeContext
    judged: Mapping[str, Judged]  # every task, for rules that look at another task

    @property
    def as_of(self) -> datetime:
        return self.judge.as_of

    @property
    def semantics(self) -> Semantics:
        return self.judge.semantics

    @property
    def thresholds(self):
        return self.judge.thresholds


TaskRule = Callable[[Judged, RuleContext], Iterable[Finding]]
GroupRule = Callable[[RuleContext, Iterable[Judged]], Iterable[Finding]]
# (context, the snapshot's facts) -> findings whose task_id is a subject ("queue", "agent:X")
SubjectRule = Callable[[RuleContext, tuple[Fact, ...]], Iterable[Finding]]

SCORED_KINDS = frozenset({
    "file_db_mismatch", "orphan_file", "corrupt_task", "missing_file", "duplicate_file",
    "zombie_claim", "stale_heartbeat", "split_brain", "stale_error", "recycling_task",
    "repeated_failure", "unverified_completion", "blocked_by_stuck",
})


def ev(fact: str, value: object, at: datetime | None = None, side: Side | None = None
       ) -> Evidence:
    return Evidence(fact=fact, value=str(value), at=at, side=side)


def finding(kind: str, j: Judged, severity: Severity, summary: str,
            evidence: Iterable[Evidence], action: Action, newer: Side | None = None,
            scored: bool | None = None) -> Finding:
    """``scored`` None: scored when the kind is one of SCORED_KINDS (a format's own kinds
    say it themselves)."""
    return Finding(kind=kind, task_id=j.task.task_id, severity=severity, summary=summary,
                   evidence=tuple(evidence), recommended_action=action, newer_side=newer,
                   scored=kind in SCORED_KINDS if scored is None else scored)
