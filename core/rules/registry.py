"""The one place finding rules are registered. Order matters only for picking a task's single
recommended action when severities tie: earlier rules win."""

from __future__ import annotations

from qwarden.core.rules import claims, completion, deps, errors, info, sync
from qwarden.core.rules.base import GroupRule, Judged, SubjectRule, TaskRule
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
# field, so the format says which states those are), whether it needs a claim problem
# (zombie, stale, split brain), and whether it needs an irregular task (see ``regular``).
# The judge calls a rule only where it can fire: at 100,000 tasks most rule calls were such
# guards returning nothing. A test judges a generated state with and without this table and
# compares.
ANY: str | None = None
RULE_SCOPE: dict[str, tuple[str | None, str | None, bool, bool]] = {
    "split_brain": (ANY, None, True, False),
    "zombie_claim": (ANY, None, True, False),
    "stale_heartbeat": (ANY, None, True, False),
    "corrupt_task": (ANY, None, False, True),  # a copy that does not parse
    "missing_file": (ANY, None, False, True),  # a row and stubs at most
    "orphan_file": (ANY, None, False, True),  # a file and no row
    "duplicate_file": (ANY, None, False, True),  # copies in two dirs
    "file_db_mismatch": (ANY, None, False, True),  # the file not where the row says
    "recycling_task": (ANY, "done_states", False, False),
    "blocked_by_stuck": (ANY, "terminal", False, False),
    "unverified_completion": ("submitted_states", None, False, False),
    "escalated": ("escalated_states", None, False, False),
    "unread_terminal": ("unread", None, False, False),
}


def regular(j: Judged) -> bool:
    """The usual task (nine in ten): one row and one file that parses, where the row says.
    None of the rules marked as needing an irregular task can find anything in it."""
    t = j.task
    files = t.files
    if t.record is None or len(files) != 1 or j.state.mismatch:
        return False
    f = files[0]
    return f.parseable and not f.is_stub


def rules_for(state: str, claim_problem: bool, sem: Semantics, is_regular: bool = False
              ) -> tuple[TaskRule, ...]:
    """The task rules that can fire for a task in ``state`` (in registration order), then
    the format's own (``Semantics.task_rules``, which guard for themselves)."""
    out = []
    fits = sem.generic_rules
    for name, rule in TASK_RULES:
        if fits is not None and name not in fits:
            continue
        only, never, needs_claim, needs_irregular = RULE_SCOPE.get(
            name, (ANY, None, False, False))
        if (only is None or state in getattr(sem, only)) \
                and (never is None or state not in getattr(sem, never)) \
                and (claim_problem or not needs_claim) \
                and not (is_regular and needs_irregular):
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
