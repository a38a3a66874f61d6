"""Acting on groups (issue 12, deliverable 3): rows marked with space, v (a range) and *
(every row passing the filter); one action on all of them plans each task exactly as it would
be planned alone (the dialog lists every task's changes: the sum of the single plans), refuses
what it must with the reason, applies one journal entry per task, and each is undone on its
own. From the findings view, d fixes a kind's whole group."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from qwarden.core.actions.apply import undo
from qwarden.tui.screens.confirm import ConfirmScreen
from qwarden.tui.screens.prompt import PromptScreen
from tests.builders import StateBuilder
from tests.test_tui_interventions import app_for, db_queue, settle

FAILED = ("f0000001", "f0000002", "f0000003", "f0000004")
STAMP = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+(?:[+-]\d\d:\d\d|Z)?")


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def state(tmp_path: Path, now: datetime | None = None) -> StateBuilder:
    b = StateBuilder(tmp_path, now=now)
    for i, tid in enumerate(FAILED):
        b.task(tid, db_queue="failed", file_queues=("failed",), title=f"Failing {i}",
               trail=[("CLAIMED_BY", "a9"), ("CLAIMED_AT", 5000 + i),
                      ("FAILED_AT", 4000 + i)])
    b.task("aaaa0003", db_queue="claimed", trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 600)],
           db={"claimed_by": "a1", "claimed_at": 600})
    b.agent("a1", started_age=600, heartbeat_age=10, status=("aaaa0003", 10))
    b.build()
    return b


def masked(lines: list[str]) -> list[str]:
    return [STAMP.sub("<t>", ln) for ln in lines]


def snapshot_of(root: Path, tid: str) -> tuple[str, bytes]:
    return db_queue(root, tid), (root / "shared/queue/failed" / f"TASK-{tid}.md").read_bytes() \
        if (root / "shared/queue/failed" / f"TASK-{tid}.md").exists() else b""


async def single_plan_lines(app, pilot, tid: str) -> list[str]:  # type: ignore[no-untyped-def]
    assert app.main_screen.go_to_task(tid)
    await pilot.press("r")
    await settle(app, pilot)
    assert isinstance(app.screen, PromptScreen)
    await pilot.press("enter")
    await settle(app, pilot)
    assert isinstance(app.screen, ConfirmScreen)
    lines = list(app.screen.lines)
    await pilot.press("escape")
    await settle(app, pilot)
    return lines


async def test_marked_rows_retry_as_the_sum_of_single_plans_and_undo_each(
        tmp_path: Path) -> None:
    b = state(tmp_path)
    before = {tid: snapshot_of(b.root, tid) for tid in FAILED}
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = app.main_screen
        singles = {tid: await single_plan_lines(app, pilot, tid) for tid in FAILED[:3]}
        # mark three of the four: space on one, then v .. v over two more
        main.switch_lane("failed")
        lst = main.lane_list
        order = list(lst.rows)
        assert sorted(order) == sorted(FAILED)
        wanted = order[:3]
        lst.move_to(0)
        await pilot.press("space")  # marks row 0, the cursor moves down
        assert lst.cursor == 1 and wanted[0] in main.marks
        await pilot.press("v", "j", "v")
        assert [t for t in order if t in main.marks] == wanted
        assert "*" in lst.render_line(0).text[:4]  # a marked row shows it
        assert "3 marked" in str(lst.border_title)
        await pilot.press("r")
        await settle(app, pilot)
        assert isinstance(app.screen, PromptScreen)  # one note for the whole group
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        group_lines = list(app.screen.lines)
        expected = [ln for tid in wanted for ln in singles[tid]]
        assert masked(group_lines) == masked(expected)
        await pilot.press("y")
        await settle(app, pilot)
        assert not main.marks  # applied: the marks are cleared
    for tid in wanted:
        assert db_queue(b.root, tid) == "incoming"
    assert db_queue(b.root, order[3]) == "failed"  # not marked, not touched
    conn = sqlite3.connect(b.root / "warden" / "journal.db")
    try:
        rows = conn.execute("SELECT id, task_id FROM actions ORDER BY id").fetchall()
    finally:
        conn.close()
    assert sorted(t for _, t in rows) == sorted(wanted)  # one journal entry per task
    for action_id, tid in rows:  # each undone on its own
        undo(b.root, action_id)
        assert snapshot_of(b.root, tid) == before[tid]
    for tid in FAILED:
        assert snapshot_of(b.root, tid) == before[tid]


async def test_mark_all_refuses_live_work_and_says_why(tmp_path: Path) -> None:
    b = state(tmp_path, now=datetime.now().replace(microsecond=0))
    app = app_for(b, live=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = app.main_screen
        main.switch_lane("claimed")
        await pilot.press("asterisk")
        assert "aaaa0003" in main.marks
        main.switch_lane("failed")
        await pilot.press("asterisk")
        assert all(t in main.marks for t in FAILED) and main.marks.count() == 5
        await pilot.press("l")  # release: the failed ones have no claim, the live one is live
        await settle(app, pilot)
        lines = list(app.screen.lines) if isinstance(app.screen, ConfirmScreen) else []
        notes = [n.message for n in app._notifications]
        text = "\n".join(lines + notes)
        assert "aaaa0003" in text and "worked on" in text
        if isinstance(app.screen, ConfirmScreen):
            await pilot.press("escape")
        await pilot.press("escape")  # esc clears the marks
        assert not main.marks
    assert db_queue(b.root, "aaaa0003") == "claimed"


async def test_fix_this_group_from_the_findings_view(tmp_path: Path) -> None:
    from qwarden.tui.screens.findings import FindingsScreen
    from qwarden.tui.widgets.findings_list import FindingsList

    b = StateBuilder(tmp_path)
    for i in range(3):
        b.task(f"0f0f0f0{i}", db_queue=None, title=f"Orphan {i}")  # register fixes these
    b.task("aaaa0001", db_queue="incoming")
    b.build()
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("F")
        assert isinstance(app.screen, FindingsScreen)
        fl = app.screen.query_one(FindingsList)
        head = next(i for i, k in enumerate(fl.rows) if k == "h:orphan_file")
        fl.move_to(head)
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert sum(ln.startswith("register TASK-") for ln in app.screen.lines) == 3
        await pilot.press("y")
        await settle(app, pilot)
    conn = sqlite3.connect(b.root / "state.db")
    try:
        ids = {r[0] for r in conn.execute("SELECT id FROM tasks")}
    finally:
        conn.close()
    assert {f"0f0f0f0{i}" for i in range(3)} <= ids
