"""The console acts on every format through the one intervention interface: RALF's sync from
the console (and its undo, byte-identical), a coordination release, the footer showing only the
format's own actions, ids shown as the format writes them, and findings about the queue and
its agents in the header."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qwarden.core.formats.coordination.generate import generate as coord_generate
from qwarden.core.formats.ralf.demo import generate as ralf_generate
from qwarden.core.timefmt import parse_any
from qwarden.tui.screens.confirm import ConfirmScreen
from tests.pilot import frozen_app, ready, wait_until

REPO = Path(__file__).resolve().parents[1]


def _footer_keys(app) -> set[str]:  # type: ignore[no-untyped-def]
    return {b.binding.key for b in app.screen.active_bindings.values()
            if b.binding.show and b.enabled}


async def test_ralf_console_syncs_the_queue_and_shows_only_its_actions(tmp_path: Path) -> None:
    truth = ralf_generate(60, tmp_path / "r", 3)
    queue = next((tmp_path / "r").rglob("queue.yaml"))
    before = queue.read_bytes()
    app = frozen_app(tmp_path / "r", parse_any(truth["as_of"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        snap = app.main_screen.snapshot
        assert snap is not None
        tid = next(iter(snap.tasks))
        assert tid.startswith("TASK-") and snap.label(tid) == tid  # no TASK-TASK-
        row = app.main_screen.lane_list.render_row(
            app.main_screen.lane_list.current_key or tid, 100).plain
        assert "TASK-TASK-" not in row and (app.main_screen.lane_list.current_key or "") in row
        keys = _footer_keys(app)
        assert "a" not in keys and "r" not in keys  # accept/retry are not RALF's
        # the queue's own findings sit in no lane: the header names them
        header = app.main_screen.query_one("#header").render().plain
        assert "stale_heartbeat" in truth["tasks"]["agent:executor"]
        assert any(f.task_id == "agent:executor" for f in snap.subject_findings)
        assert "agent:executor stale_heartbeat" in header
        await pilot.press("a")  # not an action here: nothing opens
        await pilot.pause()
        assert app.screen is app.main_screen
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: queue.read_bytes() != before)
    undo = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "undo", "--root",
                           str(tmp_path / "r"), "--yes"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert undo.returncode == 0, undo.stderr
    assert queue.read_bytes() == before


async def test_coordination_console_releases_a_dead_workers_task(tmp_path: Path) -> None:
    truth = coord_generate(120, tmp_path / "g", 1)
    zombie = next(t for t, kinds in truth["tasks"].items() if "zombie_claim" in kinds)
    qfile = tmp_path / "g" / "task-queue.json"
    before = qfile.read_bytes()
    app = frozen_app(tmp_path / "g", parse_any(truth["as_of"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        assert app.main_screen.jump(zombie)
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: qfile.read_bytes() != before)
    import json
    entry = next(e for e in json.loads(qfile.read_text()) if isinstance(e, dict)
                 and str(e.get("id")) == zombie)
    assert entry["status"] == "pending" and entry.get("claimed_by") is None


def test_the_auto_fixer_is_refused_on_a_format_it_does_not_know(tmp_path: Path) -> None:
    ralf_generate(20, tmp_path / "r", 1)
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "watch", "--headless",
                           "--root", str(tmp_path / "r"), "--fix", "safe", "--ticks", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1 and "auto-fixer" in proc.stderr and "Traceback" not in proc.stderr


def _taskapi_state(tmp_path: Path) -> tuple[Path, dict]:
    from qwarden.core.formats.taskapi.generate import generate as taskapi_generate

    db = tmp_path / "t" / "tasks.db"
    return db, taskapi_generate(60, db, 5)


async def test_taskapi_console_releases_a_zombie_through_the_api(tmp_path: Path) -> None:
    import sqlite3

    from qwarden.core.config import Config
    from qwarden.core.formats import open_engine
    from qwarden.tui.app import QwardenApp
    from tests.taskapi_server import TaskApiServer

    db, truth = _taskapi_state(tmp_path)
    zombie = next(t for t, kinds in truth["tasks"].items() if "zombie_claim" in kinds)
    cfg = Config()
    with TaskApiServer(db) as srv:
        app = QwardenApp(open_engine(db, cfg, as_of=parse_any(truth["as_of"])), cfg,
                         root_label="t", write_options={"api_url": srv.url})
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(app, pilot)
            assert "r" in _footer_keys(app) and "a" in _footer_keys(app)
            assert app.main_screen.jump(zombie)
            await pilot.press("l")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            body = "\n".join(app.screen.lines)  # type: ignore[attr-defined]
            assert f"POST /api/tasks/{zombie}/unclaim" in body  # the dialog shows the call
            await pilot.press("y")
            await wait_until(pilot, lambda: any(p == f"/api/tasks/{zombie}/unclaim"
                                                for _, p, _ in srv.requests))
        with sqlite3.connect(db) as conn:
            status, agent = conn.execute("SELECT status, assigned_agent FROM tasks WHERE "
                                         "task_id = ?", (zombie,)).fetchone()
    assert (status, agent) == ("pending", None)


async def test_taskapi_console_without_a_write_path_says_read_only(tmp_path: Path) -> None:
    db, truth = _taskapi_state(tmp_path)
    app = frozen_app(db, parse_any(truth["as_of"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        assert app.interventions is None and "--api" in app.no_interventions_reason
        assert "READ-ONLY" in app.main_screen.query_one("#header").render().plain
        assert "r" not in _footer_keys(app)


def test_taskapi_cli_guard_refuses_a_live_claim_without_force(tmp_path: Path) -> None:
    from tests.taskapi_server import TaskApiServer

    db, truth = _taskapi_state(tmp_path)
    pending = next(t for t, kinds in truth["tasks"].items() if not kinds
                   and t.startswith("TASK-PEND-"))
    with TaskApiServer(db) as srv:
        assert srv.act("POST", f"/api/tasks/{pending}/claim",
                       {"agent_name": "zed", "worktree": "wt-zed"})[0] == 200
        cmd = [sys.executable, "-m", "qwarden.core.cli", "release", pending, "--root", str(db),
               "--api", srv.url, "--yes"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert proc.returncode == 1 and "--force" in proc.stderr, proc.stderr
        assert not any(p.endswith("/unclaim") for _, p, _ in srv.requests)


def test_taskapi_log_lists_the_write_paths_journal(tmp_path: Path) -> None:
    from tests.taskapi_server import TaskApiServer

    db, truth = _taskapi_state(tmp_path)
    zombie = next(t for t, kinds in truth["tasks"].items() if "zombie_claim" in kinds)
    with TaskApiServer(db) as srv:
        base = [sys.executable, "-m", "qwarden.core.cli"]
        done = subprocess.run([*base, "release", zombie, "--root", str(db), "--api", srv.url,
                               "--yes"], capture_output=True, text=True, cwd=REPO,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    log = subprocess.run([*base, "log", "--root", str(db)], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert log.returncode == 0, log.stderr
    line = next(ln for ln in log.stdout.splitlines() if "release" in ln)
    assert f" {zombie} " in line and "TASK-TASK-" not in line  # the id as the format has it
