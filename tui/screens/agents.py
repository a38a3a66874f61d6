"""Agents: running, last signal age, current task, claims held."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from core.model import Snapshot
from core.textsafe import clean_line
from core.timefmt import age_text


class AgentsScreen(Screen[str | None]):
    """Dismisses with a task id to jump to (enter on an agent with a current task), or None."""

    BINDINGS = [Binding("escape,A", "close", "Back", id="agents.close")]

    def __init__(self, snap: Snapshot) -> None:
        super().__init__()
        self.snap = snap

    def compose(self) -> ComposeResult:
        yield Static(id="agents-title", classes="view-title")
        yield DataTable(id="agents-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        snap = self.snap
        claims: dict[str, list[str]] = {}
        for tid, v in snap.verdicts.items():
            if v.claimed_by and v.effective_state == "claimed":
                claims.setdefault(v.claimed_by, []).append(tid)
        table = self.query_one(DataTable)
        # Text cells only: a str cell would be parsed as markup.
        for col in ("agent", "running", "pid", "last signal", "current task", "claims",
                    "status"):
            table.add_column(Text(col), key=col)
        for name in sorted(snap.agents):
            a = snap.agents[name]
            sig = a.newest_signal()
            age = f"{age_text((snap.as_of - sig.at).total_seconds())} ({sig.name})" \
                if sig else "never"
            running = {True: "yes", False: "no", None: "?"}[a.running]
            if a.pid is not None and a.pid_alive is False:
                running += " (pid gone)"
            held = claims.get(name, [])
            table.add_row(
                Text(clean_line(name, 60)), Text(running),
                Text(str(a.pid) if a.pid is not None else "—"), Text(age),
                Text(clean_line(a.current_task_id or "—", 40)),
                Text(f"{len(held)}: {' '.join(held[:4])}{' …' if len(held) > 4 else ''}"
                     if held else "0"),
                Text(clean_line(a.status_text, 80)), key=name)
        n_running = sum(1 for a in snap.agents.values() if a.running)
        self.query_one("#agents-title", Static).update(Text(
            f"agents: {len(snap.agents)} ({n_running} running)  ·  enter: go to current task"))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        name = event.row_key.value
        a = self.snap.agents.get(name or "")
        if a is not None and a.current_task_id and a.current_task_id in self.snap.tasks:
            self.dismiss(a.current_task_id)

    def action_close(self) -> None:
        self.dismiss(None)
