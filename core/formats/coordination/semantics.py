"""What the coordination files' states and events mean (``core.semantics.Semantics``).

A task's record state is its entry's ``status``: pending -> in_progress -> completed | failed
(``cancelled`` is qwarden's own, set by ``cancel``; the design's workers claim only pending
tasks, so it takes the task out of the runnable lanes). The only task file is the
instruction file in ``tasks/``, whatever the state: every state expects it there.
"""

from __future__ import annotations

from types import MappingProxyType

from qwarden.core.formats.coordination.kinds import COORD_SCORED, FORMAT, LANES
from qwarden.core.semantics import Semantics

_TASKS = frozenset({"tasks"})

SEMANTICS = Semantics(
    format=FORMAT, record_label="queue entry", file_label="instructions",
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
    # The generic rules that fit; a missing instruction file is this format's own
    # missing_instructions (with the context files, in its words), and the file-side kinds
    # (mismatch, orphan, duplicate, stale error) have no second copy here to compare.
    generic_rules=frozenset({"split_brain", "zombie_claim", "stale_heartbeat",
                             "recycling_task", "blocked_by_stuck", "unread_terminal"}),
    action_hints=MappingProxyType({
        "release_claim": "qwarden reset {id} --root {root}",
        "retry": "qwarden retry {id} --root {root}",
        "split": "qwarden split {id} --subtask 'FIRST' --subtask 'SECOND' --root {root}",
    }),
    kind_hints=MappingProxyType({
        "corrupt_queue_file": "qwarden repair --root {root} --dry-run",
        "capability_mismatch": "qwarden reassign {id} --root {root} --dry-run (once its "
                               "worker released it)",
    }),
    extra_scored_kinds=COORD_SCORED,
)
