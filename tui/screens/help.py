"""``?``: every key (as rebound by the config), the row symbols, and what each finding kind
means and what fixes it. Scrolls with j/k/g/G like every other view; at 80 columns the
binding ids are left out so the descriptions keep their room (they wrap, never cut)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from qwarden.tui.glossary import GLOSSARY, LEGEND
from qwarden.tui.keys import EXTRA_HELP, SCROLL_BINDINGS, all_bindings, display_keys

WIDE = 100  # columns from which the binding ids are shown


class HelpBox(VerticalScroll, can_focus=True):
    BINDINGS = [*SCROLL_BINDINGS]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]
    AUTO_FOCUS = "#help-box"

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with HelpBox(id="help-box"):
            yield Static(id="help-body")

    def on_resize(self) -> None:
        self.query_one("#help-body", Static).update(self.build_all(self.size.width))

    def on_mount(self) -> None:
        self.query_one("#help-body", Static).update(self.build_all(self.size.width))

    def build(self, width: int = 120) -> Table:
        """The keys, one row each."""
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("what", ratio=1, overflow="fold")
        wide = width >= WIDE
        if wide:
            table.add_column("id", style="dim", no_wrap=True)
        for section, bindings in all_bindings():
            # (in the wide column: a long section name must not squeeze the descriptions)
            table.add_row(Text(""), Text(section, style="bold underline"), *([Text("")] * wide))
            for b in bindings:
                table.add_row(Text(display_keys(b, self.keymap)),
                              Text(b.tooltip or b.description),
                              *([Text(b.id or "")] * wide))
        table.add_row(Text(""), Text(""), *([Text("")] * wide))
        for k, what in EXTRA_HELP:
            table.add_row(Text(k), Text(what), *([Text("")] * wide))
        return table

    def build_all(self, width: int) -> Group:
        legend = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        legend.add_column("symbol", no_wrap=True, style="bold")
        legend.add_column("meaning", ratio=1, overflow="fold")
        for sym, meaning in LEGEND:
            legend.add_row(Text(sym), Text(meaning))
        kinds = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        kinds.add_column("kind", no_wrap=True, style="bold")
        kinds.add_column("meaning", ratio=1, overflow="fold")
        for kind, (meaning, fix) in GLOSSARY.items():
            line = Text(meaning)
            line.append("  fix: ", style="dim")
            line.append(fix)
            kinds.add_row(Text(kind), line)
        return Group(self.build(width), Text(""),
                     Text("Row symbols", style="bold underline"), legend, Text(""),
                     Text("Findings: what each kind means, what fixes it",
                          style="bold underline"), kinds)

    def action_close(self) -> None:
        self.dismiss(None)
