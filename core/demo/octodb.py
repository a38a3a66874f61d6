"""Octopoid v1 on-disk formats, for writing demo and test states the way Octopoid writes them.

The schema is Octopoid's own (schema_info.version 12). Timestamps follow its three forms:
``isoformat()`` local time with ``T`` for task files, claims and updates; SQLite
``CURRENT_TIMESTAMP`` UTC with a space for created_at and history; heartbeat files UTC with ``Z``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUEUES = ("incoming", "claimed", "provisional", "done", "failed", "rejected", "escalated",
          "recycled", "breakdown", "needs_continuation")

SCHEMA_V12 = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    file_path TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL DEFAULT 'incoming',
    priority TEXT DEFAULT 'P2',
    complexity TEXT,
    role TEXT,
    branch TEXT DEFAULT 'main',
    blocked_by TEXT,
    claimed_by TEXT,
    claimed_at DATETIME,
    commits_count INTEGER DEFAULT 0,
    turns_used INTEGER,
    attempt_count INTEGER DEFAULT 0,
    has_plan BOOLEAN DEFAULT FALSE,
    plan_id TEXT,
    project_id TEXT,
    auto_accept BOOLEAN DEFAULT FALSE,
    rejection_count INTEGER DEFAULT 0,
    pr_number INTEGER,
    pr_url TEXT,
    checks TEXT,
    check_results TEXT,
    needs_rebase BOOLEAN DEFAULT FALSE,
    last_rebase_attempt_at DATETIME,
    staging_url TEXT,
    submitted_at TEXT,
    completed_at TEXT,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (project_id) REFERENCES projects(id)
);
CREATE INDEX idx_tasks_queue ON tasks(queue);
CREATE INDEX idx_tasks_priority ON tasks(priority);
CREATE INDEX idx_tasks_claimed_by ON tasks(claimed_by);
CREATE INDEX idx_tasks_project_id ON tasks(project_id);
CREATE TABLE projects (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT, status TEXT DEFAULT 'draft',
    branch TEXT, base_branch TEXT DEFAULT 'main', auto_accept BOOLEAN DEFAULT FALSE,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP, created_by TEXT, completed_at DATETIME
);
CREATE INDEX idx_projects_status ON projects(status);
CREATE TABLE agents (
    name TEXT PRIMARY KEY, role TEXT, running BOOLEAN DEFAULT FALSE, pid INTEGER,
    current_task_id TEXT, last_run_start DATETIME, last_run_end DATETIME
);
CREATE TABLE task_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, event TEXT NOT NULL,
    agent TEXT, details TEXT, timestamp DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_task_history_task_id ON task_history(task_id);
CREATE TABLE drafts (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT DEFAULT 'idea', author TEXT NOT NULL,
    domain TEXT, file_path TEXT, created_at TEXT, updated_at TEXT, linked_task_id TEXT,
    linked_project_id TEXT, tags TEXT
);
CREATE INDEX idx_drafts_status ON drafts(status);
CREATE INDEX idx_drafts_author ON drafts(author);
CREATE INDEX idx_drafts_domain ON drafts(domain);
CREATE TABLE schema_info (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO schema_info (key, value) VALUES ('version', '12');
"""

TASK_COLUMNS = ("id", "file_path", "queue", "priority", "role", "branch", "blocked_by",
                "claimed_by", "claimed_at", "commits_count", "turns_used", "attempt_count",
                "rejection_count", "checks", "check_results", "plan_id", "has_plan",
                "submitted_at", "completed_at", "created_at", "updated_at")


def local_iso(dt: datetime) -> str:
    """Python ``isoformat()`` of a naive local time (the ``T`` form Octopoid writes)."""
    return dt.isoformat()


def sqlite_utc(dt: datetime) -> str:
    """SQLite CURRENT_TIMESTAMP form (UTC, space, seconds) of a naive local time."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def heartbeat_text(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n"


def init_root(base: Path, db: bool = True) -> Path:
    """A fresh ``.orchestrator`` with every queue dir and (by default) a WAL-mode state.db."""
    root = base / ".orchestrator"
    for q in QUEUES:
        (root / "shared" / "queue" / q).mkdir(parents=True, exist_ok=True)
    for d in ("shared/notes", "agents", "messages", "logs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "agents.yaml").write_text(
        "model: task\ndatabase:\n  enabled: %s\nagents: []\n" % ("true" if db else "false"))
    if db:
        conn = sqlite3.connect(root / "state.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA_V12)
        conn.commit()
        conn.close()
    return root


def task_text(task_id: str, title: str, created: datetime, priority: str = "P2",
              role: str = "implement", extra_header: dict[str, str] | None = None,
              context: str = "") -> str:
    """A new task file exactly as Octopoid's create_task writes it."""
    lines = [f"# [TASK-{task_id}] {title}", "", f"ROLE: {role}", f"PRIORITY: {priority}",
             "BRANCH: main", f"CREATED: {local_iso(created)}", "CREATED_BY: human"]
    for k, v in (extra_header or {}).items():
        lines.append(f"{k}: {v}")
    lines += ["", "## Context", context or f"Context for {title}.", "",
              "## Acceptance Criteria", "- [ ] It works", "- [ ] Tests pass", ""]
    return "\n".join(lines)


def trail_block(*pairs: tuple[str, Any]) -> str:
    """One appended trail block: a blank line, then KEY: value lines."""
    out = "\n"
    for k, v in pairs:
        out += f"{k}: {local_iso(v) if isinstance(v, datetime) else v}\n"
    return out


def error_block(failed_at: datetime, error: str) -> str:
    return f"\nFAILED_AT: {local_iso(failed_at)}\n\n## Error\n```\n{error}\n```\n"


def write_atomic(path: Path, data: bytes | str, mtime: float | None = None) -> None:
    """temp file in the same dir + fsync + os.replace, like a careful writer."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_agent(root: Path, name: str, *, running: bool, last_started: datetime | None,
                last_finished: datetime | None = None, pid: int | None = None,
                heartbeat: datetime | None = None,
                status: tuple[str, datetime, int] | None = None,
                current_task: tuple[str, datetime] | None = None,
                mtime: float | None = None) -> None:
    """An agent's files as Octopoid's scheduler and hooks write them."""
    d = root / "agents" / name
    d.mkdir(parents=True, exist_ok=True)
    state = {"running": running, "pid": pid,
             "last_started": local_iso(last_started) if last_started else None,
             "last_finished": local_iso(last_finished) if last_finished else None,
             "last_exit_code": None if running else 0, "consecutive_failures": 0,
             "total_runs": 3, "total_successes": 2, "total_failures": 0,
             "current_task": None, "extra": {}}
    write_atomic(d / "state.json", json.dumps(state, indent=2), mtime)
    if heartbeat is not None:
        write_atomic(d / "heartbeat", heartbeat_text(heartbeat), heartbeat.timestamp())
    if status is not None:
        tid, at, progress = status
        write_atomic(d / "status.json", json.dumps({
            "task_id": tid, "task_title": "working", "current_subtask": "editing files",
            "progress_percent": progress, "last_updated": local_iso(at),
            "agent_name": name}, indent=2), at.timestamp())
    if current_task is not None:
        tid, started = current_task
        write_atomic(d / "current_task.json", json.dumps(
            {"task_id": tid, "task_path": "", "started_at": local_iso(started)}, indent=2),
            mtime)
