"""Interventions from the console: plan -> confirm dialog -> the one journaled write path.

The console never writes itself: it asks ``core.actions`` for a plan, shows exactly what will
change, and applies it through ``apply`` (preconditions, journal, backups, atomic writes). The
live-work guard is core's (``core.actions.guard``), on the snapshot on screen: no write to a
task that is live or that an agent still names with fresh signals.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import TYPE_CHECKING

from core.actions.apply import apply
from core.actions.guard import live_work_refusal
from core.actions.octopoid_actions import Subtask, judge_task, make_plan
from core.actions.plan import Plan, Refused, StalePlan
from core.sources.octopoid import SourceError
from tui.screens.confirm import ConfirmScreen
from tui.screens.prompt import PromptScreen

if TYPE_CHECKING:
    from tui.app import QwardenApp

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
}
# what the input shows until typed into: the format for split, else the prompt itself
SPLIT_FORMAT = "TITLE | CONTEXT | CRIT; CRIT   (|| between subtasks)"


def actor() -> str:
    try:
        return f"qwarden:{getpass.getuser()}"
    except Exception:
        return "qwarden"


class Intervention:
    """One operator action on one task, driven through prompts and the confirm dialog."""

    def __init__(self, app: QwardenApp, action: str, task_id: str) -> None:
        self.app = app
        self.kind, self.prompt, self.note_required = ACTIONS[action]
        self.task_id = task_id
        self.note = ""
        self.subtasks: list[Subtask] = []

    def start(self) -> None:
        if self.app.read_only:
            self.app.notify("read-only: interventions are refused", severity="error",
                            markup=False)
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
            self.app.push_screen(PromptScreen(f"{self.kind} TASK-{self.task_id}:", "", hint),
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
                self.subtasks = [Subtask.parse(s.strip()) for s in value.split("||")
                                 if s.strip()]
            except (ValueError, Refused) as exc:
                self.app.notify(f"split: {exc}", severity="error", markup=False)
                return
            self.note = f"split into {len(self.subtasks)} subtasks"
        else:
            self.note = value
        self._plan()

    def _make(self, force: bool) -> Plan:
        snap = self.app.engine.snapshot
        direction = None
        if snap is not None and not snap.live:
            # A historical view (--as-of) says nothing about the queue now: the live-work
            # check and a sync's direction come from a live judgement (the plan is always
            # made from the files now).
            live = judge_task(self.app.engine.root, self.task_id, self.app.config)
            refusal = live.live_refusal(self.kind, self.task_id)
            if refusal:
                raise Refused(f"{refusal} (checked against the live queue)")
            direction = live.sync_direction
        elif self.kind == "sync" and snap is not None:
            for f in snap.findings_for(self.task_id):
                if f.kind == "file_db_mismatch":
                    direction = f.recommended_action.value
        if self.kind == "sync" and direction is None:
            raise Refused(f"TASK-{self.task_id} has no file_db_mismatch to sync")
        return make_plan(self.app.engine.root, self.kind, self.task_id, actor=actor(),
                         note=self.note, force=force, direction=direction,
                         subtasks=self.subtasks,
                         max_children=int(self.app.config.actions.get("split_max", 10)))  # type: ignore[call-overload]

    def _plan(self, force: bool = False) -> None:
        async def work() -> None:
            try:
                plan = await asyncio.to_thread(self._make, force)
            except Refused as exc:
                if self.kind == "accept" and "no evidence of work" in str(exc) and not force:
                    # unverified_completion: allowed only after an explicit second look
                    self._plan(force=True)
                    return
                self.app.notify(f"refused: {exc}", severity="error", markup=False)
                return
            except (StalePlan, SourceError) as exc:
                self.app.notify(f"{exc}", severity="error", markup=False)
                return
            snap = self.app.engine.snapshot
            title = f"{self.kind} TASK-{self.task_id}?"
            if snap is not None and not snap.live:
                title += (f" (this view is as of {snap.as_of:%Y-%m-%d %H:%M}: planned and "
                          "checked against the live queue)")
            self.app.push_screen(ConfirmScreen(title, plan.describe(), plan.warnings),
                                 lambda ok: self._confirmed(ok, plan))
        self.app.run_worker(work(), group="intervene", exit_on_error=False)

    def _confirmed(self, ok: bool | None, plan: Plan) -> None:
        if not ok:
            return
        if plan.warnings:
            # the explicit second confirmation (an unverified completion)
            self.app.push_screen(
                ConfirmScreen(f"Really {self.kind} TASK-{self.task_id}?",
                              ["There is no evidence of work: 0 commits and no passing "
                               "check. Accept anyway?"], plan.warnings),
                lambda again: self._apply(plan) if again else None)
            return
        self._apply(plan)

    def _apply(self, plan: Plan) -> None:
        async def work() -> None:
            verify = self.app.config.actions.get("verify") if self.kind == "accept" else None
            if verify:
                # the config's verify command gates an accept, from the console as from the CLI
                from core.actions.cli import run_verify
                from tui.widgets.trace_pane import TracePane

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
                res = await asyncio.to_thread(apply, self.app.engine.root, plan,
                                              read_only=self.app.read_only)
            except (Refused, StalePlan, SourceError) as exc:
                self.app.notify(f"not applied: {exc}", severity="error", markup=False)
                return
            self.app.notify(f"{self.kind} TASK-{self.task_id}: done (action {res.action_id}, "
                            f"`qwarden undo {res.action_id}` reverses it)", markup=False)
        self.app.run_worker(work(), group="intervene", exit_on_error=False)
