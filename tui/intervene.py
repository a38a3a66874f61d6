"""Interventions from the console: plan -> confirm dialog -> the one journaled write path.

The console never writes itself: it asks the queue's format for a plan through the one
intervention interface (``core.actions.interface``: the same path as the CLI's), shows exactly
what will change, and applies it through the format's journaled applier. The live-work guard
is core's (``core.actions.guard``), on the snapshot on screen: no write to a task that is live
or that an agent still names with fresh signals. Refusals are typed: an unverified accept
(``NeedsConfirmation``) is planned again for a second confirmation, nothing else is matched by
its message.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING

from qwarden.core.actions.guard import check_live_work, live_work_refusal
from qwarden.core.actions.interface import (
    ActionRequest,
    NeedsConfirmation,
    PlannedChange,
    Refused,
    StalePlan,
    SubtaskSpec,
)
from qwarden.core.model import Snapshot
from qwarden.core.sources.errors import SourceError
from qwarden.tui.glossary import planner_for
from qwarden.tui.screens.confirm import ConfirmScreen
from qwarden.tui.screens.prompt import PromptScreen

if TYPE_CHECKING:
    from qwarden.tui.app import QwardenApp

# key action -> (planner kind, prompt for a note or None, note required)
ACTIONS: dict[str, tuple[str, str | None, bool]] = {
    "accept": ("accept", None, False),
    "retry": ("retry", "retry note (optional, goes into the trail)", False),
    "split": ("split", "subtasks", True),
    "cancel": ("cancel", "reason for cancelling (required)", True),
    "release": ("release", None, False),
    "sync": ("sync", None, False),
    "escalate": ("escalate", "message for the human inbox", False),
    "mark-read": ("mark-read", None, False),
    # the smaller repairs, run by ``d`` (the recommended action) and by group fixes
    "clear-error": ("clear-error", None, False),
    "register": ("register", None, False),
    "quarantine": ("quarantine", None, False),
    "repair-path": ("repair-path", None, False),
}
# what the input shows until typed into: the format for split, else the prompt itself
SPLIT_FORMAT = "TITLE | CONTEXT | CRIT; CRIT   (|| between subtasks)"


def actor() -> str:
    try:
        return f"qwarden:{getpass.getuser()}"
    except Exception:
        return "qwarden"


def label(app: QwardenApp, task_id: str) -> str:
    snap = app.engine.snapshot
    return snap.label(task_id) if snap is not None else task_id


def write_refusal(app: QwardenApp, kind: str) -> str | None:
    """Why the console cannot run ``kind`` on this queue at all (read-only, no write path,
    not an action of this format), or None."""
    if app.read_only:
        return "read-only: interventions are refused"
    if app.interventions is None:
        return app.no_interventions_reason
    if kind not in app.interventions.actions:
        return (f"{kind} is not an intervention on a {app.engine.source.format} queue "
                f"(it takes: {', '.join(app.interventions.actions)})")
    return None


def offers(app: QwardenApp, key_action: str) -> bool:
    """Whether the console key ``intervene(key_action)`` means anything on this queue (the
    footer shows only those: a RALF queue takes sync, not accept or retry)."""
    kind = ACTIONS.get(key_action, (key_action, None, False))[0]
    return app.interventions is not None and kind in app.interventions.actions


def live_snapshot(app: QwardenApp) -> Snapshot | None:
    """The snapshot to check live work and a sync's direction against: the engine's own when
    it follows the queue; for a historical view (--as-of) one scan of the queue as it is now
    (the verdicts on screen are the past's)."""
    snap = app.engine.snapshot
    if snap is None or snap.live:
        return snap
    from qwarden.core.formats import open_engine

    return open_engine(app.engine.root, app.config).scan()


def plan_one(app: QwardenApp, kind: str, task_id: str, *, note: str = "",
             force: bool = False, direction: str | None = None,
             subtasks: list[SubtaskSpec] | None = None,
             live: Snapshot | None = None) -> PlannedChange:
    """Plan one intervention the way every console path does (one task or a group): the
    live-work guard and a sync's direction from the live judgement, then the core planner,
    which reads the task as it is now. ``live``: a live snapshot already taken (a group
    takes one for all its tasks)."""
    snap = app.engine.snapshot
    historical = snap is not None and not snap.live
    if live is None:
        live = live_snapshot(app)
    why = write_refusal(app, kind)
    if why is not None:
        raise Refused(why)
    assert app.interventions is not None
    if live is not None:
        try:
            check_live_work(kind, task_id, live, app.config.thresholds)
        except Refused as exc:
            if historical:
                raise type(exc)(f"{exc} (checked against the live queue)") from None
            raise
        if kind == "sync" and direction is None:
            for f in live.findings_for(task_id):
                if f.kind == "file_db_mismatch" and f.recommended_action.value in (
                        "sync_db", "sync_file"):
                    direction = f.recommended_action.value
    # a format whose syncs have a direction (Octopoid: file or row wins) needs one; RALF's
    # sync rewrites the whole queue.yaml and takes none
    directed = "sync_db" in app.engine.source.semantics.action_hints
    if kind == "sync" and direction is None and directed:
        raise Refused(f"{label(app, task_id)} has no file_db_mismatch to sync")
    return app.interventions.plan(ActionRequest(
        kind=kind, task_id=task_id, actor=actor(), note=note, force=force,
        direction=direction, subtasks=tuple(subtasks or ())))


class Intervention:
    """One operator action on one task, driven through prompts and the confirm dialog."""

    def __init__(self, app: QwardenApp, action: str, task_id: str) -> None:
        self.app = app
        self.kind, self.prompt, self.note_required = ACTIONS[action]
        self.task_id = task_id
        self.note = ""
        self.subtasks: list[SubtaskSpec] = []
        self.direction: str | None = None  # a sync's, when the caller knows it

    def start(self) -> None:
        why = write_refusal(self.app, self.kind)
        if why is not None:
            self.app.notify(why, severity="error", markup=False)
            return
        snap = self.app.engine.snapshot
        # (a historical view is checked against the live queue when planning)
        refusal = snap and snap.live and live_work_refusal(
            self.kind, self.task_id, snap, self.app.engine.config.thresholds)
        if refusal:
            self.app.notify(f"refused: {refusal}", severity="error", markup=False)
            return
        if self.prompt is None:
            self._plan()
        else:
            hint = SPLIT_FORMAT if self.kind == "split" else self.prompt
            self.app.push_screen(PromptScreen(f"{self.kind} {label(self.app, self.task_id)}:",
                                              "", hint),
                                 self._got_note)

    def _got_note(self, value: str | None) -> None:
        if value is None:
            return
        value = value.strip()
        if self.note_required and not value:
            self.app.notify(f"{self.kind} needs {self.prompt}",
                            severity="warning", markup=False)
            return
        if self.kind == "split":
            try:
                self.subtasks = [SubtaskSpec.parse(s.strip()) for s in value.split("||")
                                 if s.strip()]
            except (ValueError, Refused) as exc:
                self.app.notify(f"split: {exc}", severity="error", markup=False)
                return
            self.note = f"split into {len(self.subtasks)} subtasks"
        else:
            self.note = value
        self._plan()

    def _make(self, force: bool) -> PlannedChange:
        return plan_one(self.app, self.kind, self.task_id, note=self.note, force=force,
                        direction=self.direction, subtasks=self.subtasks)

    def _plan(self, force: bool = False) -> None:
        async def work() -> None:
            try:
                plan = await asyncio.to_thread(self._make, force)
            except NeedsConfirmation:
                if force:
                    raise
                # unverified_completion: allowed only after an explicit second look
                self._plan(force=True)
                return
            except Refused as exc:
                self.app.notify(f"refused: {exc}", severity="error", markup=False)
                return
            except (StalePlan, SourceError) as exc:
                self.app.notify(f"{exc}", severity="error", markup=False)
                return
            snap = self.app.engine.snapshot
            title = f"{self.kind} {label(self.app, plan.task_id)}?"  # a sync: the queue
            if snap is not None and not snap.live:
                title += (f" (this view is as of {snap.as_of:%Y-%m-%d %H:%M}: planned and "
                          "checked against the live queue)")
            self.app.push_screen(ConfirmScreen(title, plan.describe(), tuple(plan.warnings)),
                                 lambda ok: self._confirmed(ok, plan))
        self.app.run_worker(work(), group="intervene", exit_on_error=False)

    def _confirmed(self, ok: bool | None, plan: PlannedChange) -> None:
        if not ok:
            return
        if plan.warnings:
            # the explicit second confirmation (an unverified completion)
            self.app.push_screen(
                ConfirmScreen(f"Really {self.kind} {label(self.app, self.task_id)}?",
                              ["There is no evidence of work: 0 commits and no passing "
                               "check. Accept anyway?"], tuple(plan.warnings)),
                lambda again: self._apply(plan) if again else None)
            return
        self._apply(plan)

    def _apply(self, plan: PlannedChange) -> None:
        async def work() -> None:
            assert self.app.interventions is not None
            verify = (self.app.config.actions.get("verify") if self.kind == "accept"
                      and not getattr(self.app.interventions, "verifies_accept", False)
                      else None)
            if verify:
                # the config's verify command gates an accept, from the console as from the CLI
                from qwarden.core.actions.cli import run_verify
                from qwarden.tui.widgets.trace_pane import TracePane

                pane = self.app.main_screen.query_one(TracePane)
                tid, app = self.task_id, self.app
                pane.verify_started(tid, str(verify))
                self.app.notify(f"verify: {verify} (output in the trace pane)", markup=False)
                ok, out = await asyncio.to_thread(
                    run_verify, str(verify), self.app.engine.root, tid,
                    on_line=lambda ln: app.call_from_thread(pane.verify_line, tid, ln))
                pane.verify_done(tid, ok)
                tail = "\n".join(out.splitlines()[-6:])
                if not ok:
                    self.app.notify(f"verify failed, not accepted:\n{tail}", severity="error",
                                    markup=False, timeout=15)
                    return
            try:
                res = await asyncio.to_thread(self.app.interventions.apply, plan)
            except (Refused, StalePlan, SourceError, OSError) as exc:
                self.app.notify(f"not applied: {exc}", severity="error", markup=False)
                return
            undo = (f", `qwarden undo {res.action_id}` reverses it" if res.undoable
                    else "; it cannot be undone")
            self.app.notify(f"{self.kind} {label(self.app, plan.task_id)}: done (action "
                            f"{res.action_id}{undo})", markup=False)
        self.app.run_worker(work(), group="intervene", exit_on_error=False)


# (task id, planner kind, sync direction or None): one item of a group action
GroupItem = tuple[str, str, str | None]


def recommended_item(snap: Snapshot, task_id: str) -> GroupItem | None:
    """The intervention that carries out the task's recommended action (from the finding it
    came from), or None when there is nothing to run."""
    v = snap.verdicts.get(task_id)
    if v is None:
        return None
    for f in snap.findings_for(task_id):
        if f.recommended_action is v.recommended_action:
            p = planner_for(f, snap)
            return (task_id, p[0], p[1]) if p is not None else None
    return None


class GroupIntervention:
    """One action on many tasks: every task planned by ``plan_one`` (as it would be alone),
    one dialog listing each task's exact changes and what was refused and why, then each plan
    applied on its own (one journal entry per task, each undoable)."""

    def __init__(self, app: QwardenApp, items: list[GroupItem], label: str,
                 on_done: Callable[[], None] | None = None) -> None:
        self.app = app
        self.items = items
        self.label = label
        self.note = ""
        self.on_done = on_done
        self.plans: list[PlannedChange] = []
        self.refused: list[tuple[str, str]] = []  # (task id, why)
        self.refused_up_front: list[tuple[str, str]] = []  # known before planning

    def start(self) -> None:
        if not self.items:
            self.app.notify("no tasks to act on" + "".join(
                f"; {label(self.app, t)}: {w}" for t, w in self.refused_up_front[:5]),
                markup=False)
            return
        why = next((w for k in {k for _, k, _ in self.items}
                    if (w := write_refusal(self.app, k)) is not None), None)
        if why is not None:
            self.app.notify(why, severity="error", markup=False)
            return
        kinds = {k for _, k, _ in self.items}
        prompts = [ACTIONS[k] for k in kinds if ACTIONS.get(k, (k, None, False))[1]]
        if prompts:
            _, prompt, required = prompts[0]
            self.app.push_screen(
                PromptScreen(f"{self.label} ({len(self.items)} tasks):", "", prompt or ""),
                lambda v: self._got_note(v, required))
        else:
            self._plan()

    def _got_note(self, value: str | None, required: bool) -> None:
        if value is None:
            return
        if required and not value.strip():
            self.app.notify(f"{self.label} needs a note", severity="warning", markup=False)
            return
        self.note = value.strip()
        self._plan()

    def plan_all(self) -> None:
        """Plan every item (in a thread: it reads each task)."""
        live = live_snapshot(self.app)
        self.plans, self.refused = [], list(self.refused_up_front)
        for tid, kind, direction in self.items:
            if kind == "split":
                self.refused.append((tid, "split takes its subtasks one task at a time"))
                continue
            try:
                self.plans.append(plan_one(self.app, kind, tid, note=self.note,
                                           direction=direction, live=live))
            except (Refused, StalePlan, SourceError) as exc:
                self.refused.append((tid, str(exc)))

    def dialog_lines(self) -> list[str]:
        lines: list[str] = []
        for plan in self.plans:
            lines.extend(plan.describe())
        if self.refused:
            lines.append(f"refused ({len(self.refused)}):")
            lines.extend(f"  {label(self.app, tid)}: {why}" for tid, why in self.refused)
        return lines

    def _plan(self) -> None:
        async def work() -> None:
            await asyncio.to_thread(self.plan_all)
            if not self.plans:
                self.app.notify(f"{self.label}: nothing to do, all {len(self.refused)} "
                                f"refused:\n" + "\n".join(f"{label(self.app, t)}: {w}"
                                                          for t, w in self.refused[:6]),
                                severity="error", markup=False, timeout=15)
                return
            snap = self.app.engine.snapshot
            title = (f"{self.label}: {len(self.plans)} tasks"
                     + (f", {len(self.refused)} refused" if self.refused else "") + "?")
            if snap is not None and not snap.live:
                title += " (planned and checked against the live queue)"
            warnings = tuple(w for p in self.plans for w in getattr(p, "warnings", ()))
            self.app.push_screen(ConfirmScreen(title, self.dialog_lines(), warnings),
                                 lambda ok: self._apply() if ok else None)
        self.app.run_worker(work(), group="intervene", exit_on_error=False)

    def apply_all(self) -> tuple[list[int | str], list[tuple[str, str]]]:
        """Apply each plan through the journaled path; (action ids, (task, why) not applied)."""
        done: list[int | str] = []
        failed: list[tuple[str, str]] = []
        assert self.app.interventions is not None
        for plan in self.plans:
            try:
                res = self.app.interventions.apply(plan)
            except (Refused, StalePlan, SourceError, OSError) as exc:
                failed.append((plan.task_id, str(exc)))
                continue
            done.append(res.action_id)
        return done, failed

    def _apply(self) -> None:
        async def work() -> None:
            done, failed = await asyncio.to_thread(self.apply_all)
            not_done = self.refused + failed
            msg = f"{self.label}: {len(done)} applied"
            if done:
                msg += (f" (actions {done[0]}..{done[-1]}, each undone by "
                        f"`qwarden undo ID`)")
            if not_done:
                msg += f"; {len(not_done)} not: " + "; ".join(
                    f"{label(self.app, t)}: {w}" for t, w in not_done[:5])
                if len(not_done) > 5:
                    msg += " …"
            self.app.notify(msg, severity="warning" if not_done else "information",
                            markup=False, timeout=15)
            if self.on_done is not None:
                self.on_done()
        self.app.run_worker(work(), group="intervene", exit_on_error=False)
