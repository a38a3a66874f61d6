"""The taskapi write path through the lead's ``qwarden ACTION`` for interface formats
(``core.actions.cli.run_through_interface``): the options it hands over (``--api``,
``--direct-db``, ``--read-only``), recover first, the plan shown, apply, undo."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from qwarden.core.actions.cli import EXIT_REFUSED, run_through_interface
from qwarden.core.config import Config
from qwarden.core.formats.taskapi.actions import open_interventions
from qwarden.core.sources.base import FormatInfo
from tests.taskapi_sample import sample_db
from tests.taskapi_server import TaskApiServer

INFO = FormatInfo(name="taskapi", detect=lambda _root: False,
                  open=lambda *a: None,  # type: ignore[arg-type,return-value]
                  interventions=open_interventions)


def args(command: str, task_id: str | None = None, **kw: Any) -> argparse.Namespace:
    base = {"command": command, "task_id": task_id, "note": "", "force": True, "subtask": [],
            "dry_run": False, "yes": True, "api": None, "direct_db": False,
            "read_only": False, "action_id": None}
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    dst = tmp_path / "comic_pile.db"
    sample_db(dst)
    dst.chmod(0o644)
    return dst


def test_release_and_undo_through_the_cli(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with TaskApiServer(db) as srv:
        assert run_through_interface(INFO, db, Config(), args("release", "TEST-001",
                                                              api=srv.url)) == 0
        out = capsys.readouterr().out
        assert '  POST /api/tasks/TEST-001/unclaim {"agent_name": "admin"}' in out
        assert "`qwarden undo 1` reverses it" in out
        assert run_through_interface(INFO, db, Config(), args("undo", action_id=1,
                                                              api=srv.url)) == 0
        assert "undid action 1 (release) TEST-001 through the API" in capsys.readouterr().out
        assert [p for _, p, _ in srv.posts()] == ["/api/tasks/TEST-001/unclaim",
                                                  "/api/tasks/TEST-001/claim"]


def test_the_cli_says_read_only_and_refusals(db: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    assert run_through_interface(INFO, db, Config(), args("release", "TEST-001")) == \
        EXIT_REFUSED
    err = capsys.readouterr().err
    assert "taskapi is read-only here: give --api URL or [taskapi] api_url (or --direct-db)" \
        in err
    with TaskApiServer(db) as srv:
        cfg = Config.model_validate({"taskapi": {"admin_name": "root"}})
        rc = run_through_interface(INFO, db, cfg, args("release", "TEST-001", api=srv.url))
        err = capsys.readouterr().err
        assert rc == EXIT_REFUSED
        assert "403 Task not assigned to root. Assigned to Charlie" in err
        assert len(srv.posts()) == 1
        # forced (the guard, which needs the read side, is skipped): the warning is shown
        rc = run_through_interface(INFO, db, Config(), args("accept", "TASK-UI-001",
                                                            api=srv.url))
        out = capsys.readouterr().out
        assert rc == 0 and "  ! accepted WITHOUT verification" in out
        assert "it cannot be undone" in out


def test_direct_db_through_the_cli(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = db.read_bytes()
    assert run_through_interface(INFO, db, Config(), args("retry", "TASK-FEAT-007",
                                                          note="go", direct_db=True)) == 0
    assert "db tasks[TASK-FEAT-007].status: 'blocked' -> 'pending'" in capsys.readouterr().out
    assert run_through_interface(INFO, db, Config(), args("undo", direct_db=True)) == 0
    import sqlite3

    def dump(path: Path) -> list[str]:
        conn = sqlite3.connect(path)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()

    ref = db.with_name("ref.db")
    ref.write_bytes(before)
    assert dump(db) == dump(ref)
