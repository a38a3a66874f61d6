"""Confirm an intervention: exactly what will change, focus on Cancel, `y` to confirm."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from qwarden.core.textsafe import clean_line


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "confirm", "Confirm", id="confirm.yes"),
        Binding("n,escape", "cancel", "Cancel", id="confirm.no"),
    ]

    def __init__(self, title: str, lines: list[str], warnings: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.warnings = warnings

    def compose(self) -> ComposeResult:
        body = Text()
        for w in self.warnings:
            body.append(f"⚠ {clean_line(w, 300)}\n", style="bold red")
        for line in self.lines:
            body.append(clean_line(line, 400) + "\n")
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-plan"):
                yield Static(body)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="confirm-cancel", variant="default")
                yield Button("Confirm (y)", id="confirm-ok", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#confirm-cancel", Button).focus()  # the safe default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-ok")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
