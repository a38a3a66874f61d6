"""The one place finding rules are registered. Order matters only for picking a task's single
recommended action when severities tie: earlier rules win."""

from __future__ import annotations

from qwarden.core.rules import claims, completion, deps, errors, info, sync
from qwarden.core.rules.base import GroupRule, SubjectRule, TaskRule
from qwarden.core.semantics import Semantics

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
# states it looks at (None: any), the ones it never does (each named as a ``Semantics``
# field, so the format says which states those are), and whether it needs a claim problem
# (zombie, stale, split brain). The judge calls a rule only where it can fire: at 100,000
# tasks a third of the rule calls were such guards returning nothing. A test judges a
# generated state with and without this table and compares.
ANY: str | None = None
RULE_SCOPE: dict[str, tuple[str | None, str | None, bool]] = {
    "split_brain": (ANY, None, True),
    "zombie_claim": (ANY, None, True),
    "stale_heartbeat": (ANY, None, True),
    "recycling_task": (ANY, "done_states", False),
    "blocked_by_stuck": (ANY, "terminal", False),
    "unverified_completion": ("submitted_states", None, False),
    "escalated": ("escalated_states", None, False),
    "unread_terminal": ("unread", None, False),
}


def rules_for(state: str, claim_problem: bool, sem: Semantics) -> tuple[TaskRule, ...]:
    """The task rules that can fire for a task in ``state`` (in registration order), then
    the format's own (``Semantics.task_rules``, which guard for themselves)."""
    out = []
    fits = sem.generic_rules
    for name, rule in TASK_RULES:
        if fits is not None and name not in fits:
            continue
        only, never, needs_claim = RULE_SCOPE.get(name, (ANY, None, False))
        if (only is None or state in getattr(sem, only)) \
                and (never is None or state not in getattr(sem, never)) \
                and (claim_problem or not needs_claim):
            out.append(rule)
    out.extend(rule for _, rule in sem.task_rules)
    return tuple(out)


GROUP_RULES: tuple[tuple[str, GroupRule], ...] = (
    ("repeated_failure", errors.repeated_failure),
)

RULE_ORDER = {name: i for i, (name, _) in enumerate(TASK_RULES + GROUP_RULES)}  # type: ignore[operator]


def group_rules(sem: Semantics) -> tuple[GroupRule, ...]:
    fits = sem.generic_rules
    return tuple(rule for name, rule in GROUP_RULES if fits is None or name in fits)


def subject_rules(sem: Semantics) -> tuple[SubjectRule, ...]:
    """Rules about the queue itself or an agent rather than one task: the format's own."""
    return tuple(rule for _, rule in sem.subject_rules)
