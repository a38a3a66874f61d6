"""Octopoid's write path behind the neutral interface (``core.actions.interface``): the
planners of ``actions`` (files + rows, read now) and the journaled, crash-safe applier of
``core.actions.apply``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qwarden.core.actions.apply import apply, inverse_plan, stale_message
from qwarden.core.actions.interface import ActionRequest, Applied, ReadOnly, Refused, StalePlan
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan
from qwarden.core.config import Config
from qwarden.core.formats.octopoid.actions import PLANNERS, make_plan
from qwarden.core.formats.octopoid.reader import resolve_root

READ_ONLY = ("read-only mode (--read-only or read_only = true in the config): qwarden "
             "refuses every write")


class OctopoidInterventions:
    actions: tuple[str, ...] = tuple(PLANNERS)

    def __init__(self, root: Path | str, config: Config, options: Mapping[str, Any]) -> None:
        self.root = resolve_root(Path(root))
        self.config = config
        self.read_only = bool(options.get("read_only") or config.read_only)

    def plan(self, request: ActionRequest) -> Plan:
        return make_plan(self.root, request.kind, request.task_id.removeprefix("TASK-"),
                         actor=request.actor, note=request.note, force=request.force,
                         direction=request.direction, subtasks=list(request.subtasks),
                         queue=request.options.get("queue"),
                         msg_type=request.options.get("msg_type", "warning"),
                         max_children=int(self.config.actions.get("split_max", 10)))  # type: ignore[call-overload]

    def apply(self, plan: Any) -> Applied:
        if self.read_only:
            raise ReadOnly(READ_ONLY)
        try:
            res = apply(self.root, plan, read_only=self.read_only,
                        busy_timeout_ms=max(self.config.limits.db_busy_timeout_ms, 1000))
        except StalePlan as exc:
            raise StalePlan(stale_message(self.root, plan, exc)) from None
        return Applied(res.action_id, f"{plan.kind} TASK-{plan.task_id}: done",
                       res.elapsed_ms, undoable=plan.undoes is None)

    def undo(self, action_id: int | str | None = None, actor: str = "qwarden") -> Applied:
        if self.read_only:
            raise ReadOnly(READ_ONLY)
        with Journal(self.root) as j:
            a = j.get(int(action_id)) if action_id is not None else j.last_undoable()
            if a is None:
                raise Refused("no such action" if action_id is not None else "nothing to undo")
            inv = inverse_plan(self.root, a, j, actor)
        try:
            res = apply(self.root, inv)
        except StalePlan as exc:
            raise Refused(f"cannot undo action {a.id}: the task changed since ({exc})") from None
        return Applied(res.action_id, f"undo of action {a.id} ({a.kind} TASK-{a.task_id})",
                       res.elapsed_ms, undoable=False)


def open_interventions(root: Path | str, config: Config, options: Mapping[str, Any]
                       ) -> OctopoidInterventions:
    return OctopoidInterventions(root, config, options)
