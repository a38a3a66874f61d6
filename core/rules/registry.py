"""The one place finding rules are registered. Order matters only for picking a task's single
recommended action when severities tie: earlier rules win."""

from __future__ import annotations

from core.liveness import TERMINAL_STATES
from core.rules import claims, completion, deps, errors, info, sync
from core.rules.base import GroupRule, TaskRule

TASK_RULES: tuple[tuple[str, TaskRule], ...] = (
    ("split_brain", claims.split_brain),
    ("zombie_claim", claims.zombie_claim),
    ("corrupt_task", sync.corrupt_task),
    ("missing_file", sync.missing_file),
    ("orphan_file", sync.orphan_file),
    ("duplicate_file", sync.duplicate_file),
    ("file_db_mismatch", sync.file_db_mismatch),
    ("stale_error", errors.stale_error),
    ("recycling_task", errors.recycling_task),
    ("blocked_by_stuck", deps.blocked_by_stuck),
    ("unverified_completion", completion.unverified_completion),
    ("stale_heartbeat", claims.stale_heartbeat),
    ("stale_file_path", sync.stale_file_path),
    ("escalated", info.escalated),
    ("unread_terminal", info.unread_terminal),
)

# Where a task rule can find anything at all, from the guard it opens with: the effective
# states it looks at (None: any), the ones it never does, and whether it needs a claim problem
# (zombie, stale, split brain). The judge calls a rule only where it can fire: at 100,000
# tasks a third of the rule calls were such guards returning nothing. A test judges a
# generated state with and without this table and compares.
ANY: frozenset[str] | None = None
RULE_SCOPE: dict[str, tuple[frozenset[str] | None, frozenset[str], bool]] = {
    "split_brain": (ANY, frozenset(), True),
    "zombie_claim": (ANY, frozenset(), True),
    "stale_heartbeat": (ANY, frozenset(), True),
    "recycling_task": (ANY, frozenset({"done"}), False),
    "blocked_by_stuck": (ANY, TERMINAL_STATES, False),
    "unverified_completion": (frozenset({"provisional", "done"}), frozenset(), False),
    "escalated": (frozenset({"escalated"}), frozenset(), False),
    "unread_terminal": (info.UNREAD_STATES, frozenset(), False),
}


def rules_for(state: str, claim_problem: bool) -> tuple[TaskRule, ...]:
    """The task rules that can fire for a task in ``state`` (in registration order)."""
    out = []
    for name, rule in TASK_RULES:
        only, never, needs_claim = RULE_SCOPE.get(name, (ANY, frozenset(), False))
        if (only is None or state in only) and state not in never \
                and (claim_problem or not needs_claim):
            out.append(rule)
    return tuple(out)


GROUP_RULES: tuple[tuple[str, GroupRule], ...] = (
    ("repeated_failure", errors.repeated_failure),
)

RULE_ORDER = {name: i for i, (name, _) in enumerate(TASK_RULES + GROUP_RULES)}  # type: ignore[operator]
