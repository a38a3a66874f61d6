"""The task API's semantics on hand-made rows (the claim, the heartbeat after it, the notes of
another agent's claim, completed on pending work, failure groups), its thresholds from the
config, and bad input: a clear error or a finding, never a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from qwarden.core.config import Config, TaskApiOptions
from qwarden.core.formats import detect, judge_once, kinds_by_subject
from qwarden.core.formats.taskapi.generate import AS_OF, SCHEMA, db_time, note_time
from qwarden.core.formats.taskapi.layout import redact
from tests.taskapi_util import judged, tree

M = timedelta(minutes=1)


def make_db(path: Path, rows: list[dict], checks: bool = False) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.format(checks=", check_results TEXT" if checks else ""))
    for i, r in enumerate(rows, 1):
        row = dict(id=i, title=f"t{i}", priority="HIGH", status="pending",
                   estimated_effort="1 hour", completed=0, created_at=db_time(AS_OF - 600 * M),
                   updated_at=db_time(AS_OF - 300 * M))
        row.update(r)
        cols = ", ".join(row)
        conn.execute(f"INSERT INTO tasks ({cols}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))
    conn.commit()
    conn.close()
    return path


def claim(agent: str, ago_min: float, hb_ago_min: float | None = None) -> dict:
    at = AS_OF - ago_min * M
    return dict(status="in_progress", assigned_agent=agent, worktree="wt",
                status_notes=f"Claimed by {agent} at {note_time(at)}",
                updated_at=db_time(at),
                last_heartbeat=None if hb_ago_min is None else db_time(AS_OF - hb_ago_min * M))


def test_liveness_is_the_later_of_the_claim_and_a_heartbeat_after_it(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.db", [
        dict(task_id="RECLAIM", **claim("Ann", 2, hb_ago_min=90)),  # old hb, fresh claim
        dict(task_id="HB-KEEPS", **claim("Ann", 90, hb_ago_min=3)),  # old claim, fresh hb
        dict(task_id="HB-OLD", **claim("Bo", 90, hb_ago_min=25)),  # silent 25 min
        dict(task_id="HB-BEFORE", **claim("Bo", 30, hb_ago_min=5 * 60)),  # hb predates it
        dict(task_id="NEVER", **claim("Cy", 21)),  # never heartbeated
        dict(task_id="QUIET", **claim("Cy", 15)),  # 15 min: at risk
        dict(task_id="JUST", **claim("Cy", 9.5)),  # under 10 min: nothing
    ])
    assert judged(db, AS_OF) == {"HB-OLD": {"zombie_claim"}, "HB-BEFORE": {"zombie_claim"},
                                 "NEVER": {"zombie_claim"}, "QUIET": {"stale_heartbeat"}}


def test_another_agents_claim_note_is_not_this_claims_time(tmp_path: Path) -> None:
    """Notes saying Ann claimed it an hour ago, the row held by Bo (a direct reassignment):
    Bo's claim time is unknown, so the row's updated_at (3 min ago) is the latest it can be."""
    row = claim("Ann", 60)
    row.update(assigned_agent="Bo", updated_at=db_time(AS_OF - 3 * M))
    db = make_db(tmp_path / "t.db", [dict(task_id="X", **row)])
    assert judged(db, AS_OF) == {}
    findings, _ = judge_once(db, AS_OF + 25 * M, fmt="taskapi")
    (f,) = findings
    assert f.kind == "zombie_claim"
    assert any("updated_at taken as the claim time" in e.value for e in f.evidence)


def test_only_in_progress_is_judged_and_completed_marks_recycled_work(tmp_path: Path) -> None:
    old = claim("Ann", 300)
    db = make_db(tmp_path / "t.db", [
        dict(task_id="BLOCKED", **dict(old, status="blocked", blocked_reason="Need a decision",
                                      blocked_by="Ann")),
        dict(task_id="DONE", **dict(old, status="done", completed=1)),
        dict(task_id="RECYCLED", status="pending", completed=1,
             status_notes="Claimed by Ann at x\n[y] Unclaimed by Ann"),
        dict(task_id="RECLAIMED", completed=1, **claim("Bo", 2)),
    ])
    got = judged(db, AS_OF)
    assert got == {"RECYCLED": {"recycling_task"}, "RECLAIMED": {"recycling_task"}}


def test_dependencies_not_blocked_by_link_the_tasks(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.db", [
        dict(task_id="A", status="blocked", blocked_reason="x", blocked_by="B"),
        dict(task_id="B", status="pending"),  # blocked_by names it: free text, not a link
        dict(task_id="C", status="pending", dependencies="A"),
        dict(task_id="D", status="pending", dependencies=" B , GHOST "),
        dict(task_id="E", status="pending", dependencies="B"),
    ])
    got = judged(db, AS_OF)
    assert got == {"C": {"blocked_by_stuck"}, "D": {"blocked_by_stuck"}}
    findings, _ = judge_once(db, AS_OF, fmt="taskapi")
    d = next(f for f in findings if f.task_id == "D")
    assert {e.fact: e.value for e in d.evidence}["dependency GHOST"] == "no such task"


def test_repeated_failure_needs_three_reasons_ending_in_one_exception(tmp_path: Path) -> None:
    tb = 'Traceback (most recent call last):\n  File "a.py", line {n}\n{last}'
    rows = [dict(task_id=f"F{i}", status="blocked",
                 blocked_reason=tb.format(n=i, last=f"KeyError: 'user_{i}'")) for i in range(3)]
    rows += [dict(task_id=f"Q{i}", status="blocked", blocked_reason="Need design decision")
             for i in range(4)]  # a question, however often, is no failure group
    rows += [dict(task_id=f"P{i}", status="blocked",
                  blocked_reason=tb.format(n=i, last="ValueError: bad")) for i in range(2)]
    rows += [dict(task_id="MID", status="blocked",  # the exception is not its last line
                  blocked_reason="KeyError: 'user_9'\nthen a human said: wait for design")]
    db = make_db(tmp_path / "t.db", rows)
    assert judged(db, AS_OF) == {f"F{i}": {"repeated_failure"} for i in range(3)}


def test_a_passing_check_is_the_semantics_one_definition(tmp_path: Path) -> None:
    review = dict(status="in_review", status_notes="[x] tests pass")
    db = make_db(tmp_path / "t.db", [
        dict(task_id="OK", check_results='{"pytest": {"status": "passed"}}', **review),
        dict(task_id="GREEN", check_results='{"ci": "green"}', **review),
        dict(task_id="FAIL", check_results='{"pytest": {"status": "failed"}}', **review),
        dict(task_id="NONE", **review),
        dict(task_id="JUNK", check_results="not json", **review),
    ], checks=True)
    assert judged(db, AS_OF) == {t: {"unverified_completion"} for t in ("FAIL", "NONE", "JUNK")}


def test_thresholds_come_from_the_config(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.db", [dict(task_id="X", **claim("Ann", 5))])
    fast = Config(taskapi=TaskApiOptions(zombie_after_s=240, stale_after_s=60))
    findings, _ = judge_once(db, AS_OF, fast, fmt="taskapi")
    assert kinds_by_subject(findings) == {"X": {"zombie_claim"}}
    assert judged(db, AS_OF) == {}


def test_hostile_text_is_plain_and_bad_cells_are_problems(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.db", [
        dict(task_id="X\x1b]0;pwned\x07", title="[bold]\x1b[31mred[/] \x9b2J",
             **claim("A\x1b[2Jnn", 30)),
        dict(task_id="BADTIME", status="pending", updated_at="yesterday-ish",
             completed="maybe"),
    ])
    before = tree(tmp_path)
    out = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--root",
                          str(db), "--as-of", "2026-11-22T22:40:00Z"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "\x1b" not in out.stdout and "\x9b" not in out.stdout and "\x07" not in out.stdout
    assert "[bold]" in out.stdout  # shown as the text it is
    assert "tasks[BADTIME].updated_at" in out.stderr and "tasks[BADTIME].completed" in out.stderr
    assert "Traceback" not in out.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", ["garbage", "foreign", "empty", "fifo"])
def test_bad_files_are_one_line_errors(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "x.db"
    if kind == "garbage":
        p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    elif kind == "foreign":
        c = sqlite3.connect(p)
        c.execute("CREATE TABLE tasks (id TEXT, queue TEXT)")  # an Octopoid-like table
        c.close()
    elif kind == "empty":
        p.write_bytes(b"")
    else:
        import os
        os.mkfifo(p)
    assert detect(p) is None or detect(p).name != "taskapi"  # type: ignore[union-attr]
    out = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--root", str(p),
                          "--format", "taskapi"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert str(p) in out.stderr


def test_dsn_is_shown_without_its_password() -> None:
    assert redact("postgresql://ann:pw@db.example:5432/q?sslmode=require&password=pw2") == \
        "postgresql://ann:***@db.example:5432/q?sslmode=require&password=***"
    assert redact("postgres://db/q") == "postgres://db/q"
    assert redact("postgresql://ann@db/q") == "postgresql://ann@db/q"
    assert detect("postgresql://ann:pw@db/q").name == "taskapi"  # type: ignore[union-attr]


def test_a_task_id_on_two_rows_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """A table without comic-pile's UNIQUE (task_id) (a hand-made or migrated one)."""
    from qwarden.core.formats.taskapi.kinds import REQUIRED

    db = tmp_path / "t.db"
    c = sqlite3.connect(db)
    c.execute(f"CREATE TABLE tasks ({', '.join(sorted(REQUIRED))})")
    for title in ("first", "second"):
        c.execute("INSERT INTO tasks (task_id, title, status, completed, updated_at) VALUES "
                  "('DUP', ?, 'pending', 0, '2026-11-22 22:00:00')", (title,))
    c.commit()
    c.close()
    findings, src = judge_once(db, AS_OF, fmt="taskapi")
    assert findings == [] and set(src.all_tasks()) == {"DUP"}
    assert any("task_id on 2 rows" in p.message for p in src.problems())
