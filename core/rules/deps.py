"""Dependencies that will never clear on their own."""

from __future__ import annotations

from collections.abc import Iterable

from qwarden.core.model import Action, Finding, Liveness, Severity
from qwarden.core.rules.base import Judged, RuleContext, ev, finding


def blocked_by(j: Judged) -> tuple[str, ...]:
    rec = j.task.record
    if rec is not None and rec.blocked_by:
        return rec.blocked_by
    pf = j.task.primary_file
    if pf is None:
        return ()  # (no row links and no file: the common case of a file-less format)
    raw = pf.header.get("BLOCKED_BY", "")
    if not raw:
        return ()
    return tuple(s.strip().removeprefix("TASK-") for s in raw.split(",") if s.strip())


def blocked_by_stuck(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    if j.verdict.effective_state in ctx.semantics.terminal:
        return ()
    blockers = blocked_by(j)
    if not blockers:
        return ()
    stuck = []
    for b in blockers:
        other = ctx.judged.get(b)
        if other is None:
            stuck.append(ev(f"blocker {b}", "missing (no row, no file)"))
        elif other.verdict.effective_state in ctx.semantics.stuck:
            stuck.append(ev(f"blocker {b}", other.verdict.effective_state))
        elif other.verdict.liveness is Liveness.DEAD:
            stuck.append(ev(f"blocker {b}", f"zombie claim ({other.verdict.reason})"))
        elif other.task.record is None and not any(f.parseable for f in other.task.files):
            stuck.append(ev(f"blocker {b}", "missing (corrupt file only)"))
    if not stuck:
        return ()
    return (finding("blocked_by_stuck", j, Severity.WARNING,
                    f"blocked by {len(stuck)} task(s) that will not finish on their own",
                    stuck, Action.REVIEW),)
