"""Every finding grouped by kind; enter jumps to its task on the main screen."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from qwarden.core.model import Snapshot
from qwarden.tui.glossary import planner_for
from qwarden.tui.intervene import GroupItem
from qwarden.tui.widgets.findings_list import FindingsList


class FindingsScreen(Screen[str | None]):
    """Dismisses with the task id to jump to, or None."""

    BINDINGS = [Binding("escape,F", "close", "Back", id="findings.close"),
                Binding("d", "fix_group", "Fix this group", id="findings.fix_group")]

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
            f"{len({f.task_id for f in self.snap.findings})} tasks  ·  enter: go to task  ·  "
            "d: fix this group (the kind's recommended action on all its tasks)"))
        lst.focus()

    def on_row_list_selected(self, event: FindingsList.Selected) -> None:
        f = self.query_one(FindingsList).finding(event.key)
        if f is not None:
            self.dismiss(f.task_id)

    def group_items(self, kind: str) -> list[GroupItem]:
        """Each task with a finding of ``kind``, with the action that finding recommends."""
        items: list[GroupItem] = []
        seen: set[str] = set()
        for f in self.snap.findings:
            if f.kind != kind or f.task_id in seen:
                continue
            p = planner_for(f, self.snap)
            if p is not None:
                seen.add(f.task_id)
                items.append((f.task_id, p[0], p[1]))
        return items

    def action_fix_group(self) -> None:
        from qwarden.tui.intervene import GroupIntervention

        lst = self.query_one(FindingsList)
        key = lst.current_key
        if key is None:
            return
        kind = lst.headings[key][0] if key.startswith("h:") else lst.findings[int(key[2:])].kind
        items = self.group_items(kind)
        if not items:
            self.app.notify(f"{kind}: nothing to run (its recommended action is to look)",
                            markup=False)
            return
        GroupIntervention(self.app, items, f"fix {kind}").start()  # type: ignore[arg-type]

    def action_close(self) -> None:
        self.dismiss(None)
