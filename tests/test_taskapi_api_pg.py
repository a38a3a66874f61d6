"""taskapi ``--direct-db`` on PostgreSQL (asyncpg): a throwaway cluster on loopback (initdb +
pg_ctl in a temp dir, stopped at the end), the sample's rows in comic-pile's tasks table with
PostgreSQL types; the same effects as on SQLite, undo restoring every row exactly, a stale plan
refused, a killed apply recovered."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qwarden.core.actions.interface import ActionRequest, Refused, StalePlan, SubtaskSpec
from qwarden.core.config import Config
from qwarden.core.formats.taskapi.actions import open_interventions
from tests.taskapi_sample import sample_db

REPO = Path(__file__).resolve().parents[1]
asyncpg = pytest.importorskip("asyncpg")



SCHEMA = """
CREATE TABLE tasks (
    id SERIAL PRIMARY KEY, task_id VARCHAR(50) NOT NULL UNIQUE, title VARCHAR(255) NOT NULL,
    priority VARCHAR(20) NOT NULL, status VARCHAR(50) NOT NULL, dependencies VARCHAR(500),
    assigned_agent VARCHAR(100), worktree VARCHAR(255), status_notes TEXT,
    estimated_effort VARCHAR(50) NOT NULL, completed BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, blocked_reason TEXT,
    blocked_by VARCHAR(50), last_heartbeat TIMESTAMPTZ, instructions TEXT, description TEXT);
CREATE INDEX ix_tasks_status ON tasks (status);
"""
TIMES = ("created_at", "updated_at", "last_heartbeat")


def _sample_rows() -> list[dict[str, Any]]:
    sample = sample_db(Path(tempfile.mkdtemp(prefix="qwarden-pg-rows-")) / "comic_pile.db")
    conn = sqlite3.connect(f"file:{sample}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute("SELECT * FROM tasks ORDER BY id")]
    finally:
        conn.close()
    for r in rows:
        r["completed"] = bool(r["completed"])
        for k in TIMES:
            if r[k] is not None:
                r[k] = datetime.fromisoformat(r[k]).replace(tzinfo=UTC)
    return rows


async def _load(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        for r in _sample_rows():
            cols = list(r)
            await conn.execute(
                f"INSERT INTO tasks ({', '.join(cols)}) VALUES "
                f"({', '.join(f'${i + 1}' for i in range(len(cols)))})", *r.values())
        await conn.execute("SELECT setval(pg_get_serial_sequence('tasks', 'id'), "
                           "(SELECT MAX(id) FROM tasks))")
    finally:
        await conn.close()




@pytest.fixture
def pgdb(pg_db: str) -> str:
    """A new database of the session's throwaway cluster (tests/pgcluster.py) holding the
    sample's rows in comic-pile's PostgreSQL schema."""
    asyncio.run(_load(pg_db))
    return pg_db


def _q(dsn: str, sql: str, *args: Any) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def table_text(dsn: str) -> list[str]:
    """Every row as PostgreSQL renders it (types included), by id."""
    return [r[0] for r in _q(dsn, "SELECT t::text FROM tasks t ORDER BY id")]


def rows(dsn: str) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: dict(r) for r in _q(dsn, "SELECT * FROM tasks")}


def pg_direct(dsn: str, tmp_path: Path):
    cfg = Config.model_validate({"taskapi": {"journal_dir": str(tmp_path / "journal")}})
    return open_interventions(dsn, cfg, {"direct_db": True})


def sqlite_direct(tmp_path: Path):
    db = tmp_path / "lite" / "comic_pile.db"
    db.parent.mkdir()
    sample_db(db)
    db.chmod(0o644)
    return db, open_interventions(db, Config(), {"direct_db": True})


def req(kind: str, tid: str, note: str = "", subtasks: tuple[SubtaskSpec, ...] = ()
        ) -> ActionRequest:
    # force: the sample's in_review task has no worktree, an accept of it is confirmed twice
    return ActionRequest(kind=kind, task_id=tid, actor="op", note=note, subtasks=subtasks,
                         force=kind == "accept")


def _norm(r: dict[str, Any]) -> dict[str, Any]:
    """A row comparable across the two DBs: times and ids aside, booleans as 0/1."""
    import re

    ts = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?")
    out = {}
    for k, v in r.items():
        if k in ("id", *TIMES):
            out[k] = None if v is None else "<t>"
            continue
        if isinstance(v, bool):
            v = int(v)
        out[k] = ts.sub("<t>", v) if isinstance(v, str) else v
    return out


SUBS = (SubtaskSpec.parse("schema | the tables | migrations run"), SubtaskSpec.parse("backfill"))
CASES = [("release", "TEST-001", "", ()), ("retry", "TASK-FEAT-007", "decided", ()),
         ("accept", "TASK-UI-001", "", ()), ("cancel", "TASK-DB-004", "obsolete", ()),
         ("note", "TEST-001", "hi", ()), ("split", "TASK-DB-004", "big", SUBS)]


@pytest.mark.parametrize(("kind", "tid", "note", "subs"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_pg_direct_writes_match_sqlite_and_undo_restores_every_row(
        pgdb: str, tmp_path: Path, kind: str, tid: str, note: str,
        subs: tuple[SubtaskSpec, ...]) -> None:
    lite, lv = sqlite_direct(tmp_path)
    lv.apply(lv.plan(req(kind, tid, note, subs)))
    conn = sqlite3.connect(lite)
    conn.row_factory = sqlite3.Row
    want = {r["task_id"]: _norm(dict(r)) for r in conn.execute("SELECT * FROM tasks")}
    conn.close()
    before = table_text(pgdb)
    pv = pg_direct(pgdb, tmp_path)
    p = pv.plan(req(kind, tid, note, subs))
    assert p.via == "db" and any(line.startswith("  db tasks") for line in p.describe())
    done = pv.apply(p)
    got = {k: _norm(v) for k, v in rows(pgdb).items()}
    assert got == want
    assert table_text(pgdb) != before
    pv.undo(done.action_id)
    assert table_text(pgdb) == before


def test_pg_plan_is_stale_when_a_worker_moved(pgdb: str, tmp_path: Path) -> None:
    pv = pg_direct(pgdb, tmp_path)
    p = pv.plan(req("release", "TEST-001"))
    _q(pgdb, "UPDATE tasks SET last_heartbeat = now() WHERE task_id = 'TEST-001'")
    snap = table_text(pgdb)
    with pytest.raises(StalePlan, match="changed since the plan"):
        pv.apply(p)
    assert table_text(pgdb) == snap


def test_pg_undo_refused_when_rows_moved(pgdb: str, tmp_path: Path) -> None:
    pv = pg_direct(pgdb, tmp_path)
    done = pv.apply(pv.plan(req("retry", "TASK-FEAT-007", "x")))
    _q(pgdb, "UPDATE tasks SET assigned_agent = 'Zed' WHERE task_id = 'TASK-FEAT-007'")
    snap = table_text(pgdb)
    with pytest.raises(Refused, match="cannot undo"):
        pv.undo(done.action_id)
    assert table_text(pgdb) == snap


def test_pg_split_ids_come_from_the_sequence(pgdb: str, tmp_path: Path) -> None:
    pv = pg_direct(pgdb, tmp_path)
    pv.apply(pv.plan(req("split", "TASK-DB-004", "", SUBS)))
    # the table's own inserts (the API's) still get fresh ids after qwarden's
    _q(pgdb, "INSERT INTO tasks (task_id, title, priority, status, estimated_effort, "
             "completed, created_at, updated_at) VALUES ('NEW', 'n', 'LOW', 'pending', '1h', "
             "false, now(), now())")
    ids = [r["id"] for r in _q(pgdb, "SELECT id FROM tasks ORDER BY id")]
    assert len(ids) == len(set(ids)) == 9


RUNNER = """
import json, sys
from pathlib import Path
from qwarden.core.config import Config
from qwarden.core.formats.taskapi.actions import TaskApiPlan, open_interventions
cfg = Config.model_validate({"taskapi": {"journal_dir": sys.argv[3]}})
iv = open_interventions(sys.argv[1], cfg, {"direct_db": True})
iv.apply(TaskApiPlan.from_json(json.loads(Path(sys.argv[2]).read_text())))
"""


@pytest.mark.parametrize(("step", "outcome"), [("db:rows", "rolled_back"),
                                               ("db:commit", "done")])
def test_a_killed_pg_apply_recovers(pgdb: str, tmp_path: Path, step: str,
                                    outcome: str) -> None:
    pv = pg_direct(pgdb, tmp_path)
    plan = pv.plan(req("retry", "TASK-FEAT-007", "x"))
    pf = tmp_path / "plan.json"
    pf.write_text(json.dumps(plan.to_json()))
    before = table_text(pgdb)
    env = dict(os.environ, QWARDEN_CRASH_AT=step, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", RUNNER, pgdb, str(pf),
                           str(tmp_path / "journal")], env=env, capture_output=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert [o for _, o in pv.recover()] == [outcome]
    r = rows(pgdb)["TASK-FEAT-007"]
    if outcome == "done":
        assert (r["status"], r["assigned_agent"]) == ("pending", None)
        pv.undo()
    assert table_text(pgdb) == before


def test_a_killed_backend_is_a_refusal_and_the_journal_settles(pgdb: str,
                                                               tmp_path: Path) -> None:
    from qwarden.core.formats.taskapi import directdb

    t = directdb.PgTasks(pgdb)
    try:
        pid = t._run(lambda: t.conn.fetchval("SELECT pg_backend_pid()"))
        _q(pgdb, "SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(directdb.PgError):
            t.read_row("TEST-001")
    finally:
        t.close()
    # through the interventions: a refusal with a sentence, nothing half-written
    pv = pg_direct(pgdb, tmp_path)
    p = pv.plan(req("release", "TEST-001"))
    real_begin = directdb.PgTasks.begin

    def begin_then_die(self: Any) -> None:
        real_begin(self)
        pid = self._run(lambda: self.conn.fetchval("SELECT pg_backend_pid()"))
        _q(pgdb, "SELECT pg_terminate_backend($1)", pid)

    before = table_text(pgdb)
    directdb.PgTasks.begin = begin_then_die  # type: ignore[method-assign]
    try:
        with pytest.raises(Refused, match="the write failed"):
            pv.apply(p)
    finally:
        directdb.PgTasks.begin = real_begin  # type: ignore[method-assign]
    assert table_text(pgdb) == before
    # the dead connection could not tell: the entry waits, and a new one settles it
    assert [o for _, o in pv.recover()] == ["rolled_back"]
    pv.apply(pv.plan(req("release", "TEST-001")))
    assert rows(pgdb)["TEST-001"]["assigned_agent"] is None


def test_pg_split_on_a_table_without_a_sequence(pgdb: str, tmp_path: Path) -> None:
    """``id integer PRIMARY KEY`` with no default (how a loaded copy may have it): the ids of
    new rows follow the highest, and undo deletes them again."""
    _q(pgdb, "ALTER TABLE tasks ALTER COLUMN id DROP DEFAULT")
    _q(pgdb, "DROP SEQUENCE tasks_id_seq")
    before = table_text(pgdb)
    pv = pg_direct(pgdb, tmp_path)
    done = pv.apply(pv.plan(req("split", "TASK-DB-004", "", SUBS)))
    assert sorted(r["id"] for r in rows(pgdb).values())[-2:] == [7, 8]
    pv.undo(done.action_id)
    assert table_text(pgdb) == before
