"""What the coordination files' states and events mean (``core.semantics.Semantics``).

A task's record state is its entry's ``status``: pending -> in_progress -> completed | failed
(``cancelled`` is qwarden's own, set by ``cancel``; the design's workers claim only pending
tasks, so it takes the task out of the runnable lanes). The only task file is the
instruction file in ``tasks/``, whatever the state: every state expects it there.
"""

from __future__ import annotations

from types import MappingProxyType

from core.formats.coordination.kinds import COORD_SCORED, FORMAT, LANES
from core.semantics import Semantics

_TASKS = frozenset({"tasks"})

SEMANTICS = Semantics(
    format=FORMAT,
    lanes=LANES,
    initial_state="pending",
    claimed_states=frozenset({"in_progress"}),
    terminal=frozenset({"completed", "failed", "cancelled"}),
    runnable=frozenset({"pending", "in_progress"}),
    stuck=frozenset({"failed", "cancelled"}),
    unread=frozenset({"failed"}),
    done_states=frozenset({"completed"}),
    failed_states=frozenset({"failed"}),
    event_states=MappingProxyType({"CLAIMED": "in_progress", "COMPLETED": "completed",
                                   "FAILED": "failed", "RESET": "pending"}),
    claim_events=frozenset({"CLAIMED"}),
    failure_events=frozenset({"FAILED"}),
    retry_events=frozenset({"RESET"}),
    recycle_events=frozenset({"RESET"}),
    expected_dirs=MappingProxyType({s: _TASKS for s in (*LANES, "cancelled")}),
    kind_names=MappingProxyType({"missing_file": "missing_instructions"}),
    extra_scored_kinds=COORD_SCORED,
)
