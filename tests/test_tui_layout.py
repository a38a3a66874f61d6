"""Keys and layout an operator meets first (issue 12, defects 3-5): a click lands on the row
clicked and on the lane tab clicked; j/k/g/G scroll the detail and trace panes and help; at
120 columns the footer keeps F and A and lanes that do not fit are counted; at 80x24 the help
descriptions and a row's finding kinds are not cut."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from textual.widgets import Footer

from qwarden.tui.screens.help import HelpScreen
from qwarden.tui.widgets.detail_pane import DetailPane
from qwarden.tui.widgets.lane_tabs import LaneTabs
from qwarden.tui.widgets.trace_pane import TracePane
from tests.builders import StateBuilder, generated_utc_state
from tests.pilot import frozen_app, ready


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "layout", 300, seed=3)



async def test_a_click_selects_the_row_clicked(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(200, 60)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        main.switch_lane("incoming")
        lst = main.lane_list
        lst.move_to(30)  # scrolled: the offset counts too
        await pilot.pause()
        lst.scroll_to(y=10, animate=False, immediate=True)
        await pilot.pause()
        top = int(lst.scroll_offset.y)
        for row in (0, 4, 11):
            # y 0 is the list's border; its first row is at y 1
            await pilot.click("#lane-list", offset=(12, row + 1))
            await pilot.pause()
            assert lst.cursor == top + row, (row, lst.cursor, top)
            assert lst.render_line(row).text.strip().split()[-1]  # drawn as the cursor row


async def test_a_click_on_a_lane_tab_opens_it(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(200, 60)) as pilot:
        await ready(app, pilot)
        tabs = app.main_screen.query_one(LaneTabs)
        tabs.render()
        views = app.main_screen.views  # the attention view, then the lanes
        for begin, _end, i in tabs._spans[:4]:
            await pilot.click(LaneTabs, offset=(begin + 1 + 1, 0))  # (its padding)
            await pilot.pause()
            assert app.main_screen.lane == views[i]


async def test_lanes_that_do_not_fit_are_counted(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        tabs = main.query_one(LaneTabs)
        n = len(main.index.lanes)
        assert n >= 10
        main.action_lane(0)
        shown = tabs.render().plain
        assert shown.rstrip().endswith("›") and "+" in shown
        hidden = len(tabs.tabs) - len(tabs._spans)
        assert f"+{hidden}›" in shown
        main.action_lane(9)  # lane 0: the current one is always in view, the rest counted
        shown = tabs.render().plain
        assert shown.startswith("‹") and "0:" in shown


async def test_footer_keeps_findings_and_agents_at_120(generated: tuple[Path, datetime]
                                                       ) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        footer = app.main_screen.query_one(Footer)
        text = " ".join(str(w.render()) for w in footer.walk_children()
                        if w.region.right <= 120 and w.region.width > 0)
        for hint in ("Findings", "Agents", "Help", "Quit"):
            assert hint in text, hint


async def test_j_k_g_G_scroll_the_panes_and_help(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        detail = app.main_screen.query_one(DetailPane)
        trace = app.main_screen.query_one(TracePane)
        for pane in (detail, trace):
            pane.focus()
            await pilot.pause(0.2)
            if pane.max_scroll_y == 0:
                continue
            await pilot.press("g")
            assert pane.scroll_y == 0
            await pilot.press("j", "j")
            await pilot.pause()
            assert pane.scroll_y == 2
            await pilot.press("k")
            await pilot.pause()
            assert pane.scroll_y == 1
            await pilot.press("G")
            await pilot.pause()
            assert pane.scroll_y == pane.max_scroll_y
        assert detail.max_scroll_y > 0  # at 80x24 the detail does not fit: it was tested
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one("#help-box")
        await pilot.pause()
        assert box.max_scroll_y > 0
        await pilot.press("j", "j", "j")
        await pilot.pause()
        assert box.scroll_y == 3
        await pilot.press("G")
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y
        await pilot.press("g")
        await pilot.pause()
        assert box.scroll_y == 0


async def test_help_at_80x24_keeps_descriptions_and_explains_kinds(
        generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        from rich.console import Console

        console = Console(width=app.screen.query_one("#help-box").content_region.width,
                          color_system=None, record=True, file=open("/dev/null", "w"))
        console.print(app.screen.build_all(80))
        text = console.export_text()
        flat = " ".join(text.split())
        # whole descriptions (wrapped, not cut), the legend and the glossary
        assert "keeps the rows that do NOT match" in flat
        assert "Release claim" in flat and "Pause auto-fixer" in flat
        assert "critical finding" in flat and "marked for a group action" in flat
        assert "missing_file" in flat and "quarantine it" in flat
        assert "…" not in text


def test_a_rows_finding_kinds_come_before_its_title(tmp_path: Path) -> None:
    from qwarden.core.formats import open_engine
    from qwarden.tui.widgets.lane_list import LaneList

    b = StateBuilder(tmp_path)
    b.task("aaaa0001", db_queue=None,
           title="A very long title that would push the kinds out of an 80 column list")
    b.build()
    snap = open_engine(b.root, as_of=b.now.astimezone()).scan()
    lst = LaneList()
    lst.snapshot = snap
    from rich.style import Style

    lst._row_styles = {n: Style() for n in ("critical", "warning", "info", "muted", "heading",  # type: ignore[misc]
                                         "idle", "live", "unknown", "dead", "at-risk", "")}
    row = lst.render_row("aaaa0001", 40).plain  # (the styles: no app needed)
    assert row.index("orphan_file") < row.index("A very long")
