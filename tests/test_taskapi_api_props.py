"""Properties of the taskapi write path, over random states and call sequences:

- ``directdb.effect`` (the SQL path's model of each call) agrees with the test server (the
  independent reimplementation of comic-pile a28e4ef8) on every sequence: the same refusals,
  the same columns (times aside);
- ``restore_calls`` brings any state an action left back to the state it was planned from,
  save what it names as lost, or says why the API cannot."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwarden.core.actions.interface import Refused
from qwarden.core.formats.taskapi import directdb
from qwarden.core.formats.taskapi.actions import STATE_KEYS, restore_calls
from qwarden.core.formats.taskapi.api import Call, task_path
from tests.taskapi_sample import sample_db, task_rows
from tests.taskapi_server import TaskApiServer

TIDS = ("TEST-001", "TASK-FEAT-007", "TASK-UI-001", "TASK-FEAT-001", "TASK-DB-005", "NOPE")
AGENTS = ("admin", "Alice", "Bob", "Charlie")
STATUSES = ("pending", "in_progress", "blocked", "in_review", "done", "failed")
TS = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?")

call = st.one_of(
    st.builds(lambda t, a, w: Call("POST", task_path(t, "claim"),
                                   {"agent_name": a, "worktree": w}),
              st.sampled_from(TIDS), st.sampled_from(AGENTS), st.sampled_from(("w1", "w2"))),
    st.builds(lambda t, a: Call("POST", task_path(t, "unclaim"), {"agent_name": a}),
              st.sampled_from(TIDS), st.sampled_from(AGENTS)),
    st.builds(lambda t, s, r, b: Call("POST", task_path(t, "set-status"),
                                      {"status": s, "blocked_reason": r, "blocked_by": b}),
              st.sampled_from(TIDS), st.sampled_from(STATUSES),
              st.sampled_from((None, "boom")), st.sampled_from((None, "op"))),
    st.builds(lambda t, n: Call("POST", task_path(t, "update-notes"), {"notes": n}),
              st.sampled_from(TIDS), st.sampled_from(("x", "line\nbreak"))),
    st.builds(lambda t: Call("POST", "/api/tasks/", {"task_id": t, "title": "t",
                                                     "estimated_effort": "1h",
                                                     "dependencies": "TEST-001"}),
              st.sampled_from(("NEW-1", "NEW-2", "TEST-001"))),
)


_rows = task_rows


def _mask(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {k: (TS.sub("<t>", v) if isinstance(v, str) else v) for k, v in r.items()
            if k not in ("id", "created_at", "updated_at")}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(call, min_size=1, max_size=8))
def test_the_sql_model_of_each_call_agrees_with_the_server(tmp_path: Path,
                                                           calls: list[Call]) -> None:
    db = tmp_path / f"p{abs(hash(tuple(c.line() for c in calls)))}.db"
    sample_db(db)
    db.chmod(0o644)
    srv = TaskApiServer(db)
    try:
        model: dict[str, dict[str, Any] | None] = dict(_rows(db))
        next_id = max(r["id"] for r in model.values() if r) + 1
        for c in calls:
            status, body = srv.act(c.method, c.path, c.body)
            tid = directdb.call_task(c)
            try:
                after = directdb.effect(c, model.get(tid), datetime.now(UTC), "admin", next_id)
            except Refused:
                assert status >= 400, (c.line(), status, body)
                continue
            assert status in (200, 201), (c.line(), status, body)
            if model.get(tid) is None:
                next_id += 1
            model[tid] = after
        got = _rows(db)
        assert {k: _mask(v) for k, v in got.items()} == \
            {k: _mask(v) for k, v in model.items() if v is not None}
    finally:
        srv.httpd.server_close()
        db.unlink()


state = st.fixed_dictionaries({
    "task_id": st.just("T"), "id": st.just(1),
    "status": st.sampled_from(("pending", "in_progress", "blocked", "in_review", "done")),
    "assigned_agent": st.sampled_from((None, "Bob")),
    "worktree": st.sampled_from((None, "wt")),
    "blocked_reason": st.sampled_from((None, "boom")),
    "blocked_by": st.sampled_from((None, "Bob")),
    "completed": st.sampled_from((0, 1)),
    "status_notes": st.sampled_from((None, "Claimed by Bob at x")),
    "updated_at": st.just("2026-11-22 22:12:31.000000"),
})
ours = st.sampled_from([
    (Call("POST", task_path("T", "unclaim"), {"agent_name": "admin"}),),
    (Call("POST", task_path("T", "set-status"), {"status": "pending"}),
     Call("POST", task_path("T", "unclaim"), {"agent_name": "admin"})),
    (Call("POST", task_path("T", "set-status"), {"status": "done"}),),
    (Call("POST", task_path("T", "set-status"), {"status": "blocked",
                                                 "blocked_reason": "why", "blocked_by": "op"}),),
    (Call("POST", task_path("T", "set-status"), {"status": "pending"}),),
])


@settings(max_examples=300, deadline=None)
@given(before=state, calls=ours)
def test_restore_calls_put_the_state_back_or_say_why_not(before: dict[str, Any],
                                                         calls: tuple[Call, ...]) -> None:
    now = datetime.now(UTC)
    cur: dict[str, Any] = dict(before)
    for c in calls:
        cur = directdb.effect(c, cur, now)
    back, lost, no = restore_calls("T", before, cur, "admin")
    if no is not None:
        # only completed, or a state no API call can reach (an agent without a worktree)
        assert (cur["completed"] and not before["completed"]) \
            or no.startswith("no sequence of API calls brings back"), no
        return
    try:
        for c in back:
            cur = directdb.effect(c, cur, now)
    except Refused as exc:  # the API would refuse its own undo: a bug
        raise AssertionError(f"{[c.line() for c in back]}: {exc}") from None
    lost_text = " ".join(lost)
    for k in STATE_KEYS:
        if cur[k] != before[k]:
            assert k in lost_text or (k == "blocked_by" and "blocked_reason" in lost_text), \
                (k, before, cur, [c.line() for c in back])


history = st.lists(st.one_of(
    st.builds(lambda a, w: Call("POST", task_path("T", "claim"),
                                {"agent_name": a, "worktree": w}),
              st.sampled_from(("Bob", "Eve")), st.sampled_from(("w1", "w2"))),
    st.builds(lambda a: Call("POST", task_path("T", "unclaim"), {"agent_name": a}),
              st.sampled_from(("admin", "Bob"))),
    st.builds(lambda s, r: Call("POST", task_path("T", "set-status"),
                                {"status": s, "blocked_reason": r, "blocked_by": "Bob"}),
              st.sampled_from(STATUSES[:5]), st.sampled_from(("boom", None)))), max_size=6)


@settings(max_examples=300, deadline=None)
@given(steps=history, calls=ours)
def test_undo_is_exact_from_any_state_the_api_can_reach(steps: list[Call],
                                                        calls: tuple[Call, ...]) -> None:
    """From a state the API itself produced, the undo restores status, agent, worktree,
    blocked fields and completed exactly, unless it says the API cannot (completed)."""
    now = datetime.now(UTC)
    row: dict[str, Any] = directdb.effect(
        Call("POST", "/api/tasks/", {"task_id": "T", "title": "t", "estimated_effort": "1h"}),
        None, now, new_id=1)
    for c in steps:
        try:
            row = directdb.effect(c, row, now)
        except Refused:
            continue  # the API refused that step: the state stays
    before = dict(row)
    for c in calls:
        row = directdb.effect(c, row, now)
    back, lost, no = restore_calls("T", before, row, "admin")
    if no is not None:
        assert row["completed"] and not before["completed"], no
        return
    assert [x for x in lost if x != "updated_at"] == [], (before, row, lost)
    for c in back:
        row = directdb.effect(c, row, now)
    assert {k: row[k] for k in STATE_KEYS} == {k: before[k] for k in STATE_KEYS}
