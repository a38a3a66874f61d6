"""Triage first (issue 12, deliverable 1): lane tabs carry each lane's worst severity and how
many tasks have it; the console opens on the worst lane; ``!`` shows every task that needs
attention across lanes, worst first; ``n``/``N`` go to the next/previous critical across all
lanes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from qwarden.core.model import Severity
from qwarden.tui.app import QwardenApp
from qwarden.tui.lanes import ATTENTION, sort_key, worst_rank
from qwarden.tui.widgets.lane_tabs import LaneTabs
from tests.builders import generated_utc_state
from tests.pilot import frozen_app, ready


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "triage", 400, seed=5)



async def test_tabs_carry_the_worst_severity_and_its_count(
        generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(200, 40)) as pilot:
        await ready(app, pilot)
        snap = app.engine.snapshot
        assert snap is not None
        tabs = {t.name: t for t in app.main_screen.query_one(LaneTabs).tabs}
        for lane in app.main_screen.index.lanes:
            ids = [t for t, v in snap.verdicts.items() if v.effective_state == lane]
            crit = sum(worst_rank(snap, t) == 2 for t in ids)
            warn = sum(worst_rank(snap, t) == 1 for t in ids)
            tab = tabs[lane]
            if crit:
                assert (tab.worst, tab.worst_count) == (Severity.CRITICAL, crit), lane
            elif warn:
                assert (tab.worst, tab.worst_count) == (Severity.WARNING, warn), lane
            else:
                assert tab.worst is None, lane
        text = app.main_screen.query_one(LaneTabs).render().plain
        worst = next(t for t in tabs.values() if t.worst is Severity.CRITICAL
                     and t.name != ATTENTION)
        assert f"{worst.name}[{worst.count}]!!{worst.worst_count}" in text


async def test_attention_view_lists_every_lanes_problems_worst_first(
        generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        snap = app.engine.snapshot
        assert snap is not None
        await pilot.press("exclamation_mark")
        main = app.main_screen
        assert main.lane == ATTENTION
        rows = list(main.lane_list.rows)
        want = sorted((t for t in snap.tasks if worst_rank(snap, t) >= 1),
                      key=lambda t: sort_key(snap, t))
        assert rows == want
        assert len({snap.verdicts[t].effective_state for t in rows}) >= 3  # across lanes
        assert "attention[" in str(main.lane_list.border_title)
        # enter on a row opens its task; j works as anywhere (the cursor stays on the task
        # it was on when that task is in the view)
        at = main.lane_list.cursor
        await pilot.press("j", "enter")
        await pilot.pause()
        from qwarden.tui.screens.task import TaskScreen
        assert isinstance(app.screen, TaskScreen) and app.screen.task_id == rows[at + 1]


async def test_n_and_N_walk_every_critical_across_lanes(
        generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        snap = app.engine.snapshot
        assert snap is not None
        main = app.main_screen
        crit = set(snap.tasks_with(Severity.CRITICAL))
        assert len({snap.verdicts[t].effective_state for t in crit}) >= 2
        main.switch_lane(main.index.lanes[0])
        main.lane_list.move_to(0)
        seen: list[str] = []
        for _ in range(len(crit)):
            await pilot.press("n")
            key = main.lane_list.current_key
            assert key in crit, key
            seen.append(key)  # type: ignore[arg-type]
        assert set(seen) == crit and len(seen) == len(crit)  # each once
        await pilot.press("n")  # round to the first again
        assert main.lane_list.current_key == seen[0]
        await pilot.press("N")
        assert main.lane_list.current_key == seen[-1]


async def test_bell_rings_on_a_new_critical_only(tmp_path: Path, utc_tz: None) -> None:
    import sqlite3

    from qwarden.core.config import Config, LiveOptions
    from qwarden.core.formats import open_engine
    from tests.builders import StateBuilder
    from tests.pilot import wait_until

    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("aaaa0001", db_queue="incoming")
    b.task("aaaa0002", db_queue="incoming")
    b.build()
    cfg = Config(live=LiveOptions(db_check_interval_s=0.2, debounce_ms=20))
    app = QwardenApp(open_engine(b.root, cfg), cfg, root_label="demo", bell=True)
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.snapshot is not None)
        await wait_until(pilot, app.engine.caught_up.is_set)
        assert rings == []  # what is there at start is no news
        # a DB row whose file is gone: missing_file, critical
        (b.root / "shared/queue/incoming/TASK-aaaa0002.md").unlink()
        with sqlite3.connect(b.root / "state.db", timeout=30) as conn:
            conn.execute("UPDATE tasks SET updated_at=? WHERE id='aaaa0002'",
                         (datetime.now().isoformat(),))
        await wait_until(pilot, lambda: rings, timeout=15)
        assert len(rings) == 1
        snap = main.snapshot
        assert snap is not None and any(
            f.kind == "missing_file" for f in snap.findings_for("aaaa0002"))
        await app.engine.poll_now()  # the same critical again: no second ring
        await pilot.pause(0.3)
        assert len(rings) == 1
