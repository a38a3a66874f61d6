"""The one live-work guard every write asks first: the CLI, the console and the auto-fixer.

"Never harmful" means no write to a task that any agent may still be working on. The DB's
claim is not enough to know that (a DB-only reset clears it while the agent keeps going), so the
guard looks at the verdict and at the agents' own side: a running process whose state names the
task and whose newest sign of life is younger than the zombie threshold.
"""

from __future__ import annotations

from qwarden.core.actions.interface import NeedsForce
from qwarden.core.config import Thresholds
from qwarden.core.liveness import agents_at_work_on
from qwarden.core.model import Liveness, Snapshot

# Actions that only talk about a task (the inbox, the journal) and never write its file or row.
TALKS_ONLY = frozenset({"escalate", "mark-read"})


def live_work_refusal(kind: str, task_id: str, snap: Snapshot, thresholds: Thresholds
                      ) -> str | None:
    """Why ``kind`` must not write to ``task_id`` now, or None when nobody may be on it."""
    if kind in TALKS_ONLY:
        return None
    v = snap.verdicts.get(task_id)
    if v is not None and (v.split_brain_live or v.liveness is Liveness.LIVE):
        return (f"TASK-{task_id} is being worked on right now ({v.reason}); {kind} would "
                "write under its agent (--force to override)")
    at_work = agents_at_work_on(task_id, snap.agents, snap.as_of, thresholds, snap.live)
    if at_work:
        return (f"TASK-{task_id} may still be worked on: {'; '.join(at_work)}; {kind} would "
                "write under its agent (--force to override)")
    return None


def check_live_work(kind: str, task_id: str, snap: Snapshot | None, thresholds: Thresholds,
                    force: bool = False) -> None:
    """Raise ``NeedsForce`` when ``kind`` would write under a working agent (the snapshot the
    caller holds: the console's, the auto-fixer's, the CLI's one scan); ``force`` skips it."""
    if force or snap is None:
        return
    refusal = live_work_refusal(kind, task_id, snap, thresholds)
    if refusal:
        raise NeedsForce(refusal)
