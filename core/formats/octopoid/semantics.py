"""What Octopoid v1's lanes and trail events mean (``../shared/octopoid-v1.md``)."""

from __future__ import annotations

from types import MappingProxyType

from qwarden.core.semantics import Semantics

FORMAT = "octopoid-v1"
QUEUES: tuple[str, ...] = (
    "incoming", "claimed", "provisional", "done", "failed", "rejected", "escalated", "recycled",
    "breakdown", "needs_continuation",
)
# Where a DB queue expects the task file to be (DB-mode claims leave the file in incoming/).
EXPECTED_DIRS: dict[str, frozenset[str]] = {q: frozenset({q}) for q in QUEUES}
EXPECTED_DIRS["claimed"] = frozenset({"incoming", "claimed"})

# The state a trail event leaves the task in, as the file side believes it.
EVENT_STATES: dict[str, str] = {
    "CLAIMED": "claimed",
    "RESUMED": "claimed",
    "SUBMITTED": "provisional",
    "ACCEPTED": "done",
    "COMPLETED": "done",
    "FAILED": "failed",
    "RETRIED": "incoming",
    "NEEDS_CONTINUATION": "needs_continuation",
    "REJECTED": "rejected",
    "REVIEW_REJECTED": "incoming",
    "ESCALATED": "escalated",
    "CANCELLED": "rejected",  # qwarden cancel moves a task to rejected/ (see actions)
    "RELEASED": "incoming",
}

SEMANTICS = Semantics(
    format=FORMAT,
    lanes=QUEUES,
    initial_state="incoming",
    claimed_states=frozenset({"claimed"}),
    terminal=frozenset({"done", "failed", "rejected", "escalated", "recycled"}),
    runnable=frozenset({"incoming", "claimed", "breakdown"}),
    stuck=frozenset({"failed", "escalated", "rejected"}),
    unread=frozenset({"done", "failed", "escalated", "rejected"}),
    done_states=frozenset({"done"}),
    failed_states=frozenset({"failed"}),
    escalated_states=frozenset({"escalated"}),
    submitted_states=frozenset({"provisional", "done"}),
    review_states=frozenset({"provisional"}),
    event_states=MappingProxyType(EVENT_STATES),
    claim_events=frozenset({"CLAIMED", "RESUMED"}),
    failure_events=frozenset({"FAILED"}),
    retry_events=frozenset({"RETRIED"}),
    recycle_events=frozenset({"REJECTED", "REVIEW_REJECTED", "RETRIED", "NEEDS_CONTINUATION"}),
    submit_events=frozenset({"SUBMITTED"}),
    expected_dirs=MappingProxyType({k: v for k, v in EXPECTED_DIRS.items()}),
    id_prefix="TASK-", id_width=8, record_label="DB", file_label="file",
    action_hints=MappingProxyType({
        "release_claim": "qwarden release {id}", "retry": "qwarden retry {id}",
        "sync_db": "qwarden sync {id} --direction sync_db",
        "sync_file": "qwarden sync {id} --direction sync_file",
        "register": "qwarden register {id}", "quarantine": "qwarden quarantine {id}",
        "clear_error": "qwarden clear-error {id}", "accept": "qwarden accept {id}",
        "split": "qwarden split {id} --subtask 'first part' --subtask 'second part'",
        "escalate": "qwarden escalate {id}", "cancel": "qwarden cancel {id} --note 'why'",
    }),
    # a stale file_path's sync_db is repair-path (sync would refuse)
    kind_hints=MappingProxyType({"stale_file_path": "qwarden repair-path {id}"}),
)
