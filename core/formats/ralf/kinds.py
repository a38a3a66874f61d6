"""RALF's states and finding kinds (shared by the semantics, the rules and the sync)."""

from __future__ import annotations

FORMAT = "ralf"
DONE_STATUSES = frozenset({"completed", "complete", "done", "finished"})
LANES = ("pending", "in_progress", "blocked", "failed", "completed")

# The kinds only RALF has (and stale_heartbeat, per loop). Scored ones must match a state's
# truth exactly; the informative ones are shown but never scored.
RALF_SCORED = frozenset({"queue_stale_entry", "missing_from_queue", "queue_orphan_entry",
                         "stale_queue_metadata", "corrupt_queue_file", "stale_heartbeat"})
RALF_INFO = frozenset({"future_timestamp", "completed_without_event"})
