"""The coordination files' write path behind the neutral interface: ``actions`` (under the
queue's advisory lock, journaled, each entry spliced so an undo is byte-identical)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qwarden.core.actions.interface import ActionRequest, Applied, ReadOnly
from qwarden.core.config import Config
from qwarden.core.formats.coordination import actions as A

# The console's and the CLI's neutral names for this format's own
ALIASES = {"release": "reset"}


class CoordInterventions:
    actions: tuple[str, ...] = (*A.ACTIONS, *ALIASES)

    def __init__(self, root: Path | str, config: Config, options: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.config = config
        self.read_only = bool(options.get("read_only") or config.read_only)

    def plan(self, request: ActionRequest) -> A.CoordPlan:
        kind = ALIASES.get(request.kind, request.kind)
        return A.plan(self.root, kind, request.task_id, note=request.note, actor=request.actor,
                      to=request.options.get("to"),
                      subtasks=tuple(s.title for s in request.subtasks), config=self.config)

    def apply(self, plan: Any) -> Applied:
        if self.read_only:
            raise ReadOnly("read-only mode: qwarden refuses every write")
        aid = A.apply(self.root, plan, self.config)
        return Applied(aid, f"{plan.kind} {plan.task_id}: done")

    def undo(self, action_id: int | str | None = None, actor: str = "qwarden") -> Applied:
        if self.read_only:
            raise ReadOnly("read-only mode: qwarden refuses every write")
        aid = A.undo(self.root, None if action_id is None else int(action_id), self.config,
                     actor=actor)
        return Applied(aid, f"undo of action {action_id or '(the newest)'}", undoable=False)


def open_interventions(root: Path | str, config: Config, options: Mapping[str, Any]
                       ) -> CoordInterventions:
    return CoordInterventions(root, config, options)
