"""taskapi interventions through the task API: a real HTTP server (tests/taskapi_server.py,
comic-pile a28e4ef8) over a copy of the real sample DB, each action end to end."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from qwarden.core.actions.interface import (
    ActionRequest,
    NeedsConfirmation,
    ReadOnly,
    Refused,
    ServerRefused,
    StalePlan,
    SubtaskSpec,
)
from qwarden.core.actions.journal import Journal
from qwarden.core.config import Config
from qwarden.core.formats.taskapi.actions import (
    READ_ONLY_SENTENCE,
    ServerRefusedMidway,
    TaskApiPlan,
    journal_root,
    open_interventions,
)
from qwarden.core.formats.taskapi.api import ApiUnreachable, Call, TaskApi
from tests.taskapi_sample import sample_db
from tests.taskapi_server import TaskApiServer


def row(db: Path, tid: str) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        r = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (tid,)).fetchone()
        return dict(r) if r else {}
    finally:
        conn.close()


def config(url: str | None = None, **taskapi: Any) -> Config:
    data: dict[str, Any] = {"taskapi": {"api_url": url, **taskapi}}
    return Config.model_validate(data)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    dst = tmp_path / "app" / "comic_pile.db"
    dst.parent.mkdir()
    sample_db(dst)
    dst.chmod(0o644)
    return dst


@pytest.fixture
def server(db: Path):
    with TaskApiServer(db) as srv:
        yield srv
    # never, in any test: the merge endpoint runs git on the server
    assert not [r for r in srv.requests if r[1].endswith("/merge-to-main")]


def opened(db: Path, server: TaskApiServer, **taskapi: Any):
    return open_interventions(db, config(server.url, **taskapi), {})


def req(kind: str, tid: str, note: str = "", **kw: Any) -> ActionRequest:
    return ActionRequest(kind=kind, task_id=tid, actor="op", note=note, **kw)


# ------------------------------------------------------------------ opening

def test_without_an_api_the_format_is_read_only(db: Path) -> None:
    with pytest.raises(ReadOnly) as e:
        open_interventions(db, Config(), {})
    assert str(e.value) == READ_ONLY_SENTENCE
    assert "--api URL or [taskapi] api_url (or --direct-db)" in str(e.value)
    with pytest.raises(ReadOnly, match="read-only mode"):
        open_interventions(db, config("http://127.0.0.1:1"), {"read_only": True})
    with pytest.raises(ReadOnly):
        open_interventions(db, Config(read_only=True), {"direct_db": True})


def test_option_url_overrides_config(db: Path, server: TaskApiServer) -> None:
    iv = open_interventions(db, config("http://127.0.0.1:9"), {"api_url": server.url})
    p = iv.plan(req("note", "TEST-001", "hello"))
    assert p.made_from["status"] == "in_progress"
    assert [r[0] for r in server.requests] == ["GET"]


def test_unreachable_api_is_a_refusal_naming_the_url(db: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    iv = open_interventions(db, config(f"http://127.0.0.1:{port}"), {})
    with pytest.raises(ApiUnreachable) as e:
        iv.plan(req("release", "TEST-001"))
    assert f"http://127.0.0.1:{port}" in str(e.value)
    assert isinstance(e.value, Refused)
    with pytest.raises(Refused, match="not an http"):
        open_interventions(db, config("ftp://x"), {}).plan(req("release", "TEST-001"))


def test_not_the_api_is_refused(db: Path, server: TaskApiServer) -> None:
    iv = open_interventions(db, config(server.url + "/nothing-here"), {})
    with pytest.raises(ServerRefused) as e:
        iv.plan(req("release", "TEST-001"))
    assert e.value.status == 404 and e.value.server_message == "Not Found"


# ------------------------------------------------------------------ each action

def test_release_unclaims_as_admin_and_undo_claims_again(db: Path,
                                                          server: TaskApiServer) -> None:
    iv = opened(db, server)
    before = row(db, "TEST-001")
    p = iv.plan(req("release", "TEST-001"))
    lines = p.describe()
    assert '  POST /api/tasks/TEST-001/unclaim {"agent_name": "admin"}' in lines
    assert p.made_from == {"status": "in_progress", "assigned_agent": "Charlie",
                           "worktree": "comic-pile-test-001", "blocked_reason": None,
                           "blocked_by": None, "completed": False,
                           "updated_at": before["updated_at"].replace(" ", "T")}
    assert TaskApiPlan.from_json(json.loads(json.dumps(p.to_json()))) == p
    server.requests.clear()
    done = iv.apply(p)
    assert done.undoable and "status_notes" in done.summary
    after = row(db, "TEST-001")
    assert (after["status"], after["assigned_agent"], after["worktree"]) == \
        ("pending", None, None)
    assert after["status_notes"].startswith(before["status_notes"] + "\n[")
    assert after["status_notes"].endswith("] Unclaimed by admin")
    assert after["completed"] == 0 and after["last_heartbeat"] == before["last_heartbeat"]
    assert [(m, pth) for m, pth, _ in server.requests] == [
        ("GET", "/api/tasks/TEST-001"), ("POST", "/api/tasks/TEST-001/unclaim")]
    u = iv.undo(done.action_id, actor="op")
    back = row(db, "TEST-001")
    assert (back["status"], back["assigned_agent"], back["worktree"]) == \
        ("in_progress", "Charlie", "comic-pile-test-001")
    assert back["status_notes"].startswith("Claimed by Charlie at ")  # replaced: said so
    assert "status_notes" in u.summary and "claim replaced" in u.summary
    with Journal(journal_root(db)) as j:
        a = j.get(int(done.action_id))
        assert a is not None and a.state == "undone" and a.undone_by == u.action_id
    with pytest.raises(Refused, match="is undone: only a done"):
        iv.undo(done.action_id)


def test_release_refused_unless_in_progress(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    with pytest.raises(Refused, match="not in_progress"):
        iv.plan(req("release", "TASK-DB-005"))
    with pytest.raises(Refused, match="no task NOPE"):
        iv.plan(req("release", "NOPE"))
    with pytest.raises(Refused, match="no action"):
        iv.plan(req("delete", "TEST-001"))
    assert not server.posts()


def test_retry_makes_a_blocked_task_runnable_and_undo_restores_it(
        db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    before = row(db, "TASK-FEAT-007")
    p = iv.plan(req("retry", "TASK-FEAT-007", "design decided: option B"))
    assert [c.path for c in p.calls] == ["/api/tasks/TASK-FEAT-007/set-status",
                                         "/api/tasks/TASK-FEAT-007/unclaim",
                                         "/api/tasks/TASK-FEAT-007/update-notes"]
    ready = [t["task_id"] for t in server.act("GET", "/api/tasks/ready")[1]]
    assert "TASK-FEAT-007" not in ready
    iv.apply(p)
    r = row(db, "TASK-FEAT-007")
    assert (r["status"], r["assigned_agent"], r["worktree"], r["blocked_reason"],
            r["blocked_by"]) == ("pending", None, None, None, None)
    assert r["status_notes"].endswith("] Retry by op: design decided: option B")
    ready = [t["task_id"] for t in server.act("GET", "/api/tasks/ready")[1]]
    assert "TASK-FEAT-007" in ready  # the system's own /ready offers it again
    iv.undo()
    r = row(db, "TASK-FEAT-007")
    assert {k: r[k] for k in ("status", "assigned_agent", "worktree", "blocked_reason",
                              "blocked_by", "completed")} == \
        {k: before[k] for k in ("status", "assigned_agent", "worktree", "blocked_reason",
                                "blocked_by", "completed")}


def test_retry_of_in_review_and_refusals(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    with pytest.raises(Refused, match="done task is not retried"):
        iv.plan(req("retry", "TASK-FEAT-001"))
    with pytest.raises(Refused, match="already runnable"):
        iv.plan(req("retry", "TASK-DB-005"))
    iv.apply(iv.plan(req("retry", "TASK-UI-001", "tests fail on review")))
    r = row(db, "TASK-UI-001")
    assert r["status"] == "pending" and r["completed"] == 0


def test_accept_without_worktree_warns_and_cannot_be_undone(db: Path,
                                                             server: TaskApiServer) -> None:
    iv = opened(db, server)
    with pytest.raises(Refused, match="not in_review"):
        iv.plan(req("accept", "TEST-001"))
    with pytest.raises(NeedsConfirmation, match="no worktree to verify"):
        iv.plan(req("accept", "TASK-UI-001"))
    p = iv.plan(req("accept", "TASK-UI-001", force=True))
    assert p.warnings == ("accepted WITHOUT verification (no worktree to verify (an unclaim "
                          "clears it); forced)",)
    assert '  POST /api/tasks/TASK-UI-001/set-status {"status": "done"}' in p.describe()
    assert not p.undoable and "completed" in p.not_undoable_why
    done = iv.apply(p)
    assert not done.undoable
    r = row(db, "TASK-UI-001")
    assert r["status"] == "done" and r["completed"] == 1
    with pytest.raises(Refused, match="cannot clear completed"):
        iv.undo(done.action_id)
    assert row(db, "TASK-UI-001")["status"] == "done"


def test_accept_runs_verify_in_the_worktree_and_a_failure_refuses(
        db: Path, server: TaskApiServer, tmp_path: Path) -> None:
    # a task in review with its worktree (claimed, then set in_review as a worker does)
    base = tmp_path / "trees"
    (base / "wt-9").mkdir(parents=True)
    assert server.act("POST", "/api/tasks/", {"task_id": "T-9", "title": "nine",
                                              "estimated_effort": "1h"})[0] == 201
    server.act("POST", "/api/tasks/T-9/claim", {"agent_name": "Ann", "worktree": "wt-9"})
    server.act("POST", "/api/tasks/T-9/set-status", {"status": "in_review"})
    cfg = Config.model_validate({"taskapi": {"api_url": server.url,
                                             "worktree_base": str(base)},
                                 "actions": {"verify": "touch {worktree}/RAN && "
                                                       "test -f {worktree}/PASS"}})
    iv = open_interventions(db, cfg, {})
    p = iv.plan(req("accept", "T-9"))
    assert p.verify == f"touch {base / 'wt-9'}/RAN && test -f {base / 'wt-9'}/PASS"
    assert any(line.startswith("  run verify first: ") for line in p.describe())
    server.requests.clear()
    with pytest.raises(Refused, match="verify command failed"):
        iv.apply(p)
    assert server.requests == [("GET", "/api/tasks/T-9", None)]  # checked, then verified
    assert row(db, "T-9")["status"] == "in_review"
    # the task moved before the verify: stale, the verify never runs on it
    server.act("POST", "/api/tasks/T-9/update-notes", {"notes": "more work"})
    (base / "wt-9" / "PASS").write_text("ok")
    (base / "wt-9" / "RAN").unlink()
    with pytest.raises(StalePlan):
        iv.apply(p)
    assert not (base / "wt-9" / "RAN").exists()
    (base / "wt-9" / "PASS").unlink()
    p = iv.plan(req("accept", "T-9"))
    with pytest.raises(Refused, match="verify command failed"):
        iv.apply(p)
    assert row(db, "T-9")["status"] == "in_review"
    (base / "wt-9" / "PASS").write_text("ok")
    iv.apply(p)
    assert row(db, "T-9")["status"] == "done"
    # a worktree that is not there cannot be verified: refused at plan
    server.act("POST", "/api/tasks/", {"task_id": "T-10", "title": "ten",
                                       "estimated_effort": "1h"})
    server.act("POST", "/api/tasks/T-10/claim", {"agent_name": "Ann", "worktree": "gone"})
    server.act("POST", "/api/tasks/T-10/set-status", {"status": "in_review"})
    with pytest.raises(Refused, match="worktree gone not found"):
        iv.plan(req("accept", "T-10", force=True))  # a named worktree must be verified
    # no verify command configured: a second look first
    plain_cfg = open_interventions(db, config(server.url), {})
    with pytest.raises(NeedsConfirmation, match="no \\[actions\\] verify command"):
        plain_cfg.plan(req("accept", "T-10"))


def test_cancel_blocks_with_the_reason_and_undo_unblocks(db: Path,
                                                        server: TaskApiServer) -> None:
    iv = opened(db, server)
    with pytest.raises(Refused, match="needs the reason"):
        iv.plan(req("cancel", "TEST-001"))
    p = iv.plan(req("cancel", "TEST-001", "superseded by TEST-002"))
    assert p.calls[0].body == {"status": "blocked", "blocked_reason": "superseded by TEST-002",
                               "blocked_by": "op"}
    done = iv.apply(p)
    r = row(db, "TEST-001")
    assert (r["status"], r["blocked_reason"], r["blocked_by"], r["assigned_agent"]) == \
        ("blocked", "superseded by TEST-002", "op", "Charlie")
    iv.undo(done.action_id)
    r = row(db, "TEST-001")
    assert (r["status"], r["blocked_reason"], r["blocked_by"], r["assigned_agent"]) == \
        ("in_progress", None, None, "Charlie")


def test_split_creates_subtasks_and_blocks_the_parent(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    subs = (SubtaskSpec.parse("schema | the tables | migrations run; tests pass"),
            SubtaskSpec.parse("backfill"))
    with pytest.raises(Refused, match="at least two"):
        iv.plan(req("split", "TASK-DB-004", subtasks=subs[:1]))
    p = iv.plan(req("split", "TASK-DB-004", "too big", subtasks=subs))
    assert [c.path for c in p.calls] == ["/api/tasks/", "/api/tasks/",
                                         "/api/tasks/TASK-DB-004/set-status"]
    assert not p.undoable and "delete" in p.not_undoable_why
    done = iv.apply(p)
    assert not done.undoable
    s1, s2 = row(db, "TASK-DB-004-S1"), row(db, "TASK-DB-004-S2")
    assert (s1["status"], s1["title"], s1["priority"], s1["estimated_effort"]) == \
        ("pending", "schema", "HIGH", "1 hour")
    assert "- migrations run" in s1["description"] and s2["title"] == "backfill"
    parent = row(db, "TASK-DB-004")
    assert parent["status"] == "blocked"
    assert parent["blocked_reason"] == "split into TASK-DB-004-S1, TASK-DB-004-S2 by op: too big"
    # a second split picks free ids
    p2 = iv.plan(req("split", "TASK-DB-004", subtasks=subs))
    assert [c.body["task_id"] for c in p2.calls[:2]] == ["TASK-DB-004-S3", "TASK-DB-004-S4"]
    with pytest.raises(Refused, match="cannot be undone"):
        iv.undo(done.action_id)


def test_note_appends_and_is_not_undoable(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    with pytest.raises(Refused, match="needs the text"):
        iv.plan(req("note", "TEST-001"))
    done = iv.apply(iv.plan(req("note", "TEST-001", "looked at it [bold]x[/]")))
    assert row(db, "TEST-001")["status_notes"].endswith("] op: looked at it [bold]x[/]")
    assert not done.undoable
    with pytest.raises(Refused, match="only appends"):
        iv.undo()


# ------------------------------------------------------------------ refusals and staleness

def test_a_403_is_the_servers_words_and_never_retried(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server, admin_name="supervisor")  # not the API's admin
    p = iv.plan(req("release", "TEST-001"))
    server.requests.clear()
    with pytest.raises(ServerRefused) as e:
        iv.apply(p)
    assert e.value.status == 403
    assert e.value.server_message == "Task not assigned to supervisor. Assigned to Charlie"
    assert e.value.call == "POST /api/tasks/TEST-001/unclaim"
    assert len(server.posts()) == 1  # once: no retry
    assert row(db, "TEST-001")["assigned_agent"] == "Charlie"
    with Journal(journal_root(db)) as j:
        a = j.recent(1)[0]
        assert a.state == "rolled_back" and "403" in (a.error or "")


def test_a_refusal_midway_stops_and_says_what_was_done(db: Path,
                                                        server: TaskApiServer) -> None:
    iv = opened(db, server, admin_name="supervisor")
    p = iv.plan(req("retry", "TASK-FEAT-007", "go"))
    with pytest.raises(ServerRefusedMidway) as e:
        iv.apply(p)
    assert e.value.status == 403 and e.value.done_calls == [
        'POST /api/tasks/TASK-FEAT-007/set-status {"status": "pending"}']
    assert "calls already made" in str(e.value)
    assert [pth for _, pth, _ in server.posts()] == ["/api/tasks/TASK-FEAT-007/set-status",
                                                     "/api/tasks/TASK-FEAT-007/unclaim"]
    r = row(db, "TASK-FEAT-007")
    assert (r["status"], r["assigned_agent"], r["blocked_reason"]) == ("pending", "Bob", None)
    with Journal(journal_root(db)) as j:
        a = j.get(e.value.action_id)
        assert a is not None and a.state == "failed"
    # what was done can be undone: the task blocked again, as Bob left it
    iv.undo(e.value.action_id)
    r = row(db, "TASK-FEAT-007")
    assert (r["status"], r["assigned_agent"], r["blocked_reason"], r["blocked_by"]) == \
        ("blocked", "Bob", "Need design decision", "Bob")
    assert [pth for _, pth, _ in server.posts()][-1] == "/api/tasks/TASK-FEAT-007/set-status"


def test_a_409_from_a_racing_claim_surfaces_without_retry(db: Path,
                                                          server: TaskApiServer) -> None:
    iv = opened(db, server)
    done = iv.apply(iv.plan(req("release", "TEST-001")))

    def rival(method: str, path: str, body: Any) -> None:
        if path.endswith("/claim"):  # another worker claims between our re-read and call
            server.before_request = None
            server.act("POST", "/api/tasks/TEST-001/claim",
                       {"agent_name": "Zed", "worktree": "zed-tree"})

    server.before_request = rival
    server.requests.clear()
    with pytest.raises(ServerRefused) as e:
        iv.undo(done.action_id)
    assert e.value.status == 409
    detail = json.loads(e.value.server_message)
    assert detail["error"] == "Task already claimed" and detail["current_assignee"] == "Zed"
    assert len(server.posts("/claim")) == 1
    assert row(db, "TEST-001")["assigned_agent"] == "Zed"


def test_a_plan_is_stale_once_the_task_moved(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    p = iv.plan(req("release", "TEST-001"))
    status, _ = server.act("POST", "/api/tasks/TEST-001/heartbeat", {"agent_name": "Charlie"})
    assert status == 200
    server.requests.clear()
    with pytest.raises(StalePlan, match="updated_at changed"):
        iv.apply(p)
    assert not server.posts()
    assert row(db, "TEST-001")["assigned_agent"] == "Charlie"


def test_undo_refused_once_the_task_moved(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    done = iv.apply(iv.plan(req("release", "TEST-001")))
    server.act("POST", "/api/tasks/TEST-001/claim", {"agent_name": "Zed", "worktree": "z"})
    server.requests.clear()
    with pytest.raises(Refused, match="changed since"):
        iv.undo(done.action_id)
    assert not server.posts()


def test_client_maps_errors_verbatim(db: Path, server: TaskApiServer) -> None:
    with TaskApi(server.url) as api:
        with pytest.raises(ServerRefused) as e:
            api.post(Call("POST", "/api/tasks/TEST-001/set-status", {"status": "failed"}))
        assert e.value.status == 400
        assert e.value.server_message == ("Invalid status. Must be one of: pending, "
                                          "in_progress, blocked, in_review, done")
        with pytest.raises(ServerRefused) as e:
            api.post(Call("POST", "/api/tasks/", {"task_id": "TEST-001", "title": "x",
                                                  "estimated_effort": "1h"}))
        assert (e.value.status, e.value.server_message) == (400, "Task TEST-001 already exists")
        with pytest.raises(ServerRefused) as e:
            api.post(Call("POST", "/api/tasks/", {"task_id": "NEW", "title": "x"}))
        assert (e.value.status, e.value.server_message) == (500, "Internal server error")
        with pytest.raises(Refused, match="never calls merge-to-main"):
            api.call(Call("POST", "/api/tasks/TEST-001/merge-to-main"))
        with pytest.raises(Refused, match="never sends a heartbeat"):
            api.call(Call("POST", "/api/tasks/TEST-001/heartbeat", {"agent_name": "x"}))
    assert not server.posts("/merge-to-main") and not server.posts("/heartbeat")


def test_a_server_that_never_answers_times_out(db: Path) -> None:
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)  # connections are accepted by the kernel, never answered
    try:
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        iv = open_interventions(db, config(url, timeout_s=0.5), {})
        t0 = time.monotonic()
        with pytest.raises(ApiUnreachable, match=r"did not answer GET .* within 0.5 s"):
            iv.plan(req("release", "TEST-001"))
        assert time.monotonic() - t0 < 5
    finally:
        s.close()


def test_undo_of_nothing_and_of_a_bad_id(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    with pytest.raises(Refused, match="nothing to undo"):
        iv.undo()
    with pytest.raises(Refused, match="no action 'x'"):
        iv.undo("x")
    with pytest.raises(Refused, match="no action 99"):
        iv.undo(99)


def test_describe_is_one_plain_line_per_entry(db: Path, server: TaskApiServer) -> None:
    iv = opened(db, server)
    p = iv.plan(req("note", "TEST-001", "two\nlines \x1b]52;c;AAAA\x07 \x9b2J \u202eevil"))
    lines = p.describe()
    assert all(ln.isprintable() for ln in lines)
    call = next(ln for ln in lines if ln.startswith("  POST "))
    assert '"notes": "op: two\\nlines \\u001b]52;c;AAAA\\u0007 \\u009b2J \\u202eevil"' in call
    assert json.loads(call.split(" ", 4)[4]) == p.calls[0].body  # still the exact JSON sent


def test_a_redirect_is_not_followed(db: Path, server: TaskApiServer) -> None:
    with TaskApi(server.url) as api, pytest.raises(ApiUnreachable, match="307"):
        api.call(Call("GET", "/api/tasks"))
    assert len(server.requests) == 1


def test_undo_of_a_release_whose_worktree_is_gone_is_the_servers_400(db: Path,
                                                                     tmp_path: Path) -> None:
    trees = tmp_path / "trees"
    trees.mkdir()
    with TaskApiServer(db, worktree_base=trees) as srv:  # the app's worktree check on
        iv = opened(db, srv)
        done = iv.apply(iv.plan(req("release", "TEST-001")))
        with pytest.raises(ServerRefused) as e:
            iv.undo(done.action_id)
        assert e.value.status == 400
        assert e.value.server_message.startswith(
            "Worktree comic-pile-test-001 does not exist. Please create it first")
        assert len(srv.posts("/claim")) == 1
        (trees / "comic-pile-test-001").mkdir()
        iv.undo(done.action_id)  # the refused undo changed nothing: it can be run again
        assert row(db, "TEST-001")["assigned_agent"] == "Charlie"
