"""What RALF's states and events mean (``core.semantics.Semantics``).

A task's record state is its queue.yaml entry's ``status``; its file sits in ``active/`` or
``completed/`` (the directory is the truth); events are ``started``, ``completed``,
``failed``, ``blocked`` … (upper-cased as trail kinds).
"""

from __future__ import annotations

from types import MappingProxyType

from qwarden.core.formats.ralf import rules
from qwarden.core.formats.ralf.kinds import DONE_STATUSES, FORMAT, LANES, RALF_INFO, RALF_SCORED
from qwarden.core.semantics import Semantics

__all__ = ["DONE_STATUSES", "FORMAT", "LANES", "RALF_INFO", "RALF_SCORED", "SEMANTICS"]


def _semantics() -> Semantics:
    return Semantics(
        format=FORMAT, id_width=16, record_label="queue.yaml", file_label="task dir",
        lanes=LANES,
        initial_state="pending",
        claimed_states=frozenset({"in_progress"}),
        terminal=frozenset({"completed", "failed"}),
        runnable=frozenset({"pending", "in_progress"}),
        stuck=frozenset({"failed", "blocked"}),
        unread=frozenset({"failed"}),
        done_states=frozenset({"completed"}),
        failed_states=frozenset({"failed"}),
        event_states=MappingProxyType({"STARTED": "in_progress", "COMPLETED": "completed",
                                       "FAILED": "failed", "BLOCKED": "blocked"}),
        claim_events=frozenset({"STARTED"}),
        failure_events=frozenset({"FAILED"}),
        expected_dirs=MappingProxyType({
            "pending": frozenset({"active"}), "in_progress": frozenset({"active"}),
            "blocked": frozenset({"active"}), "failed": frozenset({"active", "completed"}),
            "completed": frozenset({"completed"}),
        }),
        # the directory is the truth; RALF's own rules find every kind it has
        file_states=MappingProxyType({"active": "pending", "completed": "completed"}),
        file_decides=True,
        generic_rules=frozenset(),
        subject_rules=rules.SUBJECT_RULES,
        # the queue's three kinds are one rewrite of queue.yaml (dry run first: it shows
        # the diff)
        kind_hints=MappingProxyType({k: "qwarden sync --root {root} --dry-run" for k in (
            "queue_stale_entry", "missing_from_queue", "queue_orphan_entry",
            "stale_queue_metadata")}),
        extra_scored_kinds=RALF_SCORED,
    )


SEMANTICS = _semantics()
