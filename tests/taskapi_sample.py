"""The task API sample for the tests: the shared one (``../shared/fixtures/taskapi-sample``,
a real comic-pile DB made by its own API) when it is there, else the same story replayed call
for call through the test API server onto comic-pile's own schema, so the write path's tests
run on a real SQLite DB without ``../shared`` too (the sample's README: six tasks created,
claimed, heartbeated, set in_review/blocked/done, unclaimed; then one heartbeat backdated by
45 minutes in SQLite). A replay's times are now's, not the sample's."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.formats.taskapi.generate import SCHEMA as TASKS_SCHEMA

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / \
    "taskapi-sample" / "comic_pile.db"

# comic-pile a28e4ef8's tasks table as its alembic migrations leave it (the generator's copy
# of the sample's schema), and the migration stamp the real DB carries
SCHEMA = ("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
          "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));\n"
          "INSERT INTO alembic_version VALUES ('45d45743a15d');\n"
          + TASKS_SCHEMA.format(checks="") + ";\n")

# the sample README's story, call for call
STORY: list[tuple[str, str, dict[str, Any] | None]] = [
    *[("POST", "/api/tasks/", {"task_id": t, "title": f"demo {t}", "priority": "HIGH",
                               "estimated_effort": "1 hour"})
      for t in ("TASK-UI-001", "TASK-FEAT-007", "TEST-001", "TASK-DB-004", "TASK-FEAT-001")],
    ("POST", "/api/tasks/", {"task_id": "TASK-DB-005", "title": "dep", "priority": "LOW",
                             "estimated_effort": "1 hour", "dependencies": "TASK-DB-004"}),
    ("POST", "/api/tasks/TASK-UI-001/claim", {"agent_name": "Alice", "worktree": "comic-pile-ui"}),
    ("POST", "/api/tasks/TASK-UI-001/heartbeat", {"agent_name": "Alice"}),
    ("POST", "/api/tasks/TASK-UI-001/update-notes", {"notes": "Redesigned queue.html"}),
    ("POST", "/api/tasks/TASK-UI-001/set-status", {"status": "in_review"}),
    ("POST", "/api/tasks/TASK-UI-001/unclaim", {"agent_name": "Alice"}),
    ("POST", "/api/tasks/TASK-FEAT-007/claim", {"agent_name": "Bob",
                                                "worktree": "comic-pile-task-207"}),
    ("POST", "/api/tasks/TASK-FEAT-007/set-status", {"status": "blocked", "blocked_reason":
                                                     "Need design decision",
                                                     "blocked_by": "Bob"}),
    ("POST", "/api/tasks/TEST-001/claim", {"agent_name": "Charlie",
                                           "worktree": "comic-pile-test-001"}),
    ("POST", "/api/tasks/TEST-001/heartbeat", {"agent_name": "Charlie"}),
    ("POST", "/api/tasks/TASK-DB-004/claim", {"agent_name": "Dave",
                                              "worktree": "comic-pile-db-004"}),
    ("POST", "/api/tasks/TASK-FEAT-001/claim", {"agent_name": "Eve",
                                                "worktree": "comic-pile-feat-001"}),
    ("POST", "/api/tasks/TASK-FEAT-001/set-status", {"status": "done"}),
]


def empty_db(dst: Path) -> Path:
    """comic-pile's schema with no task in it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(dst)
    try:
        conn.executescript(SCHEMA)
        conn.commit()
    finally:
        conn.close()
    return dst


def replayed_sample(dst: Path) -> Path:
    """The sample's story through the test API server, then the backdated heartbeat."""
    from tests.taskapi_server import TaskApiServer

    srv = TaskApiServer(empty_db(dst))
    try:
        for method, path, body in STORY:
            status, answer = srv.act(method, path, body)
            assert status in (200, 201), (path, status, answer)
    finally:
        srv.httpd.server_close()
    conn = sqlite3.connect(dst)
    try:
        (beat,) = conn.execute("SELECT last_heartbeat FROM tasks WHERE task_id = 'TEST-001'"
                               ).fetchone()
        old = datetime.fromisoformat(beat) - timedelta(minutes=45)
        conn.execute("UPDATE tasks SET last_heartbeat = ? WHERE task_id = 'TEST-001'",
                     (old.strftime("%Y-%m-%d %H:%M:%S"),))
        conn.commit()
    finally:
        conn.close()
    return dst


def task_rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every row of the tasks table by task_id, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return {r["task_id"]: dict(r) for r in conn.execute("SELECT * FROM tasks")}
    finally:
        conn.close()


_replayed: list[Path] = []  # built once per run, copied for each test


def have_shared() -> bool:
    """The shared sample is there (``QWARDEN_NO_SHARED=1`` runs as without it)."""
    return os.environ.get("QWARDEN_NO_SHARED") != "1" and SHARED_SAMPLE.is_file()


def sample_db(dst: Path) -> Path:
    """A writable sample DB at ``dst``: the shared one copied, else the replay."""
    if have_shared():
        src = SHARED_SAMPLE
    else:
        if not _replayed:
            import tempfile

            _replayed.append(replayed_sample(Path(tempfile.mkdtemp(prefix="qwarden-sample-"))
                                             / "comic_pile.db"))
        src = _replayed[0]
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return dst


__all__ = ["SHARED_SAMPLE", "STORY", "Any", "empty_db", "have_shared", "replayed_sample",
           "sample_db", "task_rows"]
