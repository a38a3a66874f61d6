"""``?``: every key, as rebound by the config, and the keys reserved for interventions."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import EXTRA_HELP, all_bindings, display_keys


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self.build(), id="help-body")

    def build(self) -> Table:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("what")
        table.add_column("id", style="dim", no_wrap=True)
        for section, bindings in all_bindings():
            table.add_row(Text(section, style="bold underline"), Text(""), Text(""))
            for b in bindings:
                table.add_row(Text(display_keys(b, self.keymap)), Text(b.description),
                              Text(b.id or ""))
        table.add_row(Text(""), Text(""), Text(""))
        for k, what in EXTRA_HELP:
            table.add_row(Text(k), Text(what), Text(""))
        return table

    def action_close(self) -> None:
        self.dismiss(None)
