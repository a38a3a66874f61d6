"""Every finding grouped by kind; enter jumps to its task on the main screen."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from core.model import Snapshot
from tui.widgets.findings_list import FindingsList


class FindingsScreen(Screen[str | None]):
    """Dismisses with the task id to jump to, or None."""

    BINDINGS = [Binding("escape,F", "close", "Back", id="findings.close")]

    def __init__(self, snap: Snapshot) -> None:
        super().__init__()
        self.snap = snap

    def compose(self) -> ComposeResult:
        yield Static(id="findings-title", classes="view-title")
        yield FindingsList(id="findings-list")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        lst = self.query_one(FindingsList)
        lst.load(self.snap)
        self.query_one("#findings-title", Static).update(Text(
            f"findings: {len(self.snap.findings)} on "
            f"{len({f.task_id for f in self.snap.findings})} tasks  ·  enter: go to task"))
        lst.focus()

    def on_row_list_selected(self, event: FindingsList.Selected) -> None:
        f = self.query_one(FindingsList).finding(event.key)
        if f is not None:
            self.dismiss(f.task_id)

    def action_close(self) -> None:
        self.dismiss(None)
