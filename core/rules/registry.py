"""The one place finding rules are registered. Order matters only for picking a task's single
recommended action when severities tie: earlier rules win."""

from __future__ import annotations

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

GROUP_RULES: tuple[tuple[str, GroupRule], ...] = (
    ("repeated_failure", errors.repeated_failure),
)

RULE_ORDER = {name: i for i, (name, _) in enumerate(TASK_RULES + GROUP_RULES)}  # type: ignore[operator]
