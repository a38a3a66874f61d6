"""The task API format's names: its table's columns, its lanes and its finding kinds.

Followed: github.com/JoshCLWren/comic-pile at a28e4ef8 (its alembic schema and its HTTP task
API, checked against the running app; ../shared/formats-ahead.md, "Task API DB").
"""

from __future__ import annotations

FORMAT = "taskapi"
TABLE = "tasks"
# status values the API sets (there is no ``failed``: a failure is ``blocked`` with a reason)
LANES = ("pending", "in_progress", "blocked", "in_review", "done")

# The columns read, in the order every backend hands a row to ``parse`` (a backend gives None
# for an optional column its table lacks).
COLUMNS = (
    "task_id", "title", "priority", "status", "dependencies", "assigned_agent", "worktree",
    "status_notes", "completed", "blocked_reason", "blocked_by", "last_heartbeat",
    "created_at", "updated_at", "check_results",
)
# A table is this format's when it has every one of these (the list).
REQUIRED = frozenset({
    "task_id", "title", "description", "priority", "status", "dependencies",
    "assigned_agent", "worktree", "status_notes", "completed", "blocked_reason",
    "blocked_by", "last_heartbeat", "created_at", "updated_at",
})
# Not in comic-pile's table: a verifier's results, ``{check: {status, ...}}`` JSON, read when
# a deployment adds the column (``unverified_completion`` accepts only a passing one).
OPTIONAL = frozenset({"check_results"})
TIME_COLUMNS = frozenset({"last_heartbeat", "created_at", "updated_at"})

SCORED = frozenset({
    "zombie_claim", "stale_heartbeat", "blocked_by_stuck", "unverified_completion",
    "recycling_task", "repeated_failure",
})
