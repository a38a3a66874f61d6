"""The console on a coordination queue: it opens on its lanes, shows a task's trace (entry
times and comms lines), the findings and the workers, without an Octopoid assumption."""

from __future__ import annotations

from pathlib import Path

from qwarden.core.formats.coordination.generate import generate
from qwarden.core.timefmt import parse_any
from tests.pilot import frozen_app, ready


async def test_console_on_a_generated_coordination_queue(tmp_path: Path) -> None:
    truth = generate(300, tmp_path / "g", 1)
    app = frozen_app(tmp_path / "g", parse_any(truth["as_of"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        snap = main.snapshot
        assert snap is not None and snap.source_format == "coordination"
        assert snap.lanes == ("pending", "in_progress", "completed", "failed")
        assert main.lane in snap.lanes
        await pilot.press("enter")  # the task view of the first (worst) task
        await pilot.pause()
        await pilot.press("escape")
        await pilot.press("F")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.press("A")
        await pilot.pause()
        from qwarden.tui.screens.agents import AgentsScreen
        assert isinstance(app.screen, AgentsScreen)
        await pilot.press("escape")
        assert app.screen is app.main_screen


def test_full_task_has_the_merged_trail(tmp_path: Path) -> None:
    from qwarden.core.formats.coordination.source import CoordSource

    truth = generate(300, tmp_path / "g", 1)
    src = CoordSource(tmp_path / "g")
    src.scan()
    lost = next(t for t, k in truth["tasks"].items() if k == ["lost_claim"])
    t = src.full_task(src.task(lost))  # type: ignore[arg-type]
    kinds = [e.kind for e in t.trail]
    assert kinds[0] == "CREATED" and "CLAIMED" in kinds
    stamps = [e.at for e in t.trail if e.at is not None]
    assert stamps == sorted(stamps)  # one trace in time order
    msgs = [e for e in t.trail if e.kind == "MESSAGE"]
    assert any("worker-racer" in (e.actor or "") for e in msgs)  # the rival's claim line
    assert t.files[0].path.startswith("tasks/") and t.files[0].title
    assert src.history(lost)
    agents = src.agents()
    w = agents["worker-racer-1"]
    assert {s.name for s in w.signals} >= {"heartbeat", "last_task_claimed", "comms"}
