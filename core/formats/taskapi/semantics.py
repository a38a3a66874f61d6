"""What the task API's states mean (``core.semantics.Semantics``).

A row's ``status`` is its state: pending -> in_progress (a claim) -> in_review | done, or
blocked (a failure or a question: the API has no ``failed``). Only ``in_progress`` is a claim
judged for liveness; its signs of life are the claim and a heartbeat sent after it (built by
the source as the assignee's signals). ``blocked`` will not move on its own: a dependency on
it is stuck. There are no task files: one copy of the truth, nothing to match.

Every kind is this format's own rule (``rules``), handed to the judge by the source bound to
what it read; the generic rules read task files or counters this table does not have.
"""

from __future__ import annotations

from types import MappingProxyType

from qwarden.core.formats.taskapi.kinds import FORMAT, LANES, SCORED
from qwarden.core.semantics import Semantics

SEMANTICS = Semantics(
    format=FORMAT, record_label="row", file_label="file",
    lanes=LANES,
    initial_state="pending",
    claimed_states=frozenset({"in_progress"}),
    terminal=frozenset({"done"}),
    runnable=frozenset({"pending", "in_progress"}),
    stuck=frozenset({"blocked"}),
    unread=frozenset(),
    done_states=frozenset({"done"}),
    failed_states=frozenset({"blocked"}),
    submitted_states=frozenset({"in_review"}),
    review_states=frozenset({"in_review"}),
    files_carry_state=False,
    generic_rules=frozenset(),
    extra_scored_kinds=SCORED,
    # the system's own clock (overridden per source by [taskapi] in the config)
    thresholds=MappingProxyType({"zombie_after_s": 1200.0, "stale_after_s": 600.0}),
)
