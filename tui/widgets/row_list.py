"""A virtualized list: a Line-API ScrollView that renders only the rows on screen.

The rows are a sequence of keys; a subclass turns one key into a ``rich.text.Text`` line.
Opening, scrolling and filtering a list of 100,000 rows costs the same as one of 1,000,
because only ``height`` rows are ever rendered, and the rows may be lazy (``tui.lanes``):
ordered or matched as far as they are read, with ``ensure(i)`` / ``finish()`` to go further and
a ``len`` that may grow (``rows_grew``) until they are ``complete``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from qwarden.tui.keys import LIST_BINDINGS


class RowList(ScrollView, can_focus=True):
    """Keys in display order, a cursor, and one rendered line per visible row."""

    BINDINGS: ClassVar[list[BindingType]] = [*LIST_BINDINGS]
    COMPONENT_CLASSES = {
        "row-list--cursor",
        "row-list--critical",
        "row-list--warning",
        "row-list--info",
        "row-list--muted",
        "row-list--live",
        "row-list--at-risk",
        "row-list--dead",
        "row-list--unknown",
        "row-list--idle",
        "row-list--heading",
    }

    cursor: reactive[int] = reactive(0, always_update=True, init=False)

    class Highlighted(Message):
        def __init__(self, row_list: RowList, key: str | None) -> None:
            super().__init__()
            self.row_list = row_list
            self.key = key

        @property
        def control(self) -> RowList:
            return self.row_list

    class Selected(Message):
        def __init__(self, row_list: RowList, key: str) -> None:
            super().__init__()
            self.row_list = row_list
            self.key = key

        @property
        def control(self) -> RowList:
            return self.row_list

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.rows: Sequence[str] = ()
        self._row_styles: dict[str, Style] = {}
        self._last_key: str | None = None
        self.empty_text = "nothing here"

    # ------------------------------------------------------------------ data
    def set_rows(self, rows: Sequence[str], keep: str | None = None) -> None:
        """Replace the rows; the cursor stays on ``keep`` (or the current key) when present,
        and the scroll offset is kept as far as possible."""
        # the key last shown under the cursor: lazy rows are views, the old ones may already
        # show the new order (and reading them could start ordering a lane no longer shown)
        want = keep if keep is not None else self._last_key
        old_cursor = self.cursor
        self.rows = rows
        self.virtual_size = Size(self.size.width, len(rows))
        idx = -1
        if want is not None and rows:
            # the common case first: the row did not move
            if 0 <= old_cursor < len(rows) and rows[old_cursor] == want:
                idx = old_cursor
            else:
                try:
                    idx = rows.index(want)
                except ValueError:
                    idx = -1
        if idx < 0:
            idx = min(old_cursor, len(rows) - 1) if rows else 0
        self.set_reactive(RowList.cursor, max(0, idx))
        self._scroll_cursor_into_view()
        self.refresh()
        self._announce()

    @property
    def current_key(self) -> str | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor]
        return None

    def refresh_rows(self) -> None:
        """The rows' content changed (not their order)."""
        self.refresh()

    def rows_grew(self) -> None:
        """Lazy rows found more rows (a filter scan going on): resize, keep the cursor."""
        self.virtual_size = Size(self.size.width, len(self.rows))
        self.refresh()
        if self.current_key != self._last_key:  # the list was empty and now has a row
            self._announce()

    @property
    def rows_complete(self) -> bool:
        return bool(getattr(self.rows, "complete", True))

    # ------------------------------------------------------------------ rendering
    def render_row(self, key: str, width: int) -> Text:  # pragma: no cover - abstract
        raise NotImplementedError

    def row_style(self, name: str) -> Style:
        style = self._row_styles.get(name)
        if style is None:
            style = self.get_component_rich_style(f"row-list--{name}", partial=True)
            self._row_styles[name] = style
        return style

    def notify_style_update(self) -> None:
        self._row_styles.clear()
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        idx = scroll_y + y
        if idx >= len(self.rows):
            if idx == 0 and not self.rows:
                text = Text(self.empty_text, style=self.row_style("muted"), no_wrap=True)
                segs = list(text.render(self.app.console))
                return Strip(Segment.apply_style(segs, base)).crop_extend(0, width, base)
            return Strip.blank(width, base)
        text = self.render_row(self.rows[idx], width)
        text.no_wrap = True
        text.end = ""
        text.truncate(width, overflow="ellipsis", pad=True)
        if idx == self.cursor:
            # one colour pair for the whole row (the theme's cursor, >= 4.5:1): the row's own
            # colours on the highlight were 1.0-2.4:1 (issue 12); the glyphs keep the severity
            text = Text(text.plain, no_wrap=True, end="")
            text.stylize(self.row_style("cursor"))  # (a span: ``render`` skips a base style)
        segments = list(Segment.apply_style(text.render(self.app.console), base))
        strip = Strip(segments).crop_extend(0, width, base)
        return strip.apply_offsets(scroll_x, idx)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows))
        self._scroll_cursor_into_view()

    # ------------------------------------------------------------------ cursor
    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        key = self.current_key
        if key != self._last_key:
            self._last_key = key
            self.post_message(self.Highlighted(self, key))

    def _scroll_cursor_into_view(self) -> None:
        if not self.rows:
            self.scroll_to(y=0, animate=False)
            return
        self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, immediate=True)

    def move_to(self, idx: int) -> None:
        ensure = getattr(self.rows, "ensure", None)
        if ensure is not None and idx >= len(self.rows):  # lazy rows: look further first
            ensure(idx)
            self.virtual_size = Size(self.size.width, len(self.rows))
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, idx))

    def action_cursor_down(self) -> None:
        self.move_to(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self.move_to(self.cursor - 1)

    def action_cursor_top(self) -> None:
        self.move_to(0)

    def action_cursor_bottom(self) -> None:
        finish = getattr(self.rows, "finish", None)
        if finish is not None:
            finish()
            self.virtual_size = Size(self.size.width, len(self.rows))
        self.move_to(len(self.rows) - 1)

    def action_page_down(self) -> None:
        self.move_to(self.cursor + max(1, self.scrollable_content_region.height - 1))

    def action_page_up(self) -> None:
        self.move_to(self.cursor - max(1, self.scrollable_content_region.height - 1))

    def action_select(self) -> None:
        key = self.current_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_click(self, event: events.Click) -> None:
        # relative to the content, not the widget: its border's top line is y 0 (a click
        # selected the row below the one clicked)
        offset = event.get_content_offset(self)
        if offset is None:
            return
        idx = int(self.scroll_offset.y) + offset.y
        if 0 <= idx < len(self.rows):
            if idx == self.cursor and event.chain >= 2:
                self.action_select()
            self.move_to(idx)
