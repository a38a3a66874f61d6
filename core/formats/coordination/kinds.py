"""The coordination format's names: lanes and finding kinds."""

from __future__ import annotations

FORMAT = "coordination"
LANES = ("pending", "in_progress", "completed", "failed")
# Scored kinds this format reports (the generic ones under their own names included).
COORD_SCORED = frozenset({
    "zombie_claim", "stale_heartbeat", "lost_claim", "capability_mismatch",
    "corrupt_queue_file", "missing_instructions", "unverified_completion",
    "repeated_failure", "recycling_task", "blocked_by_stuck",
})
COORD_ONLY = frozenset({"lost_claim", "capability_mismatch", "corrupt_queue_file"})
