"""The test server against the real system: the sample DB was made by comic-pile's own API
(its README says which calls, per task); replaying those calls on the test server must leave
the same rows (times aside). And a killed API apply is recovered as "outcome unknown"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qwarden.core.actions.journal import Journal
from qwarden.core.config import Config
from qwarden.core.formats.taskapi.actions import journal_root, open_interventions
from tests.taskapi_sample import STORY, empty_db, have_shared, sample_db, task_rows
from tests.taskapi_server import TaskApiServer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "fixtures" / "taskapi-sample" / "comic_pile.db"
TS = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?")


_rows = task_rows


def _shape(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (TS.sub("<t>", v) if isinstance(v, str) else v) for k, v in r.items()
            if k not in ("id", "created_at", "updated_at", "last_heartbeat")}


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    return empty_db(tmp_path / "comic_pile.db")


@pytest.mark.skipif(not have_shared(), reason=f"{SAMPLE} absent (the real sample to compare)")
def test_replaying_the_samples_calls_gives_the_samples_rows(empty: Path) -> None:
    srv = TaskApiServer(empty)
    for method, path, body in STORY:
        status, _ = srv.act(method, path, body)
        assert status in (200, 201), (path, status)
    got, want = _rows(empty), _rows(SAMPLE)
    assert set(got) == set(want)
    for tid in want:
        assert _shape(got[tid]) == _shape(want[tid]), tid


def test_the_real_quirks(empty: Path) -> None:
    srv = TaskApiServer(empty)
    for method, path, body in STORY:
        srv.act(method, path, body)
    # a done task unclaimed: pending again, completed kept (the recycling trace)
    assert srv.act("POST", "/api/tasks/TASK-FEAT-001/unclaim", {"agent_name": "admin"})[0] == 200
    r = _rows(empty)["TASK-FEAT-001"]
    assert (r["status"], r["completed"], r["assigned_agent"]) == ("pending", 1, None)
    # a blocked task unclaimed: pending, blocked_reason kept, never offered by /ready
    srv.act("POST", "/api/tasks/TASK-FEAT-007/unclaim", {"agent_name": "Bob"})
    r = _rows(empty)["TASK-FEAT-007"]
    assert (r["status"], r["blocked_reason"]) == ("pending", "Need design decision")
    ready = [t["task_id"] for t in srv.act("GET", "/api/tasks/ready")[1]]
    assert "TASK-FEAT-007" not in ready and "TASK-FEAT-001" in ready
    # a claim replaces the notes; heartbeat 403; claim 409 with an object detail
    srv.act("POST", "/api/tasks/TASK-FEAT-007/claim", {"agent_name": "Fay", "worktree": "w"})
    assert _rows(empty)["TASK-FEAT-007"]["status_notes"].startswith("Claimed by Fay at ")
    status, body = srv.act("POST", "/api/tasks/TASK-FEAT-007/heartbeat", {"agent_name": "Bob"})
    assert (status, body["detail"]) == (403, "Task not assigned to Bob. Assigned to Fay")
    status, body = srv.act("POST", "/api/tasks/TASK-FEAT-007/claim",
                           {"agent_name": "Fay", "worktree": "w"})
    assert status == 409 and body["detail"]["current_assignee"] == "Fay"
    # set-status to a non-blocked status clears the blocked fields; "failed" is no status
    srv.act("POST", "/api/tasks/TASK-FEAT-007/set-status", {"status": "in_review"})
    r = _rows(empty)["TASK-FEAT-007"]
    assert (r["blocked_reason"], r["blocked_by"], r["assigned_agent"]) == (None, None, "Fay")
    assert srv.act("POST", "/api/tasks/X/set-status", {"status": "failed"})[0] == 400
    assert srv.act("GET", "/api/tasks/completed") == (404, {"detail":
                                                            "Task completed not found"})


RUNNER = """
import json, sys
from pathlib import Path
from qwarden.core.config import Config
from qwarden.core.actions.interface import ActionRequest
from qwarden.core.formats.taskapi.actions import open_interventions
iv = open_interventions(Path(sys.argv[1]), Config(), {"api_url": sys.argv[2]})
iv.apply(iv.plan(ActionRequest("retry", "TASK-FEAT-007", actor="op", note="x")))
"""


@pytest.mark.parametrize(("step", "made", "unknown"), [
    ("api:send:1", 1, ["/api/tasks/TASK-FEAT-007/unclaim"]),
    ("api:answered:1", 1, ["/api/tasks/TASK-FEAT-007/unclaim"]),
    ("api:send:0", 0, ["/api/tasks/TASK-FEAT-007/set-status"]),
])
def test_a_killed_api_apply_is_recorded_as_unknown_never_replayed(
        tmp_path: Path, step: str, made: int, unknown: list[str]) -> None:
    db = tmp_path / "comic_pile.db"
    sample_db(db)
    db.chmod(0o644)
    with TaskApiServer(db) as srv:
        env = dict(os.environ, QWARDEN_CRASH_AT=step, PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(db), srv.url], env=env,
                              capture_output=True, timeout=60)
        assert proc.returncode == -9, proc.stderr.decode()
        posts = len(srv.posts())
        iv = open_interventions(db, Config(), {"api_url": srv.url})
        assert [o for _, o in iv.recover()] == ["failed"]
        assert len(srv.posts()) == posts  # recovery calls nothing
    with Journal(journal_root(db)) as j:
        a = j.recent(1)[0]
        assert a.state == "failed"
        assert "outcome unknown: " + ", ".join(unknown) in (a.error or "")
        assert ("calls made: /api/tasks/TASK-FEAT-007/set-status" in (a.error or "")) == \
            bool(made)
        assert json.loads(json.dumps(a.plan.extra))["via"] == "api"
    # answered:1: the server did unclaim before the kill (the journal could not say so)
    assert (_rows(db)["TASK-FEAT-007"]["assigned_agent"] is None) == (step == "api:answered:1")
