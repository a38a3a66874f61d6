"""One line of lanes with their counts and the worst severity in each (its colour and how many
tasks have it), the current one highlighted and always in view; lanes that do not fit are
counted at either end (``‹3`` / ``+2›``). A click on a tab opens that lane."""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from qwarden.core.model import Severity

SEVERITY_MARK = {Severity.CRITICAL: ("!!", "critical"), Severity.WARNING: ("!", "warning")}


@dataclass(frozen=True)
class Tab:
    name: str
    count: int
    filtered: bool = False
    worst: Severity | None = None  # critical or warning (info does not colour a tab)
    worst_count: int = 0
    key: str = " "  # the key that opens it


class LaneTabs(Widget):
    COMPONENT_CLASSES = {"lane-tabs--current", "lane-tabs--muted", "lane-tabs--filtered",
                         "lane-tabs--critical", "lane-tabs--warning"}

    class Clicked(Message):
        """A lane's tab was clicked: its position in the lane order."""

        def __init__(self, lane: int) -> None:
            super().__init__()
            self.lane = lane

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tabs: list[Tab] = []
        self.current = 0
        self._spans: list[tuple[int, int, int]] = []  # columns start, end -> lane, as drawn

    def show(self, tabs: list[Tab], current: int) -> None:
        self.tabs = tabs
        self.current = current
        self.refresh()

    def _st(self, name: str) -> Style:
        return self.get_component_rich_style(f"lane-tabs--{name}", partial=True)

    def _piece(self, i: int, tab: Tab) -> Text:
        t = Text()
        t.append(f"{tab.key}:", self._st("muted"))
        style = self._st("current") if i == self.current else (
            self._st("muted") if tab.count == 0 else None)
        t.append(f"{tab.name}[{tab.count}]", style)
        if tab.worst is not None:
            mark, sev = SEVERITY_MARK[tab.worst]
            t.append(f"{mark}{tab.worst_count}", self._st(sev))
        if tab.filtered:
            t.append("*", self._st("filtered"))
        return t

    def render(self) -> Text:
        pieces = [self._piece(i, tab) for i, tab in enumerate(self.tabs)]
        width = self.size.width or 80
        reserve = 6  # room for a "+N›" marker at either end
        start = 0
        # drop lanes from the left until the current one fits
        while start < self.current:
            total = sum(len(p) + 1 for p in pieces[start:self.current + 1])
            if total <= width - 2 * reserve:
                break
            start += 1
        out = Text(no_wrap=True, end="")
        if start:
            out.append(f"‹{start} ", self._st("muted"))
        self._spans = []
        end = start
        for i in range(start, len(pieces)):
            p = pieces[i]
            room = width - (0 if i == len(pieces) - 1 else reserve)
            if i > self.current and len(out) + len(p) > room:
                break
            self._spans.append((len(out), len(out) + len(p), i))
            out.append_text(p)
            out.append(" ")
            end = i + 1
        if end < len(pieces):
            out.append(f"+{len(pieces) - end}›", self._st("muted"))
        return out

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        for begin, end, lane in self._spans:
            if begin <= offset.x < end:
                self.post_message(self.Clicked(lane))
                return
