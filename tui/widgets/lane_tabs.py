"""One line of lanes with their counts; the current one highlighted and always in view."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class LaneTabs(Widget):
    COMPONENT_CLASSES = {"lane-tabs--current", "lane-tabs--muted", "lane-tabs--filtered"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lanes: list[tuple[str, int, bool]] = []  # name, count, has a filter
        self.current = 0

    def show(self, lanes: list[tuple[str, int, bool]], current: int) -> None:
        self.lanes = lanes
        self.current = current
        self.refresh()

    def render(self) -> Text:
        cur = self.get_component_rich_style("lane-tabs--current", partial=True)
        muted = self.get_component_rich_style("lane-tabs--muted", partial=True)
        filt = self.get_component_rich_style("lane-tabs--filtered", partial=True)
        pieces: list[Text] = []
        for i, (name, n, filtered) in enumerate(self.lanes):
            num = str(i + 1) if i < 9 else ("0" if i == 9 else " ")
            t = Text()
            t.append(f"{num}:", muted)
            t.append(f"{name}[{n}]", cur if i == self.current else (muted if n == 0 else None))
            if filtered:
                t.append("*", filt)
            pieces.append(t)
        width = self.size.width or 80
        start = 0
        # drop lanes from the left until the current one fits
        while start < self.current:
            total = sum(len(p) + 1 for p in pieces[start:self.current + 1])
            if total <= width - 2:
                break
            start += 1
        out = Text(no_wrap=True, overflow="ellipsis", end="")
        if start:
            out.append("‹ ", muted)
        for p in pieces[start:]:
            out.append_text(p)
            out.append(" ")
        return out
