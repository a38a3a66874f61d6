"""Agents: problems first (dead, zombie claims, locked out, stale), natural order by name,
findings per agent; j/k/g/G like every list; enter jumps to the agent's task."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from qwarden.core.model import Snapshot
from qwarden.tui.widgets.agents_list import AgentsList


class AgentsScreen(Screen[str | None]):
    """Dismisses with a task id to jump to (enter on an agent with a task), or None."""

    BINDINGS = [Binding("escape,A", "close", "Back", id="agents.close")]

    def __init__(self, snap: Snapshot, stale_after_s: float = 300.0) -> None:
        super().__init__()
        self.snap = snap
        self.stale_after_s = stale_after_s

    def compose(self) -> ComposeResult:
        yield Static(id="agents-title", classes="view-title")
        yield AgentsList(id="agents-list")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        lst = self.query_one(AgentsList)
        lst.load(self.snap, self.stale_after_s)
        n_running = sum(1 for a in self.snap.agents.values() if a.running)
        n_problems = sum(1 for r in lst.by_name.values() if r.problem)
        self.query_one("#agents-title", Static).update(Text(
            f"agents: {len(self.snap.agents)} ({n_running} running, {n_problems} with a "
            "problem)  ·  enter: go to its task"))
        lst.focus()

    def on_row_list_selected(self, event: AgentsList.Selected) -> None:
        tid = self.query_one(AgentsList).task_of(event.key)
        if tid is not None:
            self.dismiss(tid)
        else:
            self.app.notify("this agent has no task", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
