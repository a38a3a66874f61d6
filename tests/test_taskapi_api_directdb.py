"""taskapi ``--direct-db``: the API's calls as SQL on a copy of the real sample DB, with the
same column effects as the API (checked against the test server), journaled, undone row for
row (the DB's dump byte-identical), and safe across a SIGKILL at every step."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qwarden.core.actions.interface import ActionRequest, Refused, StalePlan, SubtaskSpec
from qwarden.core.actions.journal import Journal
from qwarden.core.config import Config
from qwarden.core.formats.taskapi import directdb
from qwarden.core.formats.taskapi.actions import (
    TaskApiPlan,
    journal_root,
    open_interventions,
)
from tests.taskapi_sample import sample_db, task_rows
from tests.taskapi_server import TaskApiServer

REPO = Path(__file__).resolve().parents[1]

SUBS = (SubtaskSpec.parse("schema | the tables | migrations run"), SubtaskSpec.parse("backfill"))
CASES = [("release", "TEST-001", "", ()), ("retry", "TASK-FEAT-007", "decided", ()),
         ("retry", "TASK-UI-001", "again", ()), ("accept", "TASK-UI-001", "", ()),
         ("cancel", "TASK-DB-004", "obsolete", ()), ("note", "TEST-001", "hi", ()),
         ("split", "TASK-DB-004", "big", SUBS)]


def copy(tmp: Path, name: str = "app") -> Path:
    dst = tmp / name / "comic_pile.db"
    dst.parent.mkdir(parents=True)
    sample_db(dst)
    dst.chmod(0o644)
    return dst


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


rows = task_rows


def typed(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(tasks)")]
        sel = ", ".join(f"typeof({c}), quote({c})" for c in cols)
        return conn.execute(f"SELECT {sel} FROM tasks ORDER BY id").fetchall()
    finally:
        conn.close()


TS = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?")


def masked(r: dict[str, Any]) -> dict[str, Any]:
    """A row with the times of now blanked (the two paths run at different instants)."""
    out = {}
    for k, v in r.items():
        if k in ("id", "updated_at", "created_at"):
            continue
        out[k] = TS.sub("<t>", v) if isinstance(v, str) else v
    return out


def direct(db: Path, **cfg: Any):
    return open_interventions(db, Config.model_validate({"taskapi": cfg}), {"direct_db": True})


def req(kind: str, tid: str, note: str = "", subtasks: tuple[SubtaskSpec, ...] = ()
        ) -> ActionRequest:
    # force: the sample's in_review task has no worktree, an accept of it is confirmed twice
    return ActionRequest(kind=kind, task_id=tid, actor="op", note=note, subtasks=subtasks,
                         force=kind == "accept")


@pytest.mark.parametrize(("kind", "tid", "note", "subs"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_direct_db_has_the_apis_effects_and_undo_is_byte_identical(
        tmp_path: Path, kind: str, tid: str, note: str, subs: tuple[SubtaskSpec, ...]) -> None:
    via_api, via_db = copy(tmp_path, "api"), copy(tmp_path, "db")
    with TaskApiServer(via_api) as srv:
        iv = open_interventions(via_api, Config.model_validate({"taskapi": {"api_url": srv.url}}),
                                {})
        iv.apply(iv.plan(req(kind, tid, note, subs)))
    before_dump, before_typed = dump(via_db), typed(via_db)
    dv = direct(via_db)
    p = dv.plan(req(kind, tid, note, subs))
    assert p.via == "db" and p.undoable
    assert any(line.startswith("  db tasks") for line in p.describe())
    assert TaskApiPlan.from_json(json.loads(json.dumps(p.to_json()))) == p
    done = dv.apply(p)
    api_rows, db_rows = rows(via_api), rows(via_db)
    assert set(api_rows) == set(db_rows)
    for t in api_rows:
        assert masked(db_rows[t]) == masked(api_rows[t]), t
        # times in the API's own shapes: naive UTC in the columns
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?", db_rows[t]["updated_at"])
    assert dump(via_db) != before_dump
    u = dv.undo(done.action_id, actor="op")
    assert "as they were" in u.summary
    assert dump(via_db) == before_dump
    assert typed(via_db) == before_typed
    with Journal(journal_root(via_db)) as j:
        a = j.get(int(done.action_id))
        assert a is not None and a.state == "undone"
        assert j.row_backups(int(done.action_id))[f"tasks:{tid}"] is not None


def test_direct_db_plan_is_stale_when_the_row_moved(tmp_path: Path) -> None:
    db = copy(tmp_path)
    dv = direct(db)
    p = dv.plan(req("release", "TEST-001"))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET last_heartbeat = '2026-11-22 22:39:00.000000' "
                 "WHERE task_id = 'TEST-001'")
    conn.commit()
    conn.close()
    snap = dump(db)
    with pytest.raises(StalePlan, match="changed since the plan"):
        dv.apply(p)
    assert dump(db) == snap


def test_direct_db_undo_refused_when_the_rows_moved(tmp_path: Path) -> None:
    db = copy(tmp_path)
    dv = direct(db)
    done = dv.apply(dv.plan(req("release", "TEST-001")))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET assigned_agent = 'Zed' WHERE task_id = 'TEST-001'")
    conn.commit()
    conn.close()
    snap = dump(db)
    with pytest.raises(Refused, match=r"cannot undo .*assigned_agent changed"):
        dv.undo(done.action_id)
    assert dump(db) == snap
    with Journal(journal_root(db)) as j:
        assert j.get(int(done.action_id)).state == "done"  # type: ignore[union-attr]


def test_direct_db_refusals(tmp_path: Path) -> None:
    db = copy(tmp_path)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cfg = Config.model_validate({"taskapi": {"journal_dir": str(tmp_path / "j"),
                                             "timeout_s": 2}})
    pg = open_interventions(f"postgresql://u:sekret@127.0.0.1:{port}/x", cfg,
                            {"direct_db": True})
    with pytest.raises(Refused, match="cannot open the tasks table") as e:
        pg.plan(req("release", "TEST-001"))
    assert "sekret" not in str(e.value) and ":***@" in str(e.value)
    with pytest.raises(Refused, match="no such DB file"):
        open_interventions(tmp_path / "none.db", Config(), {"direct_db": True})
    dv = direct(db)
    with pytest.raises(Refused, match="not in_progress"):
        dv.plan(req("release", "TASK-FEAT-001"))
    api_plan = TaskApiPlan(kind="note", task_id="TEST-001", actor="op", summary="",
                           calls=(), made_from={})
    with pytest.raises(Refused, match="plan again"):
        dv.apply(api_plan)


def test_journal_lives_beside_the_db(tmp_path: Path) -> None:
    db = copy(tmp_path)
    dv = direct(db)
    dv.apply(dv.plan(req("note", "TEST-001", "x")))
    assert (db.parent / "comic_pile.db.qwarden" / "warden" / "journal.db").is_file()
    assert journal_root(db) == db.parent / "comic_pile.db.qwarden"
    cfg = Config.model_validate({"taskapi": {"journal_dir": str(tmp_path / "j")}})
    assert journal_root("postgresql://u:pw@db.example:6543/tasks", cfg) == tmp_path / "j"
    assert journal_root("postgresql://u:pw@db.example:6543/tasks").name == \
        "db.example-6543-tasks"


# ------------------------------------------------------------------ crash safety

RUNNER = """
import json, sys
from pathlib import Path
from qwarden.core.config import Config
from qwarden.core.formats.taskapi.actions import TaskApiPlan, open_interventions
iv = open_interventions(Path(sys.argv[1]), Config(), {"direct_db": True})
if sys.argv[2] == "undo":
    iv.undo(int(sys.argv[3]))
else:
    iv.apply(TaskApiPlan.from_json(json.loads(Path(sys.argv[2]).read_text())))
"""
STEPS = [("db:intent", "before"), ("db:rows", "before"), ("db:commit", "after"),
         ("db:done", "after")]
RECOVERED = {"db:intent": ["rolled_back"], "db:rows": ["rolled_back"], "db:commit": ["done"],
             "db:done": []}


def _run(db: Path, step: str, *argv: str) -> int:
    env = dict(os.environ, QWARDEN_CRASH_AT=step, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", RUNNER, str(db), *argv], env=env,
                          capture_output=True, timeout=60).returncode


@pytest.mark.parametrize(("step", "want"), STEPS)
def test_a_killed_direct_db_apply_recovers(tmp_path: Path, step: str, want: str) -> None:
    ref, db = copy(tmp_path, "ref"), copy(tmp_path, "crash")
    plan = direct(db).plan(req("split", "TASK-DB-004", "big", SUBS))
    pf = tmp_path / "plan.json"
    pf.write_text(json.dumps(plan.to_json()))
    before = dump(db)
    assert _run(db, step, str(pf)) == -9
    outcome = direct(db).recover()
    assert [o for _, o in outcome] == RECOVERED[step]
    direct(ref).apply(plan)
    if want == "before":
        assert dump(db) == before
    else:
        assert [masked(r) for r in rows(db).values()] == \
            [masked(r) for r in rows(ref).values()]
    with Journal(journal_root(db)) as j:
        assert not j.unfinished()
    # and the journal still undoes a recovered-done action, byte-identically
    if want == "after":
        direct(db).undo()
        assert dump(db) == before


def test_a_killed_direct_db_undo_recovers(tmp_path: Path) -> None:
    db = copy(tmp_path)
    before = dump(db)
    done = direct(db).apply(direct(db).plan(req("retry", "TASK-FEAT-007", "x")))
    after = dump(db)
    assert _run(db, "db:rows", "undo", str(done.action_id)) == -9
    direct(db).recover()
    assert dump(db) == after  # rolled back: still the action's state
    assert _run(db, "db:commit", "undo", str(done.action_id)) == -9
    direct(db).recover()
    assert dump(db) == before
    with Journal(journal_root(db)) as j:
        assert j.get(int(done.action_id)).state == "undone"  # type: ignore[union-attr]


def test_directdb_values_keep_their_types() -> None:
    r = {"a": 1, "b": 1.0, "c": "1", "d": b"\x00\xff", "e": None}
    assert directdb.dec_row(json.loads(json.dumps(directdb.enc_row(r)))) == r
    assert not directdb.same({"a": 1}, {"a": 1.0})
    assert not directdb.same({"a": 1}, {"a": "1"})


def test_a_locked_db_or_unwritable_journal_is_a_refusal(tmp_path: Path) -> None:
    db = copy(tmp_path)
    dv = open_interventions(db, Config.model_validate({"limits": {"db_busy_timeout_ms": 0}}),
                            {"direct_db": True})  # waits 1 s at least
    p = dv.plan(req("release", "TEST-001"))
    worker = sqlite3.connect(db, isolation_level=None)
    worker.execute("BEGIN IMMEDIATE")  # a worker holds the write lock (reads still go)
    try:
        with pytest.raises(Refused, match="database is locked"):
            dv.apply(p)
    finally:
        worker.execute("ROLLBACK")
        worker.close()
    assert rows(db)["TEST-001"]["assigned_agent"] == "Charlie"
    dv.apply(dv.plan(req("release", "TEST-001")))  # the journal is settled, a new plan goes
    assert rows(db)["TEST-001"]["assigned_agent"] is None
    with Journal(journal_root(db)) as j:
        assert [a.state for a in reversed(j.recent(5))] == ["rolled_back", "done"]
    if os.geteuid() != 0:  # root writes through permissions
        jr = journal_root(db)
        (jr / "warden").chmod(0o500)
        try:
            with pytest.raises(Refused):
                dv.apply(dv.plan(req("note", "TEST-001", "x")))
        finally:
            (jr / "warden").chmod(0o755)
