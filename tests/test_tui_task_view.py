"""``enter``: the full task view (issue 12, deliverable 2): findings and their evidence first,
each recommended action with its key, then both sides, then the trace; j/k/g/G; the action
keys act on the task shown; esc back."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from qwarden.core.model import Severity
from qwarden.tui.app import QwardenApp
from qwarden.tui.screens.task import TaskBody, TaskScreen
from qwarden.tui.widgets.detail_pane import DetailPane
from qwarden.tui.widgets.trace_pane import TracePane
from tests.builders import generated_utc_state
from tests.pilot import frozen_app


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "taskview", 300, seed=3)


def text_of(screen: TaskScreen) -> str:
    console = Console(width=118, color_system=None, record=True,
                      file=io.StringIO())
    d = screen.query_one(DetailPane)
    t = screen.query_one(TracePane)
    assert d.task_id is not None and t._snap is not None
    console.print(d.build(screen.snap, d.task_id))
    console.print(t.build(t._snap))
    return console.export_text()


async def open_task_view(app: QwardenApp, pilot, tid: str) -> TaskScreen:  # type: ignore[no-untyped-def]
    await app.workers.wait_for_complete()
    await pilot.pause()
    assert app.main_screen.go_to_task(tid)
    await pilot.press("enter")
    await pilot.pause(0.1)
    assert isinstance(app.screen, TaskScreen)
    return app.screen


async def test_findings_first_with_the_action_key_then_sides_then_trace(
        generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        snap = app.engine.snapshot
        assert snap is not None
        tid = next(t for t in snap.tasks_with(Severity.CRITICAL)
                   if any(f.kind == "zombie_claim" for f in snap.findings_for(t)))
        screen = await open_task_view(app, pilot, tid)
        assert screen.task_id == tid
        text = text_of(screen)
        i_finding = text.index("zombie_claim")
        assert "(press l)" in text  # release_claim's key
        i_sides = text.index("queue")
        i_trace = text.index("timeline")
        assert i_finding < i_sides < i_trace
        assert "release the claim" in text  # what fixes it, from the glossary
        body = screen.query_one(TaskBody)
        assert app.focused is body
        await pilot.press("j", "j")
        await pilot.pause()
        assert body.scroll_y == 2
        await pilot.press("G")
        await pilot.pause()
        assert body.scroll_y == body.max_scroll_y > 2
        await pilot.press("g")
        await pilot.pause()
        assert body.scroll_y == 0
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen
        assert app.main_screen.lane_list.current_key == tid


async def test_an_action_key_in_the_task_view_acts_on_its_task(
        generated: tuple[Path, datetime]) -> None:
    from qwarden.tui.screens.prompt import PromptScreen

    root, as_of = generated
    app = frozen_app(root, as_of, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        snap = app.engine.snapshot
        assert snap is not None
        tid = next(iter(snap.tasks_with(Severity.CRITICAL)))
        await open_task_view(app, pilot, tid)
        notes: list[str] = []
        real = app.notify
        app.notify = lambda m, **kw: (notes.append(str(m)), real(m, **kw))[1]  # type: ignore[method-assign]
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen)
        assert notes and "read-only" in notes[-1]
