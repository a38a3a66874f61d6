"""The config's verify command before an accept: its output streams into the trace pane line
by line while it runs (real subprocess, real files and SQLite), and its verdict gates the accept."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from rich.console import Console

from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.core.timefmt import parse_as_of
from qwarden.tui.app import QwardenApp
from qwarden.tui.widgets.trace_pane import TracePane
from tests.test_tui_interventions import db_queue, settle, state


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def pane_text(pane: TracePane) -> str:
    """What the pane shows, as plain text (rendered the way the pane renders it)."""
    assert pane._snap is not None
    console = Console(width=118, file=io.StringIO(), color_system=None)
    with console.capture() as cap:
        console.print(pane.build(pane._snap))
    return cap.get()


@pytest.mark.parametrize("passes", [False, True])
async def test_verify_output_streams_into_the_trace_and_gates_accept(
        tmp_path: Path, passes: bool) -> None:
    b = state(tmp_path)
    gate = tmp_path / "go"
    # Prints a line, then waits for the test to let it finish: the line must be on screen
    # while the command is still running. ``[/x]`` and an escape must stay inert text.
    cmd = ("echo 'checking {task_id} [/x] \x1b[2J'; "
           f"n=0; while [ ! -e {gate} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; "
           "echo 'all 12 tests ran'; "
           + ("exit 0" if passes else "exit 4"))
    cfg = Config(actions={"verify": cmd})
    app = QwardenApp(open_engine(b.root, cfg, as_of=parse_as_of(b.now.isoformat())), cfg,
                     root_label="t")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0001")
        await pilot.pause()
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("y")
        pane = app.main_screen.query_one(TracePane)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30  # generous: a loaded CI machine starts shells slowly
        while loop.time() < deadline:  # the first line arrives while the command still waits
            await pilot.pause(0.02)
            run = pane.verify_runs.get("aaaa0001")
            if run is not None and run.lines:
                break
        run = pane.verify_runs["aaaa0001"]
        assert run.status == "running"
        text = pane_text(pane)
        assert "verify (running)" in text and "checking aaaa0001 [/x]" in text
        assert "\x1b" not in text
        assert db_queue(b.root, "aaaa0001") == "provisional"  # nothing applied meanwhile
        gate.touch()
        deadline = loop.time() + 30
        while loop.time() < deadline and run.status == "running":
            await pilot.pause(0.02)
        await settle(app, pilot)
        assert run.status == ("passed" if passes else "failed")
        assert run.lines[-1] == "all 12 tests ran"
        assert f"verify ({run.status})" in pane_text(pane)
        await asyncio.sleep(0)
    assert db_queue(b.root, "aaaa0001") == ("done" if passes else "provisional")
