"""The one intervention path, format-neutral: what a format implements to change its queue.

Every writer (the ``qwarden ACTION`` commands, the console, the auto-fixer) goes the same way:

1. ``guard.refusal(request, snapshot, thresholds)``: the one live-work check, on the snapshot
   the caller already holds (no engine is rebuilt to guard one action);
2. ``interventions.plan(request)``: the format reads the task as it is now and returns a
   ``PlannedChange`` whose ``describe()`` lines are exactly what the dry run and the console's
   confirm dialog show (file diffs, rows, HTTP calls);
3. ``interventions.apply(plan)``: checks the plan against concurrent change, journals, writes,
   returns an ``Applied``; ``interventions.undo(action_id)`` reverses one.

Refusals are typed, so a caller acts on the kind and never matches a message:
``NeedsForce`` (an agent may be on the task; ``--force`` overrides), ``ServerRefused`` (the
queue's own API said no: its status and words), ``ReadOnly`` (this queue has no write path
configured), and the plain ``Refused`` (the action does not apply). ``StalePlan``: the state
moved between plan and apply; nothing was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from qwarden.core.actions.plan import Refused, StalePlan

__all__ = ["ActionRequest", "Applied", "Interventions", "NeedsConfirmation", "NeedsForce",
           "PlannedChange", "ReadOnly", "Refused", "ServerRefused", "StalePlan", "SubtaskSpec"]


class NeedsForce(Refused):
    """An agent may still be working on the task: the write would land under it. The operator
    may override (``--force``, the console's confirm-with-force)."""


class NeedsConfirmation(Refused):
    """The action applies only after an explicit second look (an accept with no evidence of
    work): planning again with ``force`` gives a plan whose ``warnings`` say what is being
    overridden, for a second confirmation."""


class ReadOnly(Refused):
    """This queue has no write path (read-only mode, or a format whose writes need a
    configuration the operator has not given, e.g. an API URL)."""


class ServerRefused(Refused):
    """The queue's own API refused the call: its HTTP status and its words, verbatim."""

    def __init__(self, status: int, message: str, call: str = "") -> None:
        self.status = status
        self.server_message = message
        self.call = call
        where = f" ({call})" if call else ""
        super().__init__(f"the task API refused{where}: {status} {message}")


@dataclass(frozen=True)
class SubtaskSpec:
    """One subtask of a split: ``TITLE | CONTEXT | CRITERION; CRITERION`` on the CLI."""

    title: str
    context: str = ""
    criteria: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> SubtaskSpec:
        parts = [p.strip() for p in spec.split("|")]
        crit = tuple(c.strip() for c in (parts[2] if len(parts) > 2 else "").split(";")
                     if c.strip())
        if not parts[0]:
            raise Refused(f"subtask {spec!r} has no title")
        return cls(parts[0], parts[1] if len(parts) > 1 else "", crit)


@dataclass(frozen=True)
class ActionRequest:
    """What the operator (or the auto-fixer) asked for, before any format looked at it."""

    kind: str  # accept, retry, split, cancel, release, note, sync, ... (``actions()``)
    task_id: str  # the format's own id (as the snapshot's Task.id)
    actor: str = "qwarden"
    note: str = ""
    force: bool = False
    direction: str | None = None  # a sync's, when the caller knows it
    subtasks: tuple[SubtaskSpec, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


class PlannedChange(Protocol):
    """A plan: plain data, made from what was read, checked again before it is applied."""

    @property
    def kind(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def warnings(self) -> tuple[str, ...] | list[str]: ...  # shown in the dialog, confirmed twice
    def describe(self) -> list[str]: ...  # what will change, one line each, untrusted text


@dataclass(frozen=True)
class Applied:
    action_id: int | str  # the journal's id (what ``undo`` takes)
    summary: str  # one line for the operator
    elapsed_ms: float = 0.0
    undoable: bool = True


class Interventions(Protocol):
    """A format's write path (``FormatInfo.interventions`` opens one for a root)."""

    @property
    def actions(self) -> tuple[str, ...]: ...  # the kinds ``plan`` accepts
    def plan(self, request: ActionRequest) -> PlannedChange: ...
    def apply(self, plan: PlannedChange) -> Applied: ...
    def undo(self, action_id: int | str | None = None, actor: str = "qwarden") -> Applied: ...
