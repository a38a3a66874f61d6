"""Quitting (issue 9, defect 9): keys pressed straight after ``q`` open nothing, and a console
that crashed exits 70, never 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events

from qwarden.tui.app import EXIT_INTERNAL, QwardenApp, exit_status
from qwarden.tui.screens.main import MainScreen
from tests.builders import StateBuilder
from tests.pilot import frozen_app


def _app(tmp_path: Path) -> QwardenApp:
    b = StateBuilder(tmp_path)
    b.task("aaaa0001")
    b.build()
    return frozen_app(b.root, b.now.astimezone())


@pytest.mark.parametrize("key", ["s", "x", "slash", "colon", "F", "A", "a", "question_mark"])
async def test_a_key_straight_after_q_opens_nothing(tmp_path: Path, key: str) -> None:
    app = _app(tmp_path)
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        # both in one burst, as typed: the second arrives while the app is closing
        app.post_message(events.Key("q", "q"))
        app.post_message(events.Key(key, None))
        await pilot.pause(0.2)
    assert app.crash is None
    assert exit_status(app, app.return_value) == 0


async def test_a_crash_exits_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    def broken(self: MainScreen) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(MainScreen, "action_next_lane", broken)
    app = _app(tmp_path)
    with pytest.raises(RuntimeError):
        async with app.run_test() as pilot:
            await app.workers.wait_for_complete()
            await pilot.press("right_square_bracket")
            await pilot.pause()
    assert isinstance(app.crash, RuntimeError)
    assert exit_status(app, app.return_value) == EXIT_INTERNAL == 70


def test_exit_status_of_a_clean_quit() -> None:
    class Closed:
        crash = None
        return_code = 0

    assert exit_status(Closed(), None) == 0  # type: ignore[arg-type]
    assert exit_status(Closed(), 3) == 3  # type: ignore[arg-type]
