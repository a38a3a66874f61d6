"""Interventions from the console, end to end on real files and SQLite: key -> plan shown in a
confirm dialog (focus on Cancel) -> `y` -> the journaled apply; refusals for live work,
read-only mode and unverified completions without the second confirmation."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.core.timefmt import parse_as_of
from qwarden.tui.app import QwardenApp
from qwarden.tui.screens.confirm import ConfirmScreen
from tests.builders import StateBuilder


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def state(tmp_path: Path, now: datetime | None = None) -> StateBuilder:
    b = StateBuilder(tmp_path, now=now)
    sub = [("CLAIMED_BY", "a9"), ("CLAIMED_AT", 3000), ("SUBMITTED_AT", 2000)]
    b.task("aaaa0001", db_queue="provisional", file_queues=("provisional",),
           trail=[*sub, ("COMMITS_COUNT", 3)], db={"commits_count": 3})
    b.task("aaaa0002", db_queue="provisional", file_queues=("provisional",),
           trail=[*sub, ("COMMITS_COUNT", 0)], db={"commits_count": 0})
    b.task("aaaa0003", db_queue="claimed", trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 600)],
           db={"claimed_by": "a1", "claimed_at": 600})
    b.agent("a1", started_age=600, heartbeat_age=10, status=("aaaa0003", 10))
    b.build()
    return b


def db_queue(root: Path, tid: str) -> str:
    conn = sqlite3.connect(root / "state.db")
    try:
        return conn.execute("SELECT queue FROM tasks WHERE id=?", (tid,)).fetchone()[0]
    finally:
        conn.close()


def app_for(b: StateBuilder, read_only: bool = False, live: bool = False) -> QwardenApp:
    """A console as of the builder's time, or (``live``) on the live machine."""
    cfg = Config(read_only=read_only)
    as_of = None if live else parse_as_of(b.now.isoformat())
    return QwardenApp(open_engine(b.root, cfg, as_of=as_of), cfg, root_label="t",
                      read_only=read_only)


async def settle(app: QwardenApp, pilot) -> None:  # type: ignore[no-untyped-def]
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def test_accept_shows_the_plan_and_applies_on_y(tmp_path: Path) -> None:
    b = state(tmp_path)
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0001")
        await pilot.press("a")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.focused is not None and app.screen.focused.id == "confirm-cancel"
        assert any("done" in line for line in app.screen.lines)
        # the view is as of the builder's time: the dialog says the plan is the live queue's
        assert "checked against the live queue" in app.screen.title_text
        await pilot.press("escape")  # cancel: nothing written
        await settle(app, pilot)
        assert db_queue(b.root, "aaaa0001") == "provisional"
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
    assert db_queue(b.root, "aaaa0001") == "done"
    assert (b.root / "shared/queue/done/TASK-aaaa0001.md").exists()
    assert (b.root / "warden" / "journal.db").exists()


async def test_unverified_accept_needs_a_second_confirmation(tmp_path: Path) -> None:
    b = state(tmp_path)
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0002")
        await pilot.press("a")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen) and app.screen.warnings
        await pilot.press("y")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)  # the second, explicit one
        await pilot.press("n")
        await settle(app, pilot)
    assert db_queue(b.root, "aaaa0002") == "provisional"


async def test_live_work_and_read_only_are_refused(tmp_path: Path) -> None:
    b = state(tmp_path, now=datetime.now().replace(microsecond=0))
    app = app_for(b, live=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0003")
        await pilot.press("l")  # release a live claim
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
    assert db_queue(b.root, "aaaa0003") == "claimed"
    ro = app_for(b, read_only=True)
    async with ro.run_test(size=(120, 40)) as pilot:
        await settle(ro, pilot)
        assert ro.main_screen.jump("aaaa0001")
        await pilot.press("a")
        await settle(ro, pilot)
        assert not isinstance(ro.screen, ConfirmScreen)
    assert db_queue(b.root, "aaaa0001") == "provisional"
    assert not (b.root / "warden").exists()


async def test_cancel_asks_for_a_reason_then_moves_to_rejected(tmp_path: Path) -> None:
    b = state(tmp_path)
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0001")
        await pilot.press("x")
        await settle(app, pilot)
        await pilot.press(*"duplicate of aaaa0002", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(app, pilot)
    assert db_queue(b.root, "aaaa0001") == "rejected"
    text = (b.root / "shared/queue/rejected/TASK-aaaa0001.md").read_text()
    assert "CANCEL_REASON: duplicate of aaaa0002" in text


async def test_autofix_runs_after_a_poll_and_can_be_paused(tmp_path: Path) -> None:
    from datetime import datetime

    from qwarden.core.actions.autofix import AutoFixer
    from qwarden.core.config import LiveOptions

    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("0f0f0f01", db_queue=None)  # an orphan: safe mode registers it
    b.build()
    cfg = Config(live=LiveOptions(poll_interval_s=3600))
    fixer = AutoFixer(b.root, cfg, mode="safe")
    app = QwardenApp(open_engine(b.root, cfg), cfg, root_label="t", autofix=fixer)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(40):
            await pilot.pause(0.1)
            if (b.root / "warden" / "metrics.prom").exists():
                break
        await app.workers.wait_for_complete()
        assert app.main_screen.header.autofix == "safe"
        await pilot.press("P")
        assert fixer.paused and app.main_screen.header.autofix == "paused"
    conn = sqlite3.connect(b.root / "state.db", timeout=30)
    try:
        assert conn.execute("SELECT queue FROM tasks WHERE id='0f0f0f01'").fetchone()
    finally:
        conn.close()


async def test_a_failing_verify_command_gates_accept(tmp_path: Path) -> None:
    b = state(tmp_path)
    cfg = Config(actions={"verify": "echo checking {task_id}; exit 3"})
    app = QwardenApp(open_engine(b.root, cfg, as_of=parse_as_of(b.now.isoformat())), cfg,
                     root_label="t")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0001")
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
    assert db_queue(b.root, "aaaa0001") == "provisional"


async def test_a_historical_view_checks_live_work_against_the_live_queue(tmp_path: Path
                                                                       ) -> None:
    # The frozen view (no pid checks, as of the builder's time) sees agent a5 at work on
    # aaaa0001; on the live machine a5's pid is gone. The check that decides is the live one:
    # the accept is planned (and the dialog says against what).
    import json as _json
    import subprocess
    import sys as _sys

    b = state(tmp_path)
    gone = subprocess.Popen([_sys.executable, "-c", "pass"])
    gone.wait()
    d = b.root / "agents" / "a5"
    d.mkdir()
    (d / "state.json").write_text(_json.dumps({"running": True, "pid": gone.pid,
                                               "current_task": "aaaa0001"}))
    (d / "heartbeat").write_text(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0001")
        await pilot.press("a")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "checked against the live queue" in app.screen.title_text


@pytest.mark.parametrize("key,kind", [("r", "retry"), ("s", "split"), ("x", "cancel"),
                                      ("e", "escalate")])
async def test_prompts_show_their_whole_prefix_and_split_its_format(
        tmp_path: Path, key: str, kind: str) -> None:
    from textual.widgets import Input, Label

    from qwarden.tui.screens.prompt import PromptScreen

    b = state(tmp_path)
    app = app_for(b)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.main_screen.jump("aaaa0001")
        await pilot.press(key)
        await settle(app, pilot)
        assert isinstance(app.screen, PromptScreen)
        label = app.screen.query_one("#prompt-prefix", Label)
        prefix = f"{kind} TASK-aaaa0001:"
        assert prefix in "".join(s.text for s in label.render_lines(label.region.reset_offset)[0])
        assert label.region.width >= len(prefix)
        inp = app.screen.query_one(Input)
        assert inp.region.width >= 30  # room left to type
        if kind == "split":
            assert "TITLE | CONTEXT | CRIT" in inp.placeholder
        await pilot.press("escape")


async def test_a_historical_view_syncs_in_the_live_direction(tmp_path: Path) -> None:
    """The sync direction comes from the live judgement, not from the past's findings: here
    the view (frozen before the move) has no mismatch at all, the queue now has one."""
    import os

    b = StateBuilder(tmp_path)
    b.task("cccc0001", db_queue="incoming", file_queues=("incoming",), file_age_s=7200)
    b.build()
    app = app_for(b)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        snap = app.main_screen.snapshot
        assert snap is not None and not snap.findings_for("cccc0001")
        q = b.root / "shared" / "queue"
        os.replace(q / "incoming" / "TASK-cccc0001.md", q / "failed" / "TASK-cccc0001.md")
        assert app.main_screen.jump("cccc0001")
        await pilot.press("f")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen), "planned from the live mismatch"
        assert "checked against the live queue" in app.screen.title_text
        await pilot.press("escape")
