"""Every intervention end to end on real files and a real SQLite state.db: exact state before
and after, the finding gone from the next report, stale plans refused, read-only refused."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qwarden.core.actions.apply import apply, marker, recover, undo
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan, Refused, StalePlan
from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid.actions import (
    HISTORY_END,
    archive_errors,
    judge_task,
    live_error_regions,
    make_plan,
    read_state,
)
from qwarden.core.formats.octopoid.taskfile import parse_task_bytes
from tests.test_actions_support import ERROR, IDS, build_state, history, row, snapshot

ACTOR = "qwarden:test"


@pytest.fixture
def state(tmp_path: Path) -> tuple[Path, datetime]:
    return build_state(tmp_path)


def _at(now: datetime) -> datetime:
    return now + timedelta(seconds=30)  # when the operator acts


def _kinds(root: Path, tid: str) -> set[str]:
    """The task's findings in the next report, less the inbox-style unread_terminal (a task an
    action just finished is unread until a supervisor marks it read)."""
    snap = open_engine(root, as_of=datetime.now().astimezone() + timedelta(seconds=120)).scan()
    return {f.kind for f in snap.findings_for(tid) if f.kind != "unread_terminal"}


def _q(root: Path, queue: str, tid: str) -> Path:
    return root / "shared" / "queue" / queue / f"TASK-{tid}.md"


def _db_utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _do(root: Path, kind: str, tid: str, t: datetime, **kw: object) -> int:
    plan = make_plan(root, kind, tid, actor=ACTOR, now=t, **kw)  # type: ignore[arg-type]
    return apply(root, plan).action_id


# ------------------------------------------------------------------ retry

def test_retry_failed_task(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid, t = IDS["failed"], _at(now)
    before = _q(root, "failed", tid).read_bytes()
    old = row(root, tid)
    aid = _do(root, "retry", tid, t, note="flaky network; try again")
    assert not _q(root, "failed", tid).exists()
    text = _q(root, "incoming", tid).read_text()
    # the old error block is moved, byte for byte, under ## History; nothing deleted
    region = before.decode()[before.decode().index("FAILED_AT:"):]
    assert region in text
    assert text.index("## History") < text.index("FAILED_AT:") < text.index(HISTORY_END)
    assert text.endswith(f"\nRETRIED_AT: {t.isoformat()}\nRETRIED_BY: {ACTOR}\n"
                         "RETRY_NOTE: flaky network; try again\n")
    tf = parse_task_bytes(text.encode(), tid, "incoming", 0, 0)
    assert tf.parseable and all(e.in_history for e in tf.errors)
    assert tf.errors[0].text == ERROR and tf.last_event and tf.last_event.kind == "RETRIED"
    r = row(root, tid)
    assert r is not None and old is not None
    assert (r["queue"], r["claimed_by"], r["claimed_at"], r["attempt_count"]) == \
        ("incoming", None, None, 2)
    assert r["file_path"] == str(_q(root.resolve(), "incoming", tid))
    assert r["updated_at"] == t.isoformat()
    assert {k: v for k, v in r.items() if k not in ("queue", "claimed_by", "claimed_at",
                                                    "attempt_count", "file_path",
                                                    "updated_at")} == \
        {k: v for k, v in old.items() if k not in ("queue", "claimed_by", "claimed_at",
                                                   "attempt_count", "file_path", "updated_at")}
    assert history(root, tid) == [("retried", ACTOR,
                                   f"flaky network; try again {marker(aid)}", _db_utc(t))]
    assert _kinds(root, tid) == set()


def test_retry_needs_continuation_and_zombie(state: tuple[Path, datetime]) -> None:
    root, now = state
    _do(root, "retry", IDS["continuation"], _at(now))
    assert _q(root, "incoming", IDS["continuation"]).exists()
    assert row(root, IDS["continuation"])["queue"] == "incoming"  # type: ignore[index]
    _do(root, "retry", IDS["zombie"], _at(now))
    r = row(root, IDS["zombie"])
    assert r is not None and r["claimed_by"] is None and r["attempt_count"] == 1
    for tid in (IDS["continuation"], IDS["zombie"]):
        assert _kinds(root, tid) == set()


def test_retry_refused_for_waiting_or_done(state: tuple[Path, datetime]) -> None:
    root, now = state
    for tid in (IDS["done"], IDS["stale_error"]):
        with pytest.raises(Refused, match="retry applies"):
            make_plan(root, "retry", tid, actor=ACTOR, now=now)


def test_second_retry_moves_only_the_new_error(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["failed"]
    _do(root, "retry", tid, _at(now))
    # Octopoid claims and fails it again: appends to the end, moves it to failed/
    p = _q(root, "incoming", tid)
    again = p.read_text() + "\nCLAIMED_BY: impl-9\nCLAIMED_AT: x\n\nFAILED_AT: " \
        f"{_at(now).isoformat()}\n\n## Error\n```\nKeyError: 'second'\n```\n"
    assert len(live_error_regions(again)) == 1
    moved, n = archive_errors(again)
    assert n == 1 and moved.count("## History") == 2 and "KeyError: 'second'" in moved
    assert live_error_regions(moved) == []
    assert archive_errors(moved) == (moved, 0)  # idempotent


# ------------------------------------------------------------------ release, sync

def test_release_zombie(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid, t = IDS["zombie"], _at(now)
    before = _q(root, "incoming", tid).read_bytes()
    aid = _do(root, "release", tid, t, note="agent gone")
    data = _q(root, "incoming", tid).read_bytes()
    assert data == before + (f"\nRELEASED_AT: {t.isoformat()}\nRELEASED_BY: {ACTOR}\n"
                             "RELEASE_REASON: agent gone\n").encode()
    r = row(root, tid)
    assert r is not None and (r["queue"], r["claimed_by"], r["claimed_at"]) == \
        ("incoming", None, None)
    assert history(root, tid)[-1][:3] == ("reset", ACTOR, f"agent gone {marker(aid)}")
    assert _kinds(root, tid) == set()


def test_release_refused_for_unclaimed(state: tuple[Path, datetime]) -> None:
    root, now = state
    with pytest.raises(Refused, match="not claimed"):
        make_plan(root, "release", IDS["failed"], actor=ACTOR, now=now)


def test_sync_db_follows_the_file(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["mismatch_db"]
    j = judge_task(root, tid)
    assert j.sync_direction == "sync_db"
    before = _q(root, "failed", tid).read_bytes()
    _do(root, "sync", tid, _at(now), direction=j.sync_direction)
    assert _q(root, "failed", tid).read_bytes() == before  # the file is the truth: untouched
    r = row(root, tid)
    assert r is not None and r["queue"] == "failed"
    assert r["file_path"] == str(_q(root.resolve(), "failed", tid))
    assert history(root, tid)[-1][0] == "synced"
    assert "file_db_mismatch" not in _kinds(root, tid)


def test_sync_file_follows_the_db(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid, t = IDS["mismatch_file"], _at(now)
    assert judge_task(root, tid).sync_direction == "sync_file"
    before = _q(root, "provisional", tid).read_bytes()
    old = row(root, tid)
    _do(root, "sync", tid, t, direction="sync_file")
    assert not _q(root, "provisional", tid).exists()
    data = _q(root, "done", tid).read_bytes()
    assert data.startswith(before) and b"SYNC_DIRECTION: file provisional -> done" in data
    r = row(root, tid)
    assert r is not None and old is not None and r["queue"] == "done"
    assert r["file_path"] == str(_q(root.resolve(), "done", tid))
    assert _kinds(root, tid) == set()


def test_sync_refused_when_sides_agree(state: tuple[Path, datetime]) -> None:
    root, now = state
    for d in ("sync_db", "sync_file"):
        with pytest.raises(Refused, match="agree"):
            make_plan(root, "sync", IDS["failed"], actor=ACTOR, now=now, direction=d)


# ------------------------------------------------------------------ accept, cancel

def test_accept_provisional(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid, t = IDS["provisional"], _at(now)
    before = _q(root, "provisional", tid).read_bytes()
    _do(root, "accept", tid, t)
    assert _q(root, "done", tid).read_bytes() == before + \
        f"\nACCEPTED_AT: {t.isoformat()}\nACCEPTED_BY: {ACTOR}\n".encode()
    r = row(root, tid)
    assert r is not None
    assert (r["queue"], r["claimed_by"], r["completed_at"]) == ("done", None, t.isoformat())
    assert r["claimed_at"] is not None  # Octopoid's accept leaves claimed_at as it was
    assert history(root, tid)[-1][:2] == ("accepted", ACTOR)
    assert _kinds(root, tid) == set()


def test_accept_unverified_needs_force(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["unverified"]
    with pytest.raises(Refused, match="unverified_completion"):
        make_plan(root, "accept", tid, actor=ACTOR, now=now)
    plan = make_plan(root, "accept", tid, actor=ACTOR, now=now, force=True)
    assert plan.warnings and any("WITHOUT evidence" in line for line in plan.describe())
    apply(root, plan)
    assert row(root, tid)["queue"] == "done"  # type: ignore[index]
    with pytest.raises(Refused, match="not provisional"):
        make_plan(root, "accept", IDS["failed"], actor=ACTOR, now=now)


def test_cancel_goes_to_rejected_with_reason(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid, t = IDS["failed"], _at(now)
    with pytest.raises(Refused, match="reason"):
        make_plan(root, "cancel", tid, actor=ACTOR, now=t)
    aid = _do(root, "cancel", tid, t, note="superseded by TASK-bbbb0001")
    data = _q(root, "rejected", tid).read_text()
    assert data.endswith(f"CANCELLED_AT: {t.isoformat()}\nCANCELLED_BY: {ACTOR}\n"
                         "CANCEL_REASON: superseded by TASK-bbbb0001\n")
    assert ERROR in data  # nothing removed
    r = row(root, tid)
    assert r is not None and (r["queue"], r["claimed_by"]) == ("rejected", None)
    assert history(root, tid)[-1][:3] == (
        "rejected", ACTOR, f"cancelled by operator: superseded by TASK-bbbb0001 {marker(aid)}")
    with pytest.raises(Refused, match="already finished"):
        make_plan(root, "cancel", tid, actor=ACTOR, now=t, note="again")


# ------------------------------------------------------------------ errors, files

def test_clear_error_in_place(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["stale_error"]
    p = _q(root, "incoming", tid)
    before = p.read_text()
    _do(root, "clear-error", tid, _at(now))
    after = p.read_text()
    assert sorted(after.replace("## History\n", "").replace(HISTORY_END + "\n", "")
                  .replace("<!-- moved here by qwarden: earlier errors, kept for the record -->"
                           "\n", "").splitlines()) == sorted(before.splitlines())
    assert _kinds(root, tid) == set()
    with pytest.raises(Refused, match="no error block"):
        make_plan(root, "clear-error", tid, actor=ACTOR, now=now)
    with pytest.raises(Refused, match="is failed"):
        make_plan(root, "clear-error", IDS["failed"], actor=ACTOR, now=now)


def test_quarantine_keeps_bytes(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["corrupt"]
    before = _q(root, "incoming", tid).read_bytes()
    plan = make_plan(root, "quarantine", tid, actor=ACTOR, now=now)
    apply(root, plan)
    assert not _q(root, "incoming", tid).exists()
    [q] = list((root / "shared" / "quarantine").iterdir())
    assert q.read_bytes() == before
    assert _kinds(root, tid) == set()
    # the only readable file of a task with a row: refused (it would become missing_file)
    with pytest.raises(Refused, match="only readable file"):
        make_plan(root, "quarantine", IDS["failed"], actor=ACTOR, now=now)


def test_quarantine_one_duplicate(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["done"]
    dup = _q(root, "incoming", tid)
    dup.write_bytes(_q(root, "done", tid).read_bytes())
    with pytest.raises(Refused, match="duplicate"):
        make_plan(root, "retry", tid, actor=ACTOR, now=now)
    with pytest.raises(Refused, match="--queue"):
        make_plan(root, "quarantine", tid, actor=ACTOR, now=now)
    _do(root, "quarantine", tid, now, queue="incoming")
    assert not dup.exists() and _q(root, "done", tid).exists()
    assert "duplicate_file" not in _kinds(root, tid)


def test_register_orphan(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["orphan"]
    before = _q(root, "incoming", tid).read_bytes()
    _do(root, "register", tid, now)
    r = row(root, tid)
    assert r is not None
    assert (r["queue"], r["priority"], r["role"], r["project_id"]) == \
        ("incoming", "P2", "implement", "proj-1")
    assert Path(r["file_path"]).is_absolute()
    assert r["file_path"] == str(_q(root.resolve(), "incoming", tid))
    assert _q(root, "incoming", tid).read_bytes() == before
    assert history(root, tid)[0][0] == "created"
    assert _kinds(root, tid) == set()
    with pytest.raises(Refused, match="already has a DB row"):
        make_plan(root, "register", tid, actor=ACTOR, now=now)


def test_escalate_writes_octopoid_message(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["failed"]
    _do(root, "escalate", tid, now, note="keeps failing on the schema")
    [m] = list((root / "messages").iterdir())
    assert m.name == f"warning-{now.strftime('%Y%m%d-%H%M%S')}-TASK-{tid}-needs-a-human.md"
    text = m.read_text()
    assert "**Type:** warning" in text and f"**Task:** {tid}" in text
    assert "keeps failing on the schema" in text
    assert row(root, tid)["queue"] == "failed"  # type: ignore[index]


def test_mark_read_only_terminal(state: tuple[Path, datetime]) -> None:
    root, now = state
    before = snapshot(root)
    aid = _do(root, "mark-read", IDS["done"], now)
    assert snapshot(root) == before  # the journal entry is the mark
    with Journal(root) as j:
        a = j.get(aid)
        assert a is not None and a.state == "done" and a.kind == "mark-read"
        assert j.reviews() == {IDS["done"]: a.created_at}
    with pytest.raises(Refused, match="not finished"):
        make_plan(root, "mark-read", IDS["zombie"], actor=ACTOR, now=now)


# ------------------------------------------------------------------ guards

def test_live_claim_guard(state: tuple[Path, datetime]) -> None:
    root, _now = state
    j = judge_task(root, IDS["live"])
    assert j.liveness == "live"
    for kind in ("retry", "release", "cancel"):
        msg = j.live_refusal(kind, IDS["live"])
        assert msg and "worked on right now" in msg
    assert j.live_refusal("escalate", IDS["live"]) is None
    assert judge_task(root, IDS["zombie"]).live_refusal("release", IDS["zombie"]) is None


def test_stale_plan_file_changed(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["failed"]
    plan = make_plan(root, "retry", tid, actor=ACTOR, now=now)
    before = snapshot(root)
    p = _q(root, "failed", tid)
    p.write_bytes(p.read_bytes() + b"\nRESUMED_AT: 2026-01-01T00:00:00\n")  # an agent wrote
    changed = snapshot(root)
    with pytest.raises(StalePlan, match="changed since the plan"):
        apply(root, plan)
    assert snapshot(root) == changed and changed != before
    with Journal(root) as j:
        assert j.recent(1) == []  # refused before the intent was journaled


def test_stale_after_intent_rolls_back(state: tuple[Path, datetime],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent writes between the journal intent and the file op: the op's own re-check
    refuses, the DB transaction is rolled back, the journal says rolled_back."""
    import qwarden.core.actions.apply as ap

    root, now = state
    tid = IDS["failed"]
    plan = make_plan(root, "retry", tid, actor=ACTOR, now=now)
    p = _q(root, "failed", tid)

    def agent_writes(step: str) -> None:
        if step == "intent":
            p.write_bytes(p.read_bytes() + b"\nRESUMED_AT: 2026-01-01T00:00:00\n")

    monkeypatch.setattr(ap, "_crash", agent_writes)
    with pytest.raises(StalePlan):
        apply(root, plan)
    assert row(root, tid)["queue"] == "failed"  # type: ignore[index]
    assert p.read_bytes().endswith(b"RESUMED_AT: 2026-01-01T00:00:00\n")
    assert not _q(root, "incoming", tid).exists()
    with Journal(root) as j:
        a = j.recent(1)[0]
        assert a.state == "rolled_back" and "changed since" in (a.error or "")


def test_stale_plan_row_changed(state: tuple[Path, datetime]) -> None:
    root, now = state
    tid = IDS["zombie"]
    plan = make_plan(root, "release", tid, actor=ACTOR, now=now)
    conn = sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET claimed_by='impl-new', claimed_at='x' WHERE id=?", (tid,))
    conn.commit()
    conn.close()
    changed = snapshot(root)
    with pytest.raises(StalePlan, match="claimed_by changed"):
        apply(root, plan)
    assert snapshot(root) == changed


def test_read_only_refuses_everything(state: tuple[Path, datetime]) -> None:
    root, now = state
    before = snapshot(root)
    plan = make_plan(root, "retry", IDS["failed"], actor=ACTOR, now=now)
    with pytest.raises(Refused, match="read-only"):
        apply(root, plan, read_only=True)
    with pytest.raises(Refused, match="read-only"):
        undo(root, 1, read_only=True)
    assert snapshot(root) == before and not (root / "warden").exists()


def test_ids_that_leave_the_root_are_refused(state: tuple[Path, datetime]) -> None:
    root, now = state
    for bad in ("../../etc/passwd", "a/b", ".."):
        with pytest.raises(Refused, match="not a task id"):
            make_plan(root, "retry", bad, actor=ACTOR, now=now)
    evil = Plan("retry", IDS["failed"], ACTOR, files=())
    evil.check_paths()
    from qwarden.core.actions.plan import FileOp
    for p in ("../x", "/etc/passwd", "state.db", "shared/queue/../../x"):
        with pytest.raises(Refused, match="outside"):
            Plan("x", "y", ACTOR, files=(FileOp(None, p, None, b""),)).check_paths()


# ------------------------------------------------------------------ journal, undo

def test_journal_and_audit_record_everything(state: tuple[Path, datetime]) -> None:
    root, now = state
    aid = _do(root, "retry", IDS["failed"], now, note="n1")
    with Journal(root) as j:
        a = j.get(aid)
        assert a is not None and a.state == "done" and a.note == "n1"
        assert a.plan.kind == "retry" and a.preconditions["files"]
        files = j.file_backups(aid)
        assert files == {f"shared/queue/failed/TASK-{IDS['failed']}.md":
                         a.plan.files[0].after and files[next(iter(files))]}
        rows = j.row_backups(aid)
        assert rows[f"tasks:{IDS['failed']}"]["queue"] == "failed"  # type: ignore[index]
        events = [r["event"] for r in j.read_audit()]
    assert events == ["intent", "done"]
    lines = (root / "warden" / "audit.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["changes"]


def test_undo_round_trip_and_refusal(state: tuple[Path, datetime]) -> None:
    root, now = state
    before = snapshot(root)
    aid = _do(root, "accept", IDS["provisional"], now)
    res = undo(root, actor=ACTOR)
    assert snapshot(root) == before
    with Journal(root) as j:
        assert j.get(aid).state == "undone"  # type: ignore[union-attr]
        assert j.get(aid).undone_by == res.action_id  # type: ignore[union-attr]
    with pytest.raises(Refused, match="only a done action"):
        undo(root, aid)
    with pytest.raises(Refused, match="itself an undo"):
        undo(root, res.action_id)
    # changed since: refused, nothing written
    aid2 = _do(root, "retry", IDS["failed"], now)
    p = _q(root, "incoming", IDS["failed"])
    p.write_bytes(p.read_bytes() + b"\nCLAIMED_BY: impl-x\nCLAIMED_AT: 2026-01-01T00:00:00\n")
    changed = snapshot(root)
    with pytest.raises(Refused, match="changed since"):
        undo(root, aid2)
    assert snapshot(root) == changed


def test_recover_with_nothing_to_do(state: tuple[Path, datetime]) -> None:
    root, now = state
    assert recover(root) == []
    _do(root, "retry", IDS["failed"], now)
    assert recover(root) == []


def test_read_state_does_not_trust_file_path(state: tuple[Path, datetime]) -> None:
    root, _ = state
    st = read_state(root, IDS["mismatch_db"])
    assert st.row is not None and st.row["file_path"].startswith("/elsewhere/")
    assert [f.queue for f in st.files] == ["failed"]


# ------------------------------------------------------------------ split

def test_split_creates_children_and_repoints_blockers(state: tuple[Path, datetime]) -> None:
    from qwarden.core.formats.octopoid.actions import Subtask

    root, now = state
    parent, t = IDS["failed"], _at(now)
    # a task waiting on the parent, in the DB and in its file header
    waiter = "bbbb0001"
    text = (f"# [TASK-{waiter}] Waits\n\nROLE: implement\nPRIORITY: P2\nBRANCH: main\n"
            f"BLOCKED_BY: {parent},cccc0001\nCREATED: 2026-01-01T00:00:00\n\n## Context\nx\n")
    _q(root, "incoming", waiter).write_text(text)
    conn = sqlite3.connect(root / "state.db")
    conn.execute("INSERT INTO tasks (id, file_path, queue, blocked_by) VALUES (?,?,?,?)",
                 (waiter, "x", "incoming", f"{parent},cccc0001"))
    conn.commit()
    conn.close()
    before = snapshot(root)
    subs = [Subtask.parse("Schema part | migrate the table | migration runs; tests pass"),
            Subtask("UI part")]
    plan = make_plan(root, "split", parent, actor=ACTOR, now=t, subtasks=subs,
                     note="too big")
    kids = plan.extra["children"]
    apply(root, plan)
    for kid, title in zip(kids, ("Schema part", "UI part"), strict=True):
        body = _q(root, "incoming", kid).read_text()
        assert body.startswith(f"# [TASK-{kid}] {title}\n") and f"PARENT: TASK-{parent}" in body
        r = row(root, kid)
        assert r is not None and (r["queue"], r["role"], r["priority"]) == \
            ("incoming", "implement", "P2")
    assert "- [ ] migration runs\n- [ ] tests pass" in _q(root, "incoming", kids[0]).read_text()
    assert row(root, waiter)["blocked_by"] == f"{kids[0]},{kids[1]},cccc0001"  # type: ignore
    assert f"BLOCKED_BY: {kids[0]},{kids[1]},cccc0001\n" in _q(root, "incoming",
                                                               waiter).read_text()
    pt = _q(root, "recycled", parent).read_text()
    assert f"NOTE: split into TASK-{kids[0]}, TASK-{kids[1]}: too big" in pt
    assert row(root, parent)["queue"] == "recycled"  # type: ignore[index]
    undo(root)
    assert snapshot(root) == before
    with pytest.raises(Refused, match="at most 1"):
        make_plan(root, "split", parent, actor=ACTOR, now=t, subtasks=subs, max_children=1)
    with pytest.raises(Refused, match="at least one"):
        make_plan(root, "split", parent, actor=ACTOR, now=t)


@pytest.mark.parametrize("agent", ["moves", "rewrites"])
def test_agent_races_a_move(state: tuple[Path, datetime], monkeypatch: pytest.MonkeyPatch,
                            agent: str) -> None:
    """Between our copy landing at dst and the source's removal an agent moves or rewrites
    the source: its bytes survive, our copy goes, the DB is untouched, the plan is stale."""
    import qwarden.core.actions.apply as ap

    root, now = state
    tid = IDS["failed"]
    plan = make_plan(root, "retry", tid, actor=ACTOR, now=now)
    src = _q(root, "failed", tid)
    agent_bytes = src.read_bytes() + b"\nRESUMED_AT: 2026-01-01T00:00:00\n"

    def race(step: str) -> None:
        if step == "file:0:linked":
            if agent == "moves":
                _q(root, "needs_continuation", tid).write_bytes(agent_bytes)
                src.unlink()
            else:
                src.write_bytes(agent_bytes)

    monkeypatch.setattr(ap, "_crash", race)
    with pytest.raises(StalePlan):
        apply(root, plan)
    assert not _q(root, "incoming", tid).exists()  # our copy is gone
    where = _q(root, "needs_continuation" if agent == "moves" else "failed", tid)
    assert where.read_bytes() == agent_bytes
    assert row(root, tid)["queue"] == "failed"  # type: ignore[index]
    assert not list(root.rglob("*.grab")) and not list(root.rglob("*.qw*.tmp"))



@pytest.mark.parametrize("status", ["succeeded", "green", "PASSED"])
def test_accept_and_the_rule_agree_on_what_a_passing_check_is(
        state: tuple[Path, datetime], status: str) -> None:
    # 0 commits but a check that passed: no unverified_completion, and accept needs no --force
    # (the rule counted "succeeded" and "green"; the accept guard did not).
    import json as _json
    import sqlite3 as _sqlite3

    from qwarden.core.formats import open_engine

    root, now = state
    tid = IDS["unverified"]
    conn = _sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET check_results=? WHERE id=?",
                 (_json.dumps({"ci": {"status": status, "summary": "ok"}}), tid))
    conn.commit()
    conn.close()
    found = open_engine(root).scan().findings_for(tid)
    assert "unverified_completion" not in {f.kind for f in found}
    plan = make_plan(root, "accept", tid, actor=ACTOR, now=now)
    assert not plan.warnings
