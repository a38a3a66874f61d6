"""Claims nobody works on, claims going quiet, and work the DB no longer knows about."""

from __future__ import annotations

from collections.abc import Iterable

from qwarden.core.model import Action, Finding, Severity
from qwarden.core.rules.base import Judged, RuleContext, finding


def zombie_claim(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    if j.claim_problem != "zombie":
        return ()
    v = j.verdict
    return (finding("zombie_claim", j, Severity.CRITICAL,
                    f"claimed but nobody works on it: {v.reason}", v.evidence,
                    Action.RELEASE_CLAIM),)


def stale_heartbeat(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    if j.claim_problem != "stale":
        return ()
    v = j.verdict
    return (finding("stale_heartbeat", j, Severity.WARNING,
                    f"claim at risk: {v.reason}", v.evidence, Action.REVIEW),)


def split_brain(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    if j.claim_problem not in ("split_brain_live", "split_brain_stale"):
        return ()
    v = j.verdict
    live = j.claim_problem == "split_brain_live"
    # Live work the DB forgot: keep watching, never retry or release it under the agent.
    return (finding("split_brain", j, Severity.WARNING if live else Severity.CRITICAL,
                    f"DB and agent disagree: {v.reason}", v.evidence,
                    Action.CONTINUE_SUPERVISION if live else Action.REVIEW),)
