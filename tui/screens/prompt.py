"""A one-line prompt at the bottom (``/`` filter, ``:`` jump): enter answers, esc cancels."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    AUTO_FOCUS = "#prompt-input"  # (no query in on_mount: nothing to miss while quitting)
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, prefix: str, value: str = "", placeholder: str = "",
                 suggestions: list[str] | None = None) -> None:
        super().__init__()
        self.prefix = prefix
        self.value = value
        self.placeholder = placeholder
        self.suggestions = suggestions or []

    def compose(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        with Horizontal(id="prompt-bar"):
            yield Label(Content(self.prefix), id="prompt-prefix")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input",
                        suggester=SuggestFromList(self.suggestions, case_sensitive=False)
                        if self.suggestions else None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
