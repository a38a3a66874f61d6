"""The Octopoid writer: each Octopoid step leaves files and DB as octopoid-v1.md's table says."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from qwarden.core.formats.octopoid import writer as ow
from qwarden.core.formats.octopoid.taskfile import parse_task_bytes

T0 = datetime(2026, 11, 22, 21, 0, 0, 123456)  # naive local, like Octopoid's stamps


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return ow.init_root(tmp_path)


def row(root: Path, tid: str) -> dict:
    conn = sqlite3.connect(root / "state.db")
    conn.row_factory = sqlite3.Row
    try:
        r = conn.execute("SELECT * FROM tasks WHERE id=?", (tid,)).fetchone()
        return dict(r) if r else {}
    finally:
        conn.close()


def history(root: Path, tid: str) -> list[tuple]:
    conn = sqlite3.connect(root / "state.db")
    try:
        return conn.execute("SELECT event, agent, details, timestamp FROM task_history "
                            "WHERE task_id=? ORDER BY id", (tid,)).fetchall()
    finally:
        conn.close()


def where(root: Path, tid: str) -> list[str]:
    return sorted(q for q in ow.QUEUES if ow.task_path(root, q, tid).exists())


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def trail(root: Path, tid: str) -> list[str]:
    p = ow.find_task_file(root, tid)
    assert p is not None
    tf = parse_task_bytes(p.read_bytes(), tid, p.parent.name, p.stat().st_mtime,
                          p.stat().st_size)
    assert tf.parseable and not tf.problem, tf.problem
    return [e.kind for e in tf.trail]


def new(root: Path, title: str = "Do a thing", **kw: object) -> str:
    return ow.create_task(root, title, created=T0, **kw)  # type: ignore[arg-type]


def test_init_root_layout_and_schema(tmp_path: Path) -> None:
    root = ow.init_root(tmp_path)
    assert root == tmp_path / ".orchestrator"
    for q in ow.QUEUES:
        assert ow.queue_dir(root, q).is_dir()
    for d in ("shared/notes", "agents", "messages", "logs"):
        assert (root / d).is_dir()
    assert "database:\n  enabled: true" in (root / "agents.yaml").read_text()
    conn = sqlite3.connect(root / "state.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM schema_info WHERE key='version'").fetchone() == (
            "12",)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert {"tasks", "projects", "agents", "task_history", "drafts", "schema_info",
            "idx_tasks_queue", "idx_task_history_task_id", "idx_drafts_domain"} <= names
    assert ow.init_root(tmp_path) == root  # idempotent: an existing DB is left alone
    ow.register_agent_config(root, "impl-agent-1")
    ow.register_agent_config(root, "impl-agent-1")
    assert (root / "agents.yaml").read_text().count("- name: impl-agent-1") == 1


def test_create_task_file_row_and_history(root: Path) -> None:
    tid = new(root, "Add export", priority="P1", blocked_by=("aaaa0001", "bbbb0002"),
              checks=("gk-testing",), project="proj-1")
    assert len(tid) == 8 and int(tid, 16) >= 0
    text = ow.task_path(root, "incoming", tid).read_text()
    assert text.startswith(f"# [TASK-{tid}] Add export\n\nROLE: implement\nPRIORITY: P1\n"
                           f"BRANCH: main\nCREATED: {T0.isoformat()}\nCREATED_BY: human\n"
                           "PROJECT: proj-1\nBLOCKED_BY: aaaa0001,bbbb0002\nCHECKS: gk-testing\n"
                           "\n## Context\n")
    assert text.endswith("## Acceptance Criteria\n- [ ] It works\n- [ ] Tests pass\n")
    r = row(root, tid)
    assert (r["queue"], r["priority"], r["blocked_by"], r["checks"], r["project_id"]) == (
        "incoming", "P1", "aaaa0001,bbbb0002", "gk-testing", "proj-1")
    assert r["file_path"] == str(ow.task_path(root, "incoming", tid))
    assert r["created_at"] == r["updated_at"] == "2026-11-22 21:00:00"  # CURRENT_TIMESTAMP form
    assert history(root, tid) == [("created", None, "priority=P1, role=implement, "
                                   "project=proj-1", "2026-11-22 21:00:00")]
    assert os.stat(ow.task_path(root, "incoming", tid)).st_mtime == T0.timestamp()
    assert new(root, task_id="cafe0001") == "cafe0001"


def test_claim_leaves_file_in_incoming(root: Path) -> None:
    tid = new(root)
    ow.claim(root, tid, "impl-agent-1", at=at(1))
    assert where(root, tid) == ["incoming"]
    r = row(root, tid)
    assert (r["queue"], r["claimed_by"], r["claimed_at"], r["updated_at"]) == (
        "claimed", "impl-agent-1", at(1).isoformat(), at(1).isoformat())
    assert ow.task_path(root, "incoming", tid).read_text().endswith(
        f"- [ ] Tests pass\n\nCLAIMED_BY: impl-agent-1\nCLAIMED_AT: {at(1).isoformat()}\n")
    assert history(root, tid)[-1] == ("claimed", "impl-agent-1", None, "2026-11-22 21:01:00")
    with pytest.raises(FileNotFoundError):
        ow.claim(root, "deadbeef", "impl-agent-1")


def test_submit_accept_follow_on_both_sides(root: Path) -> None:
    tid = new(root)
    ow.claim(root, tid, "impl-agent-1", at=at(1))
    ow.submit(root, tid, commits=3, turns=40, at=at(2))
    assert where(root, tid) == ["provisional"]
    r = row(root, tid)
    assert (r["queue"], r["claimed_by"], r["commits_count"], r["turns_used"],
            r["submitted_at"]) == ("provisional", "impl-agent-1", 3, 40, at(2).isoformat())
    assert r["file_path"].endswith("/provisional/TASK-" + tid + ".md")
    ow.record_check(root, tid, "gk-testing", "pass", "all 9 tests pass", at=at(3))
    checks = json.loads(row(root, tid)["check_results"])
    assert checks == {"gk-testing": {"status": "pass", "summary": "all 9 tests pass",
                                     "timestamp": at(3).isoformat()}}
    ow.accept(root, tid, at=at(4))
    assert where(root, tid) == ["done"]
    r = row(root, tid)
    assert (r["queue"], r["claimed_by"], r["completed_at"]) == ("done", None, at(4).isoformat())
    assert r["claimed_at"] == at(1).isoformat()
    text = ow.task_path(root, "done", tid).read_text()
    assert (f"\n\nSUBMITTED_AT: {at(2).isoformat()}\nCOMMITS_COUNT: 3\nTURNS_USED: 40\n"
            f"\nACCEPTED_AT: {at(4).isoformat()}\nACCEPTED_BY: scheduler\n") in text
    assert trail(root, tid) == ["CLAIMED", "SUBMITTED", "ACCEPTED"]
    assert [h[0] for h in history(root, tid)] == ["created", "claimed", "submitted",
                                                  "check_pass", "accepted"]


def test_fail_then_retry_drifts(root: Path) -> None:
    tid = new(root)
    incoming_path = str(ow.task_path(root, "incoming", tid))
    ow.claim(root, tid, "impl-agent-3", at=at(1))
    ow.fail(root, tid, "Traceback: boom\nValueError: x", at=at(2))
    assert where(root, tid) == ["failed"]
    r = row(root, tid)
    # queue only: claimed_by kept, file_path still names incoming/
    assert (r["queue"], r["claimed_by"], r["file_path"]) == ("failed", "impl-agent-3",
                                                             incoming_path)
    assert ow.task_path(root, "failed", tid).read_text().endswith(
        f"\nFAILED_AT: {at(2).isoformat()}\n\n## Error\n```\nTraceback: boom\nValueError: x\n```\n")
    ow.retry(root, tid, at=at(3))
    assert where(root, tid) == ["incoming"]
    text = ow.task_path(root, "incoming", tid).read_text()
    assert "## Error" in text and text.endswith(f"```\n\nRETRIED_AT: {at(3).isoformat()}\n")
    assert row(root, tid)["queue"] == "failed"  # the lookup by file_path found nothing
    assert [h[0] for h in history(root, tid)] == ["created", "claimed", "failed"]
    assert trail(root, tid) == ["CLAIMED", "FAILED", "RETRIED"]


def test_retry_updates_the_row_when_file_path_matches(root: Path) -> None:
    tid = new(root)
    ow.fail(root, tid, "boom", at=at(1))
    conn = sqlite3.connect(root / "state.db")
    with conn:
        conn.execute("UPDATE tasks SET file_path=? WHERE id=?",
                     (str(ow.task_path(root, "failed", tid)), tid))
    conn.close()
    ow.retry(root, tid, at=at(2))
    r = row(root, tid)
    assert (r["queue"], r["claimed_by"]) == ("incoming", None)
    assert history(root, tid)[-1][0] == "retried"


def test_continuation_resume_and_agent_reject_write_no_db(root: Path) -> None:
    tid = new(root)
    ow.claim(root, tid, "impl-agent-4", at=at(1))
    before = row(root, tid)
    ow.needs_continuation(root, tid, "impl-agent-4", at=at(2))
    assert where(root, tid) == ["needs_continuation"]
    assert ow.task_path(root, "needs_continuation", tid).read_text().endswith(
        f"\nNEEDS_CONTINUATION_AT: {at(2).isoformat()}\nCONTINUATION_REASON: max_turns_reached\n"
        f"WIP_BRANCH: agent/{tid}\nLAST_AGENT: impl-agent-4\n")
    ow.resume(root, tid, "impl-agent-4", at=at(3))
    assert where(root, tid) == ["claimed"]
    assert ow.task_path(root, "claimed", tid).read_text().endswith(
        f"\nRESUMED_AT: {at(3).isoformat()}\nRESUMED_BY: impl-agent-4\n")
    ow.agent_reject(root, tid, "already_implemented", "It is on main.", "impl-agent-4",
                    attempt_count=1, at=at(4))
    assert where(root, tid) == ["rejected"]
    assert ow.task_path(root, "rejected", tid).read_text().endswith(
        f"\nREJECTED_AT: {at(4).isoformat()}\nREJECTION_REASON: already_implemented\n"
        "ATTEMPT_COUNT: 1\nREJECTED_BY: impl-agent-4\n\n## Rejection Details\nIt is on main.\n")
    assert row(root, tid) == before  # none of the three touched the DB
    assert trail(root, tid) == ["CLAIMED", "NEEDS_CONTINUATION", "RESUMED", "REJECTED"]


def test_review_reject_counts_notice_and_escalates_at_max(root: Path) -> None:
    tid = new(root)
    for i in range(1, 4):
        ow.claim(root, tid, "impl-agent-5", at=at(10 * i))
        ow.submit(root, tid, 1, 10, at=at(10 * i + 1))
        dst = ow.review_reject(root, tid, f"Round {i}: tests missing", "gatekeeper",
                               at=at(10 * i + 2))
        r = row(root, tid)
        want = "incoming" if i < 3 else "escalated"
        assert (r["queue"], r["rejection_count"], r["claimed_by"]) == (want, i, None)
        assert dst.parent.name == want and where(root, tid) == [want]
        assert r["file_path"] == str(dst)
        if i == 3:
            break
    text = ow.task_path(root, "escalated", tid).read_text()
    # one notice (the newest replaces the older), before the first ## heading
    assert text.count("## Rejection Notice") == 1
    assert text.index("## Rejection Notice (rejection #3)") < text.index("## Context")
    assert f"REVIEW_REJECTED_AT: {at(32).isoformat()}\nREVIEW_REJECTED_BY: gatekeeper\n" in text
    assert "Round 3: tests missing" in text and "Round 2" not in text
    assert trail(root, tid)[-1] == "REVIEW_REJECTED"
    assert [h[0] for h in history(root, tid)].count("rejected") == 2
    assert history(root, tid)[-1][0] == "escalated"


def test_hold_and_escalate(root: Path) -> None:
    held = new(root)
    ow.hold(root, held, at=at(1))
    r = row(root, held)
    assert where(root, held) == ["escalated"] and r["queue"] == "escalated"
    assert r["file_path"] == str(ow.task_path(root, "escalated", held))
    assert history(root, held)[-1][:3] == ("held", None, "manual hold via hold_task()")
    esc = new(root)
    ow.claim(root, esc, "impl-agent-6", at=at(1))
    sub = ow.submit(root, esc, 1, 100, at=at(2))
    ow.escalate(root, esc, at=at(3))
    r = row(root, esc)
    assert where(root, esc) == ["escalated"]
    assert (r["queue"], r["has_plan"], r["plan_id"], r["claimed_by"], r["file_path"]) == (
        "escalated", 1, f"plan-{esc}", "impl-agent-6", str(sub))  # file_path left stale
    assert ow.task_path(root, "escalated", esc).read_text().endswith(
        f"\nESCALATED_AT: {at(3).isoformat()}\nPLAN_ID: plan-{esc}\n")


def test_reset_stuck_claimed_is_db_only(root: Path) -> None:
    tid = new(root)
    ow.claim(root, tid, "impl-agent-7", at=at(1))
    text = ow.task_path(root, "incoming", tid).read_bytes()
    ow.reset_stuck_claimed(root, tid, at=at(30))
    r = row(root, tid)
    assert (r["queue"], r["claimed_by"], r["claimed_at"], r["updated_at"]) == (
        "incoming", None, None, at(30).isoformat())
    assert ow.task_path(root, "incoming", tid).read_bytes() == text
    assert history(root, tid)[-1][:3] == ("reset", None, "claimed timeout exceeded")


def test_agent_side_writers(root: Path) -> None:
    name = "impl-agent-2"
    ow.write_agent_state(root, name, True, 4242, at(0), None, total_runs=3, at=at(0))
    state = json.loads((root / "agents" / name / "state.json").read_text())
    assert state == {"running": True, "pid": 4242, "last_started": at(0).isoformat(),
                     "last_finished": None, "last_exit_code": None, "consecutive_failures": 0,
                     "total_runs": 3, "total_successes": 0, "total_failures": 0,
                     "current_task": None, "extra": {}}
    ow.write_heartbeat(root, name, at=at(5))
    hb = root / "agents" / name / "heartbeat"
    assert hb.read_text() == "2026-11-22T21:05:00Z\n"
    assert hb.stat().st_mtime == at(5).timestamp()
    ow.write_status(root, name, "abcd1234", 40, at=at(6))
    status = json.loads((root / "agents" / name / "status.json").read_text())
    assert (status["task_id"], status["progress_percent"], status["last_updated"]) == (
        "abcd1234", 40, at(6).isoformat())
    ow.write_current_task(root, name, "abcd1234", started_at=at(0))
    assert json.loads((root / "agents" / name / "current_task.json").read_text()) == {
        "task_id": "abcd1234", "task_path": "", "started_at": at(0).isoformat()}
    ow.append_stdout(root, name, "step 1", at=at(7))
    ow.append_stdout(root, name, "step 2\n", at=at(8))
    log = root / "agents" / name / "stdout.log"
    assert log.read_text() == "step 1\nstep 2\n" and log.stat().st_mtime == at(8).timestamp()
    assert ow.touch_tool_counter(root, name, at=at(9)) == 1
    assert ow.touch_tool_counter(root, name, at=at(9)) == 2
    ow.clear_current_task(root, name)
    assert not (root / "agents" / name / "current_task.json").exists()
    assert not (root / "agents" / name / "status.json").exists()
    notes = ow.write_notes_attempt(root, "abcd1234", 1, name, 200, 1, "...tail...", at=at(10))
    ow.write_notes_attempt(root, "abcd1234", 2, name, 50, 2, "more", at=at(11))
    assert notes.read_text() == (
        "# Agent Notes: TASK-abcd1234\n\n"
        f"## Attempt 1 \u2014 {name} ({at(10).isoformat()})\nTurns: 200 | Commits: 1\n\n"
        "...tail...\n\n"
        f"## Attempt 2 \u2014 {name} ({at(11).isoformat()})\nTurns: 50 | Commits: 2\n\nmore\n\n")
    msg = ow.write_message(root, "warning", "Disk almost full!", "Free some space.", at=at(12))
    assert msg.name == "warning-20261122-211200-disk-almost-full.md"
    assert "**Type:** warning" in msg.read_text()


def test_agents_table_upsert(root: Path) -> None:
    ow.upsert_agent_row(root, "impl-agent-1", running=True, pid=7, current_task_id="abcd1234",
                        last_run_start=at(0))
    ow.upsert_agent_row(root, "impl-agent-1", running=False, last_run_start=at(0),
                        last_run_end=at(9))
    conn = sqlite3.connect(root / "state.db")
    try:
        rows = conn.execute("SELECT * FROM agents").fetchall()
    finally:
        conn.close()
    assert rows == [("impl-agent-1", "implementer", 0, None, None, at(0).isoformat(),
                     at(9).isoformat())]


def test_insert_rejection_notice_without_headings() -> None:
    out = ow.insert_rejection_notice("# [TASK-x] t\n\nROLE: implement\n", 1, "fix it", T0, None)
    assert out.endswith(f"## Rejection Notice (rejection #1)\n\n{ow.REJECTION_WARNING}fix it\n\n"
                        f"REVIEW_REJECTED_AT: {T0.isoformat()}\n\n")


def test_concurrent_writers_wait_on_the_busy_db(root: Path) -> None:
    """Agents and the scheduler write at once: short transactions + busy timeout, no lost rows."""
    ids = [new(root, f"T{i}") for i in range(12)]
    errors: list[BaseException] = []

    def agent(n: int) -> None:
        try:
            for tid in ids[n::3]:
                ow.claim(root, tid, f"impl-agent-{n}")
                ow.upsert_agent_row(root, f"impl-agent-{n}", running=True, current_task_id=tid)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(row(root, tid)["queue"] == "claimed" for tid in ids)
    assert not list((root / "shared" / "queue" / "incoming").glob(".TASK-*"))  # no temp left
