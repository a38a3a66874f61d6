"""Screenshots of the main views (pytest-textual-snapshot), stored in ``screenshots/``.

Deterministic: a generated state judged ``--as-of`` its own fixed clock, TZ=UTC, a fixed
terminal size, a fixed root label, no input cursor on screen. ``make screenshots`` refreshes
them (``--snapshot-update``); the README shows them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import pytest_textual_snapshot as pts

from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.tui.app import QwardenApp
from tests.builders import generated_utc_state

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"


class ScreenshotsSVG(pts.SVGImageExtension):
    """Keep the accepted SVGs in the repo's screenshots/ folder, not tests/__snapshots__."""

    @classmethod
    def dirname(cls, *, test_location):  # type: ignore[no-untyped-def,override]
        return str(SCREENSHOTS)


@pytest.fixture(autouse=True)
def _screenshots_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pts, "SVGImageExtension", ScreenshotsSVG)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "snap", 240, seed=7)


def make_app(state: tuple[Path, datetime], theme: str) -> QwardenApp:
    root, as_of = state
    cfg = Config()
    return QwardenApp(open_engine(root, cfg, as_of=as_of), cfg, theme=theme,
                      root_label="~/work/demo/.orchestrator")


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Until the debounced detail and trace show the task under the cursor, scrolled where
    they go (a loaded machine fires those timers late: a fixed wait made the shots flaky)."""
    from qwarden.tui.widgets.detail_pane import DetailPane
    from qwarden.tui.widgets.trace_pane import TracePane
    from tests.pilot import wait_until

    app = pilot.app
    await app.workers.wait_for_complete()
    await pilot.pause()
    main = app.main_screen
    if app.screen is main:
        trace = main.query_one(TracePane)
        await wait_until(pilot, lambda: trace.task_id
                         == main.query_one(DetailPane).task_id == main.lane_list.current_key)
    await pilot.pause(0.2)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.parametrize("theme", ["qwarden-dark", "qwarden-light"])
@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_main(snap_compare, state, theme: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(state, theme), terminal_size=size, run_before=settle)


def test_contrast_theme(snap_compare, state) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(state, "qwarden-contrast"), terminal_size=(120, 40),
                        run_before=settle)


async def _task_view(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("j", "enter")  # the full task view
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_task_view(snap_compare, state, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(state, "qwarden-dark"), terminal_size=size,
                        run_before=_task_view)


async def _attention(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("exclamation_mark")
    await settle(pilot)


@pytest.mark.parametrize("theme", ["qwarden-dark", "qwarden-light", "qwarden-contrast"])
@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_attention(snap_compare, state, theme: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(state, theme), terminal_size=size, run_before=_attention)


def test_main_no_color(snap_compare, state, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(state, "qwarden-dark"), terminal_size=(80, 24),
                        run_before=_attention)


async def _group_plan(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("4")  # done: its unread_terminal findings, read in one go
    await settle(pilot)
    await pilot.press("asterisk", "m")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_group_plan(snap_compare, state, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(state, "qwarden-dark"), terminal_size=size,
                        run_before=_group_plan)


async def _findings(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("F")
    await pilot.pause()


async def _agents(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("A")
    await pilot.pause()


async def _help(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


@pytest.mark.parametrize("view", ["findings", "agents", "help"])
@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_views(snap_compare, state, view: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    before = {"findings": _findings, "agents": _agents, "help": _help}[view]
    assert snap_compare(make_app(state, "qwarden-dark"), terminal_size=size,
                        run_before=before)


@pytest.mark.parametrize("theme", ["qwarden-light", "qwarden-contrast"])
@pytest.mark.parametrize("view", ["task", "group", "agents"])
def test_new_views_in_every_theme(snap_compare, state, view: str, theme: str) -> None:  # type: ignore[no-untyped-def]
    # (the dark theme's shots of these views are above, at both sizes)
    before = {"task": _task_view, "group": _group_plan, "agents": _agents}[view]
    assert snap_compare(make_app(state, theme), terminal_size=(80, 24), run_before=before)
