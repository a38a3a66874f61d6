"""``enter``: one task on the whole screen, for "why": its findings and their evidence first
(what, since when, which side), each recommended action with the key that runs it, then the
liveness evidence, both sides, and the trace. j/k/g/G scroll, the action keys act on this
task, esc goes back."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from qwarden.core.model import Snapshot
from qwarden.tui.keys import ACTION_BINDINGS, SCROLL_BINDINGS
from qwarden.tui.widgets.detail_pane import DetailPane
from qwarden.tui.widgets.trace_pane import TracePane

if TYPE_CHECKING:
    from qwarden.tui.app import QwardenApp


class TaskBody(VerticalScroll, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [*SCROLL_BINDINGS]


class TaskScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="task.close"), *ACTION_BINDINGS]
    AUTO_FOCUS = "#task-body"

    def __init__(self, snap: Snapshot, task_id: str) -> None:
        super().__init__()
        self.snap = snap
        self.task_id = task_id

    @property
    def qapp(self) -> QwardenApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="task-title", classes="view-title")
        with TaskBody(id="task-body"):
            yield DetailPane(id="task-detail", findings_first=True)
            yield TracePane(id="task-trace")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        v = self.snap.verdicts.get(self.task_id)
        lane = v.effective_state if v is not None else "?"
        self.query_one("#task-title", Static).update(Text(
            f"{self.snap.label(self.task_id)} · {lane} · j/k scroll · esc back"))
        for pane in (self.query_one(DetailPane), self.query_one(TracePane)):
            pane.can_focus = False  # one scroll for the whole view
        self.query_one(DetailPane).show(self.snap, self.task_id)
        eng = self.qapp.engine
        self.query_one(TracePane).show(self.snap, self.task_id, eng.trace, eng.log_tail)
        self.query_one(TaskBody).scroll_home(animate=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.qapp.closing:
            return False
        if action == "intervene" and parameters:
            from qwarden.tui.intervene import offers

            if not offers(self.qapp, str(parameters[0])):
                return False  # not an action of this queue's format: not in the footer
        return super().check_action(action, parameters)

    def action_intervene(self, action: str) -> None:
        from qwarden.tui.intervene import Intervention

        Intervention(self.qapp, action, self.task_id).start()

    def action_close(self) -> None:
        self.dismiss(None)
