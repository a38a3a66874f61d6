"""What each finding kind means and what fixes it, the recommended action's console key, and
the row symbols: shown in help (``?``), in the task view and in the findings view."""

from __future__ import annotations

from qwarden.core.model import Action, Finding, Snapshot
from qwarden.core.report import command_hint

# kind -> (what it means, what fixes it)
GLOSSARY: dict[str, tuple[str, str]] = {
    "zombie_claim": ("claimed, but nobody works on it (agent gone or silent past the zombie "
                     "threshold)", "release the claim (l) so another agent can pick it up"),
    "split_brain": ("an agent still works on a task the DB released or gave to another agent",
                    "wait, or stop one agent; never released as a zombie"),
    "corrupt_task": ("a task file that cannot be parsed (and is no stub of a known task)",
                     "quarantine it (d), then look at the file"),
    "missing_file": ("a DB row whose task file is in no queue directory",
                     "find the file, or cancel (x) the task"),
    "repeated_failure": ("3+ failed tasks share one error signature",
                         "fix the common cause, then retry (r) them as a group"),
    "file_db_mismatch": ("the file is not in the directory its DB queue implies (settled)",
                         "sync (f) in the direction of the newer side"),
    "orphan_file": ("a parseable task file with no DB row", "register it (d)"),
    "duplicate_file": ("the same task id in two or more queue directories",
                       "remove the stale copy by hand"),
    "stale_heartbeat": ("claimed, the agent says running, its newest signal is 5-60 min old",
                        "watch it; it becomes a zombie claim if it stays silent"),
    "stale_error": ("retried, but the old error block is still in the file",
                    "clear the error (d)"),
    "recycling_task": ("went back to waiting 3+ times", "split it (s) into smaller tasks"),
    "unverified_completion": ("provisional/done with 0 commits and no passing check",
                              "look before accepting (a asks twice)"),
    "blocked_by_stuck": ("blocked by a task that is failed, escalated, missing or a zombie",
                         "fix or cancel the blocker"),
    "stale_file_path": ("the DB file_path points where the file is not", "repair the path (d)"),
    "escalated": ("escalated to a human (informative)", "answer it, then retry or cancel"),
    "unread_terminal": ("finished within a day and not yet reviewed (informative)",
                        "accept, retry, cancel or mark read (m)"),
}

# row symbols: (symbol, meaning)
LEGEND: list[tuple[str, str]] = [
    ("!!", "critical finding"), ("!", "warning"), ("i", "informative finding"),
    ("●", "live: an agent works on it"), ("◐", "at risk: signals getting old"),
    ("✗", "dead: claimed, nobody alive"), ("·", "idle: nobody should be on it"),
    ("?", "unknown: not enough evidence"), ("*", "marked for a group action"),
    ("P0..P3", "priority"), ("age", "since the task file last changed"),
]

# planner kind -> the console key that runs it on the task under the cursor
KEY_OF_PLAN = {"accept": "a", "retry": "r", "split": "s", "cancel": "x", "release": "l",
               "sync": "f", "escalate": "e", "mark-read": "m"}
DO_KEY = "d"  # the recommended action, whatever it is


def planner_for(finding: Finding, snap: Snapshot) -> tuple[str, str | None] | None:
    """The intervention (planner kind, sync direction) that carries out a finding's
    recommended action, from the same table the report's hints come from; None when there
    is nothing to run (review, continue supervision)."""
    action = finding.recommended_action
    hint = command_hint(snap, finding)
    if hint is None:
        return None
    kind = hint.split()[1]  # "qwarden <kind> {id} ..."
    direction = action.value if action in (Action.SYNC_DB, Action.SYNC_FILE) else None
    return kind, direction


def action_label(finding: Finding, snap: Snapshot) -> str:
    """The recommended action as this format's operator runs it: where the format carries a
    kind out by its own command (a RALF queue's ``sync`` for every queue.yaml kind), that
    command's verb; else the neutral action's name (as the report's JSON has it)."""
    if finding.kind in snap.kind_hints:
        p = planner_for(finding, snap)
        if p is not None:
            return p[0]
    return finding.recommended_action.value


def action_key(finding: Finding, snap: Snapshot) -> str | None:
    """The key that carries out the finding's recommended action on its task."""
    p = planner_for(finding, snap)
    if p is None:
        return None
    return KEY_OF_PLAN.get(p[0], DO_KEY)
