"""RALF's write path behind the neutral interface: ``sync`` only (queue.yaml rewritten as the
planner would, ``sync.py``). Every other action is refused: RALF's planner owns the queue and
its task directories, and no command of RALF's resets or retries a task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwarden.core.actions.interface import ActionRequest, Applied, ReadOnly, Refused
from qwarden.core.config import Config
from qwarden.core.formats.ralf import sync


@dataclass(frozen=True)
class RalfSyncChange:
    """A planned sync as the neutral ``PlannedChange``: about the queue, not one task."""

    sync_plan: sync.SyncPlan
    note: str = ""
    kind: str = "sync"
    task_id: str = "queue"

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.sync_plan.warnings

    def describe(self) -> list[str]:
        return [*self.sync_plan.describe(), *self.sync_plan.diff]


class RalfInterventions:
    actions: tuple[str, ...] = ("sync",)

    def __init__(self, root: Path | str, config: Config, options: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.read_only = bool(options.get("read_only") or config.read_only)

    def plan(self, request: ActionRequest) -> RalfSyncChange:
        if request.kind != "sync":
            raise Refused(f"a RALF queue takes sync (the whole queue.yaml) and undo only, "
                          f"not {request.kind}: RALF's planner owns its tasks")
        p = sync.plan_sync(self.root)
        if not p.changes:
            raise Refused("queue.yaml is in sync already: nothing to write")
        return RalfSyncChange(p, request.note)

    def apply(self, plan: Any) -> Applied:
        if self.read_only:
            raise ReadOnly("read-only mode: qwarden refuses every write")
        done = sync.apply_sync(plan.sync_plan, plan.note)
        return Applied(done.action_id, f"sync: queue.yaml rewritten (backup {done.backup})")

    def undo(self, action_id: int | str | None = None, actor: str = "qwarden") -> Applied:
        if self.read_only:
            raise ReadOnly("read-only mode: qwarden refuses every write")
        aid = sync.undo_sync(self.root, None if action_id is None else int(action_id))
        return Applied(aid, "undo of the sync: queue.yaml as it was", undoable=False)


def open_interventions(root: Path | str, config: Config, options: Mapping[str, Any]
                       ) -> RalfInterventions:
    return RalfInterventions(root, config, options)
