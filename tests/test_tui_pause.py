"""The console after pause/resume (issue 8, defect 3).

While paused the engine keeps following the queue and publishes snapshots that nobody sees;
each carries only the ids changed since the one before it. On resume the console got the
newest one and took its ``changed`` as everything changed since the last snapshot it applied:
the lanes kept tasks that had left them (listed twice, in the wrong lane) and a lane's count
and its ordered rows disagreed (``IndexError`` on ``j``). These tests move tasks between lanes
across several unseen snapshots and check every lane against a fresh ordering."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

from qwarden.core.config import Config, LiveOptions
from qwarden.core.formats import open_engine
from qwarden.tui.app import QwardenApp
from qwarden.tui.lanes import LaneIndex
from tests.builders import StateBuilder
from tests.pilot import wait_until


def _move(root: Path, tid: str, src: str, dst: str) -> None:
    q = root / "shared" / "queue"
    os.replace(q / src / f"TASK-{tid}.md", q / dst / f"TASK-{tid}.md")
    with sqlite3.connect(root / "state.db", timeout=30) as conn:
        conn.execute("UPDATE tasks SET queue=?, file_path=? WHERE id=?",
                     (dst, f"shared/queue/{dst}/TASK-{tid}.md", tid))


def _assert_lanes_match_a_fresh_index(app: QwardenApp) -> None:
    main = app.main_screen
    snap = app.engine.snapshot
    assert snap is not None and main.snapshot is snap
    fresh = LaneIndex()
    fresh.update(snap, None)
    assert main.index.lanes == fresh.lanes
    for lane in fresh.lanes:
        ids = main.index.ids(lane)
        assert len(ids) == len(set(ids)), f"{lane} lists a task twice: {ids}"
        assert ids == fresh.ids(lane), lane


async def test_pause_resume_cycles_keep_lanes_right(tmp_path: Path, utc_tz: None) -> None:
    b = StateBuilder(tmp_path, now=datetime.now())
    for i in range(8):
        b.task(f"in{i:06d}", db_queue="incoming", title=f"Incoming {i}")
    for i in range(3):
        b.task(f"dn{i:06d}", db_queue="done", file_queues=("done",), title=f"Done {i}")
    b.build()
    # (no second looks: a look re-publishing the moved tasks after the resume would mend the
    # lanes by chance before they are checked)
    cfg = Config(live=LiveOptions(db_check_interval_s=0.2, debounce_ms=20,
                                  confirm_after_s=0))
    app = QwardenApp(open_engine(b.root, cfg), cfg, root_label="demo", read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.snapshot is not None)
        await wait_until(pilot, app.engine.caught_up.is_set)
        for lane in ("incoming", "done"):  # both lanes opened and ordered
            main.switch_lane(lane)
            main.lane_list.action_cursor_bottom()
        main.switch_lane("incoming")
        moved = 0
        for _cycle in range(2):
            await pilot.press("p")
            assert app.engine.paused
            # two snapshots published while paused, each with its own change
            for _ in range(2):
                _move(b.root, f"in{moved:06d}", "incoming", "done")
                moved += 1
                gen = app.engine.snapshot.generation  # type: ignore[union-attr]
                await app.engine.poll_now()
                assert app.engine.snapshot.generation > gen  # type: ignore[union-attr]
            await pilot.press("p")
            await wait_until(pilot, lambda: main.snapshot is app.engine.snapshot)
            await pilot.pause(0.05)
            _assert_lanes_match_a_fresh_index(app)
            # the key sequence of the report: across lanes, j in each
            for key in ("2", "j", "j", "j", "1", "j", "j", "3", "j", "5", "j", "4", "j",
                        "1", "G", "g"):
                await pilot.press(key)
            assert app.return_code is None and app.is_running
        assert main.index.count("incoming") == 8 - moved
        assert list(main.lane_list.rows) == main.index.ids("incoming")
