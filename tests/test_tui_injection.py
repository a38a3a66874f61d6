"""Untrusted text stays text: markup, actions, theme variables and terminal escapes in titles,
errors, logs and engine errors render inertly (literally, with no escape byte and no action)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widget import Widget

from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.tui.app import QwardenApp
from qwarden.tui.widgets.detail_pane import DetailPane
from qwarden.tui.widgets.header_bar import HeaderBar
from qwarden.tui.widgets.trace_pane import TracePane
from tests.builders import StateBuilder

OSC52 = "\x1b]52;c;ZXZpbCBjbGlwYm9hcmQ=\x07"
CSI2J = "\x1b[2J"
EVIL = f"Evil [/foo] [@click=app.quit] [$accent] {OSC52}{CSI2J}[b]bold?[/b] end"
LITERALS = ("[/foo]", "[@click=app.quit]", "[$accent]", "[b]bold?[/b]")


def lines_of(widget: Widget) -> tuple[str, list]:  # type: ignore[type-arg]
    w, h = widget.size
    strips = widget.render_lines(Region(0, 0, w, h))
    segs = [seg for strip in strips for seg in strip]
    return "\n".join(strip.text for strip in strips), segs


def assert_inert(text: str, segs: list) -> None:  # type: ignore[type-arg]
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    for seg in segs:
        meta = seg.style.meta if seg.style is not None else {}
        assert not any("@click" in str(v) for v in meta.values()), meta


@pytest.fixture
def evil_state(tmp_path: Path, utc_tz: None) -> StateBuilder:
    b = StateBuilder(tmp_path, now=datetime(2026, 11, 22, 22, 10, 0))
    b.task("evil0001", db_queue="claimed", title=EVIL,
           trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 120)],
           db={"claimed_by": "a1", "claimed_at": 120, "priority": "P0"})
    b.task("evil0002", db_queue="failed", file_queues=("failed",), title=EVIL,
           trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 9000), ("FAILED_AT", 8000),
                  ("## Error", f"```\nBoom {EVIL}\n```")])
    b.agent("a1", started_age=120, heartbeat_age=5, status=("evil0001", 5))
    b.build()
    log = b.root / "agents" / "a1" / "stdout.log"
    log.write_text(f"\x1b[31mred line\x1b[0m {EVIL}\nsecond {CSI2J}{OSC52} line\n")
    return b


async def test_titles_errors_logs_render_inertly(evil_state: StateBuilder) -> None:
    b = evil_state
    cfg = Config()
    app = QwardenApp(open_engine(b.root, cfg, as_of=b.now.astimezone()), cfg, root_label="demo")
    async with app.run_test(size=(160, 50)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        main = app.main_screen
        assert main.snapshot is not None
        assert main.jump("evil0001")
        await pilot.pause(0.3)
        # the lane row
        text, segs = lines_of(main.lane_list)
        assert "Evil [/foo] [@click=app.quit] [$accent]" in text
        assert_inert(text, segs)
        # a click on the row selects it, it does not run app.quit
        await pilot.click(main.lane_list, offset=(30, 0))
        await pilot.pause()
        assert app.is_running and not app._exit
        # the detail pane (title, evidence)
        detail = main.query_one(DetailPane)
        text, segs = lines_of(detail._body)
        assert "[/foo]" in text and "[@click=app.quit]" in text
        assert_inert(text, segs)
        # the trace pane with the agent's coloured log: colours kept, escapes gone
        trace = main.query_one(TracePane)
        assert trace.agent == "a1"
        text, segs = lines_of(trace._body)
        for lit in LITERALS:
            assert lit in text, lit
        assert "red line" in text and "second  line" in text
        assert_inert(text, segs)
        red = [s for s in segs if "red line" in s.text]
        assert red and red[0].style is not None and red[0].style.color is not None
        # the failed task's error block
        assert main.jump("evil0002")
        await pilot.pause(0.3)
        text, segs = lines_of(main.query_one(DetailPane)._body)
        assert "[/foo]" in text
        assert_inert(text, segs)
        # an engine error in the header
        app.engine.last_error = f"db: {EVIL}"
        header = main.query_one(HeaderBar)
        header.refresh()
        await pilot.pause()
        text, segs = lines_of(header)
        assert "ERROR" in text and "[/foo] [@click=app.quit]" in text
        assert_inert(text, segs)
        # user input echoed in a notification is not markup either
        assert not main.jump("[/foo][@click=app.quit]")
        await pilot.pause()
        assert app.is_running
        # the findings view and the help screen survive it too
        await pilot.press("F")
        await pilot.pause()
        await pilot.press("escape")
        assert app.screen is main
